//! Building the WIT `error` record: one constructor per kind, and the mapping from an
//! upstream HTTP status to a kind that every provider shares (docs/contract.md):
//! 400/422 → bad-input, 401/403 → auth-invalid, 402 → quota-exhausted, 404 → not-found,
//! 429 → rate-limited (with `Retry-After`), anything else → unavailable.

use crate::{Error, ErrorKind};

pub fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error { kind, message: message.into(), upstream_status: None, retry_after_ms: None }
}

pub fn bad_input(message: impl Into<String>) -> Error {
    error(ErrorKind::BadInput, message)
}

pub fn unavailable(message: impl Into<String>) -> Error {
    error(ErrorKind::Unavailable, message)
}

pub fn not_found(message: impl Into<String>) -> Error {
    error(ErrorKind::NotFound, message)
}

pub fn unsupported(leaf: &str) -> Error {
    error(ErrorKind::Unsupported, format!("this provider does not implement `{leaf}`"))
}

/// The kind an upstream status maps to (only meaningful for non-2xx statuses).
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::BadInput,
        401 | 403 => ErrorKind::AuthInvalid,
        402 => ErrorKind::QuotaExhausted,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        _ => ErrorKind::Unavailable,
    }
}

/// Error for a non-2xx answer: `what` (e.g. `POST /sandboxes`) answered `status`: `detail`.
pub fn from_status(what: &str, status: u16, detail: &str, retry_after_ms: Option<u64>) -> Error {
    let detail = detail.trim();
    let message =
        if detail.is_empty() { format!("{what} answered HTTP {status}") } else { format!("{what} answered HTTP {status}: {detail}") };
    Error { kind: kind_for_status(status), message, upstream_status: Some(status), retry_after_ms }
}
