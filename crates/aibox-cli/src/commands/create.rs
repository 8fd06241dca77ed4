//! `aibox create` and the hidden `internal-create` helper.

use crate::args::CreateArgs;
use aibox_runtime::{HelperReply, Runtime};
use aibox_types::api::{CreateRequest, NetworkRequest};
use aibox_types::NetworkMode;
use std::io::Read;

/// The create request the flags describe: the one value both the server
/// path and `--local` take, so a flag reaches both or neither.
pub fn request(a: &CreateArgs) -> anyhow::Result<CreateRequest> {
    let network = if a.network.is_some() || !a.allow.is_empty() || !a.deny.is_empty() {
        let mode = match a.network.as_deref() {
            None => NetworkMode::Allowlist,
            Some(m) => serde_json::from_value(serde_json::json!(m)).map_err(|_| {
                aibox_runtime::Error::InvalidSpec(format!(
                    "--network {m:?}: expected none, allowlist or full"
                ))
            })?,
        };
        Some(NetworkRequest {
            mode,
            rules: super::rules_of(&[], &a.allow, &a.deny)?,
            enforcement: a.enforcement,
        })
    } else if a.enforcement.is_some() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "--enforcement needs --network allowlist or full (or an --allow rule)".into()
        ));
    } else {
        None
    };
    let seconds = |d: std::time::Duration| (d.as_millis() as u64).div_ceil(1000);
    Ok(CreateRequest {
        idle_timeout_seconds: a.idle_timeout.map(seconds),
        labels: super::parse_labels(&a.labels)?,
        snapshot: a.snapshot.clone(),
        workspace: a.workspace.clone(),
        network,
        public: a.public,
        ..super::spec_request(&a.spec)?
    })
}

pub fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let req = request(&a)?;
    let v = super::target::open(&a.target)?.create(&req)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v.id);
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

/// Join the user and network namespaces of `pid`, keep only CAP_NET_ADMIN
/// (ambient, so it survives exec whatever our uid is there), and exec
/// `command`. Only works on namespaces this user owns.
pub fn internal_netns(pid: i32, command: &[String]) -> anyhow::Result<u8> {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    let user = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
    let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    aibox_sys::setns(user.as_fd(), libc::CLONE_NEWUSER)
        .map_err(|e| anyhow::anyhow!("joining the user namespace of {pid}: {e}"))?;
    aibox_sys::setns(net.as_fd(), libc::CLONE_NEWNET)
        .map_err(|e| anyhow::anyhow!("joining the network namespace of {pid}: {e}"))?;
    aibox_sys::keep_ambient(aibox_sys::CAP_NET_ADMIN)
        .map_err(|e| anyhow::anyhow!("keeping CAP_NET_ADMIN: {e}"))?;
    let Some((prog, args)) = command.split_first() else {
        anyhow::bail!("no command");
    };
    let e = std::process::Command::new(prog).args(args).exec();
    anyhow::bail!("cannot run {prog}: {e}")
}
