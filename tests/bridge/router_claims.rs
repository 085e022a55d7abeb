//! Issue 9 §2: the opt-in router registers only the bare ids no other worker owns, both
//! when the other worker was there first and when its registration landed between the
//! router's list and its own registration (the engine then refuses ours).

use super::workers::owning;
use super::*;
use sandbox_host::bridge::iii::RouterReport;
use std::collections::BTreeMap;

/// A router host on `engine`, once its claim finished.
async fn router_host(engine: &MockEngine) -> (E2bSim, TestHost, Arc<Bridge>, RouterReport) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!("image_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let host = TestHost::start_with(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)], |c| c.router = true).await;
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        if let Some(r) = bridge.router_report() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "the router's claim did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (sim, host, bridge, report)
}

fn bare_ids_except(except: &str) -> Vec<String> {
    Leaf::ALL.into_iter().map(router_function_id).filter(|id| id != except).collect()
}

async fn assert_other_worker_keeps_create(engine: &MockEngine, bridge: &Bridge, report: &RouterReport) {
    assert_eq!(report.left_alone, BTreeMap::from([("sandbox::create".to_string(), "iii-sandbox".to_string())]));
    assert_eq!(report.serving, sorted(bare_ids_except("sandbox::create")));
    assert!(report.unconfirmed.is_empty(), "{report:?}");
    assert_eq!(engine.owner("sandbox::create").as_deref(), Some("iii-sandbox"));
    for id in bare_ids_except("sandbox::create") {
        assert_eq!(engine.owner(&id).as_deref(), Some(bridge.worker_name()), "{id}");
    }
    assert!(!bridge.function_ids().contains(&"sandbox::create".to_string()), "the host does not keep a refused id");
    let answer = engine.invoke("sandbox::create", json!({"image": "base"})).await.unwrap();
    assert_eq!(answer, json!({"served_by": "iii-sandbox", "id": "sandbox::create"}));
    let created = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string(), "{created}");
    let listed = engine.invoke("sandbox::list", json!({"provider": "e2b"})).await.unwrap();
    assert_eq!(listed["in_flight"], 1, "the bare ids the host took are routed to its providers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_leaves_an_id_another_worker_owns_alone() {
    let engine = MockEngine::start(0).await;
    let _daemon = owning(&engine.url(), "iii-sandbox", &["sandbox::create"]).await;
    eventually("the other worker owns sandbox::create", || engine.owner("sandbox::create").as_deref() == Some("iii-sandbox")).await;
    let (_sim, _host, bridge, report) = router_host(&engine).await;
    assert_other_worker_keeps_create(&engine, &bridge, &report).await;
    let ours = engine.frames().iter().filter(|f| f["type"] == "registerfunction" && f["id"] == "sandbox::create").count();
    assert_eq!(ours, 1, "only the other worker ever registered sandbox::create");
}

/// The other worker's registration lands after the router listed: the engine refuses
/// ours, and the check after registering gives the id up and reports its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_engine_refused_after_the_list_is_given_up() {
    let engine = MockEngine::start(0).await;
    let _daemon = owning(&engine.url(), "iii-sandbox", &["sandbox::create"]).await;
    eventually("the other worker owns sandbox::create", || engine.owner("sandbox::create").as_deref() == Some("iii-sandbox")).await;
    engine.hide_until_contested("sandbox::create");
    let (_sim, _host, bridge, report) = router_host(&engine).await;
    let attempts = engine.frames().iter().filter(|f| f["type"] == "registerfunction" && f["id"] == "sandbox::create").count();
    assert_eq!(attempts, 2, "the router did try, the engine refused it");
    assert_other_worker_keeps_create(&engine, &bridge, &report).await;
}
