//! Issue 17 item 2: the precompiled cache was trusted native code inside the drop folder.
//! Whoever could write `plugins/` could plant a `.cwasm` that the host deserialized,
//! unchecked, as a plugin's code. Each test below is one way to get foreign native code
//! run that way, and shows the host refuses it: the plugin is compiled from its own
//! bytes and loads as itself. The entry format and its checks are in
//! `host/src/runtime/cache.rs` (its unit tests cover each refusal reason).

use sandbox_host::cli::Cli;
use sandbox_host::config::HostConfig;
use sandbox_host::plugin::loader::Loader;
use sandbox_host::plugin::LoadedPlugin;
use sandbox_host::runtime::cache::MAGIC;
use sandbox_host::runtime::engine::{CacheOutcome, Runtime};
use sandbox_tests::plugin_wasm;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A plugins folder holding copies of the built `names`.
fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(plugin_wasm(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// One host start over `cache`: a new engine, the plugin loaded from `plugins`.
async fn start_and_load(cache: &Path, plugins: &Path, name: &str) -> LoadedPlugin {
    let loader = Loader::new(Runtime::new(Some(cache.to_path_buf())).unwrap()).unwrap();
    loader.load_file(&plugins.join(format!("{name}.wasm"))).await.unwrap_or_else(|d| panic!("{name} must load as itself: {d}"))
}

/// The cache entry of the component with this SHA-256 (hex).
fn entry_of(cache: &Path, sha256: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(sha256))
        .collect();
    assert_eq!(found.len(), 1, "one entry for {sha256} in {}: {found:?}", cache.display());
    found.into_iter().next().unwrap()
}

fn cli(args: &[&str]) -> Cli {
    use clap::Parser as _;
    Cli::try_parse_from(std::iter::once("sandbox-host").chain(args.iter().copied())).unwrap()
}

fn path_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_another_plugins_cache_entry_copied_over_this_ones_is_not_run() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(&["e2b", "morph"]);
    let e2b = start_and_load(cache.path(), plugins.path(), "e2b").await;
    let morph = start_and_load(cache.path(), plugins.path(), "morph").await;
    // Entry and MAC are one file: the copy carries morph's tag along.
    std::fs::copy(entry_of(cache.path(), &morph.sha256), entry_of(cache.path(), &e2b.sha256)).unwrap();

    let restarted = start_and_load(cache.path(), plugins.path(), "e2b").await;
    assert_eq!(restarted.descriptor.name, "e2b", "e2b.wasm runs e2b's code, not morph's");
    assert_eq!(restarted.cache, CacheOutcome::Compiled, "the copied entry was refused and e2b compiled from its own bytes");
    let next = start_and_load(cache.path(), plugins.path(), "e2b").await;
    assert_eq!((next.descriptor.name.as_str(), next.cache), ("e2b", CacheOutcome::Hit), "the rewritten entry is e2b's own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_a_crafted_entry_under_the_right_name_is_refused_and_never_run() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(&["e2b"]);
    let e2b = start_and_load(cache.path(), plugins.path(), "e2b").await;
    let entry = entry_of(cache.path(), &e2b.sha256);
    // Valid native code for this very engine, of another component: what an attacker plants.
    let foreign = Runtime::new(None).unwrap().engine.precompile_component(&std::fs::read(plugin_wasm("morph")).unwrap()).unwrap();
    let forged_tag: Vec<u8> = MAGIC.iter().copied().chain([0u8; 32]).chain(foreign.iter().copied()).collect();
    for (what, planted) in [
        ("a bare artifact of another component (what the old host ran)", foreign.clone()),
        ("that artifact behind a forged tag", forged_tag),
        ("garbage", b"\x7fELF and then nothing that wasmtime made".to_vec()),
    ] {
        std::fs::write(&entry, &planted).unwrap();
        let loaded = start_and_load(cache.path(), plugins.path(), "e2b").await;
        assert_eq!((loaded.descriptor.name.as_str(), loaded.cache), ("e2b", CacheOutcome::Compiled), "{what}: refused, compiled afresh");
        assert_ne!(std::fs::read(&entry).unwrap(), planted, "{what}: replaced by a good entry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_a_group_or_other_writable_cache_dir_is_not_used() {
    let plugins = plugins_dir(&["e2b"]);
    for mode in [0o770, 0o707] {
        let cache = tempfile::tempdir().unwrap();
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(Runtime::new(Some(cache.path().to_path_buf())).unwrap().cache_dir(), None, "mode {mode:o}");
        for start in ["first", "second"] {
            let loaded = start_and_load(cache.path(), plugins.path(), "e2b").await;
            assert_eq!(loaded.cache, CacheOutcome::Compiled, "mode {mode:o}, {start} start: nothing is read from it");
        }
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "mode {mode:o}: nothing is written into it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_a_cache_dir_owned_by_another_user_is_not_used() {
    let plugins = plugins_dir(&["e2b"]);
    let foreign = tempfile::tempdir().unwrap();
    // As root, give a folder away; otherwise `/` already belongs to someone else.
    let dir = match std::os::unix::fs::chown(foreign.path(), Some(65534), Some(65534)) {
        Ok(()) => foreign.path(),
        Err(_) => Path::new("/"),
    };
    assert_eq!(Runtime::new(Some(dir.to_path_buf())).unwrap().cache_dir(), None, "{} is not ours", dir.display());
    assert_eq!(start_and_load(dir, plugins.path(), "e2b").await.cache, CacheOutcome::Compiled);
    if dir == foreign.path() {
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "nothing is written into it");
    }
}

#[test]
fn i17_2_the_default_cache_dir_is_not_under_the_plugins_dir() {
    let plugins = tempfile::tempdir().unwrap();
    let under_plugins = |c: &HostConfig| c.cache_dir.as_ref().is_some_and(|d| d.starts_with(plugins.path()));
    let library_default = HostConfig::new(plugins.path().to_path_buf());
    assert!(!under_plugins(&library_default), "{:?}", library_default.cache_dir);
    let cli_default = cli(&["--plugins-dir", path_arg(plugins.path()), "plugins"]).global.host_config().unwrap();
    assert!(!under_plugins(&cli_default), "{:?}", cli_default.cache_dir);
    assert_eq!(cli_default.cache_dir, library_default.cache_dir, "the CLI keeps the documented default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_a_cache_dir_inside_the_plugins_dir_is_refused_at_start() {
    let plugins = tempfile::tempdir().unwrap();
    let p = plugins.path();
    let inside = p.join(".cache");
    let refusal = |c: Cli| c.global.host_config().map(|_| ()).expect_err("a cache inside the plugins folder must be refused").to_string();
    for cache in [inside.as_path(), p] {
        let e = refusal(cli(&["--plugins-dir", path_arg(p), "--cache-dir", path_arg(cache), "plugins"]));
        assert!(e.contains("is inside the plugins directory") && e.contains("--no-cache"), "{e}");
    }
    let config = p.join("sandbox-host.toml");
    std::fs::write(&config, format!("plugins_dir = {:?}\ncache_dir = {:?}\n", path_arg(p), path_arg(&inside))).unwrap();
    assert!(refusal(cli(&["--config", path_arg(&config), "plugins"])).contains("is inside the plugins directory"));
    // The whole command stops before any plugin is compiled or anything is written.
    assert!(sandbox_host::cli::run(cli(&["--plugins-dir", path_arg(p), "--cache-dir", path_arg(&inside), "plugins"])).await.is_err());
    assert!(!inside.exists());
    // No cache at all, or one outside, is fine.
    cli(&["--plugins-dir", path_arg(p), "--cache-dir", path_arg(&inside), "--no-cache", "plugins"]).global.host_config().unwrap();
    let outside = tempfile::tempdir().unwrap();
    cli(&["--plugins-dir", path_arg(p), "--cache-dir", path_arg(outside.path()), "plugins"]).global.host_config().unwrap();
}

/// Changes the process's working directory: every other test here uses absolute paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_2_check_writes_no_cache_into_the_current_directory() {
    let workdir = tempfile::tempdir().unwrap();
    std::fs::create_dir(workdir.path().join("plugins")).unwrap();
    let files = plugins_dir(&["e2b"]);
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(workdir.path()).unwrap();
    let status = sandbox_host::cli::run(cli(&["check", path_arg(&files.path().join("e2b.wasm"))])).await;
    std::env::set_current_dir(before).unwrap();
    assert_eq!(status.unwrap(), 0, "e2b.wasm checks out");
    assert!(!workdir.path().join("plugins/.cache").exists(), "check wrote ./plugins/.cache");
    assert_eq!(std::fs::read_dir(files.path()).unwrap().count(), 1, "nothing written beside the checked file");
}

/// Hosts starting side by side on one engine (as every suite's tests do) compile a
/// component once: the loads that missed the cache together wait for the first and then
/// load what it stored.
#[test]
fn loads_of_one_component_at_once_compile_it_once() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let bytes = std::sync::Arc::new(std::fs::read(plugin_wasm("e2b")).unwrap());
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (runtime, bytes) = (runtime.clone(), bytes.clone());
            std::thread::spawn(move || runtime.component(&bytes).unwrap().1)
        })
        .collect();
    let outcomes: Vec<CacheOutcome> = loads.into_iter().map(|l| l.join().unwrap()).collect();
    let compiled = outcomes.iter().filter(|o| **o == CacheOutcome::Compiled).count();
    assert_eq!(compiled, 1, "one compile, the others from the cache: {outcomes:?}");
}

/// The same across hosts that share only the cache directory (separate engines, as in
/// separate processes): the entry's lock file makes the others wait and load it.
#[test]
fn hosts_sharing_a_cache_compile_a_component_once() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::sync::Arc::new(std::fs::read(plugin_wasm("e2b")).unwrap());
    let start = std::sync::Arc::new(std::sync::Barrier::new(3));
    let loads: Vec<_> = (0..3)
        .map(|_| {
            let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
            let (bytes, start) = (bytes.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                runtime.component(&bytes).unwrap().1
            })
        })
        .collect();
    let outcomes: Vec<CacheOutcome> = loads.into_iter().map(|l| l.join().unwrap()).collect();
    let compiled = outcomes.iter().filter(|o| **o == CacheOutcome::Compiled).count();
    assert_eq!(compiled, 1, "one compile, the others from the cache: {outcomes:?}");
    let mut left: Vec<String> =
        std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left.len(), 2, "the key and the one entry, no lock file left: {left:?}");
    assert!(left[0].ends_with(".cwasm") && left[1] == "key", "{left:?}");
}
