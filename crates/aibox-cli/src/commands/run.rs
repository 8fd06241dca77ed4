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
    if !aibox_runtime::backend_of(spec.backend).runs_one_shot() {
        return run_in_vm(&rt, &spec, a, tty);
    }
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

/// `aibox run --backend microvm`: a microVM sandbox made for the command,
/// which runs through its agent with our stdio, then destroyed.
fn run_in_vm(
    rt: &Runtime,
    spec: &aibox_types::SandboxSpec,
    a: RunArgs,
    tty: bool,
) -> anyhow::Result<u8> {
    let mut vm_spec = spec.clone();
    // The wall-clock limit is the command's, not the sandbox's.
    vm_spec.timeout_ms = None;
    let sb = rt.create(&vm_spec)?;
    let result = (|| -> anyhow::Result<u8> {
        if let Some(path) = &a.report {
            std::fs::write(path, serde_json::to_vec_pretty(sb.isolation())?)?;
        }
        let stdin = std::io::stdin();
        let pty = if tty {
            let (rows, cols) = aibox_sys::get_winsize(stdin.as_fd()).unwrap_or((24, 80));
            Some(aibox_protocol::PtySize { rows, cols })
        } else {
            None
        };
        let req = aibox_protocol::ExecRequest {
            argv: a.command.clone(),
            stdin: a.interactive || tty,
            timeout_ms: spec.timeout_ms,
            pty,
            ..Default::default()
        };
        let (mut s, _, _) = sb
            .client()
            .exec_start(req)
            .map_err(aibox_runtime::Error::from)?;
        let saved = if tty {
            aibox_sys::make_raw(stdin.as_fd()).ok()
        } else {
            None
        };
        let r = super::target::relay(&mut s, a.interactive || tty, tty);
        if let Some(t) = saved {
            let _ = aibox_sys::restore_termios(stdin.as_fd(), &t);
        }
        let exit = r?;
        if exit.timed_out {
            eprintln!(
                "aibox: command timed out after {}",
                humantime(spec.timeout_ms.unwrap_or(0))
            );
            return Ok(124);
        }
        Ok(exit.status().clamp(0, 255) as u8)
    })();
    let _ = sb.destroy();
    result
}

fn humantime(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
