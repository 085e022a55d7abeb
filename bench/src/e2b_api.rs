//! The E2B-compatible API's cost: the official Python SDK's `commands.run("true")`
//! through the facade against the same command straight through `Host::call`, both on
//! the e2b plugin and the E2B simulator (a real shell per command), in one run.

use provider_sims::e2b::E2bSim;
use sandbox_host::e2b_api::{E2bApi, Settings};
use sandbox_host::{Host, Leaf};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CALLS: usize = 100;
/// What the SDK's `commands.run` sends: a login bash running the command.
const ARGV: [&str; 4] = ["/bin/bash", "-l", "-c", "true"];

fn percentile(mut samples: Vec<Duration>, q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q) as usize]
}

pub async fn run(root: &Path) {
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("\n## E2B-compatible API\n\nskipped: {} is missing; run `bash scripts/just python-deps`", python.display());
        return;
    }
    let sim = E2bSim::start(0, crate::KEY).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (host, _dir) = crate::streaming::e2b_host(root, &sim, cache.path()).await;

    // Baseline: the exec leaf on a worker task, as a front end runs it.
    let direct = {
        let host = host.clone();
        tokio::spawn(async move { direct_samples(&host).await }).await.unwrap()
    };

    let settings = Settings { insecure_no_auth: true, ..Settings::default() };
    let api = E2bApi::new(host.clone(), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(api.serve(listener, stop));
    let out = tokio::process::Command::new(&python)
        .arg(root.join("bench/e2b_sdk_roundtrip.py"))
        .arg(CALLS.to_string())
        .arg("e2b/base")
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_API_KEY", "bench")
        .output()
        .await
        .unwrap();
    let _ = stop_tx.send(true);
    assert!(out.status.success(), "the SDK round-trip script failed: {}", String::from_utf8_lossy(&out.stderr));
    let secs: Vec<f64> = serde_json::from_slice(&out.stdout).expect("the script prints a JSON list of seconds");
    let sdk: Vec<Duration> = secs.into_iter().map(Duration::from_secs_f64).collect();

    let (d50, s50) = (percentile(direct.clone(), 0.5), percentile(sdk.clone(), 0.5));
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    println!("\n## E2B-compatible API (e2b plugin, E2B simulator, `/bin/bash -l -c true`, {CALLS} calls each)\n");
    println!("| path | p50 ms | p99 ms | ratio (p50) |");
    println!("|---|---:|---:|---:|");
    println!("| `Host::call` exec | {} | {} | 1.00 |", ms(d50), ms(percentile(direct, 0.99)));
    println!(
        "| E2B Python SDK `commands.run(\"true\")` through the facade | {} | {} | {:.2} |",
        ms(s50),
        ms(percentile(sdk, 0.99)),
        s50.as_secs_f64() / d50.as_secs_f64()
    );
}

async fn direct_samples(host: &Arc<Host>) -> Vec<Duration> {
    let created = host.call("e2b", Leaf::Create, &json!({"image": "base"})).await.unwrap();
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    let exec = json!({"sandbox_id": id, "argv": ARGV});
    for _ in 0..5 {
        host.call("e2b", Leaf::Exec, &exec).await.unwrap();
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = std::time::Instant::now();
        host.call("e2b", Leaf::Exec, &exec).await.unwrap();
        samples.push(t.elapsed());
    }
    host.call("e2b", Leaf::Stop, &json!({"sandbox_id": id})).await.unwrap();
    samples
}
