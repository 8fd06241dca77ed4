//! Fuzz targets: each takes arbitrary bytes and feeds them to one parser
//! of untrusted input. A target must never panic, hang or allocate without
//! bound, whatever the bytes; errors are the expected outcome.
//!
//! Two drivers run them: `cargo +nightly fuzz run TARGET` in `fuzz/`
//! (libFuzzer, coverage-guided, for long local runs), and
//! `tests/fuzz.rs` on stable, which replays the committed corpus
//! (`fuzz/corpus/TARGET`) and mutates it for a few seconds per target, so
//! the suite keeps every target honest on every run.
#![forbid(unsafe_code)]

use std::io::Read;

/// A fuzz target: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The targets, by name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames),
    ("oci_layer", oci_layer),
    ("recipe", recipe),
    ("egress_rules", egress_rules),
    ("proxy_request", proxy_request),
];

/// Host⇄agent: a byte stream read as frames, each control frame parsed as
/// every message type either side accepts.
pub fn frames(data: &[u8]) {
    let mut r = data;
    for _ in 0..64 {
        match aibox_protocol::read_frame(&mut r) {
            Ok(f) => {
                let _ = serde_json::from_slice::<aibox_protocol::Op>(&f.payload);
                let _ = serde_json::from_slice::<aibox_protocol::ClientMsg>(&f.payload);
                let _ = serde_json::from_slice::<aibox_protocol::AgentMsg>(&f.payload);
            }
            Err(_) => return,
        }
    }
}

/// An OCI layer (tar, gzip or zstd) unpacked into a throwaway store with
/// a small entry limit. Whatever the archive, nothing may land outside
/// the layer (checked after each input).
pub fn oci_layer(data: &[u8]) {
    let base = std::env::temp_dir().join(format!(
        "aibox-fuzz-oci-{}-{}",
        std::process::id(),
        aibox_runtime::random_id()
    ));
    let store = aibox_runtime::image::oci::Store::new(&base.join("templates"));
    let digest = format!("sha256:{}", sha256_hex(data));
    let mut r = data;
    let _ = store.add_layer(&digest, &mut r as &mut dyn Read, &mut |_| {});
    let escaped = std::fs::read_dir(&base)
        .map(|d| d.flatten().any(|e| e.file_name() != "templates"))
        .unwrap_or(false);
    let _ = aibox_runtime::image::layer::remove_tree(&base);
    assert!(!escaped, "a layer wrote outside its store");
}

/// Dockerfile and aibox.toml recipes.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = aibox_runtime::image::recipe::parse_dockerfile("Dockerfile", text);
    let _ = aibox_runtime::image::recipe::parse_toml("aibox.toml", text);
}

/// Egress rules, and a policy made of them deciding on hosts from the
/// same bytes.
pub fn egress_rules(data: &[u8]) {
    use aibox_types::egress::{Host, Mode, Policy, Rule};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules: Vec<Rule> = text.lines().filter_map(|l| l.parse().ok()).collect();
    for r in &rules {
        // A rule's text parses back to the same rule (a panic is what a
        // fuzz target reports).
        let again: Result<Rule, _> = r.text.parse();
        assert!(
            again.as_ref() == Ok(r),
            "{:?} parses back as {again:?}",
            r.text
        );
    }
    let policy = Policy {
        mode: Mode::Allowlist,
        rules: rules.clone(),
    };
    for l in text.lines().take(16) {
        if let Some(h) = Host::parse(l.trim()) {
            let _ = policy.precheck_name(&h, 443);
            let _ = policy.decide(&h, 80);
        }
    }
    let _ = aibox_types::ceiling::Ceiling::default().check_rules(&rules);
}

/// The egress proxy's view of a client: the request head and a TLS
/// ClientHello's SNI.
pub fn proxy_request(data: &[u8]) {
    let _ = aibox_server::wire::parse_request_head(data);
    let _ = aibox_server::wire::client_hello_sni(data);
    // The same bytes through a tunnel a name rule allowed (M2): a refusal
    // sends nothing upstream, and what is relayed is one request, closed.
    let (outcome, upstream) = aibox_server::tunnel::replay(data);
    match outcome {
        aibox_server::tunnel::Outcome::Refused(_) => {
            assert!(upstream.is_empty(), "a refused tunnel sent bytes upstream")
        }
        aibox_server::tunnel::Outcome::Relayed if !data.starts_with(&[0x16]) => {
            let head_end = upstream.windows(4).position(|w| w == b"\r\n\r\n");
            let head = &upstream[..head_end.unwrap_or(upstream.len())];
            assert!(
                head.ends_with(b"Connection: close"),
                "a relayed request was not closed"
            );
        }
        aibox_server::tunnel::Outcome::Relayed => {}
    }
}

fn sha256_hex(data: &[u8]) -> String {
    aibox_server::store::sha256_hex(data)
}
