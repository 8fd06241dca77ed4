//! `aibox run`: a command in a fresh sandbox, with our stdio.

use crate::args::RunArgs;
use aibox_runtime::{OneShot, Runtime};
use std::io::IsTerminal;
use std::os::fd::AsFd;

pub fn run(a: RunArgs) -> anyhow::Result<u8> {
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox run [OPTIONS] -- CMD [ARGS...]`".into()
        ));
    }
    let mut spec = super::spec_from(&a.spec)?;
    let tty = a.tty && std::io::stdin().is_terminal();
    if a.tty && !tty {
        eprintln!("aibox: -t ignored: stdin is not a terminal");
    }
    if tty && !spec.env.iter().any(|(k, _)| k == "TERM") {
        spec.env.push((
            "TERM".into(),
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
        ));
    }
    let rt = Runtime::new();
    let stdin = std::io::stdin();
    let saved = if tty {
        aibox_sys::make_raw(stdin.as_fd()).ok()
    } else {
        None
    };
    let result = rt.run(
        &spec,
        OneShot {
            argv: a.command,
            tty,
            stdin: a.interactive || tty,
        },
    );
    if let Some(t) = saved {
        let _ = aibox_sys::restore_termios(stdin.as_fd(), &t);
    }
    let outcome = result?;
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.isolation)?)?;
    }
    if outcome.timed_out {
        eprintln!(
            "aibox: command timed out after {}",
            humantime(spec.timeout_ms.unwrap_or(0))
        );
    } else if outcome.oom_killed && outcome.code == 137 {
        eprintln!(
            "aibox: command was killed: out of memory (limit {})",
            aibox_types::ByteSize(spec.memory_bytes())
        );
    }
    Ok(outcome.code.clamp(0, 255) as u8)
}

fn humantime(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
