//! The outcome of one operation on the agent's socket, and who it acts
//! as: shared by the connection's dispatch (`conn`) and the operations in
//! their own rooms (`files`).

use crate::Agent;
use aibox_protocol::{AgentMsg, FrameError};
use aibox_types::{ErrorCode, User};
use std::os::unix::net::UnixStream;

pub(crate) struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn io(what: &str, e: &std::io::Error) -> Failure {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            std::io::ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
            // Writing to a process whose stdin is closed.
            std::io::ErrorKind::BrokenPipe => ErrorCode::Conflict,
            std::io::ErrorKind::ConnectionRefused => ErrorCode::Unavailable,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ErrorCode::InvalidArgument
            }
            _ if e.raw_os_error() == Some(libc::ENOSPC)
                || e.raw_os_error() == Some(libc::EDQUOT) =>
            {
                ErrorCode::ResourceExhausted
            }
            _ if matches!(
                e.raw_os_error(),
                Some(
                    libc::ENOTDIR
                        | libc::EISDIR
                        | libc::ENOTEMPTY
                        | libc::EXDEV
                        | libc::ELOOP
                        | libc::ENAMETOOLONG
                        | libc::EINVAL
                )
            ) =>
            {
                ErrorCode::InvalidArgument
            }
            _ if e.raw_os_error() == Some(libc::EBUSY) => ErrorCode::Conflict,
            _ if e.raw_os_error() == Some(libc::EROFS) => ErrorCode::PermissionDenied,
            _ => ErrorCode::Internal,
        };
        Failure {
            code,
            message: format!("{what}: {e}"),
        }
    }
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Failure {
        let code = match e {
            FrameError::TooLarge(_) => ErrorCode::FrameTooLarge,
            _ => ErrorCode::ProtocolError,
        };
        Failure::new(code, e.to_string())
    }
}

pub(crate) type OpResult = Result<(), Failure>;

pub(crate) fn ok(stream: &mut UnixStream, value: serde_json::Value) -> OpResult {
    AgentMsg::Ok { value }.send(stream).map_err(Failure::from)
}

/// Resolve the uid a request runs as, enforcing rootless constraints.
pub(crate) fn uid_for(agent: &Agent, user: Option<User>) -> Result<Option<u32>, Failure> {
    match (agent.cfg.fixed_uid, user) {
        (Some(fixed), Some(u)) if u.uid() != fixed => Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("this rootless sandbox has a single identity (uid {fixed}); user {u} is not available"),
        )),
        (Some(_), _) => Ok(None),
        (None, Some(u)) => Ok(Some(u.uid())),
        (None, None) => Ok(agent.cfg.default_user.map(|u| u.uid())),
    }
}
