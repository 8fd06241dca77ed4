//! Command-line definitions (all clap types live here).

use aibox_types::{ByteSize, IsolationLevel, MountSpec, User};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "aibox",
    version,
    about = "Fast, isolated Linux sandboxes for AI agents and the people who work with them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a fresh sandbox and remove it afterwards.
    Run(RunArgs),
    /// Create a persistent sandbox and print its id.
    Create(CreateArgs),
    /// Run a command in a persistent sandbox.
    Exec(ExecArgs),
    /// List persistent sandboxes.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show a sandbox's spec, isolation report, state and usage as JSON.
    Inspect {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Destroy sandboxes (kills every process, removes every trace).
    #[command(alias = "destroy")]
    Rm {
        ids: Vec<String>,
        /// Destroy every sandbox.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Freeze every process of a sandbox.
    Pause {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Thaw a paused sandbox.
    Resume {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Check what isolation this host can give, with a fix for each gap.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// MicroVMs: build the guest kernel and initramfs, boot-probe them.
    Vm {
        #[command(subcommand)]
        cmd: VmCmd,
    },
    /// Clean up what crashed processes left behind.
    Gc,
    /// Print version information.
    Version,
    /// Serve the REST API (persistent sandboxes, keys, audit).
    Serve(ServeArgs),
    /// An MCP server on stdin/stdout for agents (Claude, Cursor, VS Code...),
    /// acting through the aibox server that AIBOX_URL/AIBOX_KEY name (else
    /// the local one).
    Mcp,
    /// An interactive shell in a sandbox (server).
    Shell {
        id: String,
        /// The shell to run.
        #[arg(long, default_value = "/bin/bash")]
        shell: String,
        #[command(flatten)]
        target: Target,
    },
    /// Copy files between the host and a sandbox: `cp SRC ID:DEST` or
    /// `cp ID:SRC DEST` (directories go as tar).
    Cp { src: String, dest: String },
    /// Live usage (CPU, memory, pids) of a sandbox (server).
    Stats {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// API keys (server, admin): ls, create NAME [--admin], rm ID.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The audit log (server, admin): ls, verify, export.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Snapshots of a sandbox's filesystem: create ID, ls, rm SNAPSHOT...
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Volumes: named filesystems with a quota that outlive sandboxes
    /// (mount with `create --volume NAME:/path`).
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Workspaces: files, environment and history that every sandbox made
    /// in one shares (`create --workspace NAME`; server only).
    Workspace {
        #[command(subcommand)]
        cmd: WorkspaceCmd,
    },
    /// Create a sandbox from a snapshot (its spec, with these overrides).
    Restore(RestoreArgs),
    /// Create N sandboxes from one snapshot, all or none.
    Fork(ForkArgs),
    /// A sandbox's network egress policy (server): show, set.
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// Templates (OCI images): import, ls, inspect, rm, prune, export.
    Template {
        #[command(subcommand)]
        cmd: TemplateCmd,
    },
    /// Published ports of a sandbox (server): the ports processes listen
    /// on and their URLs, with the access token.
    Port(PortArgs),
    /// Forward a local TCP port to a port inside a sandbox (any TCP:
    /// databases, SSH, dev servers). Runs until interrupted.
    PortForward(PortForwardArgs),
    /// (internal) create a sandbox from a JSON spec on stdin; used by
    /// multi-threaded callers of the runtime.
    #[command(hide = true)]
    InternalCreate,
    /// (internal) start a microVM sandbox's supervisor; used by the
    /// runtime's microvm backend.
    #[command(hide = true)]
    InternalVm { dir: std::path::PathBuf },
    /// (internal) carry stdin/stdout to a Unix socket; QEMU runs it for a
    /// microVM's connections to the egress proxy.
    #[command(hide = true)]
    InternalConnect { socket: std::path::PathBuf },
    /// (internal) PID 1 of a microVM's VMM pid namespace: runs the VMM and
    /// takes it down with it.
    #[command(hide = true)]
    InternalVmmInit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// (internal) run a network tool in the network namespace of a
    /// sandbox this user owns, with CAP_NET_ADMIN there; used by the
    /// server to set up rootless per-connection egress checks.
    #[command(hide = true)]
    InternalNetns {
        pid: i32,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// `aibox run` parsed on its own: building only this subcommand's parser
/// instead of the whole CLI saves ~0.1 ms on the hottest path.
#[derive(Parser, Debug)]
#[command(
    name = "aibox run",
    bin_name = "aibox run",
    about = "Run a command in a fresh sandbox and remove it afterwards"
)]
pub struct RunOnly {
    #[command(flatten)]
    pub args: RunArgs,
}

/// `aibox exec` parsed on its own (see [`RunOnly`]).
#[derive(Parser, Debug)]
#[command(
    name = "aibox exec",
    bin_name = "aibox exec",
    about = "Run a command in a persistent sandbox"
)]
pub struct ExecOnly {
    #[command(flatten)]
    pub args: ExecArgs,
}

/// Parse the command line, building only the parser of `run` or `exec`
/// when that is the verb.
pub fn parse() -> Command {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let rest = || argv.iter().skip(2).cloned();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("run") => Command::Run(
            RunOnly::parse_from(std::iter::once("aibox run".into()).chain(rest())).args,
        ),
        Some("exec") => Command::Exec(
            ExecOnly::parse_from(std::iter::once("aibox exec".into()).chain(rest())).args,
        ),
        _ => Cli::parse().command,
    }
}

/// Resource and identity options shared by `run` and `create`.
#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// Template to start from (default `host`, or a snapshot's).
    #[arg(long)]
    pub template: Option<String>,
    /// Memory limit, e.g. 512m or 2g (default 1g; swap is not allowed beyond it).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<ByteSize>,
    /// CPU limit in cores, e.g. 0.5 or 2.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads (default 1024).
    #[arg(long)]
    pub pids: Option<u64>,
    /// Size of the writable layer, /tmp included (default 1g).
    #[arg(long, value_parser = parse_size)]
    pub disk: Option<ByteSize>,
    /// Wall-clock limit, e.g. 30s or 5m.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Environment variable K=V (or K to copy it from this environment).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Bind a host path: HOST:GUEST[:ro]. As root the sandbox's user acts
    /// there as the path's owner, and a read-write mount of a root-owned
    /// path is refused.
    #[arg(long = "mount", value_parser = parse_mount)]
    pub mounts: Vec<MountSpec>,
    /// Mount a volume (`aibox volume create`): NAME:/PATH[:ro]. Its files
    /// outlive the sandbox; several sandboxes may mount it at once.
    #[arg(long = "volume", value_parser = parse_volume)]
    pub volumes: Vec<aibox_types::api::VolumeRef>,
    /// Working directory inside (default /workspace).
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Run as `user` (uid 1000, the default) or `root` (uid 0 inside, no capabilities).
    #[arg(short = 'u', long, value_parser = parse_user)]
    pub user: Option<User>,
    /// Fail instead of running with less isolation: basic, standard,
    /// strict or vm.
    #[arg(long, value_parser = parse_level)]
    pub require_isolation: Option<IsolationLevel>,
    /// Isolation backend: namespaces or microvm (default: namespaces, or
    /// the server's default).
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<aibox_types::BackendKind>,
    /// Hostname inside the sandbox.
    #[arg(long)]
    pub hostname: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Write the isolation report (JSON) to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// The command and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the whole record as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
    /// Labels K=V (server only).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Network egress: none (default), allowlist or full (server only).
    #[arg(long)]
    pub network: Option<String>,
    /// Egress rule to allow, e.g. pypi.org, *.github.com:443, 10.0.0.0/8:5432.
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// Egress rule to deny (checked before the allows).
    #[arg(long = "deny")]
    pub deny: Vec<String>,
    /// Published ports answer without the sandbox's port token (server only).
    #[arg(long)]
    pub public: bool,
    /// Where egress is enforced: proxy, or l4 (any TCP, checked per
    /// connection; fails the create when the host cannot give it).
    #[arg(long, value_parser = parse_enforcement)]
    pub enforcement: Option<aibox_types::egress::Enforcement>,
    /// Destroy the sandbox after this long without API activity, e.g. 10m
    /// (server only).
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
    /// Start from this snapshot's files and settings (the flags above
    /// override them; server only: `aibox restore` says the same).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Make it in this workspace (`aibox workspace`): its files at
    /// /workspace, its environment, its history (server only).
    #[arg(long)]
    pub workspace: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn parse_enforcement(s: &str) -> Result<aibox_types::egress::Enforcement, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: expected proxy or l4"))
}

/// Where the sandbox verbs act: the aibox server (found through
/// `AIBOX_URL`/`AIBOX_KEY` or the local defaults), or, with `--local` or
/// `AIBOX_LOCAL=1`, this host's runtime directly (daemonless).
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Act on this host's runtime directly instead of through the server.
    #[arg(long, global = true)]
    pub local: bool,
}

impl Target {
    pub fn is_local(&self) -> bool {
        self.local || std::env::var("AIBOX_LOCAL").is_ok_and(|v| v == "1")
    }
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    pub id: String,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(short = 'u', long, value_parser = parse_user)]
    pub user: Option<User>,
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Keep at most this much of each output stream, e.g. 1m (the rest is
    /// dropped; the server caps it at its max_exec_output).
    #[arg(long, value_parser = parse_size)]
    pub max_output: Option<ByteSize>,
    /// Start in the background and print the process id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub target: Target,
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    /// Print only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub target: Target,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    s.parse().map_err(|e: aibox_types::UnitError| e.to_string())
}
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    aibox_types::parse_duration(s).map_err(|e| e.to_string())
}
fn parse_mount(s: &str) -> Result<MountSpec, String> {
    s.parse()
}
fn parse_volume(s: &str) -> Result<aibox_types::api::VolumeRef, String> {
    s.parse()
}
fn parse_user(s: &str) -> Result<User, String> {
    s.parse()
}
fn parse_level(s: &str) -> Result<IsolationLevel, String> {
    s.parse()
}

fn parse_backend(s: &str) -> Result<aibox_types::BackendKind, String> {
    s.parse()
}

/// `aibox serve`: flags override `AIBOX_*` variables, which override the
/// TOML file (`--config`, or `DATA_DIR/config.toml` when it exists).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TCP address (loopback by default: 127.0.0.1:7878), or `none`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Unix socket path (default DATA_DIR/aibox.sock), or `none`.
    #[arg(long)]
    pub socket: Option<String>,
    /// State, templates and the admin key file (admin.key).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Maximum number of live sandboxes.
    #[arg(long)]
    pub max_sandboxes: Option<u64>,
    /// Sum of live sandboxes' memory limits, e.g. 16g.
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// Lifetime of a sandbox that asks for none, e.g. 10m.
    #[arg(long)]
    pub default_ttl: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// List keys.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Create a key and print its secret (shown only once).
    Create {
        name: String,
        /// An admin key (default: a user key that sees only its own sandboxes).
        #[arg(long)]
        admin: bool,
        /// Most sandboxes at once.
        #[arg(long)]
        max_sandboxes: Option<u64>,
        /// Most memory (sum of limits), e.g. 8g.
        #[arg(long)]
        max_memory: Option<String>,
        /// The key's own ceiling, as JSON (default: the server's user_ceiling),
        /// e.g. '{"egress_local":["10.20.0.0/16"],"max_memory":"4g"}'.
        #[arg(long)]
        ceiling: Option<String>,
    },
    /// Set a user key's own ceiling (JSON), or with --clear go back to the
    /// server's user_ceiling.
    Ceiling {
        id: String,
        /// E.g. '{"mounts":["/srv/data:rw"],"backends":["namespaces"]}'.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        json: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// Revoke a key.
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Show the latest entries.
    Ls {
        /// How many (from the end).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
    },
    /// Check the hash chain; exits 1 at the first broken link.
    Verify,
    /// Every entry as JSON lines on stdout.
    Export,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Snapshot a sandbox's filesystem (frozen meanwhile) and print the id.
    Create {
        /// The sandbox.
        id: String,
        /// A name to find it by.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List snapshots.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
        /// Print only ids.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete snapshots (refused while a sandbox restored from one runs).
    Rm {
        ids: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Make a volume and print its name.
    Create {
        name: String,
        /// Its quota, e.g. 10g (default 1g; 16m to 8t).
        #[arg(long, value_parser = parse_size)]
        size: Option<ByteSize>,
        /// Owner of its top directory inside sandboxes (default 1000, the
        /// default user; 0 for sandboxes that run as root).
        #[arg(long)]
        uid: Option<u32>,
        /// Label K=V (repeatable).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only volumes with this label (K=V).
        #[arg(short = 'l', long = "label")]
        label: Option<String>,
        #[arg(long)]
        json: bool,
        /// Print only names.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show a volume: quota and how it is enforced, usage, the sandboxes
    /// that mount it, its snapshots.
    Inspect {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove volumes (refused while a sandbox mounts one), or a volume's
    /// snapshot as NAME@SNAPSHOT.
    Rm {
        names: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Keep a named copy of a volume's files as they are now.
    Snapshot {
        name: String,
        snapshot: String,
        #[command(flatten)]
        target: Target,
    },
    /// A new volume with the files of SOURCE (a volume, or VOLUME@SNAPSHOT).
    Clone {
        source: String,
        name: String,
        /// Label K=V (repeatable).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCmd {
    /// Make a workspace (and the volume that holds its files) and print
    /// its name.
    Create {
        name: String,
        /// The quota of its files, e.g. 10g (default 1g).
        #[arg(long, value_parser = parse_size)]
        size: Option<ByteSize>,
        /// Environment variable K=V of every sandbox made in it.
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// Label K=V (repeatable).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List workspaces.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a workspace: its files, its sandboxes now, its history.
    Inspect { name: String },
    /// Remove workspaces with their files and history (refused while a
    /// sandbox is in one).
    Rm { names: Vec<String> },
    /// Keep a workspace's files as they are now, by name.
    Snapshot { name: String, snapshot: String },
}

/// What a restore may change from the snapshot's spec.
#[derive(Args, Debug, Clone)]
pub struct OverrideArgs {
    /// Memory limit, e.g. 512m.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<ByteSize>,
    /// CPU limit in cores.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Size of the writable layer.
    #[arg(long, value_parser = parse_size)]
    pub disk: Option<ByteSize>,
    /// Lifetime, e.g. 30m (server default otherwise).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Extra environment variable K=V.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Labels K=V (server only).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Print the sandbox(es) as JSON instead of ids.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot.
    pub snapshot: String,
    #[command(flatten)]
    pub over: OverrideArgs,
}

#[derive(Args, Debug)]
pub struct ForkArgs {
    /// The snapshot.
    pub snapshot: String,
    /// How many sandboxes.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub count: u64,
    #[command(flatten)]
    pub over: OverrideArgs,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Print the policy (mode and rules, first match wins).
    Show { id: String },
    /// Change the policy; new connections see it at once. Denies go
    /// before the existing rules, allows after them.
    Set {
        id: String,
        /// none, allowlist or full.
        #[arg(long)]
        mode: Option<String>,
        /// Add a rule that allows, e.g. pypi.org or *.github.com:443.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Add a rule that denies.
        #[arg(long = "deny")]
        deny: Vec<String>,
        /// Drop the existing rules first.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub id: String,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Let anyone who can reach the server open the ports, without the token.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Require the token again.
    #[arg(long)]
    pub private: bool,
    /// Replace the token: URLs handed out before stop working.
    #[arg(long)]
    pub rotate_token: bool,
}

#[derive(Args, Debug)]
pub struct PortForwardArgs {
    pub id: String,
    /// `PORT` or `LOCAL:PORT` (LOCAL 0 picks a free port).
    pub ports: String,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context: the directory COPY takes files from.
    #[arg(default_value = ".")]
    pub context: std::path::PathBuf,
    /// The recipe (default: CONTEXT/aibox.toml, else CONTEXT/Dockerfile).
    #[arg(short = 'f', long)]
    pub file: Option<std::path::PathBuf>,
    /// The template's name (default: `name` in the aibox.toml).
    #[arg(short = 't', long = "name", visible_alias = "tag")]
    pub name: Option<String>,
    /// Run every step, ignoring the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Leave a failed step's sandbox running for `aibox shell`.
    #[arg(long)]
    pub keep_failed: bool,
    /// Network of RUN steps: none, allowlist or full (default: the recipe's).
    #[arg(long)]
    pub network: Option<String>,
    /// Allow egress to a domain, host:port or CIDR (repeatable).
    #[arg(long)]
    pub allow: Vec<String>,
    /// Memory limit of each step's sandbox.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<aibox_types::ByteSize>,
    /// CPU limit of each step's sandbox.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Size of each step's writable layer (default 1g, like a sandbox's).
    #[arg(long, value_parser = parse_size)]
    pub disk: Option<aibox_types::ByteSize>,
    /// Print the build's events as JSON lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Pull an image from a registry (`busybox`, `ghcr.io/org/img:tag`,
    /// `127.0.0.1:5000/team/tools@sha256:...`).
    Pull {
        reference: String,
        /// The template's name (default: the reference, with `:latest`
        /// when it names no tag).
        #[arg(long)]
        name: Option<String>,
        /// Allow plain HTTP for this registry (loopback registries always may).
        #[arg(long)]
        insecure: bool,
    },
    /// Import an image: an OCI layout directory (`DIR` or `DIR:TAG`) or a
    /// `docker save` / `podman save` archive.
    Import {
        source: String,
        /// The template's name (default: the archive's tag).
        #[arg(long)]
        name: Option<String>,
    },
    /// List templates with their size.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a template's layers and config as JSON.
    Inspect { name: String },
    /// Forget templates (their layers go with `prune`).
    Rm { names: Vec<String> },
    /// Remove layers no template (nor the build cache) uses.
    Prune {
        /// Forget the build cache first, so its layers go too.
        #[arg(long)]
        build_cache: bool,
    },
    /// Build a template from an aibox.toml or a Dockerfile (FROM, RUN, COPY,
    /// ENV, WORKDIR, USER, CMD, ENTRYPOINT): each step runs in a sandbox,
    /// unchanged steps come from the build cache.
    Build(BuildArgs),
    /// Write a template as an OCI layout directory.
    Export {
        name: String,
        dir: std::path::PathBuf,
    },
    /// Make a snapshot a template: its layer on top of the template it was
    /// taken from.
    Promote { snapshot: String, name: String },
}

#[derive(Subcommand, Debug)]
pub enum VmCmd {
    /// Build (or reuse) the guest artifacts from Debian packages: the
    /// kernel, and an initramfs with this binary as /init plus the
    /// modules it needs; prints the manifest.
    Artifacts {
        /// Where they go (default DATA_DIR/vm).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The kernel package (a metapackage resolves to its kernel).
        #[arg(long, default_value = aibox_runtime::microvm::host::DEFAULT_KERNEL_PACKAGE)]
        package: String,
        /// Build again even when the kernel and this binary are unchanged.
        #[arg(long)]
        rebuild: bool,
        #[arg(long)]
        json: bool,
    },
    /// Boot the artifacts under QEMU's microvm machine and time boot to
    /// the guest's ready line.
    Probe {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// tcg (emulation, works everywhere) or kvm.
        #[arg(long, default_value = "tcg")]
        accel: String,
        /// Seconds to wait for the guest.
        #[arg(long, default_value_t = 90)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
}
