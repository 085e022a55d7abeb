//! Streaming exec, measured on the e2b plugin against the E2B simulator (a real `sh` per
//! command): how long a printed line takes to reach a streaming caller, and what an exec
//! printing 50 MiB costs the host when only `limits.max_exec_output_kib` is kept.

use crate::measure::rss;
use provider_sims::e2b::E2bSim;
use sandbox_host::config::HostConfig;
use sandbox_host::plugin::loader::Loader;
use sandbox_host::runtime::engine::Runtime;
use sandbox_host::{Host, Leaf};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "e2b_bench_key";

pub(crate) async fn e2b_host(root: &Path, sim: &E2bSim, cache: &Path) -> (Arc<Host>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("plugins/e2b.wasm"), dir.path().join("e2b.wasm")).expect("plugins/e2b.wasm: run `just build-plugins`");
    std::fs::write(dir.path().join("e2b.toml"), sim.policy_toml()).unwrap();
    let loader =
        Loader::with_env(Runtime::new(Some(cache.to_path_buf())).unwrap(), Arc::new(|k: &str| (k == "E2B_API_KEY").then(|| KEY.into())))
            .unwrap();
    let (host, diags) = Host::start_with(HostConfig::new(dir.path().to_path_buf()), loader).await.unwrap();
    assert!(diags.is_empty(), "{diags:?}");
    (host, dir)
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Peak RSS since the last reset (`VmHWM`), bytes.
fn peak() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

pub async fn run(root: &Path) {
    let sim = E2bSim::start(0, KEY).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (host, _dir) = e2b_host(root, &sim, cache.path()).await;
    let id = host.call("e2b", Leaf::Create, &json!({"image": "base"})).await.unwrap()["sandbox_id"].as_str().unwrap().to_string();

    // Each line carries the time the command printed it; the caller compares on arrival.
    let script = "for i in $(seq 1 20); do date +%s%N; sleep 0.1; done";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let call = {
        let (host, id) = (host.clone(), id.clone());
        tokio::spawn(
            async move { host.call_streaming("e2b", Leaf::Exec, &json!({"sandbox_id": id, "argv": ["sh", "-c", script]}), tx).await },
        )
    };
    let (mut lags, mut pending, mut before_end) = (Vec::new(), String::new(), 0usize);
    while let Some(chunk) = rx.recv().await {
        let arrived = now_ns();
        if !call.is_finished() {
            before_end += 1;
        }
        pending.push_str(&String::from_utf8_lossy(&chunk.bytes));
        while let Some(nl) = pending.find('\n') {
            if let Ok(printed) = pending[..nl].trim().parse::<u128>() {
                lags.push(Duration::from_nanos(arrived.saturating_sub(printed) as u64));
            }
            pending.drain(..=nl);
        }
    }
    call.await.unwrap().unwrap();
    lags.sort();
    let pick = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
    println!("\n## Streaming exec (e2b plugin, E2B simulator, one line every 100 ms for 2 s)\n");
    println!("| measure | value | note |");
    println!("|---|---:|---|");
    println!("| lines received with their print time | {} of 20 | |", lags.len());
    println!("| chunks received before the call returned | {before_end} | > 0: output reaches the caller while the command runs |");
    println!("| chunk latency p50 (printed → at the caller) | {:.1} ms | |", pick(0.5).as_secs_f64() * 1e3);
    println!("| chunk latency max | {:.1} ms | |", pick(1.0).as_secs_f64() * 1e3);

    // 50 MiB of output, 1 MiB kept: the host's peak against its idle RSS.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let idle = rss();
    let base_peak = peak();
    let flood = json!({"sandbox_id": id, "argv": ["sh", "-c", "head -c 52428800 /dev/zero | tr '\\0' a"]});
    let out = host.call("e2b", Leaf::Exec, &flood).await.unwrap();
    let during = peak().max(base_peak);
    println!(
        "| exec printing 50 MiB: truncated, kept | {}, {} KiB | limits.max_exec_output_kib = 1024 |",
        out["truncated"],
        out["stdout"].as_str().map_or(0, str::len) / 1024
    );
    println!(
        "| host peak RSS during it ÷ idle RSS | {:.2} ({:.1} MiB ÷ {:.1} MiB) | target ≤ 2 |",
        during as f64 / idle as f64,
        during as f64 / (1 << 20) as f64,
        idle as f64 / (1 << 20) as f64
    );
    host.call("e2b", Leaf::Stop, &json!({"sandbox_id": id})).await.unwrap();
}
