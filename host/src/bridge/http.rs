//! iii `http` triggers: the engine calls a bound function with an HTTP request envelope
//! (`{method, path, headers, query_params, path_params, body}`) and expects
//! `{status_code, headers, body}` back. The adapter unwraps the body, runs the contract
//! call, and maps an S-code to the HTTP status a plain HTTP client expects.

use crate::contract::codes::{CallError, Code};
use serde_json::{json, Value};

/// The contract payload inside an HTTP trigger's request envelope.
pub fn payload(envelope: &Value) -> Value {
    match envelope.get("body") {
        Some(Value::Null) | None => json!({}),
        // A body that arrived as text (no JSON content type) is parsed here.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
    }
}

/// The HTTP status for a failed call.
pub fn status(code: Code) -> u16 {
    match code {
        Code::BadInput => 422,
        Code::Unsupported | Code::UnknownProvider => 404,
        Code::NotFound => 410,
        Code::ImageNotAllowed => 403,
        Code::CapReached | Code::RateLimited => 429,
        Code::QuotaExhausted => 402,
        Code::Unavailable | Code::AuthInvalid => 502,
        Code::PluginTrapped | Code::PluginMemory | Code::EgressDenied | Code::UpstreamBudget => 500,
        Code::PluginTimeout => 504,
    }
}

/// The trigger's response envelope.
pub fn response(result: Result<Value, CallError>) -> Value {
    match result {
        Ok(body) => json!({"status_code": 200, "headers": {"content-type": "application/json"}, "body": body}),
        Err(e) => {
            let mut headers = json!({"content-type": "application/json"});
            if let Some(ms) = e.retry_after_ms {
                headers["retry-after"] = json!(ms.div_ceil(1000).max(1).to_string());
            }
            json!({"status_code": status(e.code), "headers": headers, "body": {"code": e.code.as_str(), "message": e.message()}})
        }
    }
}
