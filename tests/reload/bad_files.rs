//! Issue 12: bad files in `plugins/` — a 0-byte `.wasm`, a directory named `x.wasm`, a
//! symbolic-link loop, a dangling link, a second copy of a plugin (two files declaring one
//! provider name), a `.toml` without a `.wasm` — each get exactly one diagnostic naming the
//! file and what to do, and the good plugins beside them load: at start, and under the
//! watcher, which reports each once (not on every poll) and keeps serving a loaded plugin
//! whose file turned into one of them.

use super::*;
use std::io::Write as _;
use std::sync::Mutex;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Puts one of every kind of bad entry into `dir`; returns their file names and what
/// each diagnostic must say.
fn add_bad_entries(dir: &Path) -> Vec<(&'static str, &'static str)> {
    std::fs::write(dir.join("empty.wasm"), b"").unwrap();
    std::fs::create_dir(dir.join("folder.wasm")).unwrap();
    std::os::unix::fs::symlink("loop.wasm", dir.join("loop.wasm")).unwrap();
    std::os::unix::fs::symlink("missing/nothing.wasm", dir.join("dangling.wasm")).unwrap();
    std::fs::copy(plugin_wasm("e2b"), dir.join("e2b-copy.wasm")).unwrap();
    std::fs::write(dir.join("orphan.toml"), "max_concurrent_sandboxes = 2\n").unwrap();
    vec![
        ("empty.wasm", "it is empty (0 bytes)"),
        ("folder.wasm", "it is a directory, not a component file; plugins are component files: move it out"),
        ("loop.wasm", "a loop of links; point it at a component file or remove it"),
        ("dangling.wasm", "nothing (a dangling link); point it at a component file or remove it"),
        ("e2b-copy.wasm", "e2b.wasm beside it declares that name too: two files for one provider; remove this copy"),
        ("orphan.toml", "a policy with no plugin: there is no orphan.wasm beside it"),
    ]
}

/// Exactly one diagnostic per bad file, each with its reason; nothing else.
fn assert_one_each(diags: &[sandbox_host::plugin::loader::Diagnostic], expected: &[(&str, &str)]) {
    for (file, says) in expected {
        let mine: Vec<_> = diags.iter().filter(|d| d.file.file_name().is_some_and(|n| n == *file)).collect();
        assert_eq!(mine.len(), 1, "one diagnostic for {file}: {diags:#?}");
        assert!(mine[0].reason.contains(says), "{file}: {:?} should say {says:?}", mine[0].reason);
    }
    assert_eq!(diags.len(), expected.len(), "no other diagnostics: {diags:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_file_is_one_diagnostic_and_the_good_plugins_load() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let h = TestHost::start_with(
        vec![sandbox_tests::PluginSetup::new("e2b", sim.policy_toml()), sandbox_tests::PluginSetup::new("morph", "")],
        &[("E2B_API_KEY", SECRET)],
        |_| {},
    )
    .await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    let expected = add_bad_entries(h.dir.path());
    // What a start of the host over this directory reports and loads.
    let (plugins, diags) = h.host.loader.load_dir(h.dir.path()).await;
    assert_eq!(plugins.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(), vec!["e2b", "morph"]);
    assert_one_each(&diags, &expected);
    for d in &diags {
        assert!(d.to_string().starts_with(&h.dir.path().join(d.file.file_name().unwrap()).display().to_string()), "names the file: {d}");
    }
    // And what a host started over it serves.
    let mut config = sandbox_host::config::HostConfig::new(h.dir.path().to_path_buf());
    config.cache_dir = None;
    let env = Arc::new(|k: &str| (k == "E2B_API_KEY").then(|| SECRET.to_string()));
    let loader = sandbox_host::plugin::loader::Loader::with_env(sandbox_tests::runtime(), env).unwrap();
    let (host, diags) = sandbox_host::Host::start_with(config, loader).await.unwrap();
    assert_one_each(&diags, &expected);
    assert_eq!(host.registry.names(), vec!["e2b", "morph"]);
    assert_eq!(host.call("e2b", Leaf::List, &json!({})).await.unwrap()["reconciled"], true, "the good plugin serves");
}

/// A writer the test reads back: what the watcher logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Under the watcher (one thread, so the test's log subscriber sees the watcher's task):
/// the bad entries neither stop a new plugin from going live (a link loop used to fail
/// every scan, freezing hot reload) nor unregister one whose file became a directory, and
/// each is logged once however many polls see it.
#[tokio::test(flavor = "current_thread")]
async fn the_watcher_reports_each_bad_file_once_and_keeps_going() {
    let log = Captured::default();
    let writer = log.clone();
    let _guard = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .set_default();
    let w = watched(None).await;
    w.add_e2b(&std::fs::read(plugin_wasm("e2b")).unwrap());
    eventually("e2b is loaded", || w.sha().is_some()).await;
    let good = w.sha();
    let expected = add_bad_entries(w.dir());
    // A new plugin beside them still goes live.
    install(w.dir(), "morph.wasm", &std::fs::read(plugin_wasm("morph")).unwrap());
    eventually("morph is loaded", || w.host.host.registry.get("morph").is_some()).await;
    // A loaded plugin whose file became a directory is a broken file: it keeps serving.
    std::fs::remove_file(w.dir().join("e2b.wasm")).unwrap();
    std::fs::create_dir(w.dir().join("e2b.wasm")).unwrap();
    tokio::time::sleep(POLL * 10).await;
    assert_eq!(w.sha(), good, "e2b keeps serving");
    assert_eq!(w.host.ok("e2b", Leaf::List, json!({})).await["reconciled"], true);
    let text = log.text();
    let mut expected = expected;
    expected.push(("e2b.wasm", "it is a directory"));
    for (file, says) in &expected {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("plugin not (re)loaded") && l.contains(&format!("/{file}: "))).collect();
        assert_eq!(lines.len(), 1, "{file} is reported once, not per poll:\n{text}");
        assert!(lines[0].contains(says), "{file}: {}", lines[0]);
    }
    assert!(text.contains("e2b.wasm: it is a directory") && text.contains("the previous version keeps serving"), "{text}");
    // Put right, it is loaded again (a new version: the old fingerprint is not "applied").
    std::fs::remove_dir(w.dir().join("e2b.wasm")).unwrap();
    install(w.dir(), "e2b.wasm", &variant(&std::fs::read(plugin_wasm("e2b")).unwrap(), 77));
    eventually("the fixed e2b is live", || w.sha() != good).await;
    let _ = w.stop.send(true);
    let _ = writeln!(std::io::stderr(), "{text}");
}
