//! Lifecycle events on iii: every event of the host's channel (`calls/events.rs`:
//! created, paused, resumed, stopped, reaped) is published with the engine's `publish`
//! builtin on topic [`TOPIC`], data = [`LifecycleEvent::to_json`], so a worker can
//! subscribe (trigger type `subscribe`, `{topic}`) instead of polling `list`.
//!
//! Fire-and-forget (`TriggerAction::Void`), in the order the host saw them: the SDK keeps
//! one ordered outbound queue, which also holds what is published while the engine is
//! away until it is back. The subscription is taken when the bridge connects, so no
//! event of a call it serves is missed; one that falls behind the channel's backlog is
//! told how many it missed, and says so in the log.

use crate::calls::events::LifecycleEvent;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{IIIClient, TriggerAction};
use serde_json::{json, Value};
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio::sync::watch;

pub const TOPIC: &str = "sandbox.lifecycle";
/// The engine's pub/sub builtin (`iii-pubsub`).
const PUBLISH: &str = "publish";

/// The `publish` payload for one event.
pub fn message(event: &LifecycleEvent) -> Value {
    json!({"topic": TOPIC, "data": event.to_json()})
}

/// Publishes every event from `events` until `stop` fires or the host's channel closes.
pub(super) async fn publish_all(client: IIIClient, mut events: Receiver<LifecycleEvent>, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.changed() => return,
        };
        match event {
            Ok(event) => {
                let request = TriggerRequest {
                    function_id: PUBLISH.to_string(),
                    payload: message(&event),
                    action: Some(TriggerAction::Void),
                    timeout_ms: None,
                };
                // Builtins live in `default`; a namespaced host says so (iii-sdk
                // `TriggerRequest::namespace`).
                match client.trigger(request.namespace("default")).await {
                    Ok(_) => failing = false,
                    // One line per run of failures, not one per event.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("could not publish lifecycle events on {TOPIC} ({e}); events are dropped until it works again");
                    }
                    Err(_) => {}
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("the lifecycle publisher fell behind and missed {missed} event(s); they were not published on {TOPIC}")
            }
            Err(RecvError::Closed) => return,
        }
    }
}
