//! The router: `sandbox::<leaf>` with an optional `provider` field. It picks the
//! provider (the field, else `default_provider`), strips the field and dispatches to the
//! plugin in-process through [`Host::call`], so a plugin's own S-code reaches the caller
//! unchanged — never wrapped in S502.
//!
//! On iii it is opt-in (`serve --router`, `[router] enabled = true`): the bare ids are the
//! engine's own sandbox daemon's too, and the bridge registers only those no other worker
//! owns (`bridge/iii/router_claims.rs`).

use crate::contract::codes::{CallError, Code};
use crate::{Host, Leaf};
use serde_json::Value;

/// Splits a router payload into the provider and the provider's own payload.
pub fn split(host: &Host, leaf: Leaf, mut payload: Value) -> Result<(String, Value), CallError> {
    let Value::Object(map) = &mut payload else {
        return Err(CallError::bad_input(format!("{leaf}: the input must be a JSON object.")));
    };
    let provider = match map.remove("provider") {
        None | Some(Value::Null) => match &host.config.default_provider {
            Some(p) => p.clone(),
            None => {
                let names = host.registry.names();
                return Err(CallError::new(
                    Code::UnknownProvider,
                    format!(
                        "sandbox::{leaf} needs a `provider` field (no default_provider is configured); loaded providers: {}.",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ),
                ));
            }
        },
        Some(Value::String(p)) => p,
        Some(other) => {
            return Err(CallError::bad_input(format!(
                "{leaf}: field `provider` must be a string, got {}.",
                crate::policy::plugin_text::bounded(&other.to_string(), 80)
            )));
        }
    };
    Ok((provider, payload))
}

/// Routes one `sandbox::<leaf>` call.
pub async fn call(host: &Host, leaf: Leaf, payload: Value) -> Result<Value, CallError> {
    let (provider, payload) = split(host, leaf, payload)?;
    host.call(&provider, leaf, &payload).await
}
