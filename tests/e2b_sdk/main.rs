//! The E2B-compatible API (`sandbox_host::e2b_api`) driven by the unmodified official E2B
//! Python SDK (`e2b==2.63.0`, installed into `.venv/` by `just python-deps`), once per
//! provider: a simulator, a host with that one plugin, the facade on loopback, then
//! `tests/e2b_sdk/flow.py` (create, commands, streaming, timeouts, files, list and pages,
//! get_info, set_timeout, pause/resume, kill, wrong key, isolation between keys, the
//! per-key sandbox cap and rate). A missing SDK fails with the command to run; it never skips.

mod cli;
mod raw;
mod restart;
mod stream;

use provider_sims::daytona::DaytonaSim;
use provider_sims::e2b::E2bSim;
use provider_sims::morph::MorphSim;
use sandbox_host::e2b_api::{ApiKey, E2bApi, Settings};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{root, PluginSetup, TestHost};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

const ALICE: &str = "e2b-sdk-key-alice-3f9a";
const BOB: &str = "e2b-sdk-key-bob-71c2";
const CAPPED: &str = "e2b-sdk-key-capped-0d4e";
/// Low enough for the flow's burst of list calls to trip it, high enough for the calls
/// that come before (create, a refused create, kill, create, kill).
const CAPPED_RATE: u32 = 8;
/// The whole flow takes well under a minute; this only bounds a hung one.
const FLOW_TIMEOUT: Duration = Duration::from_secs(240);
/// What `just python-deps` installs.
const SDK_CHECK: &str = "import e2b, importlib.metadata as m; assert m.version('e2b') == '2.63.0', m.version('e2b')";

/// `.venv/bin/python` with the pinned SDK, or a failure saying how to get it.
fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    let fix = "run `bash scripts/just python-deps` (installs tests/e2b_sdk/requirements.txt into .venv/)";
    assert!(python.exists(), "{} is missing: {fix}", python.display());
    let out = std::process::Command::new(&python).args(["-c", SDK_CHECK]).output().expect("run .venv/bin/python");
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the e2b SDK 2.63.0 is not installed in .venv/: {fix}\n{why}");
    python
}

fn key(name: &str, secret: &str) -> ApiKey {
    let (name, secret) = (name.to_string(), secret.to_string());
    ApiKey { name, secret, providers: None, templates: None, rate_per_minute: None, max_sandboxes: None }
}

fn settings(provider: &str) -> Settings {
    let capped = ApiKey { rate_per_minute: Some(CAPPED_RATE), max_sandboxes: Some(1), ..key("capped", CAPPED) };
    Settings {
        default_provider: Some(provider.into()),
        templates: Default::default(),
        keys: vec![key("alice", ALICE), key("bob", BOB), capped],
        insecure_no_auth: false,
    }
}

/// Serves the facade over `h`'s host, runs flow.py against it with template
/// `<provider>/<image>`, and checks it passed and left nothing behind (`remaining` lists
/// what the simulator still holds, paused or running).
async fn run_flow(h: &TestHost, provider: &str, image: &str, remaining: impl Fn() -> Vec<String>) {
    let python = python();
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    let api = E2bApi::new(h.host.clone(), settings(provider)).expect("E2bApi::new");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(api.serve(listener, stopped));

    // stdout and stderr into one file, so a timed-out run still shows how far it got.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(&python)
        .arg(root().join("tests/e2b_sdk/flow.py"))
        .current_dir(root())
        .env_remove("E2B_DEBUG")
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_ACCESS_TOKEN")
        .env("PYTHONUNBUFFERED", "1")
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_API_KEY", ALICE)
        .env("FLOW_BOB_KEY", BOB)
        .env("FLOW_CAPPED_KEY", CAPPED)
        .env("FLOW_CAPPED_RATE", CAPPED_RATE.to_string())
        .env("FLOW_TEMPLATE", format!("{provider}/{image}"))
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start flow.py");
    let status = tokio::time::timeout(FLOW_TIMEOUT, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    println!("--- flow.py on {provider} ---\n{output}");

    let _ = stop.send(true);
    let served = tokio::time::timeout(Duration::from_secs(10), server).await;

    match status {
        Err(_) => panic!("flow.py on {provider} did not finish within {FLOW_TIMEOUT:?} (killed); output:\n{output}"),
        Ok(status) => {
            let status = status.expect("wait for flow.py");
            assert!(status.success(), "flow.py on {provider} failed ({status}); output:\n{output}");
        }
    }
    let left = remaining();
    assert!(left.is_empty(), "the flow on {provider} left sandboxes upstream: {left:?}");
    match served {
        Err(_) => panic!("the facade did not stop within 10 s of the stop signal"),
        Ok(joined) => joined.expect("facade task panicked").expect("facade serve() failed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_e2b_sdk_flow_passes_on_morph() {
    let sim = MorphSim::start(0, SECRET).await.unwrap();
    let h = TestHost::start(vec![PluginSetup::new("morph", sim.policy_toml())], &[("MORPH_API_KEY", SECRET)]).await;
    run_flow(&h, "morph", "snapshot_base", || sim.state.instances.lock().unwrap().keys().cloned().collect()).await;
    assert_eq!(sim.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_e2b_sdk_flow_passes_on_daytona() {
    let sim = DaytonaSim::start(0, SECRET).await.unwrap();
    let h = TestHost::start(vec![PluginSetup::new("daytona", sim.policy_toml())], &[("DAYTONA_API_KEY", SECRET)]).await;
    run_flow(&h, "daytona", "daytona-small", || {
        let boxes = sim.state.sandboxes.lock().unwrap();
        let gone = |s: &&provider_sims::daytona::SimSandbox| matches!(s.state.as_str(), "destroyed" | "destroying");
        boxes.values().filter(|s| !gone(s)).map(|s| s.id.clone()).collect()
    })
    .await;
    assert_eq!(sim.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_e2b_sdk_flow_passes_on_e2b() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let h = TestHost::start(vec![PluginSetup::new("e2b", sim.policy_toml())], &[("E2B_API_KEY", SECRET)]).await;
    run_flow(&h, "e2b", "base", || sim.state.sandboxes.lock().unwrap().keys().cloned().collect()).await;
    assert_eq!(sim.live_count(), 0);
}
