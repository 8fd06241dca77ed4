//! What every backend's sandbox has: its record (`state`), directories
//! (`dirs`), ids and secrets (`ids`), cgroup (`cgroup`), the agent client
//! (`client`), what listens in it (`listening`), snapshots (`snapshot`),
//! directories made whole or not at all (`staged`), and the audited way
//! to act on paths inside untrusted trees (`beneath`).

pub mod beneath;
pub mod cgroup;
pub mod client;
pub(crate) mod dirs;
pub(crate) mod ids;
pub mod listening;
pub mod snapshot;
pub(crate) mod staged;
pub mod state;
