//! The host on the real iii engine (`../shared/engine/iii`): what the mock engine in
//! `tests/bridge` cannot prove, because it is the engine's own handling of the SDK's
//! frames that decides the outcome: reconnect repair, streaming exec over the engine's
//! channels (`streaming.rs`), the opt-in router next to a worker named `iii-sandbox`
//! (`router.rs`), lifecycle events through its pub/sub (`lifecycle.rs`). Every engine
//! runs on 127.0.0.1 in its own scratch directory; where the engine binary is absent each
//! test says so in one line and passes.

mod caller;
mod contract;
#[path = "../bridge/contract_cases.rs"]
mod contract_cases;
mod hosts;
mod lifecycle;
mod real_engine;
#[path = "../bridge/recorder.rs"]
mod recorder;
mod router;
mod streaming;
#[path = "../bridge/workers.rs"]
mod workers;

use provider_sims::e2b::E2bSim;
use real_engine::RealEngine;
use sandbox_host::bridge::iii::{provider_function_id, Bridge, BridgeOptions};
use sandbox_host::plugin::watch::ReloadListener;
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Longer than the SDK's replay plus the bridge's check after a reconnect.
const SETTLE: Duration = Duration::from_secs(4);

/// Waits until the engine lists every id in `ids` (under `sandbox::`).
async fn until_listed(engine: &RealEngine, ids: &[String]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = caller::listed(engine, "sandbox::").await;
        let missing: Vec<&String> = ids.iter().filter(|id| !listed.contains(id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine still lacks {missing:?} after {WAIT:?}; it lists {listed:?}; its log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The e2b simulator, a host over it (router on or off) and its bridge on `engine`, once
/// the engine lists every provider id.
async fn served(engine: &RealEngine, router: bool) -> (E2bSim, TestHost, std::sync::Arc<Bridge>) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!("image_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let host = TestHost::start_with(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)], |c| c.router = router).await;
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    let ids: Vec<String> = host.host.registry.get("e2b").unwrap().leaves().into_iter().map(|l| provider_function_id("e2b", l)).collect();
    until_listed(engine, &ids).await;
    (sim, host, bridge)
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 17 item 3: e2b removed and re-added while the engine is down (a deploy that
/// deletes and recopies the plugin during an engine restart) has every
/// `sandbox::provider::e2b::*` id on the engine once it is back, and answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_3_functions_do_not_vanish_after_a_reconnect() {
    let Some(mut engine) = RealEngine::start().await else { return };
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!("image_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let host = TestHost::start(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)]).await;
    let e2b_ids: Vec<String> =
        host.host.registry.get("e2b").unwrap().leaves().into_iter().map(|l| provider_function_id("e2b", l)).collect();
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    until_listed(&engine, &bridge.function_ids()).await;

    engine.kill().await;
    until("the bridge sees the engine gone", || !bridge.is_connected()).await;
    host.host.registry.remove("e2b").unwrap();
    bridge.removed("e2b");
    let plugin = host.host.loader.load_file(&host.dir.path().join("e2b.wasm")).await.expect("e2b loads again");
    host.host.registry.insert(plugin);
    bridge.installed(&host.host.registry.get("e2b").unwrap());
    engine.restart().await;

    until_listed(&engine, &e2b_ids).await;
    // A stale unregister would land right after the replay: look again once it would have.
    tokio::time::sleep(SETTLE).await;
    let listed = caller::listed(&engine, "sandbox::").await;
    let missing: Vec<String> = bridge.function_ids().into_iter().filter(|id| !listed.contains(id)).collect();
    assert!(missing.is_empty(), "the engine lost {missing:?} after the reconnect; its log:\n{}", engine.log());
    let created = caller::call(&engine, "sandbox::provider::e2b::create", json!({"image": "base"})).await;
    let created = created.unwrap_or_else(|e| panic!("sandbox::provider::e2b::create through the engine failed: {e}"));
    assert!(created["sandbox_id"].is_string(), "{created}");
    assert_eq!(sim.live_count(), 1);
    bridge.shutdown().await;
}
