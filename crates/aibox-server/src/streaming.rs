//! Streamed response bodies (file and tar downloads): the blocking agent
//! call writes into a channel that becomes the HTTP body, so a download
//! of any size passes through the server without being held in memory.
//! Errors before the first byte are ordinary API errors; an error after it
//! cuts the body short (the client sees a truncated transfer).

use crate::error::{ApiError, ApiResult};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `produce` on the blocking pool. It calls `start(len)` once the
/// transfer is known to succeed, then writes the body into `out`.
pub async fn respond<F>(content_type: &'static str, produce: F) -> ApiResult<Response>
where
    F: FnOnce(&mut dyn FnMut(Option<u64>), &mut dyn std::io::Write) -> Result<(), ApiError>
        + Send
        + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<Result<Option<u64>, ApiError>>();
    crate::fairness::spawn_blocking(move || {
        let mut start_tx = Some(start_tx);
        let mut out = ChannelWriter(tx.clone());
        let r = produce(
            &mut |len| {
                if let Some(s) = start_tx.take() {
                    let _ = s.send(Ok(len));
                }
            },
            &mut out,
        );
        match (r, start_tx.take()) {
            (Err(e), Some(s)) => {
                let _ = s.send(Err(e));
            }
            (Err(e), None) => {
                tracing::warn!(error = %e.message, "download cut short");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.message)));
            }
            (Ok(()), Some(s)) => {
                let _ = s.send(Ok(None));
            }
            (Ok(()), None) => {}
        }
    });
    let len = start_rx
        .await
        .map_err(|e| ApiError::internal("download task", e))??;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response();
    if let Some(n) = len {
        if let Ok(v) = header::HeaderValue::from_str(&n.to_string()) {
            resp.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
    }
    Ok(resp)
}

/// A request body as a blocking reader, for an agent call on the blocking
/// pool: the body is pulled a chunk at a time (at most a few chunks
/// ahead), never held whole, and cut off past `max` bytes (the review's
/// H5: uploads used to be held in memory whole, up to `max_body`).
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    chunk: Bytes,
    state: std::sync::Arc<ReadState>,
}

/// What the reader saw, for the handler once the call is done.
#[derive(Default)]
pub struct ReadState {
    pub bytes: std::sync::atomic::AtomicU64,
    pub too_large: std::sync::atomic::AtomicBool,
}

impl BodyReader {
    /// Start pulling `body` (on the async runtime).
    pub fn new(body: Body, max: u64) -> BodyReader {
        use futures_util::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let state = std::sync::Arc::new(ReadState::default());
        let seen = state.clone();
        tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let item = match chunk {
                    Ok(c) => {
                        n += c.len() as u64;
                        if n > max {
                            seen.too_large
                                .store(true, std::sync::atomic::Ordering::SeqCst);
                            Err(std::io::Error::other("the upload is larger than max_body"))
                        } else {
                            Ok(c)
                        }
                    }
                    Err(e) => Err(std::io::Error::other(format!("reading the upload: {e}"))),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        BodyReader {
            rx,
            chunk: Bytes::new(),
            state,
        }
    }

    pub fn state(&self) -> std::sync::Arc<ReadState> {
        self.state.clone()
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        self.state
            .bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
}

/// The error for an upload the reader cut off, if it was.
pub fn too_large(state: &ReadState, max: u64) -> Option<ApiError> {
    state
        .too_large
        .load(std::sync::atomic::Ordering::SeqCst)
        .then(|| {
            ApiError::new(
                aibox_types::ErrorCode::PayloadTooLarge,
                format!("the upload is larger than this server's max_body ({max} bytes)"),
            )
        })
}
