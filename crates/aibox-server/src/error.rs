//! The one error type every handler returns: a stable code, an HTTP status,
//! and a message safe to show the caller (5xx details go to the log only).

use aibox_types::ErrorCode;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("no sandbox with id {id:?}"))
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "{context}");
        ApiError::new(ErrorCode::Internal, format!("internal error: {context}"))
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound | ErrorCode::TemplateNotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::IsolationUnavailable | ErrorCode::BuildFailed => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PayloadTooLarge | ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::SandboxGone => StatusCode::GONE,
            ErrorCode::Unavailable => StatusCode::BAD_GATEWAY,
            ErrorCode::ProtocolError | ErrorCode::VersionMismatch | ErrorCode::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<aibox_runtime::Error> for ApiError {
    fn from(e: aibox_runtime::Error) -> ApiError {
        let code = e.code();
        if code == ErrorCode::Internal {
            return ApiError::internal("sandbox runtime", e);
        }
        ApiError::new(code, e.to_string())
    }
}

impl From<aibox_runtime::ClientError> for ApiError {
    fn from(e: aibox_runtime::ClientError) -> ApiError {
        let code = e.code();
        if code == ErrorCode::Internal || code == ErrorCode::ProtocolError {
            return ApiError::internal("sandbox agent", e);
        }
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (status, Json(body)).into_response();
        // For the errors-by-code metric.
        resp.extensions_mut().insert(self.code);
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
