//! `just bench`: the plugin path against the same provider compiled natively, a raw
//! loopback floor and the iii bridge, all in one run, printed as ratios. Never a test:
//! numbers depend on the machine; the ratios are what `BENCHMARKS.md` tracks.

mod decompose;
mod e2b_api;
mod footprint;
mod measure;
mod native;
mod scale;
mod soak;
mod streaming;
mod upstream;

// The host binary's allocator and its setting, so the plugin path is measured as it runs.
sandbox_host::install_allocator!();

use measure::{cpu_per_call, latency, rss, us, Latency};
use sandbox_host::bridge::iii::{Bridge, BridgeOptions};
use sandbox_host::config::HostConfig;
use sandbox_host::plugin::loader::Loader;
use sandbox_host::runtime::engine::Runtime;
use sandbox_host::{Host, Leaf};
use sandbox_tests::mock_engine::MockEngine;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const KEY: &str = "e2b_bench_key";
const N: usize = 2000;
const WINDOW: Duration = Duration::from_secs(2);

fn plugins_dir(root: &Path, upstream: &str) -> tempfile::TempDir {
    plugins_dir_with(root, upstream, "")
}

/// A plugins directory with e2b pointed at `upstream`; `limits` adds lines to `[limits]`.
fn plugins_dir_with(root: &Path, upstream: &str, limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("plugins/e2b.wasm"), dir.path().join("e2b.wasm")).expect("plugins/e2b.wasm: run `just build-plugins`");
    let policy = format!("api_base = \"http://{upstream}\"\nallowed_hosts = [\"{upstream}\"]\n[credentials]\napi-key = \"E2B_API_KEY\"\n[limits]\nmax_calls_in_flight = 256\n# 64 callers at once: above the default of 16 requests in flight per plugin.\nmax_concurrent_upstream_requests = 256\n{limits}");
    std::fs::write(dir.path().join("e2b.toml"), policy).unwrap();
    dir
}

async fn host(dir: &Path, cache: &Path, metrics: bool) -> Arc<Host> {
    let loader = Loader::with_env(
        Runtime::new(Some(cache.to_path_buf())).unwrap(),
        Arc::new(|k: &str| (k == "E2B_API_KEY").then(|| KEY.to_string())),
    )
    .unwrap();
    let mut config = HostConfig::new(dir.to_path_buf());
    config.metrics = metrics;
    let (host, diags) = Host::start_with(config, loader).await.unwrap();
    assert!(diags.is_empty(), "{diags:?}");
    host
}

struct Row {
    name: &'static str,
    lat: Latency,
    tput: [f64; 3],
    /// Process CPU time per call in each throughput window.
    cpu: [Duration; 3],
}

#[tokio::main]
async fn main() {
    // Every measurement runs in a task on a runtime worker, as production runs calls
    // (bridge/iii.rs spawns one per invocation), never on the `#[tokio::main]` thread,
    // whose hand-offs to the workers would be counted as the call's cost.
    tokio::spawn(bench()).await.expect("the bench task panicked");
}

async fn bench() {
    let section = std::env::args().nth(1);
    match section.as_deref() {
        Some("idle-host") => return idle_host().await,
        Some("profile") => return profile().await,
        Some("profile-native") => return profile_native().await,
        Some("streaming") => return streaming::run(&sandbox_tests::root()).await,
        Some("e2b-api") => return e2b_api::run(&sandbox_tests::root()).await,
        Some("footprint") => return footprint::run(&sandbox_tests::root()).await,
        Some("scale") => return scale::run(&sandbox_tests::root()).await,
        Some("scale-child") => return scale::child(&std::env::args().skip(2).collect::<Vec<_>>()).await,
        Some("decompose") => {
            let cache = tempfile::tempdir().unwrap();
            return decompose::run(&decompose::setup(&sandbox_tests::root(), cache.path()).await).await;
        }
        Some("soak") => {
            let calls = std::env::args().nth(2).map(|n| n.parse().expect("soak [CALLS]")).unwrap_or(200_000);
            if !soak::run(&sandbox_tests::root(), calls).await {
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let root = sandbox_tests::root();
    let cache = tempfile::tempdir().unwrap();
    let addr = upstream::start().await;
    let dir = plugins_dir(&root, &addr.to_string());
    let host_on = host(dir.path(), cache.path(), true).await;
    let native = Arc::new(native::NativeE2b::new(format!("http://{addr}"), KEY));

    let raw = Arc::new(upstream::RawFloor::new(addr));
    let floor = move || {
        let raw = raw.clone();
        async move { raw.get().await }
    };
    let native_call = {
        let native = native.clone();
        move || {
            let native = native.clone();
            async move {
                native.list().await.unwrap();
            }
        }
    };
    let plugin_call = |h: Arc<Host>| {
        move || {
            let h = h.clone();
            async move {
                h.call("e2b", Leaf::List, &json!({})).await.unwrap();
            }
        }
    };

    // The iii path: the mock engine invokes the provider function through the bridge.
    let engine = Arc::new(MockEngine::start(0).await);
    let bridge = Bridge::connect(host_on.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(Duration::from_secs(10)).await.unwrap();
    let fid = sandbox_host::bridge::iii::provider_function_id("e2b", Leaf::List);
    while engine.function(&fid).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let iii_call = {
        let engine = engine.clone();
        move || {
            let (engine, fid) = (engine.clone(), "sandbox::provider::e2b::list");
            async move {
                engine.invoke(fid, json!({})).await.unwrap();
            }
        }
    };

    let mut rows = Vec::new();
    macro_rules! row {
        ($name:expr, $f:expr) => {{
            let f = $f;
            let lat = latency(200, N, &f).await;
            let (mut tput, mut cpu) = ([0.0; 3], [Duration::ZERO; 3]);
            for (i, c) in [1usize, 16, 64].into_iter().enumerate() {
                (cpu[i], tput[i]) = cpu_per_call(c, WINDOW, f.clone()).await;
            }
            rows.push(Row { name: $name, lat, tput, cpu });
        }};
    }
    row!("raw floor (hyper GET)", floor);
    row!("native (reqwest + serde)", native_call);
    row!("plugin (sandbox-host)", plugin_call(host_on.clone()));
    row!("end to end through iii", iii_call);

    println!("\n## Latency and throughput (list, loopback upstream, {N} sequential calls, {}s windows)\n", WINDOW.as_secs());
    // CPU is the whole process's (user + system) over the window: the loopback upstream's
    // share is in every row, and the iii row also carries the mock engine's.
    println!("| path | p50 µs | p99 µs | calls/s @1 | @16 | @64 | CPU µs/call @1 | @16 | @64 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let [c1, c16, c64] = r.cpu.map(us);
        let (p50, p99) = (us(r.lat.p50), us(r.lat.p99));
        println!("| {} | {p50} | {p99} | {:.0} | {:.0} | {:.0} | {c1} | {c16} | {c64} |", r.name, r.tput[0], r.tput[1], r.tput[2]);
    }
    let (floor_r, native_r, plugin_r, iii_r) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("\n## Ratios\n");
    println!("| ratio | value | target |");
    println!("|---|---:|---|");
    println!("| plugin ÷ native, p50 | {:.2} | ≤ 1.15 |", ratio(plugin_r.lat.p50, native_r.lat.p50));
    println!("| plugin ÷ native, p99 | {:.2} | ≤ 1.30 |", ratio(plugin_r.lat.p99, native_r.lat.p99));
    println!("| plugin ÷ native, throughput @64 | {:.2} | ≥ 0.80 |", plugin_r.tput[2] / native_r.tput[2]);
    let extra = |i: usize| (plugin_r.cpu[i].as_secs_f64() - native_r.cpu[i].as_secs_f64()) * 1e6;
    println!("| plugin − native, CPU µs per call @1 | {:+.1} | ≤ 25 |", extra(0));
    println!("| plugin − native, CPU µs per call @64 | {:+.1} | (information) |", extra(2));
    println!("| plugin ÷ floor, p50 | {:.2} | (information) |", ratio(plugin_r.lat.p50, floor_r.lat.p50));
    println!("| iii ÷ plugin, p50 (the bridge's share) | {:.2} | (information) |", ratio(iii_r.lat.p50, plugin_r.lat.p50));

    // Metrics and quota enforcement: the same plugin path with metrics off.
    // Interleaved blocks, so drift (caches, the other core) hits both sides alike.
    let host_off = host(dir.path(), cache.path(), false).await;
    let rated_dir = plugins_dir_with(&root, &addr.to_string(), "rate_per_sec = 1000000000.0\n");
    let host_rated = host(rated_dir.path(), cache.path(), true).await;
    let (mut on_p50, mut off_p50, mut rated_p50) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..8 {
        off_p50.push(latency(50, N / 4, plugin_call(host_off.clone())).await.p50);
        on_p50.push(latency(50, N / 4, plugin_call(host_on.clone())).await.p50);
        rated_p50.push(latency(50, N / 4, plugin_call(host_rated.clone())).await.p50);
    }
    for v in [&mut on_p50, &mut off_p50, &mut rated_p50] {
        v.sort();
    }
    let (on, off) = (Latency { p50: on_p50[4], p99: on_p50[7] }, Latency { p50: off_p50[4], p99: off_p50[7] });
    println!("\n## Overheads\n");
    println!("| what | p50 µs | note |");
    println!("|---|---:|---|");
    println!("| plugin path, metrics on | {} | median of 8 interleaved blocks |", us(on.p50));
    println!(
        "| plugin path, metrics off | {} | metrics cost {:+.1} µs p50 |",
        us(off.p50),
        (on.p50.as_secs_f64() - off.p50.as_secs_f64()) * 1e6
    );
    println!(
        "| plugin path, rate limit on (token bucket every call) | {} | quota cost {:+.1} µs p50 vs none; the in-flight cap, memory limiter and CPU metering are always on |",
        us(rated_p50[4]),
        (rated_p50[4].as_secs_f64() - on.p50.as_secs_f64()) * 1e6
    );

    decompose::run(&decompose::setup(&root, cache.path()).await).await;
    instance_costs(&host_on).await;
    startup(&root, &addr.to_string()).await;
    memory(&root, &host_on).await;
    footprint::run(&root).await;
    streaming::run(&root).await;
    e2b_api::run(&root).await;
    scale::run(&root).await;
    bridge.shutdown().await;
}

/// Pooled Store + instantiate + a trivial export (`describe`), p50 over N.
async fn instance_costs(host: &Arc<Host>) {
    let plugin = host.registry.get("e2b").unwrap();
    let lat = latency(100, N, || {
        let plugin = plugin.clone();
        async move {
            sandbox_host::runtime::invoke::describe(&plugin.name, &plugin.pre, &plugin.policy).await.unwrap();
        }
    })
    .await;
    println!("| pooled Store + instantiate + describe() | {} | target ≤ 50 µs p50 (p99 {} µs) |", us(lat.p50), us(lat.p99));
}

/// First call after start with 10 plugins, from a cold and from a warm cache.
async fn startup(root: &Path, upstream: &str) {
    let bytes = std::fs::read(root.join("plugins/e2b.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        // Distinct components (a custom section makes each hash differ) named p0..p9.
        let mut b = bytes.clone();
        let name = format!("bench-{i}");
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name.as_bytes());
        b.push(0);
        b.push(section.len() as u8);
        b.extend(section);
        std::fs::write(dir.path().join(format!("p{i}.wasm")), b).unwrap();
    }
    // describe() names must match file stems, so load them as `e2b` one by one instead:
    // the cost measured is compile/deserialize + link + instantiate + describe per file.
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let loader = Loader::new(runtime).unwrap();
    let single = plugins_dir(root, upstream);
    let mut timings = Vec::new();
    for pass in ["cold cache", "warm cache"] {
        let t = Instant::now();
        let mut last = None;
        for i in 0..10 {
            let target = single.path().join("e2b.wasm");
            std::fs::copy(dir.path().join(format!("p{i}.wasm")), &target).unwrap();
            last = Some(loader.load_file(&target).await.unwrap());
        }
        let ready = t.elapsed();
        // The first call after start: a fresh instance of a just-loaded plugin, one upstream request.
        let plugin = last.unwrap();
        let t1 = Instant::now();
        let (outcome, _) =
            sandbox_host::runtime::invoke::run(&plugin, &sandbox_host::contract::shapes::Request::List, Duration::from_secs(10)).await;
        outcome.unwrap().unwrap();
        timings.push((pass, ready, t1.elapsed()));
    }
    let compile = {
        let runtime = Runtime::new(None).unwrap();
        let t = Instant::now();
        runtime.component(&bytes).unwrap();
        t.elapsed()
    };
    for (pass, ready, first) in &timings {
        println!("| 10 plugins ready, {pass} | {:.1} ms | target < 100 ms from the cache |", ready.as_secs_f64() * 1e3);
        println!(
            "| first call after start, {pass} | {:.1} ms after ready ({:.1} ms from start) | |",
            first.as_secs_f64() * 1e3,
            (*ready + *first).as_secs_f64() * 1e3
        );
    }
    println!(
        "| compile e2b.wasm ({} KiB) | {:.1} ms | target: a 300 KiB component < 500 ms |",
        bytes.len() / 1024,
        compile.as_secs_f64() * 1e3
    );
}

/// Resident memory per live instance, and an idle host with 3 plugins.
async fn memory(root: &Path, host: &Arc<Host>) {
    let plugin = host.registry.get("e2b").unwrap();
    let n = 200;
    let (_, per, _) = footprint::held_instances(&plugin, n).await;
    println!("| resident memory per live instance | {:.1} KiB | target ≤ 100 KiB ({n} instances held) |", per as f64 / 1024.0);
    let exe = std::env::current_exe().unwrap();
    // Twice: the first run fills the precompiled cache, the second is the measured start.
    let run = || std::process::Command::new(&exe).arg("idle-host").env("BENCH_ROOT", root).output().unwrap();
    let _ = run();
    let out = run();
    let rss_idle = String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap_or(f64::NAN);
    println!("| idle host with 3 plugins (e2b, morph, daytona), RSS | {:.1} MiB | target ≤ 40 MiB |", rss_idle / (1 << 20) as f64);
}

/// `sandbox-bench profile`: only the plugin path, for 10 s, for `perf record`.
async fn profile() {
    let root = sandbox_tests::root();
    let cache = tempfile::tempdir().unwrap();
    let addr = upstream::start().await;
    let dir = plugins_dir(&root, &addr.to_string());
    let h = host(dir.path(), cache.path(), true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0u64;
    while Instant::now() < deadline {
        h.call("e2b", Leaf::List, &json!({})).await.unwrap();
        n += 1;
    }
    eprintln!("{n} calls in 10 s");
}

/// `sandbox-bench profile-native`: only the native path, for 10 s.
async fn profile_native() {
    let addr = upstream::start().await;
    let native = native::NativeE2b::new(format!("http://{addr}"), KEY);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0u64;
    while Instant::now() < deadline {
        native.list().await.unwrap();
        n += 1;
    }
    eprintln!("{n} calls in 10 s");
}

/// Child mode: load e2b, morph and daytona (warm cache), print RSS in bytes.
async fn idle_host() {
    let root = std::path::PathBuf::from(std::env::var("BENCH_ROOT").unwrap());
    let dir = tempfile::tempdir().unwrap();
    for p in ["e2b", "morph", "daytona"] {
        std::fs::copy(root.join(format!("plugins/{p}.wasm")), dir.path().join(format!("{p}.wasm"))).unwrap();
    }
    let mut config = HostConfig::new(dir.path().to_path_buf());
    config.cache_dir = Some(root.join("target/bench-cache"));
    let (host, diags) = Host::start(config).await.unwrap();
    assert!(diags.is_empty(), "{diags:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("{}", rss());
    drop(host);
}
