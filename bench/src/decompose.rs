//! `sandbox-bench decompose`: where a plugin call's time and CPU go, row by row, each
//! run in tasks on the runtime's workers as production runs calls:
//!
//! 1. raw floor — one pooled hyper GET to the loopback upstream;
//! 2. native — the e2b `list` logic as ordinary Rust (reqwest + serde);
//! 3. pooled Store + instantiate + `describe()` of e2b — the instance alone;
//! 4. the same for the `no-upstream` fixture, a smaller component;
//! 5. plugin call, no upstream request — `Host::call` of the `no-upstream` fixture's
//!    `list`, which parses the same two-row body it holds: host pipeline + instance +
//!    guest JSON, no I/O;
//! 6. the `upstream` import's host side alone — `whole_body::send` of e2b's list request
//!    under a fresh call's egress hooks, from host code: policy, credential, pooled
//!    client, body limits and redaction, no guest;
//! 7. plugin call, one upstream request — `Host::call("e2b", list)`.
//!
//! CPU per call is the process's user + system time over a closed-loop window divided by
//! the calls made in it, at 1 and at 64 callers. The loopback upstream runs in this
//! process, so rows 1, 2, 6 and 7 include its share (the same for each); rows 3 to 5
//! have none. Three runs, each row's spread printed.

use crate::measure::{cpu_per_call, latency};
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
    pub upstream: std::net::SocketAddr,
}

pub async fn run(paths: &Paths) {
    let names = [
        "raw floor (hyper GET)",
        "native (reqwest + serde)",
        "pooled Store + instantiate + describe()",
        "… the same for the no-upstream fixture",
        "plugin call, no upstream request",
        "the upstream import's host side alone",
        "plugin call, one upstream request",
    ];
    let mut runs: Vec<[Sample; 7]> = Vec::new();
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
        let describe = |name: &str| {
            let plugin = paths.host.registry.get(name).unwrap();
            move || {
                let plugin = plugin.clone();
                async move {
                    sandbox_host::runtime::invoke::describe(&plugin.name, &plugin.pre, &plugin.policy).await.unwrap();
                }
            }
        };
        let import_alone = {
            let plugin = paths.host.registry.get("e2b").unwrap();
            let url = format!("http://{}/v2/sandboxes?state=running,paused&limit=100", paths.upstream);
            move || {
                let (plugin, url) = (plugin.clone(), url.clone());
                async move {
                    use sandbox_host::runtime::whole_body::{send, WholeRequest};
                    let record = Arc::default();
                    let mut hooks = sandbox_host::policy::egress::EgressHooks::new(plugin.policy.egress.clone(), record);
                    // As a `list` call's Store sets them (`runtime/invoke.rs`): its budget.
                    hooks.listing = true;
                    let req = WholeRequest { method: "GET".into(), url, headers: vec![], body: vec![], timeout: None };
                    let answer = send(&mut hooks, req).await.unwrap();
                    assert_eq!(answer.status, 200);
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
            sample(describe("e2b")).await,
            sample(describe("no-upstream")).await,
            sample(call("no-upstream")).await,
            sample(import_alone).await,
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
    // Attribution from the median run (by the plugin row's p50). Rows: 0 floor, 1 native,
    // 2 e2b's instance, 3 no-upstream's instance, 4 no-upstream's call, 5 the import's
    // host side, 6 e2b's call.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i][6].p50);
    let m = &runs[order[runs.len() / 2]];
    let cpu = |i: usize| micros(m[i].cpu_1);
    let p50 = |i: usize| micros(m[i].p50);
    let request = |v: &dyn Fn(usize) -> f64| v(6) - v(4) - (v(2) - v(3));
    println!("\nAttribution (median run; CPU per call at one caller):\n");
    println!("| share | CPU µs | p50 µs |");
    println!("|---|---:|---:|");
    println!("| instance: pooled Store + instantiate + describe() of e2b (row 3) | {:.1} | {:.1} |", cpu(2), p50(2));
    println!("| … e2b's instance beyond the no-upstream fixture's (row 3 − row 4) | {:+.1} | {:+.1} |", cpu(2) - cpu(3), p50(2) - p50(3));
    println!(
        "| host pipeline + guest list JSON, beyond the instance (row 5 − row 4) | {:+.1} | {:+.1} |",
        cpu(4) - cpu(3),
        p50(4) - p50(3)
    );
    println!("| one upstream request from the guest (row 7 − row 5 − (row 3 − row 4)) | {:+.1} | {:+.1} |", request(&cpu), request(&p50));
    println!("| … of which the import's host side (row 6) | {:.1} | {:.1} |", cpu(5), p50(5));
    println!(
        "| … and the rest: the guest's call into the host and back, the WIT values | {:+.1} | {:+.1} |",
        request(&cpu) - cpu(5),
        request(&p50) - p50(5)
    );
    println!("| the same request made natively (row 2; row 2 − row 1 is native's JSON + client) | {:.1} | {:.1} |", cpu(1), p50(1));
    println!(
        "| plugin − native: CPU per call (target ≤ 25 µs) | {:+.1} | p50 ratio {:.2} (target ≤ 1.3) |",
        cpu(6) - cpu(1),
        p50(6) / p50(1)
    );
    println!("| plugin ÷ native, throughput @64 (target ≥ 0.8) | {:.2} | |", m[6].tput_64 / m[1].tput_64);
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
    Paths { floor, native, host, upstream: addr }
}
