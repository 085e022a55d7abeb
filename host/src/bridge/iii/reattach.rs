//! After every (re)connect: send the unregisters deferred while the engine was away,
//! then check the engine's own function list (`engine::functions::list`) for every id
//! this host serves, and register again what it lacks. The router's claim
//! (`router_claims.rs`) runs beside it on every connect.
//!
//! Deferring unregisters (`registrations.rs`) keeps a removal made while disconnected
//! from undoing a later registration, but only the engine can say what it ended up
//! with: a frame sent just as the link dropped, or one the engine refused, is visible
//! only there. The check is what makes the outcome certain, and its log lines say what
//! was found and repaired.
//!
//! iii-sdk 0.25 has no reconnect callback (`on_engine_supports_observe` fires only when
//! the engine's features change), so the connection state is polled: it is one mutex
//! read (`get_connection_state`, `src/iii.rs:2946`), and a dropped link stays in
//! `Reconnecting` for at least the 2 s retry delay (`src/iii.rs:1916, 3380-3400`), so a
//! 250 ms poll sees every reconnect.

use super::{router_claims, Bridge};
use iii_sdk::engine::EngineFunctions;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::IIIClient;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(250);
/// Time for the engine to take the replay in before its list is trusted: it files a
/// new connection's registrations only once the worker's `engine::workers::register`
/// call (sent after the replay) arrives (engine `src/engine/mod.rs:60-73`).
const SETTLE: Duration = Duration::from_secs(1);
/// Checks per connect. An id is re-registered only when two lists in a row lack it, so
/// one taken before the engine filed the replay does not cause needless churn.
const CHECKS: usize = 5;
const LIST_TIMEOUT_MS: u64 = 5_000;

/// Watches the connection until the bridge is dropped or shut down.
pub(super) async fn watch(bridge: Weak<Bridge>) {
    let mut connected = false;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(b) = bridge.upgrade() else { return };
        if b.is_closed() {
            return;
        }
        let now = b.is_connected();
        if now && !connected {
            // A check that outlives its connection is abandoned; the next connect starts over.
            tokio::select! {
                _ = async { tokio::join!(after_connect(&b), router_claims::after_connect(&b)) } => {}
                _ = link_lost(&b) => {}
            }
        }
        connected = b.is_connected();
    }
}

async fn link_lost(bridge: &Bridge) {
    while bridge.is_connected() && !bridge.is_closed() {
        tokio::time::sleep(POLL).await;
    }
}

async fn after_connect(bridge: &Bridge) {
    let sent = bridge.lock().send_deferred();
    if !sent.is_empty() {
        tracing::info!("engine connected: unregistered {} function(s) removed while it was away: {}", sent.len(), sent.join(", "));
    }
    let mut missing_before = BTreeSet::new();
    let mut last_error = None;
    for _ in 0..CHECKS {
        tokio::time::sleep(SETTLE).await;
        let listed = match engine_functions(bridge).await.map(|f| f.into_keys().collect::<BTreeSet<_>>()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::debug!("could not list the engine's functions ({e}); checking again in {SETTLE:?}");
                last_error = Some(e);
                continue;
            }
        };
        last_error = None;
        let served = bridge.function_ids();
        let missing: BTreeSet<String> = served.iter().filter(|id| !listed.contains(*id)).cloned().collect();
        if missing.is_empty() {
            tracing::info!("engine connected: it lists all {} functions this host serves", served.len());
            return;
        }
        let confirmed: Vec<String> = missing.intersection(&missing_before).cloned().collect();
        if !confirmed.is_empty() {
            let repaired = bridge.re_register(&confirmed);
            tracing::warn!(
                "the engine lacks {} of the {} functions this host serves after a reconnect; registered them again: {}",
                repaired.len(),
                served.len(),
                repaired.join(", ")
            );
        }
        missing_before = missing;
    }
    let still: Vec<String> = missing_before.into_iter().collect();
    if let Some(e) = last_error.filter(|_| still.is_empty()) {
        tracing::warn!("could not check this host's functions on the engine ({e}); they are checked again on the next reconnect");
    } else {
        tracing::error!(
            "after {CHECKS} checks the engine still lacks {} function(s) this host serves: {}; callers get \"function not found\" for them",
            still.len(),
            still.join(", ")
        );
    }
}

/// The `sandbox::` ids the engine lists in this worker's namespace → the owning worker's
/// name (empty when the engine gives none). Used by the reattach check and the router.
pub(super) async fn engine_functions(bridge: &Bridge) -> Result<BTreeMap<String, String>, String> {
    // Every id the host serves starts with `sandbox::` (provider, router and adapter ids).
    listing(&bridge.client, "sandbox::").await
}

/// The ids the engine lists under `prefix` in this worker's namespace.
pub(super) async fn functions_of(client: &IIIClient, prefix: &str) -> Result<Vec<String>, String> {
    listing(client, prefix).await.map(|l| l.into_keys().collect())
}

async fn listing(client: &IIIClient, prefix: &str) -> Result<BTreeMap<String, String>, String> {
    let mut request = TriggerRequest::new(EngineFunctions::LIST_FUNCTIONS, json!({"prefix": prefix}));
    request.timeout_ms = Some(LIST_TIMEOUT_MS);
    let answer = client.trigger(request).await.map_err(|e| e.to_string())?;
    let namespace = client.namespace().unwrap_or_else(|| "default".into());
    let functions =
        answer["functions"].as_array().ok_or_else(|| format!("{} answered without a `functions` list", EngineFunctions::LIST_FUNCTIONS))?;
    Ok(functions
        .iter()
        .filter(|f| f["namespace"].as_str().unwrap_or("default") == namespace)
        .filter_map(|f| Some((f["function_id"].as_str()?.to_string(), f["worker_name"].as_str().unwrap_or_default().to_string())))
        .collect())
}
