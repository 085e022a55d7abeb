//! Issue 14 on the real engine: more than one host on one engine. Two hosts over the
//! same simulator keep one cap between them through the engine's `state::*`; the second
//! host waits as a standby and owns the ids within 10 s of the active host's connection
//! going; providers split across two hosts (`--providers`) are both reachable through
//! the router of either.

use super::workers::worker;
use super::*;
use provider_sims::morph::MorphSim;
use sandbox_host::bridge::iii::iii_sdk::protocol::TriggerRequest;
use sandbox_host::bridge::iii::iii_sdk::{Error as IiiError, IIIClient};
use sandbox_host::bridge::iii::{Role, Serving};
use sandbox_host::{Code, Leaf};
use serde_json::Value;
use std::sync::Arc;

const CAP: usize = 10;

/// A host over `sim` with `plugins`, bridged to `engine` as worker `name` with its slot
/// books in iii state.
async fn host(
    engine: &RealEngine,
    name: &str,
    plugins: Vec<PluginSetup>,
    tweak: impl FnOnce(&mut sandbox_host::config::HostConfig),
) -> (TestHost, Arc<Bridge>) {
    let env = [("E2B_API_KEY", SECRET), ("MORPH_API_KEY", SECRET)];
    let host = TestHost::start_with(plugins, &env, tweak).await;
    let serving = Serving { worker_name: Some(name.to_string()), shared_state: true };
    let bridge = Bridge::connect_with(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) }, &serving);
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    (host, bridge)
}

fn e2b(sim: &E2bSim) -> PluginSetup {
    // Room for every call at once: the cap, not the host's admission, is what refuses.
    let limits = "[limits]\nmax_calls_in_flight = 256\n";
    PluginSetup::new("e2b", format!("max_concurrent_sandboxes = {CAP}\nimage_allowlist = [\"base\"]\n{}{limits}", sim.policy_toml()))
}

async fn until_role(bridge: &Bridge, role: Role, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if bridge.serving_report().is_some_and(|r| r.role == role) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {} is not {role:?} after {within:?}: {:?}",
            bridge.worker_name(),
            bridge.serving_report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two hosts on `engine` over one e2b simulator: the first active, the second standby.
async fn active_and_standby(engine: &RealEngine) -> (E2bSim, TestHost, Arc<Bridge>, TestHost, Arc<Bridge>) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let (a, ab) = host(engine, "host-a", vec![e2b(&sim)], |_| {}).await;
    let ids: Vec<String> = a.host.registry.get("e2b").unwrap().leaves().into_iter().map(|l| provider_function_id("e2b", l)).collect();
    until_listed(engine, &ids).await;
    until_role(&ab, Role::Active, WAIT).await;
    let (b, bb) = host(engine, "host-b", vec![e2b(&sim)], |_| {}).await;
    until_role(&bb, Role::Standby, WAIT).await;
    (sim, a, ab, b, bb)
}

/// A worker that calls the engine as a caller would.
async fn load_driver(engine: &RealEngine) -> Arc<IIIClient> {
    let driver = Arc::new(worker(&engine.url(), "load-driver"));
    driver.wait_until_registered(WAIT).await.expect("the driver registers");
    driver
}

async fn trigger(client: &IIIClient, id: &str, payload: Value) -> Result<Value, (String, String)> {
    let mut request = TriggerRequest::new(id, payload);
    request.timeout_ms = Some(30_000);
    client.trigger(request).await.map_err(|e| match e {
        IiiError::Remote { code, message, .. } => (code, message),
        other => ("sdk".to_string(), other.to_string()),
    })
}

/// 200 creates at once against a cap of 10, half through the engine to the active host,
/// half straight into the standby's `Host::call` (as its E2B-compatible API would run
/// them): never more than 10 admitted between them, the refusals are all S400, and the
/// simulator runs exactly the admitted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_never_admit_past_one_shared_cap() {
    let Some(engine) = RealEngine::start().await else { return };
    let (sim, _a, ab, b, bb) = active_and_standby(&engine).await;
    let driver = load_driver(&engine).await;
    let started = std::time::Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (driver, standby) = (driver.clone(), b.host.clone());
        runs.spawn(async move {
            if i % 2 == 0 {
                trigger(&driver, "sandbox::provider::e2b::create", json!({"image": "base"})).await.map_err(|(code, _)| code)
            } else {
                standby.call("e2b", Leaf::Create, &json!({"image": "base"})).await.map_err(|e| e.code.as_str().to_string())
            }
        });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(done) = runs.join_next().await {
        match done.unwrap() {
            Ok(v) => {
                assert!(v["sandbox_id"].is_string(), "{v}");
                admitted += 1;
            }
            Err(code) => {
                assert_eq!(code, Code::CapReached.as_str(), "a refusal is the cap's, nothing else");
                refused += 1;
            }
        }
    }
    println!("200 creates on two hosts, cap {CAP}: {admitted} admitted, {refused} refused (S400) in {:?}", started.elapsed());
    assert!(admitted <= CAP, "{admitted} admitted past the cap of {CAP}");
    assert!(admitted > 0, "the cap admits some");
    assert_eq!(sim.live_count(), admitted, "the simulator runs exactly the admitted sandboxes");
    assert_eq!(b.host.book("e2b").in_flight().await.unwrap(), admitted, "both hosts read one count");
    let listed = trigger(&driver, "sandbox::provider::e2b::list", json!({})).await.expect("list");
    assert_eq!((listed["in_flight"].clone(), listed["reconciled"].clone()), (json!(admitted), json!(true)), "{listed}");
    ab.shutdown().await;
    bb.shutdown().await;
    driver.shutdown_async().await;
}

/// Load runs through the engine while the active host's connection goes (as when its
/// process dies): the standby owns every id within 10 s, the next calls succeed on it,
/// and once the dead host's last calls have settled a list makes the shared count what
/// the simulator runs (its pending slots dropped, what it created counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_within_10_s_and_the_count_matches_what_runs() {
    let Some(engine) = RealEngine::start().await else { return };
    let (sim, a, ab, b, bb) = active_and_standby(&engine).await;
    let driver = load_driver(&engine).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (driver, stop) = (driver.clone(), stop.clone());
        load.spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match trigger(&driver, "sandbox::provider::e2b::create", json!({"image": "base"})).await {
                    Ok(v) => {
                        ok += 1;
                        // Each task keeps its first sandbox and stops the others again, so
                        // the count moves both ways below the cap.
                        if ok > 1 {
                            let _ = trigger(&driver, "sandbox::provider::e2b::stop", json!({"sandbox_id": v["sandbox_id"]})).await;
                        }
                    }
                    // At the cap (S400), or lost with the host that died (the engine's error).
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, failed)
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = sim.live_count();
    // The active host's connection goes without a goodbye: no unregister, no drain.
    let killed = std::time::Instant::now();
    ab.client().shutdown_async().await;
    until_role(&bb, Role::Active, Duration::from_secs(10)).await;
    let owners = caller::owners(&engine, "sandbox::provider::e2b::").await;
    assert!(owners.values().all(|o| o == "host-b"), "the standby owns every id: {owners:?}");
    assert_eq!(bb.serving_report().map(|r| r.took_over), Some(bb.function_ids().len()), "every id counted as taken over once");
    let took = killed.elapsed();
    println!("standby owned the ids {took:?} after the active host's connection went ({before} sandboxes running then)");
    // Calls after the takeover succeed on the standby (one at the cap is S400, not lost).
    for _ in 0..3 {
        match trigger(&driver, "sandbox::provider::e2b::list", json!({})).await {
            Ok(v) => assert!(v["in_flight"].is_u64(), "{v}"),
            Err(e) => panic!("a list after the takeover failed: {e:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = load.join_next().await {
        let (o, f) = done.unwrap();
        ok += o;
        failed += f;
    }
    // The dead host's own calls end on their own (a real crash loses them mid-way).
    until("the dead host's calls ended", || ab.in_flight() == 0 && a.host.settling.running() == 0).await;
    let listed = trigger(&driver, "sandbox::provider::e2b::list", json!({})).await.expect("a list on the standby");
    println!(
        "load: {ok} creates admitted, {failed} refused or lost; {} sandboxes run, the count says {}",
        sim.live_count(),
        listed["in_flight"]
    );
    assert_eq!(listed["reconciled"], true, "{listed}");
    assert_eq!(listed["in_flight"], json!(sim.live_count()), "the slot count is what runs: {listed}");
    assert_eq!(b.host.book("e2b").in_flight().await.unwrap(), sim.live_count());
    let created = trigger(&driver, "sandbox::provider::e2b::create", json!({"image": "base"})).await;
    if sim.live_count() < CAP {
        assert!(created.is_ok(), "a create after the takeover succeeds: {created:?}");
    } else {
        assert_eq!(created.unwrap_err().0, "S400");
    }
    bb.shutdown().await;
    driver.shutdown_async().await;
}

/// `--providers`: host A serves e2b, host B morph, both with the router. A owns the bare
/// ids (first to claim them); a `sandbox::create` naming morph is forwarded by A's
/// router to B through the engine, one naming e2b runs on A, and S600 stays for a
/// provider nobody serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_split_across_two_hosts_are_both_reached_through_the_router() {
    let Some(engine) = RealEngine::start().await else { return };
    let e2b_sim = E2bSim::start(0, SECRET).await.unwrap();
    let morph_sim = MorphSim::start(0, SECRET).await.unwrap();
    let both = || vec![e2b(&e2b_sim), PluginSetup::new("morph", morph_sim.policy_toml())];
    let only = |p: &'static str| {
        move |c: &mut sandbox_host::config::HostConfig| {
            c.router = true;
            c.providers = Some([p.to_string()].into());
        }
    };
    let (a, ab) = host(&engine, "shard-e2b", both(), only("e2b")).await;
    assert_eq!(a.host.registry.names(), vec!["e2b".to_string()], "--providers leaves morph out");
    let deadline = tokio::time::Instant::now() + WAIT;
    while ab.router_report().is_none_or(|r| r.serving.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "A's router claim did not finish: {:?}", ab.router_report());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (b, bb) = host(&engine, "shard-morph", both(), only("morph")).await;
    assert_eq!(b.host.registry.names(), vec!["morph".to_string()]);
    until_listed(&engine, &[provider_function_id("morph", Leaf::Create), provider_function_id("e2b", Leaf::Create)]).await;
    let created = caller::call(&engine, "sandbox::create", json!({"provider": "morph", "image": "snapshot_base"})).await;
    let created = created.unwrap_or_else(|e| panic!("sandbox::create for morph through A's router: {e}"));
    assert_eq!(morph_sim.live_count(), 1, "{created}");
    let listed = caller::call(&engine, "sandbox::list", json!({"provider": "morph"})).await.expect("morph list");
    assert_eq!(listed["sandboxes"][0]["sandbox_id"], created["sandbox_id"]);
    let e = caller::call(&engine, "sandbox::create", json!({"provider": "morph", "image": ""})).await.unwrap_err();
    assert_eq!(e["code"], "S422", "B's own code comes back unchanged: {e}");
    let e2b_made = caller::call(&engine, "sandbox::create", json!({"provider": "e2b", "image": "base"})).await.expect("e2b on A");
    assert_eq!(e2b_sim.live_count(), 1, "{e2b_made}");
    let stopped = caller::call(&engine, "sandbox::stop", json!({"provider": "morph", "sandbox_id": created["sandbox_id"]})).await;
    assert_eq!(stopped.expect("morph stop"), json!({"sandbox_id": created["sandbox_id"], "stopped": true}));
    assert_eq!(morph_sim.live_count(), 0);
    let e = caller::call(&engine, "sandbox::create", json!({"provider": "daytona", "image": "x"})).await.unwrap_err();
    assert_eq!(e["code"], "S600", "{e}");
    ab.shutdown().await;
    bb.shutdown().await;
}
