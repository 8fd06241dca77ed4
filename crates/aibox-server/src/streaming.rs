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
    tokio::task::spawn_blocking(move || {
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
