//! Host behaviour across providers and around the call path itself: the start-up
//! reconcile of several providers, the host's own lists, credentials checked at load.
//! Each test is named after the review item it holds (../shared/reference/host-review.md).

use crate::cases::{fresh, policy_with};
use crate::e2b::E2bUpstream;
use crate::morph::MorphUpstream;
use provider_sims::Fault;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::{Upstream, SECRET};
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::json;
use std::time::{Duration, Instant};

/// Review item 10: one slow provider neither holds the start-up reconcile of the others
/// back nor leaves their caps uncounted; it is reported for a later retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_does_not_starve_the_others_at_start() {
    let (e2b, morph) = (E2bUpstream::start().await, MorphUpstream::start().await);
    morph.create_out_of_band().await;
    let plugins = vec![
        PluginSetup::new("e2b", policy_with(&e2b, "")),
        PluginSetup::new("morph", policy_with(&morph, "max_concurrent_sandboxes = 1")),
    ];
    let h = TestHost::start(plugins, &[("E2B_API_KEY", SECRET), ("MORPH_API_KEY", SECRET)]).await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    // e2b sorts first and its list takes 5 s.
    e2b.api().inject(Fault::late_answer("GET", "/v2/sandboxes", Duration::from_secs(5)));
    let started = Instant::now();
    let failed = h.host.reconcile_all(Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "providers are reconciled at once: {:?}", started.elapsed());
    assert_eq!(failed, vec!["e2b".to_string()]);
    let msg = h.err("morph", Leaf::Create, json!({"image": MorphUpstream::IMAGE}), Code::CapReached).await;
    assert!(msg.contains("cap of 1"), "{msg}");
}

/// Review item 11: the host's own reconcile takes no admission or rate token, so a
/// `rate_per_sec = 1` plugin still serves the caller's first call (it answered S500
/// every time before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_own_list_spends_no_rate_token() {
    let (up, h) = fresh::<E2bUpstream>("[limits]\nrate_per_sec = 1.0").await;
    h.host.reconcile("e2b").await.unwrap();
    h.ok("e2b", Leaf::Create, json!({"image": "base"})).await;
    assert_eq!(up.live(), 1);
}

/// Review item 14: a credential value that is no valid header value (a file-mounted
/// secret's trailing newline) is refused at load and shown as such, never silently
/// left off the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_with_a_trailing_newline_is_refused_not_dropped() {
    let up = E2bUpstream::start().await;
    let secret_with_newline = format!("{SECRET}\n");
    let h = TestHost::start(vec![PluginSetup::new("e2b", up.policy())], &[("E2B_API_KEY", &secret_with_newline)]).await;
    let plugin = h.host.registry.get("e2b").unwrap();
    assert_eq!(plugin.policy.egress.credentials[0].value.status(), "INVALID");
    let shown = sandbox_host::cli::plugins::describe_json(&plugin);
    assert_eq!(shown["policy"]["credentials"][0]["status"], "INVALID", "{shown}");
    assert_eq!(shown["policy"]["credentials"][0]["set"], false, "{shown}");
    let msg = h.err("e2b", Leaf::Snapshot, json!({"sandbox_id": "sbx7"}), Code::AuthInvalid).await;
    assert!(msg.contains("E2B_API_KEY") && msg.contains("line break"), "{msg}");
    assert!(up.requests().is_empty(), "no request may go out without its credential");
}

/// Review item 9: credential hosts pinned by the operator keep the key off an
/// `http://` api_base that is not among them (it went there in clear text before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_credential_hosts_keep_the_key_off_a_plain_http_api_base() {
    let (up, h) = fresh::<E2bUpstream>("[credentials]\napi-key = { env = \"E2B_API_KEY\", hosts = [\"api.e2b.app\"] }").await;
    // The simulator only accepts the right key: without it the create is refused.
    h.err("e2b", Leaf::Create, json!({"image": "base"}), Code::AuthInvalid).await;
    let sent = up.api().requests();
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(r.header("x-api-key"), None, "the pinned key went to {}", r.route());
    }
}

/// `sandbox-host call …` on the real binary, against `up` with `overrides` in its policy.
async fn cli_call(up: &E2bUpstream, overrides: &str, leaf: &str, payload: &str) -> (i32, String) {
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sandbox_tests::plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), policy_with(up, overrides)).unwrap();
    let out = tokio::process::Command::new(&bin)
        .args(["--no-cache", "--plugins-dir"])
        .arg(dir.path())
        .args(["call", "e2b", leaf, payload])
        .env("E2B_API_KEY", SECRET)
        .output()
        .await
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Review item 11 on the CLI: bad input is refused before the reconcile ever reaches the
/// upstream, and the reconcile spends no rate token of the call it precedes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_validates_before_it_reconciles_and_its_reconcile_is_free() {
    let up = E2bUpstream::start().await;
    let (status, stderr) = cli_call(&up, "", "create", r#"{"image": 7}"#).await;
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("[S422]"), "{stderr}");
    assert!(up.requests().is_empty(), "nothing reached the upstream: {:?}", up.requests().iter().map(|r| r.route()).collect::<Vec<_>>());
    let (status, stderr) = cli_call(&up, "[limits]\nrate_per_sec = 1.0", "create", r#"{"image": "base"}"#).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(up.live(), 1);
}

/// Review item 4 on the CLI (its first repro): the process answers S701 at the wall and,
/// before it exits, stops the sandbox the upstream went on to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_stops_the_sandbox_of_a_create_it_abandoned_before_exiting() {
    let up = E2bUpstream::start().await;
    // Answered after the 1.5 s wall, within the overtime that follows it.
    up.api().inject(Fault::late_answer("POST", "/v2/sandboxes", Duration::from_millis(2500)));
    let (status, stderr) = cli_call(&up, "[limits]\ncall_timeout_ms = 1500", "create", r#"{"image": "base"}"#).await;
    assert_eq!(status, 5, "{stderr}");
    assert!(stderr.contains("[S701]"), "{stderr}");
    assert!(up.api().requests().iter().any(|r| r.method == "POST"), "the create reached the upstream");
    assert_eq!(up.live(), 0, "the orphan was stopped before the process exited: {stderr}");
}

/// Issue 12, crash and restart: a host killed (`kill -9`) while its create waits on the
/// upstream loses track of nothing. The sandbox the upstream made carries the host's
/// creation tag, and the next host start finds it by reconciliation and counts it
/// against the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_during_a_create_finds_and_counts_the_sandbox_after_restart() {
    let up = E2bUpstream::start().await;
    // The upstream does the work at once and answers only much later.
    up.api().inject(Fault::late_answer("POST", "/v2/sandboxes", Duration::from_secs(60)));
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sandbox_tests::plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), policy_with(&up, "")).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args(["--no-cache", "--plugins-dir"])
        .arg(dir.path())
        .args(["call", "e2b", "create", r#"{"image": "base", "metadata": {"team": "x"}}"#])
        .env("E2B_API_KEY", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.live() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.live(), 1, "the create reached the upstream");
    child.kill().await.unwrap(); // SIGKILL: no settlement, no cleanup.

    let restarted =
        TestHost::start(vec![PluginSetup::new("e2b", policy_with(&up, "max_concurrent_sandboxes = 1"))], &[("E2B_API_KEY", SECRET)]).await;
    restarted.host.reconcile("e2b").await.unwrap();
    let listed = restarted.ok("e2b", Leaf::List, json!({})).await;
    assert_eq!(listed["in_flight"], 1, "{listed}");
    let row = &listed["sandboxes"][0];
    let tag = row["metadata"][sandbox_host::calls::create::CREATED_BY].as_str();
    assert_eq!(tag, Some(sandbox_host::calls::events::machine_name()), "tagged as this host's own: {row}");
    assert_eq!(row["metadata"]["team"], "x", "{row}");
    restarted.err("e2b", Leaf::Create, json!({"image": "base"}), Code::CapReached).await;
}
