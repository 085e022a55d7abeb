//! Issue 14, the faults the real engine cannot be made to show on demand: a shared slot
//! book whose `state::*` calls fail, and a host whose engine is gone. Both fail closed: a
//! create is refused with S502 naming the shared book, and nothing reaches the upstream.
//! Once state answers again the same create runs and is counted there.

use super::*;
use sandbox_host::bridge::iii::Serving;
use sandbox_host::policy::shared_book::SCOPE;

async fn shared_host(engine: &MockEngine) -> (E2bSim, TestHost, Arc<Bridge>) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!("max_concurrent_sandboxes = 2\nimage_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let host = TestHost::start(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)]).await;
    let serving = Serving { worker_name: Some("shared-host".into()), shared_state: true };
    let bridge = Bridge::connect_with(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) }, &serving);
    bridge.wait_registered(WAIT).await.unwrap();
    let ids: Vec<String> = host.host.registry.get("e2b").unwrap().leaves().into_iter().map(|l| provider_function_id("e2b", l)).collect();
    engine.wait_for_functions(&ids, WAIT).await;
    (sim, host, bridge)
}

fn creates_sent(sim: &E2bSim) -> usize {
    sim.api.requests().iter().filter(|r| r.method == "POST" && matches!(r.path.as_str(), "/sandboxes" | "/v2/sandboxes")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_refused_with_s502_when_the_shared_book_cannot_be_reached() {
    let engine = MockEngine::start(0).await;
    let (sim, host, bridge) = shared_host(&engine).await;
    engine.set_state_down(true);
    let e = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S502", "{}", e.message);
    assert!(
        e.message.contains("the slot book shared through iii state could not be used")
            && e.message.contains("STATE_ERROR")
            && e.message.contains("nothing was sent upstream"),
        "{}",
        e.message
    );
    assert_eq!((creates_sent(&sim), sim.live_count()), (0, 0), "nothing reached the upstream");
    let listed = engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap_err();
    assert_eq!(listed.code, "S502", "a list cannot say the count either: {}", listed.message);

    engine.set_state_down(false);
    let created = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string(), "{created}");
    let counter = engine.state_value(SCOPE, "e2b");
    assert_eq!(counter["live"], 1, "counted in the engine's state: {counter}");
    assert_eq!(counter["pending:shared-host"], 0, "{counter}");
    assert_eq!(host.host.registry.book("e2b").in_flight(), 0, "not in the in-process book");

    // The engine gone: the host's own calls (its E2B API, say) are refused the same way.
    engine.crash().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while bridge.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "the bridge still thinks it is connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = host.err("e2b", Leaf::Create, json!({"image": "base"}), sandbox_host::Code::Unavailable).await;
    assert!(e.contains("not connected to its iii engine"), "{e}");
    assert_eq!(creates_sent(&sim), 1, "only the admitted create reached the upstream");
}

/// Active and standby on the mock engine, whose ownership rule is the engine's (the first
/// live registrant keeps an id): the second host's ids are refused, it reports itself a
/// standby, and once the first host's connection goes it owns them and serves the next
/// call, counted in the same shared book.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_owns_the_ids_once_the_active_hosts_connection_goes() {
    use sandbox_host::bridge::iii::Role;
    let engine = MockEngine::start(0).await;
    let (sim, _a, active) = shared_host(&engine).await;
    let policy = format!("max_concurrent_sandboxes = 2\nimage_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let b = TestHost::start(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)]).await;
    let serving = Serving { worker_name: Some("standby-host".into()), shared_state: true };
    let standby = Bridge::connect_with(b.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) }, &serving);
    standby.wait_registered(WAIT).await.unwrap();
    eventually("the second host is a standby", || standby.serving_report().is_some_and(|r| r.role == Role::Standby)).await;
    eventually("the first host is active", || active.serving_report().is_some_and(|r| r.role == Role::Active)).await;
    let created = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    assert_eq!(engine.owner("sandbox::provider::e2b::create").as_deref(), Some("shared-host"));

    active.client().shutdown_async().await;
    eventually("the standby owns every id", || {
        standby.serving_report().is_some_and(|r| r.role == Role::Active)
            && engine.owner("sandbox::provider::e2b::create").as_deref() == Some("standby-host")
    })
    .await;
    assert_eq!(standby.serving_report().unwrap().took_over, standby.function_ids().len());
    let again = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    assert_ne!(again["sandbox_id"], created["sandbox_id"]);
    let e = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S400", "the first host's sandbox still counts on the standby: {}", e.message);
    standby.shutdown().await;
}
