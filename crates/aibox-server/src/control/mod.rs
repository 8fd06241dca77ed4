//! The control plane's use cases, with no HTTP in them: one function per
//! use case, taking the caller's principal and a typed request
//! (`aibox_types::api`), and enforcing ownership, policy, quotas and the
//! audit log. The REST handlers parse into these and render what they
//! return; the MCP tools on `/mcp` call them directly as the request's
//! principal.

pub mod access;
pub mod audit;
pub mod files;
pub mod keys;
pub mod ports;
pub mod processes;
pub mod sandboxes;
pub mod snapshots;
pub mod templates;
pub mod volumes;
pub mod workspaces;
