//! `aibox create` and the hidden `internal-create` helper.

use crate::args::CreateArgs;
use aibox_runtime::{HelperReply, Runtime};
use std::io::Read;

pub fn create(a: CreateArgs) -> anyhow::Result<u8> {
    if a.network.is_some() || !a.allow.is_empty() || !a.deny.is_empty() {
        anyhow::bail!(aibox_runtime::Error::Unsupported(
            "network egress goes through the aibox server's proxy: drop --local".into()
        ));
    }
    if a.public {
        anyhow::bail!(aibox_runtime::Error::Unsupported(
            "published ports are served by the aibox server: drop --local (`aibox port-forward --local` reaches a port without it)".into()
        ));
    }
    let spec = super::spec_from(&a.spec)?;
    let sb = Runtime::new().create(&spec)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(sb.record())?);
    } else {
        println!("{}", sb.id());
    }
    Ok(0)
}

/// Reads a `SandboxSpec` as JSON on stdin, creates the sandbox in this
/// (single-threaded) process and prints a `HelperReply` on stdout.
pub fn internal_create() -> anyhow::Result<u8> {
    // Die with the server that asked: a create it can no longer record
    // must not finish behind its back (the sandbox's PID 1 then sees its
    // link close and exits too; restart adoption cleans the rest).
    aibox_sys::set_pdeathsig(libc::SIGKILL)?;
    if std::os::unix::process::parent_id() == 1 {
        anyhow::bail!("the process that asked for this sandbox is gone");
    }
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let reply = match serde_json::from_slice(&body) {
        Err(e) => HelperReply::Error {
            code: aibox_types::ErrorCode::InvalidArgument,
            message: format!("invalid spec: {e}"),
        },
        Ok(spec) => match Runtime::new().create_here(&spec) {
            Ok(rec) => HelperReply::Ok { id: rec.id },
            Err(e) => HelperReply::Error {
                code: e.code(),
                message: format!("{e}"),
            },
        },
    };
    println!("{}", serde_json::to_string(&reply)?);
    Ok(0)
}
