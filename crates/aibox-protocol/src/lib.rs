//! The host ⇄ agent protocol.
//!
//! One stream connection (a Unix socket) per operation. Every message is a
//! frame: a big-endian `u32` length, then one kind byte, then `length - 1`
//! payload bytes. Control frames carry JSON ([`ClientMsg`], [`AgentMsg`]);
//! data frames carry raw bytes of one stream (stdin, stdout, stderr, data).
//! An empty data frame ends its stream. Frames larger than [`MAX_FRAME`] are
//! refused before any allocation. The first exchange is a version handshake.
//! See docs/protocol.md for the full description and examples.
#![forbid(unsafe_code)]

mod frame;
mod msg;

pub use frame::{read_frame, write_frame, Frame, FrameError, Kind, MAX_FRAME};
pub use msg::{
    recv, send, AgentMsg, ClientMsg, DirEntry, ExecRequest, ExitInfo, FileKind, FileStat, Op,
    ProcInfo, PtySize,
};

/// Protocol version spoken by this build. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
