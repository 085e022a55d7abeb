//! The host as an iii worker, driven through a mock engine that speaks the engine's
//! WebSocket frames to the real `iii-sdk` client: registration (exact ids, no absent
//! optional leaf), invocation with engine-injected fields, S-codes as iii error codes,
//! the router (S600, S404, pass-through), HTTP triggers (several on one function, a
//! route bound twice), engine restart with re-registration (a plugin reloaded while the
//! engine is away, a registration the engine lost), and draining shutdown with a call in
//! flight. The same reconnect case on the real engine is `tests/engine`.
//!
//! Beside it: streaming exec over a channel (`stream.rs`), the opt-in router's claims
//! next to another worker (`router_claims.rs`), lifecycle events published on
//! `sandbox.lifecycle` (`lifecycle.rs`), `sandbox-host call exec --stream`
//! (`cli_stream.rs`), and the CLI with its stdout closed by the reader (`cli_pipe.rs`).

mod cli_pipe;
mod cli_stream;
mod contract_cases;
mod lifecycle;
mod recorder;
mod router_claims;
mod shared_book;
mod stream;
mod workers;

use provider_sims::e2b::E2bSim;
use provider_sims::Fault;
use sandbox_host::bridge::iii::{provider_function_id, router_function_id, Bridge, BridgeOptions};
use sandbox_host::config::{HostConfig, HttpTrigger};
use sandbox_host::plugin::watch::ReloadListener;
use sandbox_host::Leaf;
use sandbox_tests::mock_engine::MockEngine;
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

struct World {
    sim: E2bSim,
    host: TestHost,
    engine: MockEngine,
    bridge: Arc<Bridge>,
}

/// A host with the router enabled, on a mock engine that sees every id registered.
async fn world(tweak: impl FnOnce(&mut sandbox_host::config::HostConfig)) -> World {
    world_with(&[], tweak).await
}

/// A world whose engine must see the standard ids plus `extra`.
async fn world_with(extra: &[&str], tweak: impl FnOnce(&mut sandbox_host::config::HostConfig)) -> World {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!("image_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let with_router = |c: &mut HostConfig| {
        c.router = true;
        tweak(c)
    };
    let host = TestHost::start_with(vec![PluginSetup::new("e2b", policy)], &[("E2B_API_KEY", SECRET)], with_router).await;
    let engine = MockEngine::start(0).await;
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    let mut ids = expected_ids(true).await;
    ids.extend(extra.iter().map(|s| s.to_string()));
    engine.wait_for_functions(&ids, WAIT).await;
    World { sim, host, engine, bridge }
}

/// The leaves the built e2b plugin declares (they grow with the plugin; what is checked
/// here is that exactly they, and no absent leaf, are registered).
async fn e2b_leaves() -> Vec<Leaf> {
    static LEAVES: tokio::sync::OnceCell<Vec<Leaf>> = tokio::sync::OnceCell::const_new();
    LEAVES
        .get_or_init(|| async {
            let h = TestHost::start(vec![PluginSetup::new("e2b", "")], &[]).await;
            h.host.registry.get("e2b").expect("e2b loads").leaves()
        })
        .await
        .clone()
}

async fn expected_ids(router: bool) -> Vec<String> {
    let mut ids: Vec<String> = e2b_leaves().await.into_iter().map(|l| provider_function_id("e2b", l)).collect();
    if router {
        ids.extend(Leaf::ALL.into_iter().map(router_function_id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_exactly_the_plugins_leaves_and_the_router_with_schemas() {
    let w = world(|_| {}).await;
    assert_eq!(w.bridge.function_ids(), {
        let mut e = expected_ids(true).await;
        e.sort();
        e
    });
    // No optional leaf e2b lacks is registered for the provider; each is a router id.
    let offered = e2b_leaves().await;
    for leaf in Leaf::ALL.into_iter().filter(|l| !offered.contains(l)) {
        assert!(w.engine.function(&provider_function_id("e2b", leaf)).is_none(), "{leaf}");
        assert!(w.engine.function(&router_function_id(leaf)).is_some(), "{leaf}");
    }
    let create = w.engine.function("sandbox::provider::e2b::create").unwrap();
    assert!(create["description"].as_str().unwrap().starts_with("Start a sandbox"));
    assert_eq!(create["request_format"]["required"], json!(["image"]));
    assert_eq!(create["response_format"]["required"], json!(["sandbox_id", "image", "capabilities", "started_at", "state"]));
    let routed = w.engine.function("sandbox::fs::read").unwrap();
    assert_eq!(routed["request_format"]["properties"]["provider"]["type"], "string");
}

/// The shared contract cases (`contract_cases.rs`, also run on the real engine) on a
/// mock engine: e2b and a plugin without optional leaves, router on.
async fn contract_world() -> (E2bSim, TestHost, MockEngine, Arc<Bridge>) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let host = TestHost::start_with(contract_cases::plugins(&sim), &[("E2B_API_KEY", SECRET)], |c| c.router = true).await;
    assert!(host.diagnostics.is_empty(), "{:?}", host.diagnostics);
    let engine = MockEngine::start(0).await;
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    let mut ids: Vec<String> = Leaf::ALL.iter().map(|l| router_function_id(*l)).collect();
    for name in ["e2b", contract_cases::LEAFLESS] {
        ids.extend(host.host.registry.get(name).unwrap().leaves().into_iter().map(|l| provider_function_id(name, l)));
    }
    engine.wait_for_functions(&ids, WAIT).await;
    (sim, host, engine, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_functions_answer_with_the_contract_shapes() {
    let (sim, host, engine, _bridge) = contract_world().await;
    contract_cases::provider_functions_answer_with_the_contract_shapes(&engine, &sim).await;
    // The same call through `sandbox-host call`'s path gives the same shape.
    let listed = engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap();
    let direct = host.ok("e2b", Leaf::List, json!({})).await;
    assert_eq!(direct.as_object().unwrap().keys().collect::<Vec<_>>(), listed.as_object().unwrap().keys().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_callers_as_s_codes() {
    let (_sim, _host, engine, _bridge) = contract_world().await;
    contract_cases::errors_reach_callers_as_s_codes(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_dispatches_in_process_and_passes_codes_through() {
    let (sim, _host, engine, _bridge) = contract_world().await;
    contract_cases::the_router_dispatches_in_process_and_passes_codes_through(&engine, &sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_provider_serves_calls_that_name_none() {
    let w = world(|c| c.default_provider = Some("e2b".into())).await;
    let listed = w.engine.invoke("sandbox::list", json!({})).await.unwrap();
    assert_eq!(listed["reconciled"], true);
}

/// Issue 9 §2: the router is opt-in; by default only the provider ids are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_is_off_by_default() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let host = TestHost::start(vec![PluginSetup::new("e2b", sim.policy_toml())], &[("E2B_API_KEY", SECRET)]).await;
    assert!(!host.host.config.router);
    let engine = MockEngine::start(0).await;
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.unwrap();
    engine.wait_for_functions(&expected_ids(false).await, WAIT).await;
    // Past the point where an enabled router would have listed and claimed its ids.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(engine.function_ids(), sorted(expected_ids(false).await));
    assert_eq!(bridge.router_report(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_triggers_bind_an_adapter_that_speaks_http_envelopes() {
    let w = world_with(&["sandbox::create::http"], |c| {
        c.http_triggers = vec![HttpTrigger { function: "sandbox::create".into(), path: "sandbox/create".into(), method: "post".into() }]
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.engine.triggers().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = &w.engine.triggers()[0];
    assert_eq!((t["trigger_type"].clone(), t["function_id"].clone()), (json!("http"), json!("sandbox::create::http")));
    assert_eq!(t["config"], json!({"api_path": "sandbox/create", "http_method": "POST"}));
    let envelope = |body: Value| json!({"method": "POST", "path": "/sandbox/create", "headers": {}, "query_params": {}, "path_params": {}, "body": body});
    let ok = w.engine.invoke("sandbox::create::http", envelope(json!({"provider": "e2b", "image": "base"}))).await.unwrap();
    assert_eq!(ok["status_code"], 200);
    assert!(ok["body"]["sandbox_id"].is_string());
    let bad = w.engine.invoke("sandbox::create::http", envelope(json!({"provider": "e2b", "image": 3}))).await.unwrap();
    assert_eq!((bad["status_code"].clone(), bad["body"]["code"].clone()), (json!(422), json!("S422")));
}

/// The SDK dials from a thread of its own: a dropped bridge closes its connection and
/// never dials again (else a later test's server on the freed port saw its `GET /`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_bridge_closes_its_engine_connection_and_stops_dialling() {
    let World { engine, bridge, host, sim } = world(|_| {}).await;
    assert_eq!(engine.live_connections(), 1);
    let dialled = engine.connections();
    drop(bridge);
    let deadline = tokio::time::Instant::now() + WAIT;
    while engine.live_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the dropped bridge's connection is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Longer than the SDK's 2 s reconnect delay.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(engine.connections(), dialled, "a dropped bridge dialled the engine again");
    drop((host, sim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_re_registers_everything_and_serves_the_next_call() {
    let w = world(|_| {}).await;
    let port = w.engine.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let engine = MockEngine::start(port).await;
    engine.wait_for_functions(&expected_ids(true).await, Duration::from_secs(20)).await;
    let frames = engine.frames();
    assert_eq!(frames[0]["type"], "reattach", "the first frame after a reconnect is reattach: {}", frames[0]);
    assert_eq!(frames[0]["previous_worker_id"], "worker-1");
    let listed = engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap();
    assert_eq!(listed["reconciled"], true);
    drop(w.host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_call_in_flight_and_refuses_new_ones() {
    let w = world(|_| {}).await;
    w.sim.api.inject(Fault::new("GET", "/v2/sandboxes", 200, "[]").delay(Duration::from_millis(1500)));
    let engine = Arc::new(w.engine);
    let slow = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.invoke("sandbox::provider::e2b::list", json!({})).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.bridge.in_flight() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.bridge.in_flight(), 1);
    let bridge = w.bridge.clone();
    let drain = tokio::spawn(async move { bridge.drain(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap_err();
    assert_eq!(refused.code, "S502");
    assert!(refused.message.contains("shutting down"), "{}", refused.message);
    assert!(drain.await.unwrap(), "the in-flight call finished within the grace period");
    let listed = slow.await.unwrap().expect("the in-flight call got its answer");
    assert_eq!((listed["reconciled"].clone(), listed["in_flight"].clone()), (json!(true), json!(0)));
    w.bridge.shutdown().await;
    let unregistered = engine.frames().iter().filter(|f| f["type"] == "unregisterfunction").count();
    assert_eq!(unregistered, expected_ids(true).await.len(), "shutdown unregisters every function");
}

/// The real binary: `sandbox-host serve` registers, answers, and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_command_registers_answers_and_exits_cleanly_on_sigterm() {
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sandbox_tests::plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), format!("max_concurrent_sandboxes = 2\n{}", sim.policy_toml())).unwrap();
    // One sandbox already runs upstream: serve learns it at start, so the cap of 2 leaves one.
    sim.create_out_of_band("base");
    let engine = MockEngine::start(0).await;
    let mut child = tokio::process::Command::new(&bin)
        .args(["serve", "--router", "--otel", "false", "--plugins-dir"])
        .arg(dir.path())
        .env("III_URL", engine.url())
        .env("E2B_API_KEY", SECRET)
        .env("SANDBOX_CACHE_DIR", sandbox_tests::root().join("target/test-plugin-cache-bin"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    engine.wait_for_functions(&expected_ids(true).await, Duration::from_secs(60)).await;
    let created = engine.invoke("sandbox::create", json!({"provider": "e2b", "image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string());
    let e = engine.invoke("sandbox::create", json!({"provider": "e2b", "image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S400", "the sandbox that ran before the start counts: {}", e.message);
    let e = engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": "s", "cmd": ""})).await.unwrap_err();
    assert_eq!(e.code, "S422");
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_engine_dies_ends_with_a_clear_error_and_the_host_recovers() {
    let w = world(|_| {}).await;
    w.sim.api.inject(Fault::new("GET", "/v2/sandboxes", 200, "[]").delay(Duration::from_millis(1500)));
    let engine = Arc::new(w.engine);
    let pending = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.invoke("sandbox::provider::e2b::list", json!({})).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.bridge.in_flight() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.crash().await;
    let port = engine.port;
    let started = std::time::Instant::now();
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.code, "connection_lost", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the caller is not left hanging");
    // The host finishes the call on its side, then serves the next one after reattaching.
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.bridge.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.bridge.in_flight(), 0, "the in-flight call finished");
    let engine = MockEngine::start(port).await;
    engine.wait_for_functions(&expected_ids(true).await, Duration::from_secs(20)).await;
    assert_eq!(engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap()["reconciled"], true);
}

/// `serve --metrics-addr` exposes Prometheus text and JSON, and `sandbox-host stats` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed_and_shown_by_the_stats_command() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(|_| {}).await;
    w.engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap();
    w.engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": "gone", "cmd": "ls"})).await.unwrap_err();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let addr = sandbox_host::cli::stats::serve_metrics(w.host.host.clone(), "127.0.0.1:0".parse().unwrap(), rx).await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    assert!(text.contains("sandbox_plugin_calls_total{plugin=\"e2b\",leaf=\"list\"} 1"), "{text}");
    assert!(text.contains("sandbox_plugin_errors_total{plugin=\"e2b\",leaf=\"exec\",code=\"S410\"} 1"), "{text}");
    assert!(text.contains(&format!("sandbox_plugin_egress_requests_total{{plugin=\"e2b\",host=\"{}\"}}", w.sim.api.authority())), "{text}");
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    let out = tokio::process::Command::new(bin).args(["stats", "--metrics-addr", &addr.to_string()]).output().await.unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.lines().any(|l| l.starts_with("e2b ") && l.contains("\"S410\":1")), "{shown}");
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a deploy that deletes and recopies a plugin does to the bridge.
async fn remove_and_re_add(host: &TestHost, bridge: &Bridge, name: &str) {
    host.host.registry.remove(name).expect("the plugin is loaded");
    bridge.removed(name);
    let plugin = host.host.loader.load_file(&host.dir.path().join(format!("{name}.wasm"))).await.expect("the plugin loads again");
    host.host.registry.insert(plugin);
    bridge.installed(&host.host.registry.get(name).unwrap());
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Issue 17 item 3: no unregister queued while the engine was away reaches it after the
/// SDK's replay, so a plugin removed and re-added meanwhile keeps every id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_3_a_plugin_reloaded_while_the_engine_is_away_keeps_its_functions() {
    let w = world(|_| {}).await;
    let port = w.engine.stop().await;
    eventually("the bridge sees the engine gone", || !w.bridge.is_connected()).await;
    remove_and_re_add(&w.host, &w.bridge, "e2b").await;
    let engine = MockEngine::start(port).await;
    engine.wait_for_functions(&expected_ids(true).await, Duration::from_secs(20)).await;
    // Past the replay's trailing frames and the check after the reconnect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.function_ids(), sorted(expected_ids(true).await));
    let unregistered: Vec<Value> = engine.frames().into_iter().filter(|f| f["type"] == "unregisterfunction").collect();
    assert!(unregistered.is_empty(), "no unregister reached the returning engine: {unregistered:?}");
    let created = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string());
}

/// Issue 17 item 3, the backstop: after a reconnect the bridge reads the engine's function
/// list, and registers again what the engine lacks (here a registration it lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_3_a_function_the_engine_lacks_after_a_reconnect_is_registered_again() {
    let w = world(|_| {}).await;
    let create = provider_function_id("e2b", Leaf::Create);
    let port = w.engine.stop().await;
    let engine = MockEngine::start_losing(port, std::slice::from_ref(&create)).await;
    engine.wait_for_functions(&expected_ids(true).await, Duration::from_secs(20)).await;
    let registered = engine.frames().iter().filter(|f| f["type"] == "registerfunction" && f["id"] == create.as_str()).count();
    assert_eq!(registered, 2, "lost once by the engine, then registered again by the bridge");
    let created = engine.invoke(&create, json!({"image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string());
}

fn list_route(method: &str, path: &str) -> HttpTrigger {
    HttpTrigger { function: "sandbox::list".into(), path: path.into(), method: method.into() }
}

/// Issue 17 item 7: GET and POST of one function register one adapter, which both
/// triggers point at (the second adapter used to panic the SDK, exiting 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_7_two_http_triggers_on_one_function_share_one_adapter() {
    let w = world_with(&["sandbox::list::http"], |c| {
        c.default_provider = Some("e2b".into());
        c.http_triggers = vec![list_route("GET", "sandbox/list"), list_route("POST", "sandbox/list")];
    })
    .await;
    eventually("both triggers are registered", || w.engine.triggers().len() == 2).await;
    let adapters = w.engine.frames().iter().filter(|f| f["type"] == "registerfunction" && f["id"] == "sandbox::list::http").count();
    assert_eq!(adapters, 1);
    // The SDK sends the two registrations from separate tasks, so their order is not fixed.
    let mut bound: Vec<(String, String)> = w
        .engine
        .triggers()
        .iter()
        .map(|t| (t["function_id"].as_str().unwrap_or("").into(), t["config"]["http_method"].as_str().unwrap_or("").into()))
        .collect();
    bound.sort();
    assert_eq!(bound, vec![("sandbox::list::http".into(), "GET".into()), ("sandbox::list::http".into(), "POST".into())]);
    let envelope = json!({"method": "GET", "path": "/sandbox/list", "headers": {}, "query_params": {}, "path_params": {}, "body": null});
    let listed = w.engine.invoke("sandbox::list::http", envelope).await.unwrap();
    assert_eq!((listed["status_code"].clone(), listed["body"]["reconciled"].clone()), (json!(200), json!(true)));
    // A config built in code skips the load check; the bridge refuses the route too.
    let refused = w.bridge.register_http_trigger(&list_route("get", "/sandbox/list")).unwrap_err();
    assert_eq!(refused, "GET /sandbox/list is already bound to sandbox::list");
}

/// Issue 17 item 7: the same method and path bound twice is refused when the host config
/// is loaded, naming both bindings; two methods on one path are two routes.
#[test]
fn i17_7_a_route_bound_twice_is_refused_at_load_naming_both_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox-host.toml");
    let binding = |function: &str, path: &str, method: &str| {
        format!("[[http_triggers]]\nfunction = \"{function}\"\npath = \"{path}\"\nmethod = \"{method}\"\n")
    };
    let twice = binding("sandbox::list", "sandbox/list", "GET") + &binding("sandbox::provider::e2b::list", "/sandbox/list", "get");
    std::fs::write(&path, twice).unwrap();
    let err = HostConfig::load(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: http_triggers #1 (GET sandbox/list -> sandbox::list) and #2 (get /sandbox/list -> sandbox::provider::e2b::list) bind the same route GET sandbox/list; keep one of them",
            path.display()
        )
    );
    std::fs::write(&path, binding("sandbox::list", "sandbox/list", "GET") + &binding("sandbox::list", "sandbox/list", "POST")).unwrap();
    assert_eq!(HostConfig::load(&path).unwrap().http_triggers.len(), 2);
}
