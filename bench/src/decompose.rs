//! `sandbox-bench decompose`: where a plugin call's time and CPU go, row by row, each
//! run in tasks on the runtime's workers as production runs calls:
//!
//! 1. raw floor — one pooled hyper GET to the loopback upstream;
//! 2. native — the e2b `list` logic as ordinary Rust (reqwest + serde);
//! 3. pooled Store + instantiate + `describe()` — the instance alone;
//! 4. plugin call, no upstream request — `Host::call` of the `no-upstream` fixture's
//!    `list`, which parses the same two-row body it holds: host pipeline + instance +
//!    guest JSON, no I/O;
//! 5. plugin call, one upstream request — `Host::call("e2b", list)`.
//!
//! CPU per call is the process's user + system time over a closed-loop window divided by
//! the calls made in it, at 1 and at 64 callers. The loopback upstream runs in this
//! process, so rows 1, 2 and 5 include its share (the same for each); rows 3 and 4 have
//! none. Three runs, each row's spread printed.

use crate::measure::{cpu_per_call, latency, us};
use sandbox_host::{Host, Leaf};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const RUNS: usize = 3;
const N: usize = 2000;
const WINDOW: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Default)]
struct Sample {
    p50: Duration,
    cpu_1: Duration,
    cpu_64: Duration,
    tput_64: f64,
}

async fn sample<F, Fut>(f: F) -> Sample
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let p50 = latency(200, N, &f).await.p50;
    let (cpu_1, _) = cpu_per_call(1, WINDOW, f.clone()).await;
    let (cpu_64, tput_64) = cpu_per_call(64, WINDOW, f).await;
    Sample { p50, cpu_1, cpu_64, tput_64 }
}

pub struct Paths {
    pub floor: Arc<crate::upstream::RawFloor>,
    pub native: Arc<crate::native::NativeE2b>,
    /// Serves `e2b` (pointed at the loopback upstream) and `no-upstream`.
    pub host: Arc<Host>,
}

pub async fn run(paths: &Paths) {
    let names = [
        "raw floor (hyper GET)",
        "native (reqwest + serde)",
        "pooled Store + instantiate + describe()",
        "plugin call, no upstream request",
        "plugin call, one upstream request",
    ];
    let mut runs: Vec<[Sample; 5]> = Vec::new();
    for _ in 0..RUNS {
        let floor = {
            let raw = paths.floor.clone();
            move || {
                let raw = raw.clone();
                async move { raw.get().await }
            }
        };
        let native = {
            let client = paths.native.clone();
            move || {
                let client = client.clone();
                async move {
                    client.list().await.unwrap();
                }
            }
        };
        let describe = {
            let plugin = paths.host.registry.get("e2b").unwrap();
            move || {
                let plugin = plugin.clone();
                async move {
                    sandbox_host::runtime::invoke::describe(&plugin.name, &plugin.pre, &plugin.policy).await.unwrap();
                }
            }
        };
        let call = |provider: &'static str| {
            let host = paths.host.clone();
            move || {
                let host = host.clone();
                async move {
                    host.call(provider, Leaf::List, &json!({})).await.unwrap();
                }
            }
        };
        runs.push([
            sample(floor).await,
            sample(native).await,
            sample(describe).await,
            sample(call("no-upstream")).await,
            sample(call("e2b")).await,
        ]);
    }
    println!("\n## Decomposition (list; worker tasks; {RUNS} runs, min–max)\n");
    println!("| row | p50 µs @1 | CPU µs/call @1 | CPU µs/call @64 | calls/s @64 |");
    println!("|---|---:|---:|---:|---:|");
    let span = |f: &dyn Fn(&Sample) -> f64, row: usize, decimals: usize| {
        let v: Vec<f64> = runs.iter().map(|r| f(&r[row])).collect();
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        if (hi - lo) / hi.max(1e-9) < 0.005 {
            format!("{lo:.decimals$}")
        } else {
            format!("{lo:.decimals$}–{hi:.decimals$}")
        }
    };
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} | {} |",
            span(&|s| micros(s.p50), i, 1),
            span(&|s| micros(s.cpu_1), i, 1),
            span(&|s| micros(s.cpu_64), i, 1),
            span(&|s| s.tput_64, i, 0),
        );
    }
    // Attribution from the median run (by the plugin row's p50).
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i][4].p50);
    let m = &runs[order[runs.len() / 2]];
    let d = |a: Duration, b: Duration| micros(a) - micros(b);
    println!("\nAttribution (median run; CPU per call at one caller):\n");
    println!("| share | CPU µs | p50 µs |");
    println!("|---|---:|---:|");
    println!("| instance: pooled Store + instantiate + describe() | {:.1} | {} |", micros(m[2].cpu_1), us(m[2].p50));
    println!(
        "| host pipeline + guest list JSON, beyond the instance | {:+.1} | {:+.1} |",
        d(m[3].cpu_1, m[2].cpu_1),
        d(m[3].p50, m[2].p50)
    );
    println!("| one upstream request from the guest (row 5 − row 4) | {:+.1} | {:+.1} |", d(m[4].cpu_1, m[3].cpu_1), d(m[4].p50, m[3].p50));
    println!("| the same request made natively (row 2 − row 1 is native's JSON + client) | {:.1} | {} |", micros(m[1].cpu_1), us(m[1].p50));
    println!(
        "| plugin − native: CPU per call (target ≤ 25 µs) | {:+.1} | p50 ratio {:.2} (target ≤ 1.3) |",
        d(m[4].cpu_1, m[1].cpu_1),
        m[4].p50.as_secs_f64() / m[1].p50.as_secs_f64()
    );
    println!("| plugin ÷ native, throughput @64 (target ≥ 0.8) | {:.2} | |", m[4].tput_64 / m[1].tput_64);
}

/// The loopback upstream, a host serving `e2b` and the `no-upstream` fixture, the raw
/// floor and native clients, all pointed at that upstream.
pub async fn setup(root: &std::path::Path, cache: &std::path::Path) -> Paths {
    let addr = crate::upstream::start().await;
    let dir = crate::plugins_dir(root, &addr.to_string());
    let fixture = root.join("tests/fixtures/no-upstream.wasm");
    std::fs::copy(&fixture, dir.path().join("no-upstream.wasm")).expect("tests/fixtures/no-upstream.wasm: run `just build-fixtures`");
    let host = crate::host(dir.path(), cache, true).await;
    // The host has read its plugins; the directory may go.
    drop(dir);
    let floor = Arc::new(crate::upstream::RawFloor::new(addr));
    let native = Arc::new(crate::native::NativeE2b::new(format!("http://{addr}"), crate::KEY));
    Paths { floor, native, host }
}
