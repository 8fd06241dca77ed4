//! The `aibox` binary: one file per verb under `commands/`, clap types in
//! `args`. Errors are printed once, here, with their stable code.
#![forbid(unsafe_code)]

mod args;
mod commands;

use std::process::ExitCode;

/// Exit status for aibox's own failures (the command never ran), as docker uses.
pub const EXIT_AIBOX_ERROR: u8 = 125;

fn main() -> ExitCode {
    // In a microVM this binary is the initramfs's /init.
    if aibox_agent::guest::is_guest_init() {
        aibox_agent::guest::main();
    }
    // Logging only when asked for: `aibox run` is on a hot path, and
    // diagnostics go through error values, not logs.
    if let Some(level) = std::env::var("AIBOX_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
    {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .without_time()
            .init();
    }
    match commands::dispatch(args::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match (
                e.downcast_ref::<aibox_runtime::Error>(),
                e.downcast_ref::<aibox_client::ClientError>(),
            ) {
                (Some(r), _) => r.code().as_str(),
                (_, Some(c)) => c.code().as_str(),
                _ => "error",
            };
            let mut msg = format!("aibox: {e}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(&format!(": {c}"));
                }
            }
            eprintln!("{msg} [{code}]");
            ExitCode::from(EXIT_AIBOX_ERROR)
        }
    }
}
