//! The aibox runtime: create, run, inspect and destroy sandboxes.
//!
//! Everything later (the CLI, the server, MCP) goes through this API:
//! * [`Runtime::run`] — one-shot: a command in a fresh sandbox, with the
//!   caller's stdio, no agent, no server (`aibox run`);
//! * [`Runtime::create`] — a persistent sandbox whose PID 1 is the agent; it
//!   outlives the caller and is found again by id ([`Runtime::get`]);
//! * [`Sandbox`] — exec and files through the agent ([`Sandbox::client`]),
//!   pause/resume (cgroup freezer), stats, destroy;
//! * [`Runtime::gc`] — finds and cleans what crashed processes left behind.
//!
//! Isolation backends implement [`backend::Backend`]: the namespace
//! backend (`namespace/`) and the microVM backend (`microvm/`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod image;
pub mod microvm;
pub mod namespace;
pub mod sandbox;
pub mod volume;

use image::{build, oci, template};
use namespace::{init, setup};
use sandbox::{beneath, cgroup, dirs, ids, listening, snapshot, state};

pub use dirs::Dirs;
pub use ids::{fill_random, new_secret, random_id};
pub use init::OneShot;
pub use sandbox::client::{AgentClient, ClientError, Output};
pub use setup::SetupError;
pub use snapshot::SnapshotMeta;
pub use state::{Record, Status};

use aibox_types::{ErrorCode, IsolationReport, MountSpec, SandboxSpec};
use sandbox::cgroup::{Cgroup, Layout, Stats};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Dirs(#[from] dirs::DirsError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("no sandbox with id {0:?}")]
    NotFound(String),
    #[error("no snapshot with id {0:?}")]
    SnapshotNotFound(String),
    #[error("no volume {0:?}")]
    VolumeNotFound(String),
    #[error("sandbox {0} is no longer running")]
    Gone(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the sandbox helper failed: {0}")]
    Helper(String),
    /// An error the setup helper reported, with its code.
    #[error("{message}")]
    Reported { code: ErrorCode, message: String },
    #[error(transparent)]
    Agent(#[from] ClientError),
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    /// A template build step failed.
    #[error("{0}")]
    Build(Box<build::StepFailure>),
}

impl Error {
    /// The stable error code front ends return.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidSpec(_) => ErrorCode::InvalidArgument,
            Error::Template(template::TemplateError::NotFound(_)) => ErrorCode::TemplateNotFound,
            Error::Template(template::TemplateError::Oci { source, .. }) | Error::Oci(source) => {
                source.code()
            }
            Error::Setup(SetupError::Isolation { .. } | SetupError::LimitsUnavailable(_)) => {
                ErrorCode::IsolationUnavailable
            }
            Error::Setup(SetupError::MountSource { .. } | SetupError::Refused(_)) => {
                ErrorCode::InvalidArgument
            }
            Error::NotFound(_) | Error::SnapshotNotFound(_) | Error::VolumeNotFound(_) => {
                ErrorCode::NotFound
            }
            Error::Gone(_) => ErrorCode::SandboxGone,
            Error::Unsupported(_) => ErrorCode::InvalidArgument,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Agent(e) => e.code(),
            Error::Reported { code, .. } => *code,
            Error::Build(_) => ErrorCode::BuildFailed,
            _ => ErrorCode::Internal,
        }
    }
}

/// What a sandbox being created holds until its PID 1 (which inherits
/// them) is running: the uid slot's lock and a snapshot's shared lock.
struct Holds {
    _slot: Option<state::Slot>,
    /// The snapshot's lock and each volume's.
    _locks: Vec<std::os::fd::OwnedFd>,
}

/// Open each host mount's source once (O_PATH), so the mount is made of
/// exactly what was checked: beneath its `within` directory without
/// following any symlink when the server set one (`crate::sandbox::beneath`), else
/// the caller's own path as given.
///
/// As root (`rootful`), a read-write mount acts on the host as its owner
/// (`setup::owner_userns`), so one owned by uid 0 or a system group is
/// refused:
/// the sandbox would be root there (set-id files for every local user,
/// root's own files rewritten).
fn open_mount_sources(
    spec: &SandboxSpec,
    rootful: bool,
) -> Result<Vec<(MountSpec, setup::MountSource)>, Error> {
    let mut out = Vec::new();
    for m in &spec.mounts {
        let bad = |why: String| {
            Error::Setup(SetupError::MountSource {
                path: m.host.clone(),
                why,
            })
        };
        let fd = match &m.within {
            Some(root) => {
                let rel = m
                    .host
                    .strip_prefix(root)
                    .map_err(|_| bad(format!("not under {}", root.display())))?;
                beneath::Tree::open(root)
                    .and_then(|t| t.open_at(rel, libc::O_PATH))
                    .map_err(|e| {
                        bad(match &e {
                            beneath::BeneathError::Io { source, .. }
                                if source.kind() == std::io::ErrorKind::NotFound =>
                            {
                                "does not exist".into()
                            }
                            _ => e.to_string(),
                        })
                    })?
            }
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH)
                    .open(&m.host)
                    .map_err(|e| {
                        bad(if e.kind() == std::io::ErrorKind::NotFound {
                            "does not exist".into()
                        } else {
                            e.to_string()
                        })
                    })?
                    .into()
            }
        };
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        use std::os::unix::fs::MetadataExt;
        if rootful && !m.read_only && meta.uid() == 0 {
            return Err(bad(
                "is owned by root: read-write, the sandbox would act as root on the host there; give it to an unprivileged owner (chown UID:GID) or mount it read-only".into(),
            ));
        }
        if rootful && !m.read_only && !setup::ordinary_group(meta.gid()) {
            return Err(bad(format!(
                "belongs to the system group {}: read-write, the sandbox could leave set-gid files of that group there; give it a user's group (chgrp, gid 1000 or above) or mount it read-only",
                meta.gid()
            )));
        }
        out.push((
            m.clone(),
            setup::MountSource {
                fd: std::sync::Arc::new(file.into()),
                file: meta.is_file(),
                ids: setup::MountIds::Owner(meta.uid(), meta.gid()),
            },
        ));
    }
    Ok(out)
}

/// Result of a one-shot run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Exit code (128 + N when killed by signal N).
    pub code: i32,
    pub timed_out: bool,
    /// The memory cgroup reports an OOM kill.
    pub oom_killed: bool,
    pub isolation: IsolationReport,
}

pub struct Runtime {
    dirs: Dirs,
    /// Detected on first use (reading mountinfo costs ~0.1 ms, and most
    /// operations on existing sandboxes do not need it).
    cgroups: std::sync::OnceLock<Layout>,
    /// Binary re-executed as the single-threaded setup helper (empty:
    /// `$AIBOX_BIN` or the current executable, resolved when needed).
    helper: PathBuf,
}

pub(crate) use aibox_types::now_ms;

impl Runtime {
    /// Directories from the environment (see [`Dirs::from_env`]); the helper
    /// binary is `$AIBOX_BIN` or the current executable.
    pub fn new() -> Runtime {
        Runtime::with(Dirs::from_env(), PathBuf::new())
    }

    pub fn with(dirs: Dirs, helper: PathBuf) -> Runtime {
        Runtime {
            dirs,
            cgroups: std::sync::OnceLock::new(),
            helper,
        }
    }

    pub fn dirs(&self) -> &Dirs {
        &self.dirs
    }

    pub fn cgroup_layout(&self) -> &Layout {
        self.cgroups.get_or_init(Layout::detect)
    }

    pub fn rootless(&self) -> bool {
        aibox_sys::geteuid() != 0
    }

    /// The template store (OCI images).
    pub fn templates(&self) -> oci::Store {
        oci::Store::new(&self.dirs.templates())
    }

    /// Forget a template, unless a sandbox of this runtime runs on it.
    pub fn remove_template(&self, name: &str) -> Result<(), Error> {
        let users: Vec<String> = self
            .list()
            .into_iter()
            .filter(|r| r.spec.template == name)
            .map(|r| r.id)
            .collect();
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "template {name} is used by running sandboxes: {}",
                users.join(", ")
            )));
        }
        Ok(self.templates().remove(name)?)
    }

    fn prepare(&self, spec: &SandboxSpec, persistent: bool) -> Result<(setup::Plan, Holds), Error> {
        let mut spec = spec.clone();
        self.resolve_volumes(&mut spec)?;
        let spec = &spec;
        spec.validate().map_err(Error::InvalidSpec)?;
        self.dirs.ensure()?;
        let template = template::resolve(&self.dirs.templates(), &spec.template)?;
        let spec = &with_image_defaults(spec, &template)?;
        let snapshot = match &spec.snapshot {
            Some(id) => Some(self.open_snapshot(id, &spec.template)?),
            None => None,
        };
        let id = random_id();
        let mut mounts = open_mount_sources(spec, !self.rootless())?;
        let mut locks: Vec<std::os::fd::OwnedFd> = Vec::new();
        for v in &spec.volumes {
            let held = self.hold_volume(&v.id)?;
            let dir = std::fs::File::open(&held.data)
                .map_err(|e| Error::Helper(format!("opening volume {}: {e}", v.name)))?;
            mounts.push((
                MountSpec {
                    host: held.data,
                    guest: v.path.clone(),
                    read_only: v.read_only,
                    within: None,
                },
                setup::MountSource {
                    fd: std::sync::Arc::new(dir.into()),
                    file: false,
                    ids: setup::MountIds::Sandbox,
                },
            ));
            locks.push(held.lock);
        }
        let slot = if self.rootless() {
            None
        } else {
            Some(state::claim_slot(&self.dirs.slots())?)
        };
        let snapshot_layer = snapshot.as_ref().map(|(layer, _)| layer.clone());
        locks.extend(snapshot.map(|(_, lock)| lock));
        let plan = setup::Plan {
            id,
            spec: spec.clone(),
            template,
            staging: self.dirs.staging(),
            uid_base: slot.as_ref().map(|s| state::slot_uid(s.n)),
            slot_lock: slot
                .as_ref()
                .map(|s| std::os::fd::AsRawFd::as_raw_fd(&s.file)),
            cgroups: self.cgroup_layout().clone(),
            persistent,
            snapshot_layer,
            held_locks: locks.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect(),
            egress_dir: None,
            mounts,
        };
        Ok((
            plan,
            Holds {
                _slot: slot,
                _locks: locks,
            },
        ))
    }

    fn record(&self, plan: &setup::Plan, status: Status, pid: i32) -> Record {
        Record {
            id: plan.id.clone(),
            status,
            created_unix_ms: now_ms(),
            pid,
            start_time: aibox_sys::process_start_time(pid).unwrap_or(0),
            spec: plan.spec.clone(),
            isolation: IsolationReport::default(),
            cgroup: Cgroup {
                version: self.cgroup_layout().version().into(),
                dirs: vec![],
            },
            uid_slot: plan
                .uid_base
                .map(|b| (b - state::SLOT_BASE) / state::SLOT_SIZE),
            uid_base: plan.uid_base,
            socket: self.dirs.sandbox(&plan.id).join("agent.sock"),
            scratch_fd: None,
            vm: None,
        }
    }

    /// Remove a sandbox's record dir. (Its uid slot is released by the
    /// kernel when the last holder of the slot's lock is gone.)
    fn abandon(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.dirs.sandbox(id));
    }

    /// Run one command in a fresh sandbox with the caller's stdio. Must be
    /// called from a single-threaded process (the CLI is).
    pub fn run(&self, spec: &SandboxSpec, one: OneShot) -> Result<RunOutcome, Error> {
        if one.argv.is_empty() || one.argv[0].is_empty() {
            return Err(Error::InvalidSpec(
                "missing command: give it after `--`".into(),
            ));
        }
        if spec.network != aibox_types::NetworkMode::None {
            return Err(Error::Unsupported(
                "network egress needs a persistent sandbox behind the aibox server".into(),
            ));
        }
        if backend_of(spec.backend).kind() != aibox_types::BackendKind::Namespaces {
            return Err(Error::Unsupported(
                "Runtime::run is the namespace backend's one-shot path: for a microVM, create a sandbox and exec in it (as `aibox run --backend microvm` does)".into(),
            ));
        }
        let (plan, holds) = self.prepare(spec, false)?;
        let tty = one.tty;
        // No record for one-shot runs: this process holds the uid slot (and
        // PID 1 inherits the hold), which is all `gc` needs after a crash.
        let mut launched = setup::launch(&plan, setup::Payload::OneShot(one))?;
        // A reused cgroup counts OOM kills across runs (read while PID 1
        // sets up, off the critical path).
        let oom_before = launched.cgroup.stats().oom_kills.unwrap_or(0);
        let outcome = wait_one_shot(&launched, spec.timeout_ms.map(Duration::from_millis), tty);
        let (code, timed_out) = outcome;
        // Did PID 1 finish its setup (and so run the command)?
        let confirmed = if timed_out {
            Ok(())
        } else {
            launched.confirm()
        };
        // Only a SIGKILL can be the OOM killer's work.
        let oom_killed = code == 137 && launched.cgroup.stats().oom_kills.unwrap_or(0) > oom_before;
        // PID 1 is gone, so the kernel has killed everything else in its pid
        // namespace; only a timeout (PID 1 killed by us) needs the sweep.
        if timed_out {
            launched.cgroup.kill_all();
        }
        if !plan.reuses_cgroup() {
            let _ = launched.cgroup.remove(Duration::from_secs(5));
        }
        drop(holds);
        confirmed?;
        Ok(RunOutcome {
            code,
            timed_out,
            oom_killed,
            isolation: launched.report,
        })
    }

    /// Create a persistent sandbox. Uses this process when it is
    /// single-threaded, else re-executes the helper binary.
    pub fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, Error> {
        self.gc();
        let mut spec = spec.clone();
        self.resolve_volumes(&mut spec)?;
        let spec = &spec;
        let rec =
            if !backend_of(spec.backend).creates_single_threaded() || setup::thread_count() == 1 {
                self.create_here(spec)?
            } else {
                self.create_via_helper(spec)?
            };
        Ok(Sandbox {
            rec,
            runtime_dirs: self.dirs.clone(),
        })
    }

    /// The helper's side of [`create`]: runs in a single-threaded process.
    pub fn create_here(&self, spec: &SandboxSpec) -> Result<Record, Error> {
        backend_of(spec.backend).create(self, spec)
    }

    /// The namespace backend's create, in this single-threaded process.
    pub(crate) fn create_namespaces(&self, spec: &SandboxSpec) -> Result<Record, Error> {
        // `_holds` keeps the uid slot (and a snapshot) held until PID 1
        // (which inherits the holds) is running and recorded.
        let (mut plan, _holds) = self.prepare(spec, true)?;
        let dir = self.dirs.sandbox(&plan.id);
        let mut rec = self.record(&plan, Status::Creating, aibox_sys::getpid());
        let listener = (|| -> Result<std::os::unix::net::UnixListener, state::StateError> {
            let w = |source| state::StateError::Write {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir(&dir).map_err(w)?;
            rec.save(&dir)?;
            let l = std::os::unix::net::UnixListener::bind(&rec.socket).map_err(w)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rec.socket, std::fs::Permissions::from_mode(0o600))
                .map_err(w)?;
            Ok(l)
        })();
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                self.abandon(&plan.id);
                return Err(e.into());
            }
        };
        // Egress: PID 1 keeps a handle on this directory, where the host's
        // proxy will listen; as root, the sandbox's uid must be able to
        // pass through it (its other files stay 0600).
        let egress_dir = if spec.network != aibox_types::NetworkMode::None {
            let opened = (|| -> std::io::Result<std::fs::File> {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                if !self.rootless() {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
                }
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(&dir)
            })();
            match opened {
                Ok(f) => Some(f),
                Err(e) => {
                    self.abandon(&plan.id);
                    return Err(state::StateError::Write {
                        path: dir.clone(),
                        source: e,
                    }
                    .into());
                }
            }
        } else {
            None
        };
        plan.egress_dir = egress_dir.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let launched = match setup::launch(&plan, setup::Payload::Agent(listener.into())) {
            Ok(l) => l,
            Err(e) => {
                self.abandon(&plan.id);
                return Err(e.into());
            }
        };
        rec.status = Status::Running;
        rec.pid = launched.pid;
        rec.start_time = launched.start_time;
        rec.isolation = launched.report.clone();
        rec.cgroup = launched.cgroup.clone();
        rec.scratch_fd = launched.scratch_fd;
        if let Err(e) = rec.save(&dir) {
            let _ = self.destroy_record(&rec);
            return Err(e.into());
        }
        // Tell PID 1 the record is committed; until then it would exit if we died.
        launched.commit();
        Ok(rec)
    }

    /// The aibox binary run as a helper (`$AIBOX_BIN` or this executable
    /// unless the runtime was given one).
    pub fn helper_bin(&self) -> PathBuf {
        if self.helper.as_os_str().is_empty() {
            std::env::var_os("AIBOX_BIN")
                .map(PathBuf::from)
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| PathBuf::from("aibox"))
        } else {
            self.helper.clone()
        }
    }

    fn create_via_helper(&self, spec: &SandboxSpec) -> Result<Record, Error> {
        use std::io::Write;
        let helper = self.helper_bin();
        let mut child = std::process::Command::new(&helper)
            .arg("internal-create")
            .env("AIBOX_RUN_DIR", &self.dirs.run)
            .env("AIBOX_DATA_DIR", &self.dirs.data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Helper(format!("cannot start {}: {e}", helper.display())))?;
        let body = serde_json::to_vec(spec).map_err(|e| Error::Helper(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&body);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::Helper(e.to_string()))?;
        let reply: HelperReply = serde_json::from_slice(&out.stdout)
            .map_err(|_| Error::Helper(String::from_utf8_lossy(&out.stderr).trim().to_string()))?;
        match reply {
            HelperReply::Ok { id } => Ok(state::Record::load(&self.dirs.sandbox(&id))?),
            HelperReply::Error { code, message } => Err(Error::Reported { code, message }),
        }
    }

    /// Find a sandbox by id.
    pub fn get(&self, id: &str) -> Result<Sandbox, Error> {
        if !aibox_types::validate_id(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        let dir = self.dirs.sandbox(id);
        if !dir.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        let rec = Record::load(&dir)?;
        if rec.status != Status::Running {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(Sandbox {
            rec,
            runtime_dirs: self.dirs.clone(),
        })
    }

    /// A client for the agent of sandbox `id`, without reading its record
    /// (the hot path of `aibox exec`).
    pub fn agent_client(&self, id: &str) -> Result<AgentClient, Error> {
        if !aibox_types::validate_id(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        let socket = self.dirs.sandbox(id).join("agent.sock");
        if !socket.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(AgentClient::new(socket))
    }

    /// Every persistent sandbox with a record (running or dead).
    pub fn list(&self) -> Vec<Record> {
        let Ok(rd) = std::fs::read_dir(self.dirs.sandboxes()) else {
            return vec![];
        };
        let mut v: Vec<Record> = rd
            .flatten()
            .filter_map(|e| Record::load(&e.path()).ok())
            .filter(|r| r.status == Status::Running)
            .collect();
        v.sort_by_key(|r| r.created_unix_ms);
        v
    }

    fn destroy_record(&self, rec: &Record) -> Result<(), Error> {
        let r = rec.backend().destroy(rec);
        self.abandon(&rec.id);
        r
    }

    /// Clean up what crashed creators and dead sandboxes left: records,
    /// cgroups, uid slots. Returns the ids cleaned.
    pub fn gc(&self) -> Vec<String> {
        let mut cleaned = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dirs.sandboxes()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                match Record::load(&e.path()) {
                    Ok(rec) => {
                        if rec.alive() {
                            continue;
                        }
                        // The creator may have finished between our read and
                        // that check (a "creating" record, then "running", then
                        // the creator exits): read again now that it is gone.
                        let rec = match Record::load(&e.path()) {
                            Ok(again) if again.alive() => continue,
                            Ok(again) => again,
                            Err(_) => rec,
                        };
                        let _ = self.destroy_record(&rec);
                        cleaned.push(id);
                    }
                    Err(_) => {
                        // A record that never got written completely: if it is
                        // older than a minute, its creator is long gone.
                        let old = age(&e).is_some_and(|a| a > Duration::from_secs(60));
                        if old {
                            let _ = std::fs::remove_dir_all(e.path());
                            cleaned.push(id);
                        }
                    }
                }
            }
        }
        // Root: our cgroups whose sandbox is gone. A cgroup is named
        // `aibox-<id>.<slot>`; its creator holds the uid slot's lock from
        // before the cgroup exists until after it is removed (and PID 1 holds
        // it for a persistent sandbox's life). So one with no record and a
        // free slot is an orphan. Rootless sandboxes have no slots, and
        // rootless gc leaves cgroups alone.
        if let (Layout::V1(dirs), false) = (self.cgroup_layout(), self.rootless()) {
            // The cgroups first, the slots after: a slot probed *before* a
            // cgroup was seen may have been claimed (and the cgroup made)
            // in between, which would make a live sandbox look orphaned.
            let mut found: Vec<(String, String, u32)> = Vec::new();
            for (_, parent) in dirs {
                let Ok(rd) = std::fs::read_dir(parent) else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // A microVM's is destroyed with its record; one left
                    // behind (the record lost) is empty. Cgroups are the
                    // host's, shared by every data directory, so only an
                    // empty one over a minute old goes: its supervisor
                    // joins it within seconds of its making.
                    if name.starts_with(microvm::VM_CGROUP_PREFIX) {
                        let empty = std::fs::read_to_string(e.path().join("cgroup.procs"))
                            .is_ok_and(|p| p.trim().is_empty());
                        if empty && age(&e).is_some_and(|a| a > Duration::from_secs(60)) {
                            self.remove_cgroup(&name);
                        }
                        continue;
                    }
                    let Some((id, slot)) =
                        name.strip_prefix("aibox-").and_then(|r| r.split_once('.'))
                    else {
                        continue;
                    };
                    let Ok(slot) = slot.parse::<u32>() else {
                        continue;
                    };
                    let id = id.to_string();
                    if !found.iter().any(|(n, _, _)| *n == name) {
                        found.push((name, id, slot));
                    }
                }
            }
            // Only the slots named by what was found are probed: the slot
            // directory keeps a file for every slot ever used (thousands on
            // a busy host), and this runs before every create.
            // The slot's lock is held while its cgroup goes, so no run can
            // claim the slot and reuse the cgroup meanwhile (a one-shot
            // run's `aibox-run.<slot>` outlives the run).
            let slots = self.dirs.slots();
            for (name, id, slot) in found {
                if self.dirs.sandbox(&id).exists() {
                    continue;
                }
                if let Some(_held) = state::hold_slot(&slots, slot) {
                    self.remove_cgroup(&name);
                    if !cleaned.contains(&id) {
                        cleaned.push(id);
                    }
                }
            }
        }
        cleaned
    }
}

impl Runtime {
    /// Remove a microVM's cgroup (nothing left in it is spared).
    pub(crate) fn remove_vm_cgroup(&self, id: &str) {
        if !self.rootless() {
            self.remove_cgroup(&format!("{}{id}", microvm::VM_CGROUP_PREFIX));
        }
    }

    /// Kill and remove cgroup `name` under every controller we use.
    fn remove_cgroup(&self, name: &str) {
        let dirs: Vec<(String, PathBuf)> = match self.cgroup_layout() {
            Layout::V1(d) => d.iter().map(|(c, p)| (c.clone(), p.join(name))).collect(),
            Layout::V2 { own, .. } => vec![("unified".into(), own.join(name))],
            Layout::None => vec![],
        };
        let cg = Cgroup {
            version: self.cgroup_layout().version().into(),
            dirs: dirs.into_iter().filter(|(_, p)| p.exists()).collect(),
        };
        cg.kill_all();
        let _ = cg.remove(Duration::from_secs(1));
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

/// The backend of a spec's kind (the namespace backend by default).
pub fn backend_of(kind: Option<aibox_types::BackendKind>) -> &'static dyn backend::Backend {
    match kind.unwrap_or(aibox_types::BackendKind::Namespaces) {
        aibox_types::BackendKind::Namespaces => &namespace::Namespaces,
        aibox_types::BackendKind::Microvm => &microvm::MicroVm,
    }
}

impl Record {
    /// The backend that made this sandbox.
    pub fn backend(&self) -> &'static dyn backend::Backend {
        backend_of(Some(if self.vm.is_some() {
            aibox_types::BackendKind::Microvm
        } else {
            aibox_types::BackendKind::Namespaces
        }))
    }
}

/// How long ago a directory entry was last modified.
pub(crate) fn age(e: &std::fs::DirEntry) -> Option<Duration> {
    e.metadata().ok()?.modified().ok()?.elapsed().ok()
}

pub(crate) fn freezer_missing(rec: &Record) -> String {
    if rec.isolation.rootless {
        "pause/resume needs the cgroup freezer, which is not delegated to this user".into()
    } else {
        "pause/resume needs the cgroup freezer, which this host does not provide".into()
    }
}

/// What the helper (`aibox internal-create`) prints on stdout.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HelperReply {
    Ok { id: String },
    Error { code: ErrorCode, message: String },
}

/// SIGKILL the sandbox's PID 1 (which takes its pid namespace down) and wait
/// until it is gone. Uses a pidfd checked against the recorded start time,
/// so a recycled pid is never signalled.
pub(crate) fn kill_pid1(rec: &Record) {
    if rec.status != Status::Running || !rec.alive() {
        return;
    }
    let Ok(fd) = aibox_sys::pidfd_open(rec.pid) else {
        return;
    };
    if aibox_sys::process_start_time(rec.pid) != Some(rec.start_time) {
        return;
    }
    let _ = aibox_sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
    let _ = aibox_sys::poll_readable(&[fd.as_fd()], Some(Duration::from_secs(5)));
}

/// Wait for a one-shot sandbox's PID 1, forwarding signals and enforcing the
/// wall-clock timeout. Returns (exit code, timed out).
fn wait_one_shot(l: &setup::Launched, timeout: Option<Duration>, tty: bool) -> (i32, bool) {
    // In tty mode the terminal is raw, so INT/QUIT arrive as bytes, and
    // WINCH tells PID 1 to copy our window size to the sandbox's pty.
    let forward: &[i32] = if tty {
        &[
            libc::SIGWINCH,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ]
    } else {
        &[
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ]
    };
    let sigfd = aibox_sys::signalfd(forward).ok();
    let pidfd = aibox_sys::pidfd_open(l.pid).ok();
    let deadline = timeout.map(|t| Instant::now() + t);
    if let (Some(pidfd), Some(sigfd)) = (&pidfd, &sigfd) {
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                let _ = aibox_sys::kill(l.pid, libc::SIGKILL);
                let _ = aibox_sys::waitpid(l.pid);
                return (124, true);
            }
            let Ok(ready) = aibox_sys::poll_readable(&[pidfd.as_fd(), sigfd.as_fd()], left) else {
                break;
            };
            if ready[0] {
                break;
            }
            if ready[1] {
                if let Ok(sig) = aibox_sys::read_signal(sigfd.as_fd()) {
                    let _ = aibox_sys::kill(l.pid, sig);
                }
            }
        }
    }
    match aibox_sys::waitpid(l.pid) {
        Ok(s) => (s.code(), false),
        Err(_) => (125, false),
    }
}

/// The spec with an image's defaults under it: the image's environment
/// (the spec's variables win), its working directory unless the spec
/// names one, and its `USER` unless the spec asks for root.
fn with_image_defaults(
    spec: &SandboxSpec,
    template: &template::Template,
) -> Result<SandboxSpec, Error> {
    let mut s = spec.clone();
    let Some(c) = template.config.as_ref() else {
        return Ok(s);
    };
    let mut env: Vec<(String, String)> = c
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !spec.env.iter().any(|(sk, _)| sk == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(spec.env.iter().cloned());
    s.env = env;
    if spec.workdir == aibox_types::DEFAULT_WORKDIR {
        if let Some(w) = c.workdir.as_ref().filter(|w| w.starts_with('/')) {
            s.workdir = w.clone();
        }
    }
    if spec.user == aibox_types::User::User {
        if let Some(u) = c.user.as_deref().filter(|u| !u.is_empty()) {
            s.user = template::image_user(u, &template.layers)?;
        }
    }
    Ok(s)
}

/// A persistent sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    rec: Record,
    runtime_dirs: Dirs,
}

impl Sandbox {
    pub fn id(&self) -> &str {
        &self.rec.id
    }
    pub fn record(&self) -> &Record {
        &self.rec
    }
    pub fn isolation(&self) -> &IsolationReport {
        &self.rec.isolation
    }
    pub fn alive(&self) -> bool {
        self.rec.alive()
    }
    pub fn client(&self) -> AgentClient {
        AgentClient::new(&self.rec.socket)
    }
    pub fn pause(&self) -> Result<(), Error> {
        self.rec.backend().set_paused(&self.rec, true)
    }
    pub fn resume(&self) -> Result<(), Error> {
        self.rec.backend().set_paused(&self.rec, false)
    }
    pub fn paused(&self) -> bool {
        self.rec.backend().paused(&self.rec)
    }
    pub fn stats(&self) -> Stats {
        self.rec.backend().stats(&self.rec)
    }
    /// The TCP ports processes inside listen on.
    pub fn listeners(&self) -> Result<Vec<listening::Listener>, Error> {
        if !self.alive() {
            return Err(Error::Gone(self.rec.id.clone()));
        }
        self.rec.backend().listeners(&self.rec)
    }
    /// Kill every process, remove the cgroups, the record and the socket.
    pub fn destroy(self) -> Result<(), Error> {
        Runtime::with(self.runtime_dirs.clone(), PathBuf::new()).destroy_record(&self.rec)
    }
}
