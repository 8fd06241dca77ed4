//! Creating the sandbox process tree. Must run in a single-threaded process.
//!
//! ```text
//!  P (caller, single-threaded)        S (clone(NEWUSER|NEWPID): PID 1)   H (fork of S)
//!  clone ─────────────────────────────► fork ─────────────────────────────► unshare(NET|IPC|UTS)
//!  write uid_map/gid_map                wait for "M"                         loopback up, "R" ──┐
//!  [root: detached idmapped trees]                                          wait for EOF, exit │
//!  "M" + trees ───────────────────────► setresuid/gid(0), setgroups([])                        │
//!  cgroup: create + limits              unshare(NS), rprivate, attach trees                    │
//!  [root, v1: chown tasks to S's uid]   mounts (mounts::plan), pivot_root,                     │
//!  [v2: add S to the cgroup]            all but the old root's detach                          │
//!  expected report; check the required                                                         │
//!  level (fail closed before anything ran)                                                     │
//!  "G" ───────────────────────────────► [v1] join cgroup via the old root                      │
//!                                       unshare(CGROUP), detach the old root                   │
//!                                       setns(H's pidfd, NET|IPC|UTS) ◄────────────────────────┘
//!                                       hostname, rlimits, drop caps (bounding too),
//!                                       no_new_privs, landlock, seccomp
//!  ◄─────────────────────────────────── "R" (or "E" + reason)
//!  [persistent: record written, "C" ──►] run the payload (init or agent)
//! ```
//! Fork happens only in P and S, which never have more than one thread
//! (DEPS.md: cloning from a threaded process deadlocks on inherited locks).
//! S is born as PID 1, so no fork sits between the release and the payload;
//! H makes the network namespace (the costliest one) in parallel with the
//! rest. Messages are few on purpose: on a VM every cross-CPU wake-up costs a few
//! hundred microseconds. See docs/architecture.md.

use crate::image::template::Template;
use crate::namespace::mounts;
use crate::sandbox::cgroup::{Cgroup, Layout as CgLayout, Limits};
use aibox_types::{IsolationLevel, IsolationReport, LimitReport, SandboxSpec, UidMapping};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("sandbox setup must run in a single-threaded process ({0} threads)")]
    Threaded(usize),
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed: {0}")]
    Child(String),
    #[error("failed to create the sandbox's cgroup")]
    Cgroup(#[source] crate::sandbox::cgroup::CgroupError),
    #[error("the host cannot provide isolation level {level}: missing {}", gaps.join(", "))]
    Isolation {
        level: IsolationLevel,
        gaps: Vec<String>,
        report: Box<IsolationReport>,
    },
    #[error("resource limits were requested but cannot be enforced: {0}")]
    LimitsUnavailable(String),
    #[error("host mount {path}: {why}")]
    MountSource { path: PathBuf, why: String },
    /// The sandbox's files (an image's, a snapshot's) or a mount's target
    /// lead out of its root.
    #[error("the sandbox's files cannot be set up: {0}")]
    Refused(String),
}

/// What S reported: the content's fault, or a setup failure.
fn reported(body: &[u8]) -> SetupError {
    let text = String::from_utf8_lossy(body);
    match text.strip_prefix(mounts::REFUSED) {
        Some(why) => SetupError::Refused(why.to_string()),
        None => SetupError::Child(text.into_owned()),
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Sys { what, source }
}

/// Everything `launch` needs, decided by the caller.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub spec: SandboxSpec,
    pub template: Template,
    pub staging: PathBuf,
    /// Some(host uid base) in root mode; None when rootless.
    pub uid_base: Option<u32>,
    /// The fd holding the uid slot's lock: kept open by PID 1 for its whole
    /// life, so the slot stays claimed exactly as long as the sandbox lives.
    pub slot_lock: Option<std::os::fd::RawFd>,
    pub cgroups: CgLayout,
    /// Create freezer and accounting cgroups (persistent sandboxes).
    pub persistent: bool,
    /// A snapshot's layer, between the template and the upper (restore).
    pub snapshot_layer: Option<PathBuf>,
    /// Egress: an O_PATH fd of the sandbox's host directory, where the
    /// host's egress proxy listens (`egress.sock`); PID 1 keeps it.
    pub egress_dir: Option<std::os::fd::RawFd>,
    /// The snapshot's lock, and each volume's, held shared by PID 1 for
    /// the sandbox's life (neither can be removed while it lives).
    pub held_locks: Vec<std::os::fd::RawFd>,
    /// The host mounts (`spec.mounts`) then the volumes, each with its
    /// source opened as checked (see `open_mount_sources`). The mounts
    /// are made of these descriptors, never of the path again.
    pub mounts: Vec<(aibox_types::MountSpec, MountSource)>,
}

/// A host mount's source, opened once.
#[derive(Debug, Clone)]
pub struct MountSource {
    /// O_PATH.
    pub fd: std::sync::Arc<OwnedFd>,
    pub file: bool,
    pub ids: MountIds,
}

/// Whose ids a mount's files show, as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountIds {
    /// A host directory: the host uid and gid that own it show as the
    /// sandbox user's own, and no other id is mapped (`owner_userns`).
    Owner(u32, u32),
    /// A volume: stored with the sandbox's own ids (0..65536), mapped
    /// through the sandbox's user namespace as its template is.
    Sandbox,
}

impl Plan {
    /// `aibox-<id>`, plus `.<slot>` in root mode: `gc` can then tell an
    /// orphaned cgroup (slot no longer held) from one being set up.
    ///
    /// One-shot runs in root mode use `aibox-run.<slot>`, which is kept
    /// (empty) after the run and reused by the next run in the same slot:
    /// making and removing a memory cgroup costs ~0.1-0.2 ms of a ~4 ms run.
    /// Only the holder of the slot touches it; `gc` removes idle ones.
    pub fn cgroup_name(&self) -> String {
        match self.uid_base {
            Some(base) => {
                let slot =
                    (base - crate::sandbox::state::SLOT_BASE) / crate::sandbox::state::SLOT_SIZE;
                if self.persistent {
                    format!("aibox-{}.{slot}", self.id)
                } else {
                    format!("{RUN_CGROUP_PREFIX}{slot}")
                }
            }
            None => format!("aibox-{}", self.id),
        }
    }

    /// Is the cgroup kept for the next run in this slot?
    pub fn reuses_cgroup(&self) -> bool {
        !self.persistent && self.uid_base.is_some()
    }

    pub fn rootless(&self) -> bool {
        self.uid_base.is_none()
    }

    /// The uid the caller's identity appears as inside a rootless sandbox.
    /// The bounding set a sandbox keeps: none, but for a build step.
    fn kept_caps(&self) -> &'static [u32] {
        if self.spec.build_caps {
            &aibox_types::BUILD_CAPS
        } else {
            &[]
        }
    }

    fn rootless_uid(&self) -> u32 {
        self.spec.user.uid()
    }
}

/// Name prefix of the per-slot cgroups one-shot runs reuse.
pub const RUN_CGROUP_PREFIX: &str = "aibox-run.";

/// What PID 1 does once the sandbox is sealed.
pub enum Payload {
    /// Run one command with the caller's stdio; PID 1 exits with its status.
    OneShot(crate::namespace::init::OneShot),
    /// Serve the agent protocol on this listening socket.
    Agent(OwnedFd),
}

pub struct Launched {
    /// Host pid of the sandbox's PID 1.
    pub pid: i32,
    pub start_time: u64,
    pub report: IsolationReport,
    pub cgroup: Cgroup,
    /// One-shot: closing this tells PID 1 its parent is gone.
    pub link: Option<OwnedFd>,
    /// PID 1's verdict on its setup, not yet read (one-shot runs).
    setup_pipe: Option<OwnedFd>,
    /// PID 1's descriptor of the scratch tmpfs (persistent sandboxes).
    pub scratch_fd: Option<i32>,
}

impl Launched {
    /// One-shot runs: after PID 1 exited, check that its setup succeeded
    /// (a setup failure also ends PID 1, with status 1).
    pub fn confirm(&mut self) -> Result<(), SetupError> {
        confirm_setup(&mut self.setup_pipe).map(drop)
    }

    /// Agent mode: the caller has recorded the sandbox; PID 1 may now outlive us.
    pub fn commit(mut self) {
        if let Some(link) = self.link.take() {
            let _ = send(&link, b'C', &[]);
        }
    }
}

pub fn thread_count() -> usize {
    // Entries of /proc/self/task: cheaper than formatting /proc/self/status.
    std::fs::read_dir("/proc/self/task").map_or(0, |rd| rd.count())
}

// --- tiny tagged messages over the setup pipes: tag byte, u32 len, bytes.

fn send(fd: &OwnedFd, tag: u8, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + body.len());
    buf.push(tag);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    aibox_sys::write_all_fd(fd.as_fd(), &buf)
}

fn recv(fd: &OwnedFd) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut f = File::from(fd.try_clone()?);
    let mut hdr = [0u8; 5];
    match f.read_exact(&mut hdr) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if len > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "setup message too large",
        ));
    }
    let mut body = vec![0u8; len];
    f.read_exact(&mut body)?;
    Ok(Some((hdr[0], body)))
}

fn child_error(msg: Option<(u8, Vec<u8>)>, stage: &str) -> SetupError {
    match msg {
        Some((b'E', body)) => reported(&body),
        Some((tag, _)) => SetupError::Child(format!(
            "unexpected message {:?} during {stage}",
            tag as char
        )),
        None => SetupError::Child(format!("the setup process died during {stage}")),
    }
}

/// Create the sandbox. On error nothing is left running and the cgroup is
/// removed; the caller owns the staging directories and records.
///
/// Handoffs between processes are few on purpose: on a VM every cross-CPU
/// wake-up costs a few hundred microseconds.
pub fn launch(plan: &Plan, payload: Payload) -> Result<Launched, SetupError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(SetupError::Threaded(threads));
    }
    let one_shot = matches!(payload, Payload::OneShot(_));
    let host_uid = aibox_sys::geteuid();
    let host_gid = aibox_sys::getgid();

    // P→S is a socket: it carries the staged mount trees with "M", then the
    // release, and then stays open as the link (its EOF tells PID 1 that P
    // is gone). S→P is a pipe that carries the verdict.
    let (p2s_r, p2s_w) = aibox_sys::socketpair().map_err(sys("socketpair"))?;
    let (s2p_r, s2p_w) = aibox_sys::pipe().map_err(sys("pipe"))?;

    let mut cgroup = Cgroup {
        version: plan.cgroups.version().into(),
        dirs: vec![],
    };
    // S is born as PID 1 of its new pid namespace, inside its new user
    // namespace, so P can write the maps at once and no further fork is
    // needed on the way to the payload.
    let forked = match aibox_sys::clone_process(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) {
        Ok(f) => f,
        Err(e) => {
            return Err(SetupError::Sys {
                what: "cannot create a user namespace (see `aibox doctor`: user.max_user_namespaces, or Ubuntu's kernel.apparmor_restrict_unprivileged_userns)".into(),
                source: e,
            });
        }
    };
    let child = match forked {
        aibox_sys::Fork::Child => {
            drop((p2s_w, s2p_r));
            let mut keep = vec![p2s_r.as_raw_fd(), s2p_w.as_raw_fd()];
            if let Payload::Agent(l) = &payload {
                keep.push(l.as_raw_fd());
            }
            keep.extend(plan.slot_lock);
            keep.extend(&plan.held_locks);
            keep.extend(plan.egress_dir);
            if aibox_sys::close_fds_except(&keep).is_err() {
                aibox_sys::exit_now(1);
            }
            sandbox_pid1(plan, p2s_r, s2p_w, payload);
        }
        aibox_sys::Fork::Parent(pid) => pid,
    };
    drop((p2s_r, s2p_w));

    let result = (|| -> Result<IsolationReport, SetupError> {
        // uid/gid maps.
        let proc_dir = PathBuf::from(format!("/proc/{child}"));
        let (uid_map, gid_map) = match plan.uid_base {
            Some(base) => (format!("0 {base} 65536\n"), format!("0 {base} 65536\n")),
            None => {
                std::fs::write(proc_dir.join("setgroups"), "deny")
                    .map_err(sys("writing setgroups"))?;
                let inner = plan.rootless_uid();
                (
                    format!("{inner} {host_uid} 1\n"),
                    format!("{inner} {host_gid} 1\n"),
                )
            }
        };
        std::fs::write(proc_dir.join("uid_map"), &uid_map).map_err(sys("writing uid_map"))?;
        std::fs::write(proc_dir.join("gid_map"), &gid_map).map_err(sys("writing gid_map"))?;

        let (trees, idmapped) = if plan.uid_base.is_some() {
            stage_trees(plan, &proc_dir)?
        } else {
            (vec![], false)
        };
        // S may build its root filesystem now; the cgroup follows.
        let fds: Vec<_> = trees.iter().map(|t| t.as_fd()).collect();
        if aibox_sys::send_with_fds(p2s_w.as_fd(), &[b'M', 0, 0, 0, 0], &fds).is_err() {
            return Err(match recv(&s2p_r) {
                Ok(msg) => child_error(msg, "namespace creation"),
                Err(e) => sys("signalling the sandbox's init process")(e),
            });
        }
        drop(fds);
        drop(trees);
        let applied = make_cgroup(plan, &mut cgroup, host_uid)?;
        if let (Some(base), "v1") = (plan.uid_base, cgroup.version.as_str()) {
            // S joins by writing to `tasks` as the sandbox's root (host uid
            // `base`): the file must be its own. Nothing inside can reach
            // it once the old root is detached (there is no /sys).
            for (_, dir) in &cgroup.dirs {
                std::os::unix::fs::chown(dir.join("tasks"), Some(base), Some(base))
                    .map_err(sys("handing the cgroup's tasks file to the sandbox"))?;
            }
        }
        if cgroup.version != "v1" {
            cgroup.add(child).map_err(SetupError::Cgroup)?;
        }
        // Every process of the sandbox inherits PID 1's OOM score: 0, and
        // as root also the floor (a write with CAP_SYS_RESOURCE sets
        // oom_score_adj_min), so nothing inside can make itself dearer to
        // the kernel than the host's services, whatever the creator's own
        // score was (a server run with a negative OOMScoreAdjust, say).
        // Inside the sandbox's memory cgroup the largest process goes
        // first; if that is PID 1, the sandbox ends and is reported gone.
        // (It was -998 on PID 1, inherited by every workload: the review's
        // M10.)
        if let Err(e) = std::fs::write(proc_dir.join("oom_score_adj"), "0") {
            // Raising a score needs no privilege, so this works rootless too.
            return Err(SetupError::Sys {
                what: "setting the sandbox's OOM score".into(),
                source: e,
            });
        }

        // Everything PID 1 will report is decided by now (it fails hard on
        // any sealing step), so the required level is checked *before* the
        // sandbox exists: fail closed without ever running the payload.
        let report = expected_report(plan, &cgroup, &applied, idmapped, host_uid, host_gid);
        if let Some(level) = plan.spec.require_isolation {
            let gaps = report.gaps(level);
            if !gaps.is_empty() {
                return Err(SetupError::Isolation {
                    level,
                    gaps,
                    report: Box::new(report),
                });
            }
        }
        let release = Release {
            cgroup: cgroup.clone(),
            landlock_abi: report.landlock_abi,
        };
        if send(&p2s_w, b'G', release.encode().as_bytes()).is_err() {
            // S is gone; its verdict says why.
            return Err(match recv(&s2p_r) {
                Ok(msg) => child_error(msg, "namespace creation"),
                Err(e) => sys("releasing the sandbox's init process")(e),
            });
        }
        Ok(report)
    })();

    let report = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = aibox_sys::kill(child, libc::SIGKILL);
            let _ = aibox_sys::waitpid(child);
            cgroup.kill_all();
            let _ = cgroup.remove(std::time::Duration::from_secs(2));
            return Err(e);
        }
    };
    let g = child;
    // PID 1 checks its own sealing against `expect` before it runs anything.
    // A persistent sandbox is confirmed now; a one-shot run is confirmed
    // after it exits (see `Launched::confirm`), which keeps a wake-up off
    // its critical path.
    let mut setup_pipe = Some(s2p_r);
    let mut scratch_fd = None;
    if !one_shot {
        match confirm_setup(&mut setup_pipe) {
            Ok(body) => scratch_fd = std::str::from_utf8(&body).ok().and_then(|s| s.parse().ok()),
            Err(e) => {
                let _ = aibox_sys::kill(g, libc::SIGKILL);
                let _ = aibox_sys::waitpid(g);
                cgroup.kill_all();
                let _ = cgroup.remove(std::time::Duration::from_secs(2));
                return Err(e);
            }
        }
    }
    // Only persistent sandboxes are found again by pid + start time.
    let start_time = if one_shot {
        0
    } else {
        aibox_sys::process_start_time(g).unwrap_or(0)
    };
    Ok(Launched {
        pid: g,
        start_time,
        report,
        cgroup,
        link: Some(p2s_w),
        setup_pipe,
        scratch_fd,
    })
}

/// Staging mount point of user mount `i`: files and directories get
/// different names, since the points are reused by later sandboxes.
fn staging_name(i: usize, file: bool) -> String {
    if file {
        format!("m{i}f")
    } else {
        format!("m{i}")
    }
}

/// What P sends S once the namespaces may be entered. Plain
/// text, not JSON: on this path every page of code touched for the first
/// time (a serde deserializer, say) costs a page fault.
struct Release {
    cgroup: Cgroup,
    /// The Landlock ABI P expects PID 1 to enforce (None: no Landlock).
    landlock_abi: Option<u32>,
}

impl Release {
    /// `landlock ABI or -` / cgroup version / one `controller<TAB>dir` per line.
    fn encode(&self) -> String {
        let mut out = format!(
            "{}\n{}\n",
            self.landlock_abi.map_or("-".into(), |v| v.to_string()),
            self.cgroup.version
        );
        for (ctrl, dir) in &self.cgroup.dirs {
            out.push_str(&format!("{ctrl}\t{}\n", dir.display()));
        }
        out
    }

    fn decode(body: &[u8]) -> Option<Release> {
        let text = std::str::from_utf8(body).ok()?;
        let mut lines = text.lines();
        let landlock_abi = match lines.next()? {
            "-" => None,
            v => Some(v.parse().ok()?),
        };
        let version = lines.next()?.to_string();
        let dirs = lines
            .map(|l| {
                l.split_once('\t')
                    .map(|(c, d)| (c.to_string(), PathBuf::from(d)))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Release {
            cgroup: Cgroup { version, dirs },
            landlock_abi,
        })
    }
}

/// Read PID 1's verdict on its setup: `R` (sealed as expected, with the
/// scratch descriptor's number for a persistent sandbox) or `E`.
fn confirm_setup(pipe: &mut Option<OwnedFd>) -> Result<Vec<u8>, SetupError> {
    let Some(fd) = pipe.take() else {
        return Ok(vec![]);
    };
    match recv(&fd).map_err(sys("reading the sandbox's report"))? {
        Some((b'R', body)) => Ok(body),
        Some((b'E', body)) => Err(reported(&body)),
        _ => Err(SetupError::Child(
            "the sandbox's init process died during setup".into(),
        )),
    }
}

/// Where S attaches the trees P stages, in the order P sends them.
fn staged_targets(plan: &Plan) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (0..plan.template.layers.len())
        .map(|i| plan.staging.join(lower_name(i)))
        .collect();
    if plan.snapshot_layer.is_some() {
        v.push(plan.staging.join("snap"));
    }
    for i in 0..plan.template.binds.len() {
        v.push(plan.staging.join(format!("t{i}")));
    }
    for (i, (_, m)) in plan.mounts.iter().enumerate() {
        v.push(plan.staging.join(staging_name(i, m.file)));
    }
    v
}

/// The staging point of template layer `i` (0: the top).
fn lower_name(i: usize) -> String {
    if i == 0 {
        "lower".into()
    } else {
        format!("lower{i}")
    }
}

/// Root mode: detached copies of the template and a snapshot layer
/// (idmapped, so that they appear owned by the sandbox's own uids without
/// copying or chowning anything), its host binds (as they are) and the
/// user mounts (idmapped to their owner, see `owner_userns`). They are
/// attached nowhere on the host: P passes them to S, which attaches them
/// at the staging points in its own mount namespace (so P needs no mount
/// namespace of its own, whose teardown would cost an RCU grace period).
/// Returns them in [`staged_targets`] order, and whether the template is
/// idmapped.
fn stage_trees(plan: &Plan, proc_dir: &Path) -> Result<(Vec<OwnedFd>, bool), SetupError> {
    let userns =
        File::open(proc_dir.join("ns/user")).map_err(sys("opening the sandbox user namespace"))?;
    let userns = Some(userns.as_fd());
    let ro =
        aibox_sys::MOUNT_ATTR_RDONLY | aibox_sys::MOUNT_ATTR_NOSUID | aibox_sys::MOUNT_ATTR_NODEV;
    let mut trees = Vec::new();
    for (i, layer) in plan.template.layers.iter().enumerate() {
        if i > 0 {
            ensure_mountpoint(&plan.staging.join(lower_name(i)), false)?;
        }
        trees.push(aibox_sys::detached_tree(layer, userns, ro).map_err(sys(format!(
            "idmapped mount of the template layer {} (the filesystem must support idmapped mounts: ext4, xfs, btrfs, tmpfs)",
            layer.display()
        )))?);
    }
    if let Some(layer) = &plan.snapshot_layer {
        // Stored with the sandbox's own uids (0..65536): the same mapping.
        trees.push(
            aibox_sys::detached_tree(layer, userns, ro).map_err(sys(format!(
                "idmapped mount of the snapshot {}",
                layer.display()
            )))?,
        );
    }
    for (i, (host, _)) in plan.template.binds.iter().enumerate() {
        ensure_mountpoint(&plan.staging.join(format!("t{i}")), false)?;
        // The host's /usr as it is, not idmapped: its files show as nobody's
        // and only their "other" bits apply (as rootless). Idmapped with the
        // sandbox's map, sandbox uid k had host uid k's owner rights there,
        // root's 0600 files and 0700 directories included (review L4).
        let tree = aibox_sys::detached_tree(host, None, ro)
            .map_err(sys(format!("bind mount of {}", host.display())))?;
        trees.push(tree);
    }
    let mut owners: Vec<((u32, u32), Option<OwnedFd>)> = Vec::new();
    for (i, (m, source)) in plan.mounts.iter().enumerate() {
        ensure_mountpoint(
            &plan.staging.join(staging_name(i, source.file)),
            source.file,
        )?;
        let attrs = aibox_sys::MOUNT_ATTR_NOSUID
            | aibox_sys::MOUNT_ATTR_NODEV
            | if m.read_only {
                aibox_sys::MOUNT_ATTR_RDONLY
            } else {
                0
            };
        if source.ids == MountIds::Sandbox {
            let tree = aibox_sys::detached_tree_of(source.fd.as_fd(), userns, attrs).map_err(
                sys(format!(
                "idmapped mount of the volume at {} (the filesystem must support idmapped mounts)",
                m.guest.display()
            )),
            )?;
            trees.push(tree);
            continue;
        }
        let MountIds::Owner(uid, gid) = source.ids else {
            continue;
        };
        let owner = (uid, gid);
        if !owners.iter().any(|(o, _)| *o == owner) {
            owners.push((owner, owner_userns(plan, owner)?));
        }
        let idmap = owners
            .iter()
            .find(|(o, _)| *o == owner)
            .and_then(|(_, ns)| ns.as_ref());
        let fd = source.fd.as_fd();
        let bind = sys(format!("bind mount of {}", m.host.display()));
        let tree = match (idmap, m.read_only) {
            (None, _) => aibox_sys::detached_tree_of(fd, None, attrs).map_err(bind)?,
            // A filesystem without idmapped mounts still mounts read-only,
            // with every file shown as nobody's.
            (Some(ns), true) => aibox_sys::detached_tree_of(fd, Some(ns.as_fd()), attrs)
                .or_else(|_| aibox_sys::detached_tree_of(fd, None, attrs))
                .map_err(bind)?,
            // Read-write, the mapping is what makes the files the sandbox
            // writes its owner's rather than a slot uid's: no fallback.
            (Some(ns), false) => match aibox_sys::detached_tree_of(fd, Some(ns.as_fd()), attrs) {
                Ok(tree) => tree,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(SetupError::MountSource {
                        path: m.host.clone(),
                        why: "its filesystem has no idmapped mounts, which a read-write mount needs as root: mount it read-only".into(),
                    })
                }
                Err(e) => return Err(bind(e)),
            },
        };
        trees.push(tree);
    }
    Ok((trees, true))
}

/// The user namespace a host mount's ownership is translated through, as
/// root: its owner uid becomes the sandbox user's own, and its group the
/// sandbox user's group when it is an ordinary one (a user's own group,
/// gid 1000 and above: creating files through an idmapped mount needs the
/// creator's group mapped to the directory's). No other host id is mapped,
/// so every other file shows as nobody's and only its "other" bits apply,
/// to the sandbox's root too (no capability reaches an owner outside the
/// sandbox's namespace). Never root, never a system group: uid 0 and
/// gids below 1000 (`sudo`, `docker`, `shadow`, `disk`...) are not mapped,
/// and `open_mount_sources` refuses read-write mounts of directories that
/// have them, where the sandbox could leave set-uid or set-gid files for
/// them. (The sandbox's own map, which mounts used before, made sandbox
/// uid k host uid k, root included: the review's H4.) None: nothing to
/// map, a plain bind.
fn owner_userns(plan: &Plan, (uid, gid): (u32, u32)) -> Result<Option<OwnedFd>, SetupError> {
    let Some(base) = plan.uid_base else {
        return Ok(None);
    };
    if uid == 0 {
        return Ok(None);
    }
    let inner = base + plan.spec.user.uid();
    // An unmapped group still needs a line: the slot's own gid, to itself
    // (no host file has it).
    let group = if ordinary_group(gid) { gid } else { inner };
    aibox_sys::mapped_userns(
        &format!("{uid} {inner} 1\n"),
        &format!("{group} {inner} 1\n"),
    )
    .map(Some)
    .map_err(sys("making a user namespace for a mount's owner"))
}

/// A group a read-write host mount may hand to the sandbox: a user's own
/// (gid 1000 and above, the ranges distributions give users and their
/// groups), not a system group that grants rights (`docker`, `sudo`...).
pub fn ordinary_group(gid: u32) -> bool {
    gid >= 1000
}

/// Create the sandbox's cgroup with its limits. Rootless hosts rarely
/// delegate cgroups: then limits are reported as not applied, and creation
/// fails only if the caller asked for a limit explicitly.
fn make_cgroup(
    plan: &Plan,
    cgroup: &mut Cgroup,
    host_uid: u32,
) -> Result<crate::sandbox::cgroup::Applied, SetupError> {
    let limits = Limits {
        memory: Some(plan.spec.memory_bytes()),
        pids: Some(plan.spec.pids_limit()),
        cpus: plan.spec.cpus,
        freezer: plan.persistent,
        accounting: plan.persistent,
    };
    let applied = if plan.cgroups.has("memory") || plan.cgroups.has("pids") {
        // A reused cgroup can refuse a smaller limit while it still holds
        // charges it cannot reclaim at once (dirty pages): then it goes
        // (create removes it on error; its charges move to the parent) and
        // a fresh one is made.
        let created = Cgroup::create(&plan.cgroups, &plan.cgroup_name(), &limits).or_else(|e| {
            if plan.reuses_cgroup() {
                Cgroup::create(&plan.cgroups, &plan.cgroup_name(), &limits)
            } else {
                Err(e)
            }
        });
        match created {
            Ok((cg, applied)) => {
                *cgroup = cg;
                applied
            }
            Err(e) if plan.rootless() && explicit_limits(&plan.spec).is_none() => {
                tracing::debug!(error = %e, "rootless: cgroup not delegated, limits not applied");
                Default::default()
            }
            Err(e) if plan.rootless() => {
                return Err(SetupError::LimitsUnavailable(format!(
                "{} requested, but the cgroup hierarchy is not delegated to uid {host_uid} ({e})",
                explicit_limits(&plan.spec).unwrap_or_default()
            )))
            }
            Err(e) => return Err(SetupError::Cgroup(e)),
        }
    } else {
        Default::default()
    };
    if let Some(what) = explicit_limits(&plan.spec) {
        let missing = (plan.spec.memory.is_some() && !applied.memory)
            || (plan.spec.pids.is_some() && !applied.pids)
            || (plan.spec.cpus.is_some() && !applied.cpu);
        if missing {
            return Err(SetupError::LimitsUnavailable(format!(
                "{what} requested, but this host's cgroups cannot enforce it"
            )));
        }
    }
    Ok(applied)
}

/// The report of a sandbox whose setup succeeds: what P set up plus what
/// PID 1 is guaranteed to have done (it aborts on any failure).
fn expected_report(
    plan: &Plan,
    cgroup: &Cgroup,
    applied: &crate::sandbox::cgroup::Applied,
    idmapped: bool,
    host_uid: u32,
    host_gid: u32,
) -> IsolationReport {
    let (inside, outside, gid_outside, count) = match plan.uid_base {
        Some(base) => (0, base, base, 65536),
        None => (plan.rootless_uid(), host_uid, host_gid, 1),
    };
    let why = if plan.rootless() {
        "cgroup not delegated to this user"
    } else {
        "controller not available"
    };
    let lim = |req: Option<u64>, ok: bool| {
        if ok {
            LimitReport::applied(req.unwrap_or(0))
        } else {
            LimitReport::missing(req, why)
        }
    };
    let landlock = aibox_sys::landlock_abi();
    let mut r = IsolationReport {
        backend: "namespaces".into(),
        level: None,
        rootless: plan.rootless(),
        namespaces: aibox_types::NamespaceReport::all(),
        uid_map: vec![UidMapping {
            inside,
            outside,
            count,
        }],
        gid_map: vec![UidMapping {
            inside,
            outside: gid_outside,
            count,
        }],
        dedicated_uid_range: plan.uid_base.is_some(),
        // PID 1 installs the filter or fails its setup.
        seccomp: true,
        seccomp_allowed_syscalls: crate::namespace::seccomp::allowed_count(),
        landlock_abi: landlock,
        landlock_enforced: landlock.is_some(),
        no_new_privs: true,
        bounding_caps: vec![],
        cgroups: aibox_types::CgroupReport {
            version: cgroup.version.clone(),
            memory: lim(Some(plan.spec.memory_bytes()), applied.memory),
            swap: if applied.swap {
                LimitReport::applied(0)
            } else {
                LimitReport::missing(Some(0), "no swap accounting")
            },
            pids: lim(Some(plan.spec.pids_limit()), applied.pids),
            cpu: match plan.spec.cpus {
                None => LimitReport {
                    requested: None,
                    applied: false,
                    reason: Some("not requested".into()),
                },
                Some(c) => lim(Some((c * 1000.0) as u64), applied.cpu),
            },
            freezer: applied.freezer,
        },
        disk_quota: LimitReport::applied(plan.spec.disk_bytes()),
        disk_quota_mechanism: "tmpfs".into(),
        overlay_rootfs: true,
        template_idmapped: idmapped,
        proc_masked: true,
        sys: "absent".into(),
        network: "none".into(),
        egress: None,
        vm: None,
    };
    if plan.spec.network != aibox_types::NetworkMode::None {
        // What the runtime itself gives: the relay to the server's proxy.
        // The server upgrades this when it adds the L4 path.
        let e = aibox_types::egress::proxy_report(plan.spec.network, None);
        r.network = e.enforcement.to_string();
        r.egress = Some(e);
    }
    r.level = Some(r.achieved_level());
    r
}

/// Names of limits the caller set explicitly (None when all are defaults).
fn explicit_limits(spec: &SandboxSpec) -> Option<String> {
    let mut v = Vec::new();
    if spec.memory.is_some() {
        v.push("--memory");
    }
    if spec.pids.is_some() {
        v.push("--pids");
    }
    if spec.cpus.is_some() {
        v.push("--cpus");
    }
    (!v.is_empty()).then(|| v.join(", "))
}

fn ensure_mountpoint(p: &Path, file: bool) -> Result<(), SetupError> {
    if file {
        if !p.exists() {
            File::create(p).map_err(sys(format!("creating {}", p.display())))?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(p).map_err(sys(format!("creating {}", p.display())))
    }
}

/// The network namespace is the most expensive one to make (every pernet
/// subsystem initialises, ~0.4 ms here), and nothing else needs it until
/// the payload runs. So a helper H, forked by S as soon as S exists, makes
/// it (with the ipc and uts namespaces) and brings up loopback, while P
/// writes the maps and cgroup and S builds the root filesystem; S then
/// joins them through H's pidfd before sealing. H exits once S has joined
/// (or S is gone): it holds nothing else and runs no sandbox code.
struct NetHelper {
    pidfd: OwnedFd,
    /// H's verdict: `R`, or `E` with the reason.
    ready: OwnedFd,
    /// H waits for EOF on this before it exits.
    hold: OwnedFd,
}

const HELPER_NAMESPACES: libc::c_int = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

impl NetHelper {
    /// Fork H. Runs in S, inside the new user namespace (where S has every
    /// capability even before P has written the maps).
    fn start() -> io::Result<NetHelper> {
        let (ready_r, ready_w) = aibox_sys::pipe()?;
        let (hold_r, hold_w) = aibox_sys::pipe()?;
        match aibox_sys::fork()? {
            aibox_sys::Fork::Child => {
                // H needs no pdeathsig: when S dies, `hold` reaches EOF.
                if aibox_sys::close_fds_except(&[ready_w.as_raw_fd(), hold_r.as_raw_fd()]).is_err()
                {
                    aibox_sys::exit_now(1);
                }
                let made = aibox_sys::unshare(HELPER_NAMESPACES)
                    .map_err(|err| format!("unshare(net, ipc, uts namespaces): {err}"))
                    .and_then(|()| {
                        aibox_sys::loopback_up()
                            .map_err(|err| format!("bringing up loopback: {err}"))
                    });
                let sent = match made {
                    Ok(()) => send(&ready_w, b'R', &[]),
                    Err(msg) => send(&ready_w, b'E', msg.as_bytes()),
                };
                if sent.is_ok() {
                    let mut byte = [0u8; 1];
                    let mut hold = File::from(hold_r);
                    while matches!(hold.read(&mut byte), Ok(n) if n > 0) {}
                }
                aibox_sys::exit_now(0);
            }
            aibox_sys::Fork::Parent(pid) => {
                let pidfd = aibox_sys::pidfd_open(pid)?;
                Ok(NetHelper {
                    pidfd,
                    ready: ready_r,
                    hold: hold_w,
                })
            }
        }
    }

    /// In S: wait for H's namespaces and join them.
    fn enter(self) -> Result<(), String> {
        match recv(&self.ready) {
            Ok(Some((b'R', _))) => {}
            Ok(Some((b'E', msg))) => return Err(String::from_utf8_lossy(&msg).into_owned()),
            _ => return Err("the network namespace helper died".into()),
        }
        aibox_sys::setns(self.pidfd.as_fd(), HELPER_NAMESPACES)
            .map_err(|err| format!("joining the network, ipc and uts namespaces: {err}"))?;
        drop(self.hold);
        Ok(())
    }
}

/// S: PID 1 of the sandbox, born in its new user and pid namespaces. Makes
/// the remaining namespaces, builds the root filesystem, seals itself, and
/// runs the payload. Never returns: setup errors go to P as `E` messages.
fn sandbox_pid1(plan: &Plan, from_p: OwnedFd, to_p: OwnedFd, payload: Payload) -> ! {
    let fail = |msg: String| -> ! {
        let _ = send(&to_p, b'E', msg.as_bytes());
        aibox_sys::exit_now(1);
    };
    // S is a clone of its creator: the creator's environment (a server's
    // registry password, a developer's tokens) is still in its memory and
    // in /proc/1/environ, which processes of the same uid could read
    // (rootless, where PID 1 stays dumpable) and the agent's file API
    // would serve (the review's M3). Nothing here reads the environment.
    if let Err(e) = aibox_sys::scrub_environ_block() {
        fail(format!("clearing the inherited environment: {e}"));
    }
    // No pdeathsig: if P dies, S sees EOF on `from_p` while it waits for
    // the release, and a failed verdict write (or the link's EOF) after.
    let (net, trees, seccomp) = match setup_namespaces(plan, &from_p) {
        Ok(v) => v,
        Err(msg) => fail(msg),
    };
    // `scratch` stays open for PID 1's whole life (this never returns).
    let (report, release, scratch) = match sandbox_init(plan, &seccomp, net, trees, &from_p) {
        Ok(r) => r,
        Err(msg) => fail(msg),
    };
    let same = report.namespaces == aibox_types::NamespaceReport::all()
        && report.seccomp
        && report.no_new_privs
        && report.bounding_caps == plan.kept_caps()
        && report.landlock_abi == release.landlock_abi
        && report.landlock_enforced == release.landlock_abi.is_some()
        && report.overlay_rootfs
        && report.proc_masked;
    if !same {
        fail("the sandbox's isolation differs from what was set up".into());
    }
    // The verdict only: P reports what it set up, which this check has
    // just confirmed.
    let fd_number = scratch
        .as_ref()
        .map(|f| f.as_raw_fd().to_string())
        .unwrap_or_default();
    if send(&to_p, b'R', fd_number.as_bytes()).is_err() {
        aibox_sys::exit_now(1);
    }
    drop(to_p);
    let code = match payload {
        Payload::OneShot(one) => crate::namespace::init::run(one, &plan.spec, from_p),
        Payload::Agent(listener) => {
            // Wait until the creator has written the record, so a crash in
            // between leaves nothing running unrecorded.
            match recv(&from_p) {
                Ok(Some((b'C', _))) => {}
                _ => aibox_sys::exit_now(1),
            }
            drop(from_p);
            // Detach from the creator's stdio (a pipe held open would block
            // whoever reads the creator's output) and from its session, so
            // no command can reach the creator's terminal.
            if aibox_sys::stdio_to_devnull()
                .and_then(|_| aibox_sys::new_session())
                .is_err()
            {
                aibox_sys::exit_now(1);
            }
            aibox_agent::serve(listener, agent_config(plan))
        }
    };
    aibox_sys::exit_now(code)
}

/// S, before its root filesystem: start the network helper, wait for P's
/// "maps written" message, take the sandbox's root identity and unshare the
/// mount namespace (copying P's, with its idmapped staging mounts).
fn setup_namespaces(
    plan: &Plan,
    from_p: &OwnedFd,
) -> Result<
    (
        NetHelper,
        Vec<OwnedFd>,
        crate::namespace::seccomp::BpfProgram,
    ),
    String,
> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: io::Error| format!("{what}: {err}")
    };
    let net = NetHelper::start().map_err(e("starting the network namespace helper"))?;
    // While P writes the maps: what needs no namespace at all. Commands
    // must not inherit signals our caller ignored or blocked, and the
    // bounding set goes (S's own capabilities stay until it seals: the
    // bounding set only limits what an exec can gain).
    aibox_sys::reset_signal_dispositions();
    aibox_sys::drop_bounding_and_ambient(plan.kept_caps())
        .map_err(e("dropping the bounding set"))?;
    let seccomp = crate::namespace::seccomp::program();
    // "M" (an empty message) with the staged trees.
    let mut hdr = [0u8; 5];
    let trees = match aibox_sys::recv_with_fds(from_p.as_fd(), &mut hdr) {
        Ok(trees) if hdr == [b'M', 0, 0, 0, 0] => trees,
        _ => return Err("parent aborted".into()),
    };
    let expected = if plan.rootless() {
        0
    } else {
        staged_targets(plan).len()
    };
    if trees.len() != expected {
        return Err("the parent sent the wrong number of mount trees".into());
    }
    let inner = if plan.rootless() {
        plan.rootless_uid()
    } else {
        0
    };
    aibox_sys::setresgid(inner).map_err(e("setresgid"))?;
    aibox_sys::setresuid(inner).map_err(e("setresuid"))?;
    if !plan.rootless() {
        aibox_sys::clear_groups().map_err(e("setgroups"))?;
    }
    aibox_sys::unshare(libc::CLONE_NEWNS).map_err(e("unshare(mount namespace)"))?;
    Ok((net, trees, seccomp))
}

/// S, once its root filesystem is built but the host's is still reachable
/// under the old root: wait for P's release (P made the cgroup meanwhile),
/// join the cgroup and unshare the cgroup namespace (so that cgroup is the
/// sandbox's root).
fn join_cgroup(from_p: &OwnedFd) -> Result<Release, String> {
    let release = match recv(from_p).map_err(|e| format!("wait for parent: {e}"))? {
        Some((b'G', body)) => {
            Release::decode(&body).ok_or("bad release message from the parent")?
        }
        _ => return Err("parent aborted".into()),
    };
    // cgroup v1: move ourselves in by writing "0" to `tasks`: unlike moving
    // another pid, that skips the kernel's global threadgroup lock and its
    // RCU grace period (10-30 ms stalls on this kind of host). The host's
    // cgroup mounts are reached through the old root.
    if release.cgroup.version == "v1" {
        release
            .cgroup
            .join_self_under(Path::new(mounts::OLD_ROOT))
            .map_err(|err| {
                let cause = std::error::Error::source(&err)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                format!("joining the sandbox cgroup: {err}{cause}")
            })?;
    }
    aibox_sys::unshare(libc::CLONE_NEWCGROUP)
        .map_err(|e| format!("unshare(cgroup namespace): {e}"))?;
    Ok(release)
}

fn agent_config(plan: &Plan) -> aibox_agent::Config {
    aibox_agent::Config {
        default_user: if plan.rootless() {
            None
        } else {
            Some(plan.spec.user)
        },
        fixed_uid: plan.rootless().then(|| plan.rootless_uid()),
        env: crate::namespace::init::base_env(&plan.spec, plan.spec.user),
        workdir: plan.spec.workdir.clone(),
        egress_dir_fd: plan.egress_dir,
        egress_vm: None,
    }
}

/// S, before the payload: mounts, identity, then seal. Returns the part of
/// the isolation report only S can observe.
fn sandbox_init(
    plan: &Plan,
    seccomp: &crate::namespace::seccomp::BpfProgram,
    net: NetHelper,
    trees: Vec<OwnedFd>,
    from_p: &OwnedFd,
) -> Result<(IsolationReport, Release, Option<OwnedFd>), String> {
    let mut lowers = vec![];
    if let Some(layer) = &plan.snapshot_layer {
        lowers.push(if plan.rootless() {
            layer.clone()
        } else {
            plan.staging.join("snap")
        });
    }
    for (i, layer) in plan.template.layers.iter().enumerate() {
        lowers.push(if plan.rootless() {
            layer.clone()
        } else {
            plan.staging.join(lower_name(i))
        });
    }
    let template_binds: Vec<(PathBuf, PathBuf)> = plan
        .template
        .binds
        .iter()
        .enumerate()
        .map(|(i, (host, guest))| {
            (
                if plan.rootless() {
                    host.clone()
                } else {
                    plan.staging.join(format!("t{i}"))
                },
                guest.clone(),
            )
        })
        .collect();
    let user_mounts: Vec<mounts::UserMount> = plan
        .mounts
        .iter()
        .enumerate()
        .map(|(i, (m, source))| {
            let file = &source.file;
            if plan.rootless() {
                // Resolved again in this mount namespace (a descriptor P
                // opened belongs to the old one, which a bind refuses).
                mounts::UserMount {
                    src: m.host.clone(),
                    dst: m.guest.clone(),
                    read_only: m.read_only,
                    file: *file,
                    within: m.within.clone(),
                }
            } else {
                mounts::UserMount {
                    src: plan.staging.join(staging_name(i, *file)),
                    dst: m.guest.clone(),
                    read_only: m.read_only,
                    file: *file,
                    within: None,
                }
            }
        })
        .collect();
    let scratch = plan.staging.join("scratch");
    let steps = mounts::plan(&mounts::Layout {
        lowers: &lowers,
        scratch: &scratch,
        disk_bytes: plan.spec.disk_bytes(),
        template_binds: &template_binds,
        user_mounts: &user_mounts,
        gid5_mapped: !plan.rootless(),
        template_sealed: !plan.rootless(),
        make_mountpoints: plan.template.config.is_some(),
    });
    // Everything but the old root's detach, then the cgroup (made by P in
    // the meantime, joined through the old root), then the detach.
    let (before, detach) = match steps.split_last() {
        Some((last, rest)) if *last == mounts::Step::DetachOldRoot => {
            (rest, std::slice::from_ref(last))
        }
        _ => (steps.as_slice(), &[][..]),
    };
    // First the namespace goes private; then the trees P staged are
    // attached (in this namespace only); then the rest.
    let (private, rest) = match before.split_first() {
        Some((first, rest)) if *first == mounts::Step::MakePrivate => {
            (std::slice::from_ref(first), rest)
        }
        _ => (&[][..], before),
    };
    mounts::execute(private).map_err(|e| e.message())?;
    for (tree, target) in trees.iter().zip(staged_targets(plan)) {
        aibox_sys::attach_tree(tree.as_fd(), &target)
            .map_err(|e| format!("attaching {}: {e}", target.display()))?;
    }
    drop(trees);
    mounts::execute(rest).map_err(|e| e.message())?;
    // A persistent sandbox's PID 1 keeps the scratch tmpfs (upper and work
    // dirs) open: once the old root is gone nothing else reaches it, and
    // snapshots read the upper through this descriptor (close-on-exec:
    // no command inherits it).
    let scratch_fd = if plan.persistent {
        let old_scratch =
            Path::new(mounts::OLD_ROOT).join(scratch.strip_prefix("/").unwrap_or(&scratch));
        let f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&old_scratch)
                .map_err(|e| format!("opening the scratch directory: {e}"))?
        };
        Some(OwnedFd::from(f))
    } else {
        None
    };
    let release = join_cgroup(from_p)?;
    mounts::execute(detach).map_err(|e| e.message())?;
    // The working directory belongs to the sandbox's user (created before
    // capabilities are dropped, since chown needs CAP_CHOWN).
    let workdir = Path::new(&plan.spec.workdir);
    if !workdir.exists() {
        std::fs::create_dir_all(workdir)
            .map_err(|e| format!("creating workdir {}: {e}", workdir.display()))?;
        let uid = if plan.rootless() {
            plan.rootless_uid()
        } else {
            plan.spec.user.uid()
        };
        std::os::unix::fs::chown(workdir, Some(uid), Some(uid))
            .map_err(|e| format!("chown workdir: {e}"))?;
    }

    let hostname = plan
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| format!("aibox-{}", &plan.id[..plan.id.len().min(8)]));
    net.enter()?;
    aibox_sys::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
    aibox_sys::setrlimit(aibox_sys::RlimitResource::Core, 0, 0)
        .map_err(|e| format!("setrlimit: {e}"))?;

    // Seal: capabilities (the bounding set went at the start), no_new_privs,
    // landlock, seccomp (in this order: landlock and seccomp need
    // no_new_privs; seccomp last so the calls before it need not be
    // allowed).
    // PID 1 keeps only CAP_SETUID/CAP_SETGID (to start commands as `user`)
    // and CAP_KILL (to signal them), all inside its own user namespace;
    // commands get none, since the bounding set is empty when they exec.
    // (A build step's PID 1 keeps BUILD_CAPS too, for root's commands.)
    let mut caps = vec![
        aibox_sys::CAP_SETUID,
        aibox_sys::CAP_SETGID,
        aibox_sys::CAP_KILL,
    ];
    caps.extend_from_slice(plan.kept_caps());
    aibox_sys::set_caps(&caps).map_err(|e| format!("capset: {e}"))?;
    aibox_sys::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    let landlock = crate::namespace::landlock::apply().map_err(|e| format!("{e}: {}", e.source))?;
    crate::namespace::seccomp::install(seccomp).map_err(|e| format!("{e}"))?;

    let bounding = aibox_sys::bounding_set();
    let report = IsolationReport {
        namespaces: aibox_types::NamespaceReport::all(),
        seccomp: aibox_sys::seccomp_installed().unwrap_or(false),
        seccomp_allowed_syscalls: crate::namespace::seccomp::allowed_count(),
        landlock_abi: landlock,
        landlock_enforced: landlock.is_some(),
        no_new_privs: aibox_sys::no_new_privs().unwrap_or(false),
        bounding_caps: (0..64).filter(|c| bounding & (1 << c) != 0).collect(),
        overlay_rootfs: true,
        proc_masked: true,
        sys: "absent".into(),
        network: "none".into(),
        ..Default::default()
    };
    Ok((report, release, scratch_fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_message_round_trips() {
        let r = Release {
            cgroup: Cgroup {
                version: "v1".into(),
                dirs: vec![
                    ("memory".into(), "/sys/fs/cgroup/memory/a b/aibox-1".into()),
                    ("pids".into(), "/sys/fs/cgroup/pids/aibox-1".into()),
                ],
            },
            landlock_abi: Some(7),
        };
        let back = Release::decode(r.encode().as_bytes()).unwrap();
        assert_eq!((back.cgroup, back.landlock_abi), (r.cgroup, Some(7)));
        let none = Release {
            cgroup: Cgroup {
                version: "none".into(),
                dirs: vec![],
            },
            landlock_abi: None,
        };
        assert_eq!(
            Release::decode(none.encode().as_bytes())
                .unwrap()
                .landlock_abi,
            None
        );
        assert!(Release::decode(b"x\n").is_none());
        assert!(Release::decode(b"7\nv1\nno-tab\n").is_none());
    }
}
