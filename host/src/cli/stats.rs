//! `sandbox-host stats`: per-plugin metrics of a running `serve`, read from its
//! `--metrics-addr` (`GET /stats`). Also the tiny HTTP server that exposes them.

use super::out::{errln, outln};
use super::GlobalArgs;
use crate::Host;
use clap::Args;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The `--metrics-addr` of the running `sandbox-host serve`.
    #[arg(long, env = "SANDBOX_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_global: &GlobalArgs, args: StatsArgs) -> anyhow::Result<u8> {
    let mut conn = match tokio::net::TcpStream::connect(args.metrics_addr).await {
        Ok(c) => c,
        Err(e) => {
            errln!(
                "error: no sandbox-host is serving metrics on {} ({e}); start it with `serve --metrics-addr {}`",
                args.metrics_addr,
                args.metrics_addr
            );
            return Ok(1);
        }
    };
    conn.write_all(format!("GET /stats HTTP/1.0\r\nHost: {}\r\n\r\n", args.metrics_addr).as_bytes()).await?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let stats: Value = serde_json::from_str(body)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&stats)?)?;
        return Ok(0);
    }
    if let Some(serving) = stats.get("serving").filter(|s| !s.is_null()) {
        let waiting = serving["waiting_for"].as_object().map(|w| w.len()).unwrap_or(0);
        let owners: std::collections::BTreeSet<&str> =
            serving["waiting_for"].as_object().into_iter().flatten().filter_map(|(_, o)| o.as_str()).collect();
        outln!(
            "worker {} is {} on its engine{}; {} id(s) taken over since start",
            serving["worker"],
            serving["role"].as_str().unwrap_or("?"),
            if waiting == 0 {
                String::new()
            } else {
                format!(" ({waiting} id(s) owned by {})", owners.into_iter().collect::<Vec<_>>().join(", "))
            },
            serving["took_over"]
        )?;
    }
    outln!(
        "{:<12} {:>8} {:>8} {:>10} {:>10} {:>10} {:>12} {:>9}  errors",
        "plugin",
        "calls",
        "errors",
        "p50<=ms",
        "p99<=ms",
        "cpu ms",
        "peak mem",
        "denials"
    )?;
    for (name, p) in stats["plugins"].as_object().into_iter().flatten() {
        let errors: u64 = p["errors_by_code"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
        let ms = |v: &Value| v.as_f64().map(|s| format!("{:.1}", s * 1000.0)).unwrap_or_else(|| "-".into());
        outln!(
            "{:<12} {:>8} {:>8} {:>10} {:>10} {:>10.1} {:>12} {:>9}  {}",
            name,
            p["calls"],
            errors,
            ms(&p["latency_p50_le_seconds"]),
            ms(&p["latency_p99_le_seconds"]),
            p["cpu_seconds"].as_f64().unwrap_or(0.0) * 1000.0,
            p["peak_memory_bytes"],
            p["egress_denials"],
            p["errors_by_code"]
        )?;
        if p["quarantined"] == true {
            outln!("{:<12}   quarantined ({} times so far): {}", "", p["quarantines"], p["quarantine_reason"].as_str().unwrap_or("?"))?;
        }
        for (host, e) in p["egress"].as_object().into_iter().flatten() {
            outln!("{:<12}   egress {host}: {} requests, {} bytes", "", e["requests"], e["bytes"])?;
        }
    }
    Ok(0)
}

/// Serves `GET /metrics` (Prometheus text) and `GET /stats` (JSON) on `addr` until
/// `stop` fires. Returns the bound address.
pub async fn serve_metrics(host: Arc<Host>, addr: SocketAddr, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = tokio::select! {
                _ = stop.changed() => return,
                a = listener.accept() => match a { Ok(c) => c, Err(_) => continue },
            };
            let host = host.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = match path {
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", host.metrics.prometheus()),
                    "/stats" => ("200 OK", "application/json", host.metrics.json().to_string()),
                    _ => ("404 Not Found", "text/plain", "try /metrics or /stats\n".to_string()),
                };
                let reply = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}
