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

impl From<aibox_types::api::FieldError> for ApiError {
    fn from(e: aibox_types::api::FieldError) -> ApiError {
        ApiError::invalid(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code;
        let body = aibox_types::api::ErrorBody {
            error: aibox_types::api::ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        // For the errors-by-code metric.
        resp.extensions_mut().insert(code);
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body as `T`, or an error that names the field at fault in the
/// API's terms: never the parser's position or Rust type names.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(describe_json(&path, e.inner()))
    })?;
    de.end()
        .map_err(|_| ApiError::invalid("the body has more after its JSON value"))?;
    Ok(value)
}

fn describe_json(path: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    let msg = text.strip_suffix(&at).unwrap_or(&text);
    match e.classify() {
        Category::Syntax => "the body is not valid JSON".to_string(),
        Category::Eof => "the body ends before its JSON does".to_string(),
        Category::Io => "the request body could not be read".to_string(),
        Category::Data => {
            // serde's word for a value that fits no accepted form names
            // the Rust type; say it in the API's terms instead.
            let msg = if msg.contains("did not match any variant") {
                "has none of the accepted forms (see the OpenAPI document)".to_string()
            } else if let Some((head, _)) = msg.split_once("expected struct ") {
                format!("{head}expected a JSON object")
            } else {
                msg.to_string()
            };
            let msg = msg.as_str();
            // The path of an unknown field ends with that field, which
            // the message names already.
            let path = if msg.starts_with("unknown field") {
                path.rsplit_once('.').map_or("", |(parent, _)| parent)
            } else {
                path
            };
            if path.is_empty() || path == "." {
                msg.to_string()
            } else {
                format!("{path}: {msg}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_json;
    use aibox_types::api::CreateRequest;

    fn message(body: &str) -> String {
        parse_json::<CreateRequest>(body.as_bytes())
            .unwrap_err()
            .message
    }

    #[test]
    fn a_bad_body_is_named_by_its_field_without_the_parser_s_details() {
        let m = message(r#"{"network": {"mode": "allowlist", "rules": ["allow bad host!"]}}"#);
        assert!(m.starts_with("network.rules[0]: "), "{m}");
        assert!(!m.contains("line 1") && !m.contains("column"), "{m}");
        let m = message(r#"{"memory": [1]}"#);
        assert!(
            m.starts_with("memory: has none of the accepted forms"),
            "{m}"
        );
        assert!(!m.contains("enum"), "{m}");
        assert_eq!(message("{"), "the body ends before its JSON does");
        assert_eq!(message("{x"), "the body is not valid JSON");
        assert_eq!(message("{} {}"), "the body has more after its JSON value");
        assert_eq!(
            message("1"),
            "invalid type: integer `1`, expected a JSON object"
        );
        assert!(message(r#"{"bakend": 1}"#).starts_with("unknown field `bakend`"));
        let m = message(r#"{"network": {"mode": "full", "rulez": []}}"#);
        assert!(m.starts_with("network: unknown field `rulez`"), "{m}");
    }
}
