//! Frame codec: `u32` BE length | kind byte | payload.

use std::io::{self, Read, Write};

/// Hard upper bound of one frame (kind byte + payload). Larger frames are a
/// protocol error: the reader never allocates more than this.
pub const MAX_FRAME: usize = 1 << 20;

/// The stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Control = 0,
    Stdin = 1,
    Stdout = 2,
    Stderr = 3,
    Data = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Control,
            1 => Kind::Stdin,
            2 => Kind::Stdout,
            3 => Kind::Stderr,
            4 => Kind::Data,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    #[error("empty frame (no kind byte)")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("connection closed")]
    Closed,
    #[error("invalid control message")]
    BadJson(#[source] serde_json::Error),
    #[error("unexpected {0:?} frame")]
    Unexpected(Kind),
    #[error("i/o error on the agent connection")]
    Io(#[source] io::Error),
}

impl FrameError {
    /// True when the peer simply went away or timed out (not a protocol bug).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, FrameError::Closed)
            || matches!(self, FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof))
    }
}

/// Read one frame. A clean EOF before the length gives `FrameError::Closed`.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).map_err(FrameError::Io)?;
    let kind = Kind::from_byte(kind[0]).ok_or(FrameError::UnknownKind(kind[0]))?;
    let mut payload = vec![0u8; len - 1];
    r.read_exact(&mut payload).map_err(FrameError::Io)?;
    Ok(Frame { kind, payload })
}

/// Write one frame in a single `write_all` (header and payload together, so
/// concurrent writers holding a lock never interleave partial frames).
pub fn write_frame<W: Write>(w: &mut W, kind: Kind, payload: &[u8]) -> Result<(), FrameError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(payload);
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"hello").unwrap();
        write_frame(&mut buf, Kind::Data, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Frame {
                kind: Kind::Stdout,
                payload: b"hello".to_vec()
            }
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Frame {
                kind: Kind::Data,
                payload: vec![]
            }
        );
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
    }

    #[test]
    fn oversize_is_refused_without_allocating() {
        let mut r = &[0xff, 0xff, 0xff, 0xff, 0][..];
        assert!(matches!(read_frame(&mut r), Err(FrameError::TooLarge(_))));
        let big = vec![0u8; MAX_FRAME];
        assert!(matches!(
            write_frame(&mut Vec::new(), Kind::Data, &big),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn malformed_frames() {
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 0][..]),
            Err(FrameError::Empty)
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 1, 9][..]),
            Err(FrameError::UnknownKind(9))
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 5, 0, 1][..]),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0][..]),
            Err(FrameError::Io(_))
        ));
    }
}
