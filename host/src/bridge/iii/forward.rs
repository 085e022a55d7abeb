//! The router's forwarding (`serve --providers` shards providers across hosts): a
//! `sandbox::<leaf>` call for a provider this host has not loaded goes through the
//! engine to `sandbox::provider::<p>::<leaf>`, served by whichever host has it. The
//! payload travels unchanged (an exec's `stream` channel ref included: the serving host
//! writes the output there), and the answer or S-code comes back unchanged. Only a
//! provider no worker serves is S600; one served elsewhere without that leaf is S404.

use super::{provider_function_id, reattach};
use crate::contract::codes::{CallError, Code};
use crate::{Host, Leaf};
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{Error as IiiError, IIIClient};
use serde_json::Value;

/// The engine's code for an id nobody serves.
const NOT_FOUND: &str = "function_not_found";
/// A forwarded call's deadline: the longest a serving host's own call budget allows
/// (`limits.call_timeout_ms`, 2 min by default, and overtime), and an exec's timeout
/// past that.
const FORWARD_TIMEOUT_MS: u64 = 10 * 60_000;

pub(super) async fn forward(host: &Host, client: &IIIClient, provider: &str, leaf: Leaf, payload: Value) -> Result<Value, CallError> {
    let id = provider_function_id(provider, leaf);
    let exec_ms = payload.get("timeout_ms").and_then(Value::as_u64).filter(|_| leaf == Leaf::Exec).unwrap_or(0);
    let mut request = TriggerRequest::new(&id, payload);
    request.timeout_ms = Some(FORWARD_TIMEOUT_MS.max(exec_ms.saturating_add(60_000)));
    match client.trigger(request).await {
        Ok(v) => Ok(v),
        Err(IiiError::Remote { code, message, .. }) => match Code::parse(&code) {
            // The serving host's own S-code, unchanged (its message carries the prefix).
            Some(c) => Err(CallError::new(c, message.strip_prefix(&format!("[{c}] ")).unwrap_or(&message).to_string())),
            None if code == NOT_FOUND => Err(not_served(host, client, provider, leaf).await),
            None => Err(CallError::new(
                Code::Unavailable,
                format!("provider `{provider}` is served by another worker, and the engine failed the forwarded {leaf}: {code}: {message}; retry."),
            )),
        },
        Err(IiiError::Timeout) => Err(CallError::new(
            Code::Unavailable,
            format!("provider `{provider}` is served by another worker, which did not answer the forwarded {leaf} in time; retry."),
        )),
        Err(e) => Err(CallError::new(
            Code::Unavailable,
            format!("provider `{provider}` is not loaded here and the call could not be forwarded through the engine ({e}); retry."),
        )),
    }
}

/// S600 when no worker serves `provider` at all (the host's own S600, naming what it
/// loaded), S404 when one serves it without `leaf`.
async fn not_served(host: &Host, client: &IIIClient, provider: &str, leaf: Leaf) -> CallError {
    let prefix = format!("sandbox::provider::{provider}::");
    let served = reattach::functions_of(client, &prefix).await.unwrap_or_default();
    if served.is_empty() {
        return host.unknown_provider(provider);
    }
    let offered: Vec<&str> = served.iter().filter_map(|id| id.strip_prefix(&prefix)).collect();
    CallError::new(Code::Unsupported, format!("provider `{provider}` does not support `{leaf}`; it offers: {}.", offered.join(", ")))
}
