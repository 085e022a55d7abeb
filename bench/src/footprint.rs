//! `sandbox-bench footprint`: what each plugin in `plugins/` costs the host, Rust and
//! Python alike — component size, cold compile, cached load, pooled instantiate +
//! `describe()`, one `list` against its simulator, and memory per instance (the
//! instance's linear memory as the limiter counts it, and resident memory per instance
//! held live).

use crate::measure::{latency, rss, us};
use provider_sims::{daytona::DaytonaSim, e2b::E2bSim, morph::MorphSim, vercel::VercelSim};
use sandbox_host::contract::shapes::Request;
use sandbox_host::plugin::loader::Loader;
use sandbox_host::plugin::LoadedPlugin;
use sandbox_host::runtime::engine::Runtime;
use sandbox_host::runtime::{invoke, store::StoreState};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "footprint-secret";
/// Instances held at once for the resident-memory row.
const HELD: usize = 50;

/// A simulator kept running for the plugin's `list` calls.
enum Sim {
    E2b(E2bSim),
    Morph(MorphSim),
    Daytona(DaytonaSim),
    Vercel(VercelSim),
}

impl Sim {
    async fn start(provider: &str) -> Sim {
        match provider {
            "e2b" => Sim::E2b(E2bSim::start(0, SECRET).await.unwrap()),
            "morph" => Sim::Morph(MorphSim::start(0, SECRET).await.unwrap()),
            "daytona" => Sim::Daytona(DaytonaSim::start(0, SECRET).await.unwrap()),
            "vercel" => Sim::Vercel(VercelSim::start(0, SECRET).await.unwrap()),
            other => panic!("no simulator for plugin {other}"),
        }
    }

    fn policy(&self) -> String {
        match self {
            Sim::E2b(s) => s.policy_toml(),
            Sim::Morph(s) => s.policy_toml(),
            Sim::Daytona(s) => s.policy_toml(),
            Sim::Vercel(s) => s.policy_toml(),
        }
    }
}

struct Footprint {
    name: &'static str,
    lang: &'static str,
    size: usize,
    compile: Duration,
    cached_load: Duration,
    instantiate_only: Duration,
    instantiate: Duration,
    list: Duration,
    linear_memory: usize,
    peak_in_list: usize,
    resident_per_instance: u64,
}

pub async fn run(root: &Path) {
    let mut rows = Vec::new();
    for (name, lang) in [("e2b", "Rust"), ("morph", "Rust"), ("daytona", "Rust"), ("vercel", "Python (componentize-py)")] {
        rows.push(measure(root, name, lang).await);
    }
    println!("\n## Plugin footprint (per plugin in plugins/; one run)\n");
    println!("| plugin | language | size | cold compile | cached load | instantiate (mean) | instantiate + describe p50 | list p50 | linear memory at start | peak in a list | RSS per live instance |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} MiB | {:.0} ms | {:.1} ms | {} µs | {} µs | {} µs | {:.1} MiB | {:.1} MiB | {:.0} KiB |",
            r.name,
            r.lang,
            r.size as f64 / (1 << 20) as f64,
            r.compile.as_secs_f64() * 1e3,
            r.cached_load.as_secs_f64() * 1e3,
            us(r.instantiate_only),
            us(r.instantiate),
            us(r.list),
            r.linear_memory as f64 / (1 << 20) as f64,
            r.peak_in_list as f64 / (1 << 20) as f64,
            r.resident_per_instance as f64 / 1024.0,
        );
    }
}

async fn measure(root: &Path, name: &'static str, lang: &'static str) -> Footprint {
    let bytes = std::fs::read(root.join(format!("plugins/{name}.wasm"))).unwrap_or_else(|e| panic!("plugins/{name}.wasm: {e}"));
    let compile = {
        let runtime = Runtime::new(None).unwrap();
        let t = Instant::now();
        runtime.component(&bytes).unwrap();
        t.elapsed()
    };
    let sim = Sim::start(name).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&file, &bytes).unwrap();
    std::fs::write(file.with_extension("toml"), sim.policy()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let loader = || {
        let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
        Loader::with_env(runtime, Arc::new(|_: &str| Some(SECRET.to_string()))).unwrap()
    };
    // The first load compiles and writes the cache; a new host's load reads it.
    loader().load_file(&file).await.unwrap();
    let fresh = loader();
    let t = Instant::now();
    let plugin = fresh.load_file(&file).await.unwrap();
    let cached_load = t.elapsed();

    let instantiate = latency(20, 200, || {
        let plugin = &plugin;
        async move {
            invoke::describe(&plugin.name, &plugin.pre, &plugin.policy).await.unwrap();
        }
    })
    .await
    .p50;
    let peak_in_list = AtomicUsize::new(0);
    let list = latency(5, 100, || {
        let (plugin, peak) = (&plugin, &peak_in_list);
        async move {
            let (outcome, stats) = invoke::run(plugin, &Request::List, Duration::from_secs(10)).await;
            outcome.unwrap().unwrap();
            peak.fetch_max(stats.peak_memory_bytes, Ordering::Relaxed);
        }
    })
    .await
    .p50;
    let peak_in_list = peak_in_list.into_inner();
    let (linear_memory, resident_per_instance, instantiate_only) = held_instances(&plugin, HELD).await;
    drop(sim);
    Footprint {
        name,
        lang,
        size: bytes.len(),
        compile,
        cached_load,
        instantiate_only,
        instantiate,
        list,
        linear_memory,
        peak_in_list,
        resident_per_instance,
    }
}

/// Linear memory of one fresh instance, resident memory per instance with `n` of them
/// alive, and the mean time to instantiate one (no export called).
pub async fn held_instances(plugin: &LoadedPlugin, n: usize) -> (usize, u64, Duration) {
    let (before, mut took) = (rss(), Duration::ZERO);
    let mut live = Vec::with_capacity(n);
    for _ in 0..n {
        let state = StoreState::new(plugin.name.clone(), &plugin.policy, plugin.config.clone(), Arc::default());
        let mut store = wasmtime::Store::new(plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(u64::MAX / 2);
        let t = Instant::now();
        plugin.pre.instantiate(&mut store).await.unwrap();
        took += t.elapsed();
        live.push(store);
    }
    let per = rss().saturating_sub(before) / n as u64;
    let linear = live[0].data().limiter.peak_bytes;
    (linear, per, took / n as u32)
}
