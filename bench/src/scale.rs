//! `sandbox-bench scale`: one host at scale. Each case runs in a child process of its own
//! (`scale-child …`), so its resident memory is that host's and not what earlier cases
//! left behind, at two sizes; the growth per unit is the difference between the two
//! sizes divided by the difference in units, so a cost that grows worse than linearly
//! shows as a per-unit figure that rises with size.
//!
//! - **list**: one provider whose upstream holds N live sandboxes (E2B pages of 100 via
//!   `X-Next-Token`, as `GET /v2/sandboxes` answers): reconcile time (the slot book
//!   replaced by N rows), a caller's `list` of all N, host memory, the guest's peak;
//! - **in flight**: N calls at once against an upstream that answers after 500 ms:
//!   resident memory and threads while all N wait, and how long they took together;
//! - **plugins**: N plugins (copies of the `scale-000` fixture, each patched to its own
//!   name, so each is a distinct component) loaded by one host from a cold and from a
//!   warm cache, resident memory, then one call to each.

use crate::measure::{pss, rss, threads};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use sandbox_host::Leaf;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIST_SIZES: [usize; 2] = [1_000, 10_000];
const IN_FLIGHT_SIZES: [usize; 2] = [100, 1_000];
const PLUGIN_SIZES: [usize; 2] = [10, 100];
/// How long the slow upstream holds every request.
const SLOW: Duration = Duration::from_millis(500);
/// Rows per upstream page, as the e2b plugin asks (`limit=100`).
const PAGE: usize = 100;
/// The fixture's name, patched per copy (same length: `scale-NNN`).
const FIXTURE_NAME: &[u8] = b"scale-000";

pub async fn run(root: &Path) {
    let exe = std::env::current_exe().unwrap();
    let child = |args: &[&str]| -> Value {
        let out = std::process::Command::new(&exe).arg("scale-child").args(args).env("BENCH_ROOT", root).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("scale-child {args:?} failed ({e}): {}\n{text}", String::from_utf8_lossy(&out.stderr)))
    };
    let mib = |v: &Value, k: &str| num(v, k) / (1 << 20) as f64;

    println!("\n## One host at scale (each case in a fresh child process)\n");
    println!("| case | N | result | growth per unit (N₁ → N₂) |");
    println!("|---|---:|---|---|");

    let [small, large] = LIST_SIZES.map(|n| child(&["list", &n.to_string()]));
    for (v, growth) in [
        (&small, String::new()),
        (
            &large,
            format!(
                "reconcile {:.2} µs/row, caller's list {:.2} µs/row, host memory {:.2} KiB/row, guest peak {:.2} KiB/row",
                per_unit(&small, &large, "reconcile_ms") * 1e3,
                per_unit(&small, &large, "call_ms") * 1e3,
                per_unit(&small, &large, "host_growth") / 1024.0,
                per_unit(&small, &large, "guest_peak") / 1024.0,
            ),
        ),
    ] {
        println!(
            "| list of N upstream rows | {} | reconcile {:.1} ms (best of 3), caller's list {:.1} ms ({} rows), host RSS +{:.1} MiB, guest peak {:.1} MiB | {growth} |",
            v["n"],
            num(v, "reconcile_ms"),
            num(v, "call_ms"),
            v["rows"],
            mib(v, "host_growth"),
            mib(v, "guest_peak"),
        );
    }

    let [small, large] = IN_FLIGHT_SIZES.map(|n| child(&["in-flight", &n.to_string()]));
    let bare = child(&["in-flight-bare", &IN_FLIGHT_SIZES[1].to_string()]);
    for (v, growth) in [
        (&small, String::new()),
        (
            &large,
            format!(
                "{:.0} KiB RSS, {:.0} KiB PSS per call in flight",
                per_unit(&small, &large, "waiting_growth") / 1024.0,
                per_unit(&small, &large, "waiting_pss_growth") / 1024.0,
            ),
        ),
    ] {
        println!(
            "| plugin calls in flight, upstream answers after {} ms | {} | {} held upstream at once, all answered in {:.0} ms ({} ok); while waiting RSS +{:.1} MiB, PSS +{:.1} MiB; RSS after +{:.1} MiB; threads {} → {} | {growth} |",
            SLOW.as_millis(),
            v["n"],
            v["held"],
            num(v, "took_ms"),
            v["ok"],
            mib(v, "waiting_growth"),
            mib(v, "waiting_pss_growth"),
            mib(v, "after_growth"),
            v["threads_before"],
            v["threads_waiting"],
        );
    }
    println!(
        "| the same requests from a bare hyper client (the connections' share, both ends) | {} | {} held at once, {:.0} ms; while waiting RSS +{:.1} MiB, PSS +{:.1} MiB | {:.0} KiB PSS per request |",
        bare["n"],
        bare["held"],
        num(&bare, "took_ms"),
        mib(&bare, "waiting_growth"),
        mib(&bare, "waiting_pss_growth"),
        num(&bare, "waiting_pss_growth") / 1024.0 / num(&bare, "n"),
    );

    let cache = tempfile::tempdir().unwrap();
    let [small, large] = PLUGIN_SIZES.map(|n| {
        let (n, dir) = (n.to_string(), cache.path().join(n.to_string()));
        let cold = child(&["plugins", &n, dir.to_str().unwrap()]);
        let hot = child(&["plugins", &n, dir.to_str().unwrap()]);
        println!(
            "| plugins loaded ({} KiB each, distinct) | {n} | start {:.0} ms from a cold cache, {:.0} ms from the cache; RSS +{:.1} MiB; {} of {n} answered a call | |",
            hot["size"].as_u64().unwrap_or(0) / 1024,
            num(&cold, "start_ms"),
            num(&hot, "start_ms"),
            mib(&hot, "host_growth"),
            hot["ok"],
        );
        hot
    });
    println!(
        "| plugins, growth from the cache | {} → {} | | {:.2} ms and {:.0} KiB per plugin |",
        small["n"],
        large["n"],
        per_unit(&small, &large, "start_ms"),
        per_unit(&small, &large, "host_growth") / 1024.0,
    );
}

/// A child's measurement `key` (NaN when missing).
fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// How much `key` grew per unit of N from the `small` run to the `large` one.
fn per_unit(small: &Value, large: &Value, key: &str) -> f64 {
    (num(large, key) - num(small, key)) / (num(large, "n") - num(small, "n"))
}

/// `sandbox-bench scale-child CASE N [CACHE]`: one case, its measurements as a JSON line.
pub async fn child(args: &[String]) {
    let root = std::path::PathBuf::from(std::env::var("BENCH_ROOT").expect("BENCH_ROOT"));
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).expect("scale-child CASE N");
    let out = match args[0].as_str() {
        "list" => list(&root, n).await,
        "in-flight" => in_flight(&root, n, false).await,
        "in-flight-bare" => in_flight(&root, n, true).await,
        "plugins" => plugins(&root, n, Path::new(args.get(2).expect("scale-child plugins N CACHE"))).await,
        other => panic!("no scale case {other}"),
    };
    println!("{out}");
}

/// A plugins directory holding e2b pointed at `upstream`, with room for `in_flight` calls.
fn e2b_dir(root: &Path, upstream: SocketAddr, in_flight: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("plugins/e2b.wasm"), dir.path().join("e2b.wasm")).expect("plugins/e2b.wasm: run `just build-plugins`");
    let policy = format!(
        "api_base = \"http://{upstream}\"\n[credentials]\napi-key = \"E2B_API_KEY\"\n[limits]\n\
         max_calls_in_flight = {in_flight}\nmax_concurrent_upstream_requests = {in_flight}\n"
    );
    std::fs::write(dir.path().join("e2b.toml"), policy).unwrap();
    dir
}

async fn list(root: &Path, n: usize) -> Value {
    let addr = serve(Arc::new(Pages::new(n)), Duration::ZERO, Arc::default()).await;
    let dir = e2b_dir(root, addr, 16);
    let cache = tempfile::tempdir().unwrap();
    let host = crate::host(dir.path(), cache.path(), true).await;
    let before = rss();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        host.reconcile("e2b").await.unwrap();
        best = best.min(t.elapsed());
    }
    let host_growth = rss().saturating_sub(before);
    let (mut call, mut rows) = (Duration::MAX, 0);
    for _ in 0..3 {
        let t = Instant::now();
        let listed = host.call("e2b", Leaf::List, &json!({})).await.unwrap();
        call = call.min(t.elapsed());
        rows = listed["sandboxes"].as_array().map_or(0, Vec::len);
    }
    let guest_peak = host.metrics.json()["plugins"]["e2b"]["peak_memory_bytes"].as_u64().unwrap_or(0);
    json!({
        "n": n, "rows": rows, "reconcile_ms": best.as_secs_f64() * 1e3, "call_ms": call.as_secs_f64() * 1e3,
        "host_growth": host_growth, "guest_peak": guest_peak,
    })
}

/// `bare`: the same requests from a plain hyper client instead of plugin calls, for the
/// share of the connections (both ends: the upstream runs in this process too).
async fn in_flight(root: &Path, n: usize, bare: bool) -> Value {
    let held = Arc::new(AtomicUsize::new(0));
    let addr = serve(Arc::new(Pages::new(2)), SLOW, held.clone()).await;
    let dir = e2b_dir(root, addr, n);
    let cache = tempfile::tempdir().unwrap();
    let host = crate::host(dir.path(), cache.path(), true).await;
    // One call first: the plugin's code and the host's paths are then resident already.
    host.call("e2b", Leaf::List, &json!({})).await.unwrap();
    let (before, before_pss, threads_before) = (rss(), pss(), threads());
    let raw = bare.then(|| Arc::new(crate::upstream::RawFloor::new(addr)));
    let started = Instant::now();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let host = host.clone();
            let raw = raw.clone();
            tokio::spawn(async move {
                if let Some(raw) = raw {
                    raw.get().await;
                    return true;
                }
                host.call("e2b", Leaf::List, &json!({})).await.is_ok()
            })
        })
        .collect();
    let mut most = 0;
    while started.elapsed() < SLOW * 4 / 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        most = most.max(held.load(Ordering::SeqCst));
        if most == n {
            break;
        }
    }
    let (waiting, waiting_pss, threads_waiting) = (rss(), pss(), threads());
    let mut ok = 0;
    for call in calls {
        ok += usize::from(call.await.unwrap_or(false));
    }
    let took = started.elapsed();
    json!({
        "n": n, "held": most, "ok": ok, "took_ms": took.as_secs_f64() * 1e3,
        "waiting_growth": waiting.saturating_sub(before), "waiting_pss_growth": waiting_pss.saturating_sub(before_pss),
        "after_growth": rss().saturating_sub(before),
        "threads_before": threads_before, "threads_waiting": threads_waiting,
    })
}

async fn plugins(root: &Path, n: usize, cache: &Path) -> Value {
    let fixture =
        std::fs::read(root.join("tests/fixtures/scale-000.wasm")).expect("tests/fixtures/scale-000.wasm: run `just build-fixtures`");
    let addr = serve(Arc::new(Pages::new(2)), Duration::ZERO, Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let name = format!("scale-{i:03}");
        std::fs::write(dir.path().join(format!("{name}.wasm")), renamed(&fixture, name.as_bytes())).unwrap();
        let policy = format!("api_base = \"http://{addr}\"\n[credentials]\napi-key = \"E2B_API_KEY\"\n");
        std::fs::write(dir.path().join(format!("{name}.toml")), policy).unwrap();
    }
    let before = rss();
    let t = Instant::now();
    let host = crate::host(dir.path(), cache, true).await;
    let start = t.elapsed();
    let host_growth = rss().saturating_sub(before);
    let mut ok = 0;
    for i in 0..n {
        ok += usize::from(host.call(&format!("scale-{i:03}"), Leaf::List, &json!({})).await.is_ok());
    }
    json!({ "n": n, "size": fixture.len(), "start_ms": start.as_secs_f64() * 1e3, "host_growth": host_growth, "ok": ok })
}

/// `fixture` with every occurrence of its name replaced by `name` (same length).
fn renamed(fixture: &[u8], name: &[u8]) -> Vec<u8> {
    assert_eq!(name.len(), FIXTURE_NAME.len());
    let mut out = fixture.to_vec();
    let mut found = 0;
    for i in 0..out.len().saturating_sub(name.len() - 1) {
        if &out[i..i + name.len()] == FIXTURE_NAME {
            out[i..i + name.len()].copy_from_slice(name);
            found += 1;
        }
    }
    assert!(found > 0, "the scale-000 fixture no longer holds its name as plain bytes");
    out
}

/// `GET /v2/sandboxes` for N live sandboxes, pre-rendered in pages of [`PAGE`].
struct Pages(Vec<Bytes>);

impl Pages {
    fn new(n: usize) -> Pages {
        let row = |i: usize| {
            json!({
                "templateID": "rki5dems9wqfm4r03t7g", "alias": "base", "sandboxID": format!("isc{i:07}"),
                "clientID": "6532622b", "startedAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-01T01:00:00Z",
                "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 512, "metadata": {}, "state": "running", "envdVersion": "0.2.0",
            })
        };
        let rows: Vec<Value> = (0..n).map(row).collect();
        Pages(rows.chunks(PAGE).map(|c| Bytes::from(serde_json::to_vec(c).unwrap())).collect())
    }

    /// The page a request's `nextToken` names (the first without one), and the next token.
    fn answer(&self, query: Option<&str>) -> (Bytes, Option<String>) {
        let page = query
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("nextToken=")))
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let body = self.0.get(page).cloned().unwrap_or_else(|| Bytes::from_static(b"[]"));
        (body, (page + 1 < self.0.len()).then(|| (page + 1).to_string()))
    }
}

/// A loopback upstream answering from `pages` after `delay`; `held` counts requests
/// waiting out their delay.
async fn serve(pages: Arc<Pages>, delay: Duration, held: Arc<AtomicUsize>) -> SocketAddr {
    crate::upstream::serve(move |uri: hyper::Uri| {
        let (pages, held) = (pages.clone(), held.clone());
        async move {
            if !delay.is_zero() {
                held.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            let (body, next) = pages.answer(uri.query());
            let mut r = Response::builder().header("content-type", "application/json");
            if let Some(next) = next {
                r = r.header("x-next-token", next);
            }
            r.body(Full::new(body)).unwrap()
        }
    })
    .await
}
