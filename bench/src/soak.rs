//! `sandbox-bench soak [CALLS]` (`just soak`): a bounded soak. 200 000 mixed calls by
//! default across the e2b, morph and daytona plugins on their simulators, from 16
//! concurrent callers, with upstream faults injected as it goes. It prints RSS, open file
//! descriptors and live runtime tasks at the start and every 20 000 calls. It fails
//! (exit 1) if any of them grew more than 5 % between the end of warm-up (40 000 calls)
//! and the end; counts of fds and tasks may also grow by 2, so one in-flight socket is
//! not a leak.

use crate::measure::rss;
use provider_sims::daytona::DaytonaSim;
use provider_sims::e2b::E2bSim;
use provider_sims::morph::MorphSim;
use provider_sims::{Fault, Sim};
use sandbox_host::config::HostConfig;
use sandbox_host::plugin::loader::Loader;
use sandbox_host::runtime::engine::Runtime;
use sandbox_host::{Host, Leaf};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const KEY: &str = "soak_key";
const CALLERS: usize = 16;
const CHECKPOINT: u64 = 20_000;
const WARMUP: u64 = 40_000;

struct Provider {
    name: &'static str,
    /// Where its list goes (a fault there fails a list).
    list_route: &'static str,
    ids: Vec<String>,
}

#[derive(Clone, Copy)]
struct Sample {
    calls: u64,
    rss: u64,
    fds: u64,
    tasks: u64,
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

fn sample(calls: u64) -> Sample {
    Sample { calls, rss: rss(), fds: open_fds(), tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks() as u64 }
}

fn print(s: &Sample, started: Instant, codes: &BTreeMap<String, u64>) {
    println!(
        "| {:>7} | {:>8.1} | {:>4} | {:>5} | {:>6.0} | {codes:?} |",
        s.calls,
        s.rss as f64 / (1 << 20) as f64,
        s.fds,
        s.tasks,
        started.elapsed().as_secs_f64()
    );
}

async fn host(root: &Path, policies: &[(&str, String)]) -> Arc<Host> {
    let dir = tempfile::tempdir().unwrap().keep();
    for (name, policy) in policies {
        std::fs::copy(root.join(format!("plugins/{name}.wasm")), dir.join(format!("{name}.wasm"))).expect("run `just build-plugins`");
        // Enough callers at once for the soak; everything else as shipped.
        std::fs::write(dir.join(format!("{name}.toml")), format!("{policy}\n[limits]\nmax_calls_in_flight = 256\n")).unwrap();
    }
    let loader =
        Loader::with_env(Runtime::new(None).unwrap(), Arc::new(|k: &str| k.ends_with("_API_KEY").then(|| KEY.to_string()))).unwrap();
    let (host, diags) = Host::start_with(HostConfig::new(dir), loader).await.unwrap();
    assert!(diags.is_empty(), "{diags:?}");
    host
}

/// Call `n`'s leaf and payload: mostly cheap control-plane calls, some execs and file
/// round trips, some invalid payloads (S422, nothing sent).
/// `SOAK_SLOT=<0..19>` runs only that slot of the mix, `SOAK_PROVIDER=<name>` only that
/// provider (to find which call grows memory).
fn call_for(n: u64, p: &Provider) -> (Leaf, Value) {
    let id = &p.ids[(n / 3) as usize % p.ids.len()];
    let slot = std::env::var("SOAK_SLOT").ok().and_then(|s| s.parse().ok()).unwrap_or(n % 20);
    match slot {
        0..=7 => (Leaf::List, json!({})),
        8..=13 => (Leaf::Get, json!({"sandbox_id": id})),
        14 => (Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 3600})),
        15 => (Leaf::FsWrite, json!({"sandbox_id": id, "path": "soak.txt", "content": format!("call {n}")})),
        16 => (Leaf::FsRead, json!({"sandbox_id": id, "path": "soak.txt"})),
        17 => (Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"})),
        18 => (Leaf::Exec, json!({"sandbox_id": id, "cmd": 7})),
        _ => (Leaf::Get, json!({"sandbox_id": "no-such-sandbox"})),
    }
}

pub async fn run(root: &Path, total: u64) -> bool {
    let (e2b, morph, daytona) =
        (E2bSim::start(0, KEY).await.unwrap(), MorphSim::start(0, KEY).await.unwrap(), DaytonaSim::start(0, KEY).await.unwrap());
    let policies = [("e2b", e2b.policy_toml()), ("morph", morph.policy_toml()), ("daytona", daytona.policy_toml())];
    let host = host(root, &policies).await;
    // Fault targets (control planes); every simulator's request log is cleared per checkpoint.
    let sims: [&Sim; 3] = [&e2b.api, &morph.api, &daytona.sim];
    let logs: [&Sim; 4] = [&e2b.api, &e2b.envd, &morph.api, &daytona.sim];
    let mut providers = vec![
        Provider { name: "e2b", list_route: "/v2/sandboxes", ids: vec![] },
        Provider { name: "morph", list_route: "/api/instance", ids: vec![] },
        Provider { name: "daytona", list_route: "/api/sandbox", ids: vec![] },
    ];
    let images = ["base", "snapshot_base", "daytona-small"];
    for (p, image) in providers.iter_mut().zip(images) {
        for _ in 0..2 {
            let created = host.call(p.name, Leaf::Create, &json!({"image": image, "idle_timeout_secs": 86_400})).await.unwrap();
            p.ids.push(created["sandbox_id"].as_str().unwrap().to_string());
        }
    }
    let providers = Arc::new(providers);
    let codes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    println!("\n## Soak: {total} mixed calls, {CALLERS} callers, e2b + morph + daytona simulators, faults every 997 calls\n");
    println!("| calls | RSS MiB | fds | tasks | secs | answers by code |");
    println!("|---:|---:|---:|---:|---:|---|");
    let started = Instant::now();
    let mut samples = vec![sample(0)];
    print(&samples[0], started, &codes.lock().unwrap());
    let mut done = 0;
    while done < total {
        let end = (done + CHECKPOINT).min(total);
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (host, providers, codes, next) = (host.clone(), providers.clone(), codes.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= end {
                            next.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                        let p = match std::env::var("SOAK_PROVIDER") {
                            Ok(only) => providers.iter().find(|p| p.name == only).expect("SOAK_PROVIDER names e2b, morph or daytona"),
                            Err(_) => &providers[(n % 3) as usize],
                        };
                        let (leaf, payload) = call_for(n / 3, p);
                        let code = match host.call(p.name, leaf, &payload).await {
                            Ok(_) => "ok".to_string(),
                            Err(e) => e.code.to_string(),
                        };
                        *codes.lock().unwrap().entry(code).or_default() += 1;
                    }
                })
            })
            .collect();
        // Faults while the callers run: a failed list, a rate limit, an HTML 5xx.
        let mut k = done;
        while k + 997 < end {
            k += 997;
            let (sim, p) = ((k % 3) as usize, &providers[(k % 3) as usize]);
            let fault = match k % 3 {
                0 => Fault::new("GET", p.list_route, 503, "<html>busy</html>"),
                1 => Fault::new("GET", p.list_route, 429, r#"{"message":"slow down"}"#).header("retry-after", "1"),
                _ => Fault::new("GET", p.list_route, 500, r#"{"code":500,"message":"boom"}"#),
            };
            sims[sim].inject(fault);
        }
        for c in callers {
            c.await.unwrap();
        }
        // The simulators keep every request they saw; that is theirs, not the host's.
        for sim in logs {
            sim.clear_requests();
        }
        done = end;
        let s = sample(done);
        print(&s, started, &codes.lock().unwrap());
        samples.push(s);
    }
    for p in providers.iter() {
        for id in &p.ids {
            let _ = host.call(p.name, Leaf::Stop, &json!({"sandbox_id": id})).await;
        }
    }
    let Some(base) = samples.iter().find(|s| s.calls >= WARMUP.min(total)).copied() else { return true };
    let last = *samples.last().unwrap();
    let grew = |a: u64, b: u64, slack: u64| b > a + (a / 20).max(slack);
    let leaks: Vec<&str> =
        [("RSS", grew(base.rss, last.rss, 0)), ("fds", grew(base.fds, last.fds, 2)), ("tasks", grew(base.tasks, last.tasks, 2))]
            .into_iter()
            .filter(|(_, g)| *g)
            .map(|(n, _)| n)
            .collect();
    println!(
        "\nafter warm-up ({} calls) → end ({} calls): RSS {:+.1} %, fds {:+}, tasks {:+}: {}",
        base.calls,
        last.calls,
        (last.rss as f64 / base.rss as f64 - 1.0) * 100.0,
        last.fds as i64 - base.fds as i64,
        last.tasks as i64 - base.tasks as i64,
        if leaks.is_empty() { "no growth beyond 5 %".to_string() } else { format!("GREW: {}", leaks.join(", ")) }
    );
    leaks.is_empty()
}
