//! Issue 9 §2 on the real engine: a worker named `iii-sandbox` (as the engine's sandbox
//! daemon is) registers `sandbox::create` first; a host started with the router leaves
//! that id to it, registers the other bare ids, and its provider ids keep working.

use super::workers::owning;
use super::*;
use sandbox_host::bridge::iii::router_function_id;
use sandbox_host::Leaf;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_leaves_sandbox_create_to_the_iii_sandbox_worker() {
    let Some(engine) = RealEngine::start().await else { return };
    let daemon = owning(&engine.url(), "iii-sandbox", &["sandbox::create"]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while caller::owners(&engine, "sandbox::").await.get("sandbox::create").map(String::as_str) != Some("iii-sandbox") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine never listed iii-sandbox's sandbox::create; its log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_sim, _host, bridge) = served(&engine, true).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let report = loop {
        if let Some(r) = bridge.router_report() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "the router's claim did not finish; the engine's log:\n{}", engine.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let others: Vec<String> = Leaf::ALL.into_iter().map(router_function_id).filter(|id| id != "sandbox::create").collect();
    assert_eq!(report.left_alone, BTreeMap::from([("sandbox::create".to_string(), "iii-sandbox".to_string())]));
    assert_eq!(
        report.serving,
        {
            let mut o = others.clone();
            o.sort();
            o
        },
        "{report:?}"
    );
    let owners = caller::owners(&engine, "sandbox::").await;
    assert_eq!(owners.get("sandbox::create").map(String::as_str), Some("iii-sandbox"));
    for id in &others {
        assert_eq!(owners.get(id).map(String::as_str), Some(bridge.worker_name()), "{id}: {owners:?}");
    }
    let answer = caller::call(&engine, "sandbox::create", json!({"image": "base"})).await.expect("sandbox::create answers");
    assert_eq!(answer, json!({"served_by": "iii-sandbox", "id": "sandbox::create"}), "invoking it reaches the other worker");
    let created = caller::call(&engine, "sandbox::provider::e2b::create", json!({"image": "base"})).await;
    let created = created.unwrap_or_else(|e| panic!("sandbox::provider::e2b::create failed: {e}"));
    let listed = caller::call(&engine, "sandbox::list", json!({"provider": "e2b"})).await.expect("sandbox::list is ours");
    assert_eq!(listed["sandboxes"][0]["sandbox_id"], created["sandbox_id"]);
    bridge.shutdown().await;
    daemon.shutdown_async().await;
}
