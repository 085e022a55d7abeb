//! Issue 9 §1 on the real engine: a worker subscribed to `sandbox.lifecycle` (trigger type
//! `subscribe`, the engine's pub/sub) receives `created` then `stopped` for a create and
//! a stop served by the host.

use super::workers::worker;
use super::*;
use sandbox_host::bridge::iii::iii_sdk::protocol::{RegisterTriggerInput, TriggerRequest};
use sandbox_host::bridge::iii::iii_sdk::{Error, RegisterFunction, TriggerAction};
use sandbox_host::bridge::iii::LIFECYCLE_TOPIC;
use serde_json::Value;
use tokio::sync::mpsc;

/// A worker whose function `test::lifecycle` is subscribed to `topic`; every message's
/// data arrives on the receiver.
async fn subscriber(url: &str, topic: &str) -> (sandbox_host::bridge::iii::iii_sdk::IIIClient, mpsc::UnboundedReceiver<Value>) {
    let client = worker(url, "lifecycle-subscriber");
    let (tx, rx) = mpsc::unbounded_channel();
    client.register_function(
        "test::lifecycle",
        RegisterFunction::new_async(move |data: Value| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(data);
                Ok::<Value, Error>(Value::Null)
            }
        }),
    );
    // 0.25 deprecates register_trigger for observe(), which the 0.23 engine lacks.
    #[allow(deprecated)]
    client.register_trigger(RegisterTriggerInput::new("subscribe", "test::lifecycle", json!({"topic": topic}))).expect("subscribe");
    client.wait_until_registered(WAIT).await.expect("the subscriber registers");
    (client, rx)
}

/// Publishes probes until one comes back: the subscription is live on the engine.
async fn until_subscribed(client: &sandbox_host::bridge::iii::iii_sdk::IIIClient, rx: &mut mpsc::UnboundedReceiver<Value>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let probe = TriggerRequest {
            function_id: "publish".into(),
            payload: json!({"topic": LIFECYCLE_TOPIC, "data": {"probe": true}}),
            action: Some(TriggerAction::Void),
            timeout_ms: None,
        };
        client.trigger(probe).await.expect("publish a probe");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the subscription never delivered a probe");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_created_then_stopped() {
    let Some(engine) = RealEngine::start().await else { return };
    let (client, mut rx) = subscriber(&engine.url(), LIFECYCLE_TOPIC).await;
    until_subscribed(&client, &mut rx).await;
    let (_sim, _host, bridge) = served(&engine, false).await;
    let created = caller::call(&engine, "sandbox::provider::e2b::create", json!({"image": "base"})).await.expect("create");
    let id = created["sandbox_id"].clone();
    caller::call(&engine, "sandbox::provider::e2b::stop", json!({"sandbox_id": id})).await.expect("stop");
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.len() < 2 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let data = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("got {events:?} of created+stopped; the engine's log:\n{}", engine.log()))
            .expect("the subscriber is running");
        if data["sandbox_id"] == id {
            events.push(data);
        }
    }
    let kinds: Vec<&Value> = events.iter().map(|e| &e["event"]).collect();
    assert_eq!(kinds, vec!["created", "stopped"]);
    for e in &events {
        assert_eq!((e["provider"].clone(), e["image"].clone()), (json!("e2b"), json!("base")), "{e}");
        assert!(e["at"].is_string() && e["host"].is_string(), "{e}");
    }
    bridge.shutdown().await;
    client.shutdown_async().await;
}
