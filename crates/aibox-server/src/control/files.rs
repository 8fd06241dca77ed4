//! The rules of paths and modes inside a sandbox, as requests give them.

use crate::error::{ApiError, ApiResult};

/// A path inside the sandbox: absolute, without NUL.
pub fn abs(p: &str) -> ApiResult<String> {
    if !p.starts_with('/') || p.contains('\0') {
        return Err(ApiError::invalid(format!(
            "path {p:?} must be absolute (inside the sandbox)"
        )));
    }
    Ok(p.to_string())
}

/// Permission bits as octal text (`"755"`).
pub fn octal(m: Option<&str>) -> ApiResult<Option<u32>> {
    m.map(|m| {
        u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ApiError::invalid("mode must be octal, e.g. 644"))
    })
    .transpose()
}
