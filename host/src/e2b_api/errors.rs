//! Errors as the SDK reads them: E2B's `{code, message}` JSON with the status it maps
//! (control plane and `/files`), and Connect's `{code: "not_found", message}` (envd RPC).
//! Our S-code stays at the front of the message, so nothing is lost in translation.

use crate::contract::codes::{CallError, Code};
use std::time::Duration;

/// A failed API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Sent as `Retry-After` (seconds, rounded up).
    pub retry_after: Option<Duration>,
    /// Sent as `Should-Retry: false`: the SDK would otherwise re-send a 429/502/503 that
    /// cannot succeed soon (a sandbox cap, a refused key).
    pub final_answer: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after: None, final_answer: false }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Invalid API key: send a key from the host's [[e2b_api.keys]] as X-API-KEY")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, message)
    }

    /// What another caller's sandbox looks like, too: E2B answers 404, not 403.
    pub fn sandbox_not_found(sandbox_id: &str) -> Self {
        ApiError::new(404, format!("sandbox {sandbox_id} was not found"))
    }

    pub fn no_retry(mut self) -> Self {
        self.final_answer = true;
        self
    }

    /// The status the SDK maps a call's S-code to, the S-code kept in the message.
    pub fn from_call(e: &CallError) -> Self {
        let status = match e.code {
            Code::BadInput | Code::ImageNotAllowed => 400,
            Code::NotFound | Code::UnknownProvider => 404,
            Code::Unsupported => 501,
            Code::CapReached | Code::RateLimited | Code::QuotaExhausted => 429,
            Code::Unavailable => 502,
            // The host's credential for the provider, not the caller's key: a 401 would
            // send the caller looking for a fault in their own key.
            Code::AuthInvalid => 500,
            _ => 500,
        };
        let mut err = ApiError::new(status, e.message());
        err.retry_after = e.retry_after_ms.map(Duration::from_millis);
        // A full cap or an exhausted quota does not clear in the SDK's retry window.
        err.final_answer = matches!(e.code, Code::CapReached | Code::QuotaExhausted);
        err
    }

    /// The Connect form of this error (envd RPC).
    pub fn to_connect(&self) -> ConnectError {
        let code = match self.status {
            400 => "invalid_argument",
            401 => "unauthenticated",
            403 => "permission_denied",
            404 => "not_found",
            409 => "already_exists",
            429 => "resource_exhausted",
            501 => "unimplemented",
            502 | 503 => "unavailable",
            504 => "deadline_exceeded",
            _ => "internal",
        };
        ConnectError::new(code, self.message.clone())
    }
}

/// A Connect error: a lowercase code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub code: &'static str,
    pub message: String,
}

impl ConnectError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConnectError { code, message: message.into() }
    }

    pub fn from_call(e: &CallError) -> Self {
        if e.code == Code::PluginTimeout {
            return ConnectError::new("deadline_exceeded", e.message());
        }
        ApiError::from_call(e).to_connect()
    }

    /// The HTTP status of a unary error answer (Connect's table).
    pub fn status(&self) -> u16 {
        match self.code {
            "invalid_argument" | "failed_precondition" | "out_of_range" => 400,
            "unauthenticated" => 401,
            "permission_denied" => 403,
            "not_found" => 404,
            "already_exists" | "aborted" => 409,
            "resource_exhausted" => 429,
            "canceled" => 499,
            "unimplemented" => 501,
            "unavailable" => 503,
            "deadline_exceeded" => 504,
            _ => 500,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_codes_map_to_the_statuses_the_sdk_turns_into_its_exceptions() {
        let cases = [
            (Code::NotFound, 404, "not_found"),
            (Code::BadInput, 400, "invalid_argument"),
            (Code::CapReached, 429, "resource_exhausted"),
            (Code::RateLimited, 429, "resource_exhausted"),
            (Code::Unsupported, 501, "unimplemented"),
            (Code::Unavailable, 502, "unavailable"),
            (Code::PluginTrapped, 500, "internal"),
        ];
        for (code, status, connect) in cases {
            let api = ApiError::from_call(&CallError::new(code, "x"));
            assert_eq!((api.status, api.to_connect().code), (status, connect), "{code}");
            assert!(api.message.starts_with(&format!("[{code}]")), "the S-code is kept: {}", api.message);
        }
    }

    #[test]
    fn a_full_cap_says_do_not_retry_and_a_rate_limit_says_when() {
        let cap = ApiError::from_call(&CallError::new(Code::CapReached, "full"));
        assert!(cap.final_answer);
        let rate = ApiError::from_call(&CallError::new(Code::RateLimited, "slow down").with_retry_after(Some(1500)));
        assert_eq!((rate.final_answer, rate.retry_after), (false, Some(Duration::from_millis(1500))));
    }
}
