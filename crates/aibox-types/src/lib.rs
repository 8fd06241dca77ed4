//! Public types shared by every aibox front end (CLI, REST, MCP, SDKs):
//! sandbox specifications, the isolation report, sizes, durations and the
//! stable error codes. No IO lives here.
#![forbid(unsafe_code)]

pub mod api;
pub mod ceiling;
pub mod egress;
mod isolation;
pub mod paths;
mod spec;
mod units;

pub use isolation::{
    CgroupReport, IsolationLevel, IsolationReport, LimitReport, NamespaceReport, UidMapping,
    VmReport,
};
pub use spec::{
    check_target, passwd_entry, BackendKind, MountSpec, NetworkMode, PasswdEntry, SandboxSpec,
    User, VolumeMount, BUILD_CAPS, DEFAULT_WORKDIR, EGRESS_PROXY_PORT, L4_DNS_PORT, L4_TCP_PORT,
    MAX_UID, MAX_VOLUMES_PER_SANDBOX,
};
pub use units::{parse_duration, parse_size, ByteSize, UnitError};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stable, machine-readable error codes. Their string forms are part of the
/// public API: never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    IsolationUnavailable,
    TemplateNotFound,
    PermissionDenied,
    Timeout,
    ProtocolError,
    VersionMismatch,
    FrameTooLarge,
    ResourceExhausted,
    SandboxGone,
    /// The sandbox is in a state that does not allow the operation (e.g. paused).
    Conflict,
    /// No valid credentials (missing, unknown or revoked API key).
    Unauthenticated,
    /// Too many requests for this key; retry after the advertised delay.
    RateLimited,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// Nothing answers where the request was to go (e.g. no process
    /// listens on a published port inside the sandbox).
    Unavailable,
    /// A template build step failed (its command exited non-zero).
    BuildFailed,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::IsolationUnavailable => "isolation_unavailable",
            ErrorCode::TemplateNotFound => "template_not_found",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::SandboxGone => "sandbox_gone",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BuildFailed => "build_failed",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sandbox ids: 12 lowercase hex characters, `sb-` prefixed in display only
/// when a front end wants it. Validated wherever an id enters from outside,
/// because it becomes a path component.
/// A user-given name (of a snapshot): 1-63 letters, digits, '.', '_', '-'.
pub fn validate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub fn validate_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        assert!(validate_id("0a1b2c3d4e5f"));
        assert!(!validate_id(""));
        assert!(!validate_id("../etc"));
        assert!(!validate_id("ABC"));
        assert!(!validate_id(&"a".repeat(65)));
    }

    #[test]
    fn error_codes_serialize_as_their_stable_strings() {
        for c in [
            ErrorCode::InvalidArgument,
            ErrorCode::IsolationUnavailable,
            ErrorCode::FrameTooLarge,
        ] {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }
}
