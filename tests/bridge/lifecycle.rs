//! Issue 9 §1: every lifecycle event the host emits is published on `sandbox.lifecycle`
//! with the engine's `publish` builtin, data = the event's JSON, in order.

use super::*;
use sandbox_host::bridge::iii::LIFECYCLE_TOPIC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_stop_are_published_in_order_with_the_event_shape() {
    let w = world(|_| {}).await;
    let created = w.engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    w.engine.invoke("sandbox::stop", json!({"provider": "e2b", "sandbox_id": id})).await.unwrap();
    let ours = || -> Vec<Value> { w.engine.published().into_iter().filter(|p| p["data"]["sandbox_id"] == id.as_str()).collect() };
    eventually("both events are published", || ours().len() >= 2).await;
    let published = ours();
    assert_eq!(published.len(), 2, "{published:?}");
    let events: Vec<&Value> = published.iter().map(|p| &p["data"]["event"]).collect();
    assert_eq!(events, vec!["created", "stopped"]);
    for p in &published {
        assert_eq!(p["topic"], LIFECYCLE_TOPIC);
        let data = p["data"].as_object().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["at", "event", "host", "image", "provider", "sandbox_id"]);
        assert_eq!((p["data"]["provider"].clone(), p["data"]["image"].clone()), (json!("e2b"), json!("base")));
        assert!(sandbox_tests::is_rfc3339(p["data"]["at"].as_str().unwrap()), "{p}");
    }
    // Fire-and-forget: nothing waits on the engine's answer.
    let publishes: Vec<Value> = w.engine.frames().into_iter().filter(|f| f["function_id"] == "publish").collect();
    assert!(publishes.iter().all(|f| f["invocation_id"].is_null() && f["action"]["type"] == "void"), "{publishes:?}");
}
