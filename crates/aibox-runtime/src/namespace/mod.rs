//! The namespace backend: a sandbox as Linux namespaces, seccomp, Landlock
//! and cgroups around processes of the host's kernel. `setup` makes the
//! process tree (the parent, the sandbox's PID 1, the network helper) and
//! applies `mounts`' plan, `seccomp`'s filter and `landlock`'s rules in a
//! fixed, tested order; `init` is PID 1 of a one-shot run.

pub(crate) mod init;
pub mod landlock;
pub mod mounts;
pub mod seccomp;
pub(crate) mod setup;

use crate::backend::Backend;
use crate::sandbox::cgroup::Stats;
use crate::sandbox::listening::{self, Listener};
use crate::sandbox::snapshot::Copied;
use crate::{Error, Record, Runtime};
use aibox_types::{BackendKind, ErrorCode, SandboxSpec};
use std::path::Path;
use std::time::Duration;

/// The namespace backend.
pub struct Namespaces;

impl Backend for Namespaces {
    fn kind(&self) -> BackendKind {
        BackendKind::Namespaces
    }

    fn creates_single_threaded(&self) -> bool {
        true
    }

    fn runs_one_shot(&self) -> bool {
        true
    }

    fn no_per_connection_egress(&self) -> Option<&'static str> {
        None
    }

    fn create(&self, rt: &Runtime, spec: &SandboxSpec) -> Result<Record, Error> {
        rt.create_namespaces(spec)
    }

    fn destroy(&self, rec: &Record) -> Result<(), Error> {
        crate::kill_pid1(rec);
        rec.cgroup.kill_all();
        rec.cgroup
            .remove(Duration::from_secs(5))
            .map_err(Error::from)
    }

    fn set_paused(&self, rec: &Record, paused: bool) -> Result<(), Error> {
        rec.cgroup
            .set_frozen(paused)
            .map_err(|_| Error::Unsupported(crate::freezer_missing(rec)))
    }

    fn paused(&self, rec: &Record) -> bool {
        rec.cgroup.is_frozen()
    }

    fn stats(&self, rec: &Record) -> Stats {
        rec.cgroup.stats()
    }

    fn listeners(&self, rec: &Record) -> Result<Vec<Listener>, Error> {
        listening::listeners(rec.pid).map_err(|e| Error::Reported {
            code: ErrorCode::Internal,
            message: format!("reading sandbox {}'s sockets: {e}", rec.id),
        })
    }

    /// The writable layer, copied with every process frozen (when the
    /// freezer is there).
    fn snapshot_into(&self, rt: &Runtime, rec: &Record, dir: &Path) -> Result<Copied, Error> {
        let Some(fd) = rec.scratch_fd else {
            return Err(Error::Unsupported(format!(
                "sandbox {} was created by an aibox without snapshots; recreate it",
                rec.id
            )));
        };
        let was_frozen = rec.cgroup.is_frozen();
        let froze = !was_frozen && rec.cgroup.set_frozen(true).is_ok();
        let copied = rt.copy_upper(rec, fd, &dir.join("layer"));
        if froze {
            let _ = rec.cgroup.set_frozen(false);
        }
        let stats = copied?;
        Ok(Copied {
            bytes: stats.bytes,
            entries: stats.entries,
            consistent: was_frozen || froze,
            memory: false,
        })
    }
}
