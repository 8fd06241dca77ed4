//! One module per verb.

mod build;
mod create;
mod doctor;
mod exec;
mod list;
mod ports;
mod progress;
mod remote;
mod run;
mod serve;
mod snapshot;
mod target;
mod template;
mod vm;
mod volume;
mod workspace;

use crate::args::{Command, SpecArgs};
use aibox_runtime::Runtime;
use aibox_types::SandboxSpec;

pub fn dispatch(cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Run(a) => run::run(a),
        Command::Create(a) => create::create(a),
        Command::InternalCreate => create::internal_create(),
        Command::InternalVm { dir } => Ok(aibox_runtime::microvm::supervise(&dir) as u8),
        Command::InternalVmmInit { command } => {
            Ok(aibox_runtime::microvm::vmm_init(&command) as u8)
        }
        Command::InternalConnect { socket } => {
            Ok(aibox_runtime::microvm::connect_stdio(&socket) as u8)
        }
        Command::InternalNetns { pid, command } => create::internal_netns(pid, &command),
        Command::Exec(a) => exec::exec(a),
        Command::List(a) => list::list(a),
        Command::Inspect { id, target } => list::inspect(&id, &target),
        Command::Rm { ids, all, target } => list::rm(ids, all, &target),
        Command::Pause { id, target } => list::pause(&id, true, &target),
        Command::Resume { id, target } => list::pause(&id, false, &target),
        Command::Doctor { json } => doctor::doctor(json),
        Command::Vm { cmd } => vm::vm(cmd),
        Command::Gc => {
            for id in Runtime::new().gc() {
                println!("cleaned {id}");
            }
            Ok(0)
        }
        Command::Serve(a) => serve::serve(a),
        Command::Mcp => mcp(),
        Command::Shell { id, shell, target } => exec::exec(remote::shell_args(&id, &shell, target)),
        Command::Cp { src, dest } => remote::cp(&src, &dest),
        Command::Stats { id, json } => remote::stats(&id, json),
        Command::Keys { cmd } => remote::keys(cmd),
        Command::Audit { cmd } => remote::audit(cmd),
        Command::Snapshot { cmd } => snapshot::snapshot(cmd),
        Command::Volume { cmd } => volume::volume(cmd),
        Command::Workspace { cmd } => workspace::workspace(cmd),
        Command::Restore(a) => snapshot::fork(&a.snapshot, 1, &a.over, true),
        Command::Network { cmd } => remote::network(cmd),
        Command::Template { cmd } => template::template(cmd),
        Command::Port(a) => ports::port(a),
        Command::PortForward(a) => ports::forward(a),
        Command::Fork(a) => snapshot::fork(&a.snapshot, a.count, &a.over, false),
        Command::Version => {
            println!(
                "aibox {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                aibox_protocol::PROTOCOL_VERSION
            );
            Ok(0)
        }
    }
}

/// `aibox mcp`: MCP over stdio, through the aibox server. stdout carries
/// protocol frames only.
fn mcp() -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let api = aibox_mcp::HttpApi::from_env().map_err(anyhow::Error::msg)?;
        api.check().await.map_err(anyhow::Error::msg)?;
        aibox_mcp::serve_stdio(std::sync::Arc::new(api))
            .await
            .map_err(anyhow::Error::msg)
    })?;
    Ok(0)
}

/// Denies first, then the rules kept, then the allows: `deny` takes
/// precedence, as an operator adding one expects. A rule that does not
/// parse is refused here, naming the flag.
pub fn rules_of(
    kept: &[aibox_types::egress::Rule],
    allow: &[String],
    deny: &[String],
) -> anyhow::Result<Vec<aibox_types::egress::Rule>> {
    let parse = |flag: &str, verb: &str, target: &String| {
        format!("{verb} {target}")
            .parse::<aibox_types::egress::Rule>()
            .map_err(|e| aibox_runtime::Error::InvalidSpec(format!("--{flag} {target}: {e}")))
    };
    let mut v = deny
        .iter()
        .map(|d| parse("deny", "deny", d))
        .collect::<Result<Vec<_>, _>>()?;
    v.extend(kept.iter().cloned());
    for a in allow {
        v.push(parse("allow", "allow", a)?);
    }
    Ok(v)
}

/// `-l K=V` labels.
pub fn parse_labels(
    items: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    for l in items {
        let Some((k, v)) = l.split_once('=') else {
            anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
                "invalid label {l:?}: expected K=V"
            )));
        };
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// `-e K=V` / `-e K` (copied from our environment when set).
pub fn parse_env(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in items {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(item) {
                Ok(v) => (item.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            anyhow::bail!(aibox_runtime::Error::InvalidSpec(format!(
                "invalid environment variable {item:?}: expected K=V"
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// The flags `run` and `create` share, as the API's create request: the
/// one place such a flag becomes a field. Written without
/// `..Default::default()`, so a field added to the request does not
/// compile here until the CLI takes it (or says here why it does not).
pub fn spec_request(a: &SpecArgs) -> anyhow::Result<aibox_types::api::CreateRequest> {
    use aibox_types::api::Size;
    let seconds = |d: std::time::Duration| (d.as_millis() as u64).div_ceil(1000);
    Ok(aibox_types::api::CreateRequest {
        template: a.template.clone(),
        cpus: a.cpus,
        memory: a.memory.map(Size::from),
        pids: a.pids,
        disk: a.disk.map(Size::from),
        env: parse_env(&a.env)?.into_iter().collect(),
        workdir: a.workdir.clone(),
        user: a.user,
        ttl_seconds: a.timeout.map(seconds),
        hostname: a.hostname.clone(),
        require_isolation: a.require_isolation,
        backend: a.backend,
        mounts: a.mounts.clone(),
        volumes: a.volumes.clone(),
        // `create`'s own flags (`aibox run` has no server behind it).
        idle_timeout_seconds: None,
        labels: Default::default(),
        snapshot: None,
        workspace: None,
        network: None,
        public: false,
    })
}

/// `aibox run`'s spec: the shared flags over the defaults, and its
/// timeout to the millisecond (a one-shot command's kill timer).
pub fn spec_from(a: &SpecArgs) -> anyhow::Result<SandboxSpec> {
    let mut spec = SandboxSpec::default();
    spec_request(a)?
        .apply(&mut spec)
        .map_err(|e| aibox_runtime::Error::InvalidSpec(e.to_string()))?;
    spec.timeout_ms = a.timeout.map(|t| t.as_millis() as u64);
    if spec.timeout_ms == Some(0) {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "timeout must be greater than zero".into()
        ));
    }
    Ok(spec)
}

/// 1.5G, 300.0M, 12.0K, 512B.
pub(crate) fn human(bytes: u64) -> String {
    for (unit, size) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= size {
            return format!("{:.1}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}
