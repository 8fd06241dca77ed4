//! `Read`/`Write` adapters over data frames, for tar and file streams.

use aibox_protocol::{read_frame, write_frame, FrameError, Kind};
use std::io::{self, Read, Write};

/// Reads the payloads of `Kind::Data` frames until an empty one.
pub struct FrameReader<'a, R: Read> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<'a, R: Read> FrameReader<'a, R> {
    pub fn new(inner: &'a mut R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// Consume the rest of the stream (so the connection stays in sync).
    pub fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 8192];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

fn to_io(e: FrameError) -> io::Error {
    match e {
        FrameError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<R: Read> Read for FrameReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            let f = read_frame(self.inner).map_err(to_io)?;
            if f.kind != Kind::Data {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected a data frame, got {:?}", f.kind),
                ));
            }
            if f.payload.is_empty() {
                self.done = true;
                return Ok(0);
            }
            self.buf = f.payload;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Chunk size of outgoing data frames.
pub const CHUNK: usize = 64 * 1024;

/// Buffers writes into `Kind::Data` frames of up to [`CHUNK`] bytes.
/// `finish` flushes and sends the empty end-of-stream frame.
pub struct FrameWriter<'a, W: Write> {
    inner: &'a mut W,
    buf: Vec<u8>,
}

impl<'a, W: Write> FrameWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> Self {
        FrameWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        write_frame(self.inner, Kind::Data, &[]).map_err(to_io)
    }
}

impl<W: Write> Write for FrameWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_frame(self.inner, Kind::Data, &self.buf).map_err(to_io)?;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        let mut w = FrameWriter::new(&mut wire);
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        let mut r = &wire[..];
        let mut back = Vec::new();
        FrameReader::new(&mut r).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn wrong_kind_is_an_error() {
        let mut wire = Vec::new();
        write_frame(&mut wire, Kind::Stdout, b"x").unwrap();
        let mut r = &wire[..];
        assert!(FrameReader::new(&mut r)
            .read_to_end(&mut Vec::new())
            .is_err());
    }
}
