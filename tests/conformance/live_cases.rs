//! The case list `sandbox-host conformance` runs (`sandbox_host::conformance`), run here
//! against the E2B, Morph, Daytona and Vercel simulators through the very path the command takes
//! (`Target` → `Session::start` → `Session::run`): every check passes, each lists the
//! upstream calls it made, and the clean-up leaves nothing running upstream — also when a
//! check fails midway.

use provider_sims::daytona::DaytonaSim;
use provider_sims::e2b::E2bSim;
use provider_sims::morph::MorphSim;
use provider_sims::vercel::VercelSim;
use provider_sims::Fault;
use sandbox_host::conformance::report::{Outcome, Report};
use sandbox_host::conformance::{cases, Session, Target, Upstream};
use sandbox_host::plugin::loader::Loader;
use sandbox_tests::upstream::SECRET;
use std::sync::Arc;

/// A session over `plugins/<provider>.wasm` pointed at a simulator: `policy` is the
/// simulator's (its `[config]`, allowlist and credential grant), `base` its API base.
async fn session(provider: &str, policy: String, base: String, key_env: &'static str) -> Session {
    session_for(provider, policy, Upstream::Sim(base), key_env).await
}

async fn session_for(provider: &str, policy: String, upstream: Upstream, key_env: &'static str) -> Session {
    let target = Target { wasm: sandbox_tests::plugin_wasm(provider), policy: Some(policy), upstream };
    let lookup = Arc::new(move |k: &str| (k == key_env).then(|| SECRET.to_string()));
    let loader = Loader::with_env(sandbox_tests::runtime(), lookup).unwrap();
    Session::start(&target, loader).await.expect("the plugin loads")
}

/// Every row passed or was skipped for an undeclared capability only; every declared
/// one ran; each check that ran made upstream calls, as the observer recorded them.
fn assert_all_passed(report: &Report, session: &Session) {
    assert!(report.passed(), "{}", report.table());
    let plugin = session.host.registry.get(&session.provider).unwrap();
    for check in cases::Check::ALL {
        let row = report.row(check.name()).unwrap_or_else(|| panic!("no row for {}", check.name()));
        let declared = check.needs().is_none_or(|c| plugin.capabilities().contains(&c));
        match &row.outcome {
            Outcome::Pass => assert!(declared, "{} ran though not declared", row.check),
            Outcome::Skip(why) => assert!(!declared && why.contains("is not declared"), "{}: {why}", row.check),
            Outcome::Fail(why) => panic!("{}: {why}", row.check),
        }
        if declared {
            assert!(!row.upstream_calls.is_empty(), "{} made no upstream call?\n{}", row.check, report.table());
        }
    }
    let create = report.row("create").unwrap();
    assert!(create.upstream_calls.iter().any(|c| c.method == "POST"), "{:?}", create.upstream_calls);
    assert_eq!(report.row(cases::CLEANUP).map(|r| &r.outcome), Some(&Outcome::Pass));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_case_list_passes_against_the_e2b_simulator_and_leaves_nothing_running() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let s = session("e2b", sim.policy_toml(), sim.api.base_url(), "E2B_API_KEY").await;
    let report = s.run("base").await;
    assert_all_passed(&report, &s);
    assert_eq!(sim.live_count(), 0, "the run stopped what it created");
    // Exec goes to envd, not the control plane: the observer sees both.
    let exec = report.row(cases::Check::ExecArgsEnvCwdExit.name()).unwrap();
    assert!(exec.upstream_calls.iter().any(|c| c.path == "/process.Process/Start"), "{:?}", exec.upstream_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_case_list_passes_against_the_morph_simulator_and_leaves_nothing_running() {
    let sim = MorphSim::start(0, SECRET).await.unwrap();
    let s = session("morph", sim.policy_toml(), sim.api_base(), "MORPH_API_KEY").await;
    let report = s.run("snapshot_base").await;
    assert_all_passed(&report, &s);
    assert_eq!(sim.live_count(), 0, "the run stopped what it created");
}

/// The Python plugin answers the same table: the case list knows nothing of languages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_case_list_passes_against_the_vercel_simulator_and_leaves_nothing_running() {
    let sim = VercelSim::start(0, SECRET).await.unwrap();
    let mut s = session("vercel", sim.policy_toml(), sim.api_base(), "VERCEL_TOKEN").await;
    // Vercel publishes only the ports listed at create: the simulator's policy lists 3000.
    s.expose_port = 3000;
    let report = s.run("node24").await;
    assert_all_passed(&report, &s);
    assert_eq!(sim.live_count(), 0, "the run stopped what it created");
}

/// `--live` takes the operator's policy as it is: here one whose `api_base` is the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_runs_under_the_operators_policy_unchanged() {
    let sim = MorphSim::start(0, SECRET).await.unwrap();
    let s = session_for("morph", sim.policy_toml(), Upstream::Live, "MORPH_API_KEY").await;
    let report = s.run("snapshot_base").await;
    assert_all_passed(&report, &s);
    assert_eq!(sim.live_count(), 0);
    // Without the grant the credential is refused before the plugin runs: create fails, the
    // rest is skipped, and nothing reached the upstream.
    sim.api.clear_requests();
    let ungranted = sim.policy_toml().replace("api-key = \"MORPH_API_KEY\"", "");
    let s = session_for("morph", ungranted, Upstream::Live, "MORPH_API_KEY").await;
    let report = s.run("snapshot_base").await;
    let create = report.row("create").unwrap();
    assert!(matches!(&create.outcome, Outcome::Fail(why) if why.contains("[S503]")), "{}", report.table());
    assert_eq!(report.row("get").unwrap().outcome, Outcome::Skip("needs the sandbox create did not give".into()));
    assert_eq!(report.row(cases::CLEANUP).unwrap().outcome, Outcome::Pass, "nothing was created, nothing to stop");
    assert!(sim.api.requests().is_empty(), "{:?}", sim.api.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_case_list_passes_against_the_daytona_simulator_and_leaves_nothing_running() {
    let sim = DaytonaSim::start(0, SECRET).await.unwrap();
    // Only Daytona's VM classes fork and pause natively; a container's branch is S422.
    sim.state.vm_sandboxes.store(true, std::sync::atomic::Ordering::Relaxed);
    let s = session("daytona", sim.policy_toml(), sim.api_base(), "DAYTONA_API_KEY").await;
    let report = s.run("daytona-small").await;
    assert_all_passed(&report, &s);
    assert_eq!(sim.live_count(), 0, "the run stopped what it created");
}

/// Faults midway — envd fails the first command, the control plane fails the first stop
/// (that of the branch check's sibling) — fail those two checks, the rest still run, and
/// the clean-up stops the sibling the failed stop left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_still_cleans_up_everything_it_created() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let s = session("e2b", sim.policy_toml(), sim.api.base_url(), "E2B_API_KEY").await;
    sim.envd.inject(Fault::new("POST", "/process.Process/Start", 500, r#"{"code":"internal","message":"boom"}"#));
    sim.api.inject(Fault::new("DELETE", "/sandboxes/", 500, r#"{"code":500,"message":"internal"}"#));
    let report = s.run("base").await;
    assert!(!report.passed(), "{}", report.table());
    let failed: Vec<&str> = report.failed().iter().map(|r| r.check.as_str()).collect();
    assert_eq!(failed, [cases::Check::ExecArgsEnvCwdExit.name(), cases::Check::Branch.name()], "{}", report.table());
    assert_eq!(report.row(cases::Check::ExecTimeout.name()).unwrap().outcome, Outcome::Pass, "later checks still ran");
    let cleanup = report.row(cases::CLEANUP).unwrap();
    assert_eq!(cleanup.outcome, Outcome::Pass, "{}", report.table());
    let stops: Vec<_> = cleanup.upstream_calls.iter().filter(|c| c.method == "DELETE").collect();
    assert_eq!(stops.len(), 1, "the clean-up stopped the one leftover: {:?}", cleanup.upstream_calls);
    assert_eq!(sim.live_count(), 0, "nothing left running upstream");
    assert!(report.table().contains("FAIL  branch"), "{}", report.table());
}
