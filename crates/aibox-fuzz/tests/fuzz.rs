//! Every fuzz target, on stable, for a bounded time: the committed corpus
//! (`fuzz/corpus/TARGET`, grown by `cargo +nightly fuzz run`) replayed,
//! then mutated (bit flips, byte runs, splices, truncations) from a seed
//! printed at the start, for `AIBOX_FUZZ_SECONDS` per target (default 2).
//! A panic, or an input that takes over 10 s, fails the test and names
//! the input's file under `target/fuzz-failures/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 0xff, 0x7f, 0x80, b'\n', b'/', b'.', b':'][rng.below(8)];
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let run = vec![rng.next() as u8; 1 + rng.below(16)];
                v.splice(i..i, run);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let j = (i + 1 + rng.below(32)).min(v.len());
                v.drain(i..j);
            }
            4 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let (i, j) = (rng.below(v.len() + 1), rng.below(other.len() + 1));
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            5 => v.truncate(rng.below(v.len() + 1)),
            _ => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(8) as u32;
                v.splice(i..i, (1000u32.pow(n.min(3))).to_string().into_bytes());
            }
        }
    }
    v.truncate(1 << 16);
    v
}

fn corpus_of(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn keep_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(format!("{target}-{}", input.len()));
    let _ = std::fs::write(&p, input);
    p
}

fn run_one(target: &str, f: fn(&[u8]), input: &[u8]) {
    let t = Instant::now();
    let r = std::panic::catch_unwind(|| f(input));
    if r.is_err() {
        panic!(
            "fuzz target {target} panicked on {}",
            keep_failure(target, input).display()
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "fuzz target {target} took {:?} on {}",
        t.elapsed(),
        keep_failure(target, input).display()
    );
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let secs: f64 = std::env::var("AIBOX_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let seed = std::env::var("AIBOX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("fuzz: seed {seed} (AIBOX_FUZZ_SEED), {secs} s per target (AIBOX_FUZZ_SECONDS)");
    // Small limits for the unpacker: a mutated size must not cost a minute.
    std::env::set_var("AIBOX_MAX_LAYER_ENTRIES", "2000");
    for (name, f) in aibox_fuzz::TARGETS {
        let corpus = corpus_of(name);
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: the corpus is committed with the targets"
        );
        for input in &corpus {
            run_one(name, *f, input);
        }
        let mut rng = Rng(seed ^ name.len() as u64);
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut execs = corpus.len();
        while Instant::now() < until {
            let base = &corpus[rng.below(corpus.len())];
            let input = mutate(&mut rng, base, &corpus);
            run_one(name, *f, &input);
            execs += 1;
        }
        eprintln!(
            "fuzz: {name}: {} corpus inputs, {execs} runs, no failure",
            corpus.len()
        );
    }
}
