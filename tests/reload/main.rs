//! Hot reload under load: a plugin dropped into the directory goes live, a replaced one
//! swaps atomically while calls keep flowing (zero failed calls), a deleted one is
//! unregistered (also from iii), a broken file is rejected while the previous version
//! keeps serving, and concurrency slots survive every swap. `bad_files.rs`: entries that
//! cannot be plugins (empty, a directory, link loops, a second copy, an orphan policy).

mod bad_files;

use provider_sims::e2b::E2bSim;
use sandbox_host::bridge::iii::{provider_function_id, Bridge, BridgeOptions};
use sandbox_host::plugin::watch::{watch, ReloadListener};
use sandbox_host::Leaf;
use sandbox_tests::mock_engine::MockEngine;
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{plugin_wasm, TestHost};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(50);

/// `bytes` with a custom section appended: a different component (new SHA-256) that
/// behaves identically — a stand-in for a rebuilt plugin.
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"reload-variant";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128, < 128
    out.extend(section);
    out
}

/// Replaces `dest` atomically (write a temp file, rename over), as deploy tools do.
fn install(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Watched {
    sim: E2bSim,
    host: TestHost,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn watched(listener: Option<Arc<dyn ReloadListener>>) -> Watched {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let host = TestHost::start(vec![], &[("E2B_API_KEY", SECRET)]).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(watch(host.host.clone(), POLL, listener, rx));
    Watched { sim, host, stop }
}

impl Watched {
    fn dir(&self) -> &Path {
        self.host.dir.path()
    }
    fn add_e2b(&self, bytes: &[u8]) {
        std::fs::write(self.dir().join("e2b.toml"), self.sim.policy_toml()).unwrap();
        install(self.dir(), "e2b.wasm", bytes);
    }
    fn sha(&self) -> Option<String> {
        self.host.host.registry.get("e2b").map(|p| p.sha256.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_goes_live_and_a_deleted_one_is_unregistered() {
    let w = watched(None).await;
    assert!(w.host.host.registry.get("e2b").is_none());
    w.add_e2b(&std::fs::read(plugin_wasm("e2b")).unwrap());
    eventually("e2b is loaded", || w.sha().is_some()).await;
    assert_eq!(w.host.ok("e2b", Leaf::List, json!({})).await["reconciled"], true);
    std::fs::remove_file(w.dir().join("e2b.wasm")).unwrap();
    eventually("e2b is gone", || w.sha().is_none()).await;
    w.host.err("e2b", Leaf::List, json!({}), sandbox_host::Code::UnknownProvider).await;
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_versions_under_a_steady_stream_of_calls_fails_none() {
    let w = Arc::new(watched(None).await);
    let original = std::fs::read(plugin_wasm("e2b")).unwrap();
    w.add_e2b(&variant(&original, 0));
    eventually("e2b is loaded", || w.sha().is_some()).await;
    // A sandbox created before the swaps keeps its slot across all of them.
    let kept = w.host.ok("e2b", Leaf::Create, json!({"image": "base"})).await["sandbox_id"].as_str().unwrap().to_string();

    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut callers = Vec::new();
    for i in 0..4 {
        let (w, running, ok, failed, kept) = (w.clone(), running.clone(), ok.clone(), failed.clone(), kept.clone());
        callers.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let (leaf, payload) = if i % 2 == 0 {
                    (Leaf::List, json!({}))
                } else {
                    (Leaf::Exec, json!({"sandbox_id": kept, "cmd": "echo", "args": ["still here"]}))
                };
                match w.host.call("e2b", leaf, payload).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed during swap: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut seen = vec![w.sha().unwrap()];
    for n in 1..=6 {
        w.add_e2b(&variant(&original, n));
        let before = seen.last().cloned();
        eventually("the new version is live", || w.sha() != before).await;
        seen.push(w.sha().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.store(false, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "zero failed calls across {} swaps", seen.len() - 1);
    assert!(ok.load(Ordering::Relaxed) > 20, "calls kept flowing: {}", ok.load(Ordering::Relaxed));
    seen.dedup();
    assert_eq!(seen.len(), 7, "every swap installed a new version");
    assert_eq!(w.host.host.registry.book("e2b").in_flight(), 1, "the slot survived every swap");
    w.host.ok("e2b", Leaf::Stop, json!({"sandbox_id": kept})).await;
    assert_eq!(w.host.host.registry.book("e2b").in_flight(), 0);
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replacement_is_rejected_and_the_previous_version_keeps_serving() {
    let w = watched(None).await;
    w.add_e2b(&std::fs::read(plugin_wasm("e2b")).unwrap());
    eventually("e2b is loaded", || w.sha().is_some()).await;
    let good = w.sha();
    install(w.dir(), "e2b.wasm", b"\0asm this is not a component");
    tokio::time::sleep(POLL * 6).await;
    assert_eq!(w.sha(), good, "the broken file did not replace the working version");
    assert_eq!(w.host.ok("e2b", Leaf::List, json!({})).await["reconciled"], true);
    // A policy file that does not parse is rejected the same way.
    std::fs::write(w.dir().join("e2b.toml"), "max_concurrent_sandboxes = \"many\"").unwrap();
    install(w.dir(), "e2b.wasm", &std::fs::read(plugin_wasm("e2b")).unwrap());
    tokio::time::sleep(POLL * 6).await;
    assert_eq!(w.sha(), good);
    // Fixing the files brings the new version in.
    w.add_e2b(&variant(&std::fs::read(plugin_wasm("e2b")).unwrap(), 9));
    eventually("the fixed version is live", || w.sha() != good).await;
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_serve_iii_functions_follow_the_directory() {
    let engine = MockEngine::start(0).await;
    let host = TestHost::start(vec![], &[("E2B_API_KEY", SECRET)]).await;
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(Duration::from_secs(15)).await.unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let listener: Arc<dyn ReloadListener> = bridge.clone();
    tokio::spawn(watch(host.host.clone(), POLL, Some(listener), rx));
    std::fs::write(host.dir.path().join("e2b.toml"), sim.policy_toml()).unwrap();
    install(host.dir.path(), "e2b.wasm", &std::fs::read(plugin_wasm("e2b")).unwrap());
    let create = provider_function_id("e2b", Leaf::Create);
    eventually("e2b's functions appear on the engine", || engine.function(&create).is_some()).await;
    let created = engine.invoke(&create, json!({"image": "base"})).await.unwrap();
    assert!(created["sandbox_id"].is_string());
    std::fs::remove_file(host.dir.path().join("e2b.wasm")).unwrap();
    eventually("e2b's functions are unregistered", || engine.function_ids().iter().all(|id| !id.starts_with("sandbox::provider::e2b::")))
        .await;
    let _ = stop.send(true);
}

/// Files that are not plugins are reported with the file and the reason; the rest load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_diagnosed_by_name_and_reason_while_the_others_load() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), sim.policy_toml()).unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm at all").unwrap();
    // The e2b plugin under another name fails the name check; a policy with an unknown
    // key fails the policy check; a valid component of another world fails the world check.
    std::fs::copy(plugin_wasm("e2b"), dir.path().join("other.wasm")).unwrap();
    std::fs::copy(plugin_wasm("morph"), dir.path().join("morph.wasm")).unwrap();
    std::fs::copy(sandbox_tests::root().join("tests/fixtures/wrong-world.wasm"), dir.path().join("wrong-world.wasm"))
        .expect("tests/fixtures/wrong-world.wasm: run `just build-fixtures`");
    // Every export named as world 0.2.0 names it, one typed otherwise: a call checks only
    // the export it calls, so the whole interface is checked here, at load.
    std::fs::copy(sandbox_tests::root().join("tests/fixtures/mistyped-export.wasm"), dir.path().join("mistyped-export.wasm"))
        .expect("tests/fixtures/mistyped-export.wasm: run `just build-fixtures`");
    std::fs::write(dir.path().join("morph.toml"), "max_concurent_sandboxes = 3\n").unwrap();
    let h = TestHost::start(vec![], &[]).await;
    let (plugins, diags) = h.host.loader.load_dir(dir.path()).await;
    assert_eq!(plugins.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(), vec!["e2b"]);
    let reason = |file: &str| {
        diags
            .iter()
            .find(|d| d.file.ends_with(file))
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("no diagnostic for {file}: {diags:?}"))
    };
    assert!(reason("core.wasm").contains("core WebAssembly module, not a component"), "{}", reason("core.wasm"));
    assert!(reason("junk.wasm").contains("not a WebAssembly component"), "{}", reason("junk.wasm"));
    assert!(reason("other.wasm").contains("describe() says its name is \"e2b\", but the file is other.wasm"), "{}", reason("other.wasm"));
    assert!(reason("morph.toml").contains("max_concurent_sandboxes"), "{}", reason("morph.toml"));
    let wrong = reason("wrong-world.wasm");
    assert!(wrong.contains("does not export a known provider interface"), "{wrong}");
    // Both world versions the host loads are named, newest first.
    let (v2, v1) = (wrong.find("provider-plugin@0.2.0"), wrong.find("provider-plugin@0.1.0"));
    assert!(v2.is_some() && v1.is_some() && v2 < v1, "{wrong}");
    let mistyped = reason("mistyped-export.wasm");
    assert!(mistyped.contains("its exports do not match iii:sandbox/provider-plugin@0.2.0"), "{mistyped}");
    assert!(mistyped.contains("export `create`"), "the first export that differs is named: {mistyped}");
}

/// A restart deserializes the precompiled component instead of compiling it again;
/// a changed component (new hash) is compiled once and then cached too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_from_the_precompiled_cache() {
    use sandbox_host::runtime::engine::{CacheOutcome, Runtime};
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e2b.wasm");
    std::fs::write(&file, variant(&std::fs::read(plugin_wasm("e2b")).unwrap(), 4242)).unwrap();
    let load = || async {
        let loader = sandbox_host::plugin::loader::Loader::new(Runtime::new(Some(cache.path().to_path_buf())).unwrap()).unwrap();
        loader.load_file(&file).await.unwrap().cache
    };
    assert_eq!(load().await, CacheOutcome::Compiled, "first start compiles");
    assert_eq!(load().await, CacheOutcome::Hit, "a restart (new engine, same cache) does not");
    let mut entries: Vec<_> =
        std::fs::read_dir(cache.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "the cache's key and one entry, written whole, no temp files left: {entries:?}");
    assert!(entries[0].ends_with(".cwasm") && entries[1] == "key", "{entries:?}");
}

/// Counts what the watcher told iii.
#[derive(Default)]
struct Counting {
    installed: AtomicU64,
    removed: AtomicU64,
}

impl ReloadListener for Counting {
    fn installed(&self, _plugin: &Arc<sandbox_host::plugin::LoadedPlugin>) {
        self.installed.fetch_add(1, Ordering::Relaxed);
    }
    fn removed(&self, _name: &str) {
        self.removed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Review item 8: a plugins directory that cannot be read (moved away, EMFILE, an NFS
/// hiccup) says nothing about deleted plugins: the watcher changes nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_plugins_directory_unregisters_nothing() {
    let counting = Arc::new(Counting::default());
    let w = watched(Some(counting.clone())).await;
    w.add_e2b(&std::fs::read(plugin_wasm("e2b")).unwrap());
    eventually("e2b is loaded", || w.sha().is_some()).await;
    let installs = counting.installed.load(Ordering::Relaxed);
    let away = w.dir().with_extension("away");
    std::fs::rename(w.dir(), &away).unwrap();
    for _ in 0..10 {
        tokio::time::sleep(POLL).await;
        assert!(w.sha().is_some(), "e2b must keep serving while its directory is unreadable");
    }
    std::fs::rename(&away, w.dir()).unwrap();
    for _ in 0..6 {
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(counting.removed.load(Ordering::Relaxed), 0, "nothing was unregistered");
    assert_eq!(counting.installed.load(Ordering::Relaxed), installs, "nothing was reloaded either: the files did not change");
    assert_eq!(w.host.ok("e2b", Leaf::List, json!({})).await["reconciled"], true);
    let _ = w.stop.send(true);
}
