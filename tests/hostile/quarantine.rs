//! Issue 12: a plugin that traps repeatedly is quarantined (`policy/quarantine.rs`). With
//! `quarantine_after_traps = 3` and a 1 s cool-down, the `panic` fixture (its `exec`
//! panics on every call) is quarantined by its third trap; then every call — of any leaf,
//! even one whose input is invalid — fails fast with S502 naming the plugin, the traps and
//! the retry, without an instance: the S700 count does not move although each refused
//! `exec` would have trapped had it run. The e2b neighbour is unaffected. After the
//! cool-down one call goes through: a clean one ends the quarantine, a trap starts it
//! again. A hot reload (a new version) starts afresh, also in the metrics. It shows in
//! `sandbox-host plugins` (`describe_json`) and in the metrics.

use super::*;

const POLICY: &str = "[limits]\nquarantine_after_traps = 3\nquarantine_window_secs = 60\nquarantine_secs = 1\n";
const COOL_DOWN: Duration = Duration::from_secs(1);

fn exec() -> Value {
    json!({"sandbox_id": "sbx-1", "cmd": "true"})
}

/// S700 answers the plugin gave: each is one instance that ran and trapped.
fn traps(a: &Arena) -> u64 {
    plugin_stats(a)["errors_by_code"]["S700"].as_u64().unwrap_or(0)
}

/// Traps the plugin `n` times.
async fn trap(a: &Arena, n: usize) {
    for _ in 0..n {
        a.h.err("panic", Leaf::Exec, exec(), Code::PluginTrapped).await;
    }
}

/// One call refused at once: S502 naming the plugin and why, with a retry hint.
async fn refused(a: &Arena, leaf: Leaf, payload: Value) -> CallError {
    let started = Instant::now();
    let e = a.h.call("panic", leaf, payload).await.expect_err("a quarantined plugin's calls fail");
    assert_eq!(e.code, Code::Unavailable, "{e}");
    assert!(e.sentence.starts_with("provider `panic` is quarantined: it trapped "), "{e}");
    assert!(e.sentence.contains("plugins/panic.toml"), "says what to tune: {e}");
    assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "a retry hint: {e:?}");
    eprintln!("[quarantine] {leaf} refused after {:?}: {e}", started.elapsed());
    e
}

#[tokio::test]
async fn a_plugin_that_keeps_trapping_is_quarantined_then_retried() {
    let _serial = SERIAL.lock().await;
    let a = arena("panic", POLICY).await;
    let state = |a: &Arena| sandbox_host::cli::plugins::describe_json(&a.h.host.registry.get("panic").unwrap())["quarantine"].clone();
    assert_eq!(state(&a)["state"], "closed");
    assert_eq!(state(&a)["policy"], "after 3 traps in 60 s, for 1 s");

    // Three traps: the third quarantines it.
    trap(&a, 3).await;
    assert_eq!(traps(&a), 3);
    let e = refused(&a, Leaf::Exec, exec()).await;
    assert!(e.sentence.contains("it trapped 3 times within 60 s (last: plugin `panic` crashed during `exec`"), "{e}");
    assert!(e.sentence.contains("hostile fixture panicked on purpose"), "the last trap's own words: {e}");
    assert!(e.sentence.contains("until it is retried in "), "{e}");
    assert!(e.retry_after_ms.is_some_and(|ms| ms <= 1000), "the rest of the 1 s cool-down: {e:?}");
    // Every leaf, and before validation: an exec with no `cmd` is not S422 now.
    refused(&a, Leaf::List, json!({})).await;
    refused(&a, Leaf::Stop, json!({"sandbox_id": "sbx-1"})).await;
    refused(&a, Leaf::Exec, json!({"sandbox_id": "sbx-1"})).await;
    refused(&a, Leaf::Exec, exec()).await;
    // No instance ran: a refused exec that had run would have trapped (S700 + 1).
    let stats = plugin_stats(&a);
    assert_eq!(traps(&a), 3, "{stats}");
    assert_eq!(stats["errors_by_code"]["S502"], 5, "{stats}");
    assert_eq!(
        (stats["quarantined"].clone(), stats["quarantines"].clone(), stats["quarantine_refusals"].clone()),
        (json!(true), json!(1), json!(5))
    );
    assert!(stats["quarantine_reason"].as_str().unwrap().starts_with("it trapped 3 times within 60 s"), "{stats}");
    let text = a.h.host.metrics.prometheus();
    assert!(text.contains("sandbox_plugin_quarantined{plugin=\"panic\"} 1"), "{text}");
    assert!(text.contains("sandbox_plugin_quarantines_total{plugin=\"panic\"} 1"), "{text}");
    assert!(text.contains("sandbox_plugin_quarantine_refusals_total{plugin=\"panic\"} 5"), "{text}");
    let shown = state(&a);
    assert!(shown["state"] == "open" && shown["retry_in_ms"].as_u64().is_some_and(|ms| ms <= 1000), "{shown}");
    assert_eq!(shown["quarantines"], 1);

    // The neighbour is unaffected.
    neighbour_round(&a.h, 1).await;
    assert_eq!(plugin_stats_of(&a, "e2b")["quarantined"], false);

    // After the cool-down one call goes through; it runs cleanly (list does not trap): over.
    tokio::time::sleep(COOL_DOWN + Duration::from_millis(100)).await;
    assert_eq!(state(&a)["state"], "half-open");
    assert_eq!(a.h.ok("panic", Leaf::List, json!({})).await["sandboxes"], json!([]));
    assert_eq!(state(&a)["state"], "closed");
    assert!(a.h.host.metrics.prometheus().contains("sandbox_plugin_quarantined{plugin=\"panic\"} 0"));
    // Closed, the count starts again: one trap is only a trap.
    trap(&a, 1).await;
    assert_eq!(a.h.ok("panic", Leaf::List, json!({})).await["sandboxes"], json!([]));

    // Quarantined again (two more traps make three in the window); this time the retry
    // traps, and it is quarantined again at once, for the whole cool-down.
    trap(&a, 2).await;
    refused(&a, Leaf::Exec, exec()).await;
    tokio::time::sleep(COOL_DOWN + Duration::from_millis(100)).await;
    let traps_before = traps(&a);
    a.h.err("panic", Leaf::Exec, exec(), Code::PluginTrapped).await;
    assert_eq!(traps(&a), traps_before + 1, "the retry ran the plugin");
    let e = refused(&a, Leaf::List, json!({})).await;
    assert!(e.sentence.contains("it trapped again when retried after 1 s of quarantine"), "{e}");
    assert_eq!(plugin_stats(&a)["quarantines"], 3);
    assert_eq!(traps(&a), traps_before + 1);
}

/// A hot reload of the plugin (a new version) starts out of quarantine, in the metrics too.
#[tokio::test]
async fn a_new_version_starts_afresh() {
    let _serial = SERIAL.lock().await;
    let a = arena("panic", "[limits]\nquarantine_after_traps = 2\nquarantine_secs = 600\n").await;
    trap(&a, 2).await;
    refused(&a, Leaf::List, json!({})).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(sandbox_host::plugin::watch::watch(a.h.host.clone(), Duration::from_millis(50), None, rx));
    let old = a.h.host.registry.get("panic").unwrap().sha256.clone();
    // The same plugin with a custom section appended: a new version (new SHA-256).
    let mut bytes = std::fs::read(fixture_wasm("panic")).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'n', b'e', b'w', b'v']);
    let tmp = a.h.dir.path().join(".panic.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, a.h.dir.path().join("panic.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.h.host.registry.get("panic").unwrap().sha256 == old {
        assert!(Instant::now() < deadline, "the new version was not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    assert_eq!(plugin_stats(&a)["quarantined"], false, "the metrics flag is cleared with the swap");
    assert_eq!(a.h.ok("panic", Leaf::List, json!({})).await["sandboxes"], json!([]), "calls flow again");
    trap(&a, 1).await;
    assert_eq!(a.h.ok("panic", Leaf::List, json!({})).await["sandboxes"], json!([]), "its count started from zero");
    assert_eq!(plugin_stats(&a)["quarantines"], 1, "the counter keeps the history");
}

/// With `quarantine_after_traps = 0` a plugin is never quarantined.
#[tokio::test]
async fn off_means_every_call_runs() {
    let _serial = SERIAL.lock().await;
    let a = arena("panic", "[limits]\nquarantine_after_traps = 0\n").await;
    trap(&a, 8).await;
    assert_eq!(traps(&a), 8);
    assert_eq!(plugin_stats(&a)["quarantines"], 0);
}

fn plugin_stats_of(a: &Arena, name: &str) -> Value {
    a.h.host.metrics.json()["plugins"][name].clone()
}
