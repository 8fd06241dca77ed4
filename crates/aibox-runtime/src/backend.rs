//! The isolation backends behind one door. `crate::backend_of` (for a
//! spec's `BackendKind`) and `Record::backend` (for a sandbox that exists)
//! are the only places that choose; everything else asks the backend they
//! return. The namespace backend lives in `crate::namespace`, the microVM
//! backend (QEMU and Firecracker drivers) in `crate::microvm`.

use crate::sandbox::cgroup::Stats;
use crate::sandbox::listening::Listener;
use crate::sandbox::snapshot::Copied;
use crate::{Error, Record, Runtime};
use aibox_types::{BackendKind, SandboxSpec};
use std::path::Path;

pub trait Backend: Sync {
    fn kind(&self) -> BackendKind;
    /// `create` must run in a single-threaded process (`clone(2)` into a
    /// new user namespace needs one): a multi-threaded caller (the
    /// server) goes through the `aibox internal-create` helper.
    fn creates_single_threaded(&self) -> bool;
    /// `Runtime::run` can run a command in a fresh sandbox of this kind
    /// with the caller's stdio, no record (else a one-shot run is a
    /// create, an exec and a destroy).
    fn runs_one_shot(&self) -> bool;
    /// Why egress cannot be checked per connection (L4) for this kind,
    /// if it cannot: its sandboxes then have the HTTP proxy alone.
    fn no_per_connection_egress(&self) -> Option<&'static str>;
    /// Make a persistent sandbox and record it.
    fn create(&self, rt: &Runtime, spec: &SandboxSpec) -> Result<Record, Error>;
    /// Stop everything the sandbox runs and free what it holds (the
    /// record and its directory go with the caller's `abandon`).
    fn destroy(&self, rec: &Record) -> Result<(), Error>;
    fn set_paused(&self, rec: &Record, paused: bool) -> Result<(), Error>;
    fn paused(&self, rec: &Record) -> bool;
    fn stats(&self, rec: &Record) -> Stats;
    /// The TCP ports processes inside listen on.
    fn listeners(&self, rec: &Record) -> Result<Vec<Listener>, Error>;
    /// Write the sandbox's snapshot into `dir`: what was copied, and
    /// whether it is consistent (taken with every process frozen).
    fn snapshot_into(&self, rt: &Runtime, rec: &Record, dir: &Path) -> Result<Copied, Error>;
}
