//! `sandbox-host plugins`: what is loaded, what each plugin offers, and the policy in force.

use super::out::{out, outln};
use super::GlobalArgs;
use crate::plugin::LoadedPlugin;
use crate::Host;
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: PluginsArgs) -> anyhow::Result<u8> {
    let (host, diags) = Host::start(global.host_config()?).await?;
    let plugins = host.registry.all();
    if args.json {
        let v = json!({
            "plugins": plugins.iter().map(|p| describe_json(p)).collect::<Vec<_>>(),
            "failed": diags.iter().map(|d| json!({"file": d.file, "reason": d.reason})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        if plugins.is_empty() {
            outln!("no plugins loaded from {}", host.config.plugins_dir.display())?;
        }
        for p in &plugins {
            out!("{}", describe_text(p))?;
        }
        for d in &diags {
            outln!("FAILED {d}")?;
        }
    }
    Ok(if diags.is_empty() { 0 } else { 1 })
}

pub fn describe_json(p: &LoadedPlugin) -> Value {
    let pol = &p.policy;
    json!({
        "name": &*p.name,
        "version": p.descriptor.version,
        "world": p.pre.world(),
        "file": p.file,
        "sha256": p.sha256,
        "precompiled_cache": match p.cache {
            crate::runtime::engine::CacheOutcome::Hit => "hit",
            crate::runtime::engine::CacheOutcome::Compiled => "compiled",
        },
        "capabilities": p.capabilities().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "quarantine": quarantine_json(p),
        "leaves": p.leaves().iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "policy": {
            "api_base": pol.api_base,
            "allowed_hosts": pol.egress.allow.entries().collect::<Vec<_>>(),
            "credentials": pol.egress.credentials.iter().map(|c| json!({
                "name": c.name, "env": c.env_var, "header": c.header.as_str(),
                "set": c.header_value().is_some(), "status": c.value.status(),
                "hosts": c.hosts.entries().collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "max_concurrent_sandboxes": pol.max_concurrent_sandboxes,
            "image_allowlist": pol.images.0,
            "default_idle_timeout_secs": pol.default_idle_timeout_secs,
            "limits": {
                "memory_mib": pol.limits.memory_bytes >> 20,
                "cpu_ms": pol.limits.cpu.as_millis() as u64,
                "call_timeout_ms": pol.limits.call_timeout.as_millis() as u64,
                "max_calls_in_flight": pol.limits.max_calls_in_flight,
                "rate_per_sec": pol.limits.rate_per_sec,
                "burst": pol.limits.burst,
                "max_response_kib": pol.limits.max_response_bytes / 1024,
                "max_upstream_body_mib": pol.limits.max_upstream_body_bytes >> 20,
                "max_exec_timeout_ms": pol.limits.max_exec_timeout_ms,
                "default_exec_timeout_ms": pol.limits.default_exec_timeout_ms,
                "max_exec_output_kib": pol.limits.max_exec_output_bytes / 1024,
                "max_timeout_secs": pol.limits.max_timeout_secs,
                "max_upstream_requests_per_call": pol.egress.fanout.per_call,
                "max_upstream_requests_per_list": pol.egress.fanout.per_list,
                "max_concurrent_upstream_requests": pol.egress.fanout.concurrent,
                "max_log_lines_per_call": pol.logs.lines_per_call,
                "max_log_kib_per_call": pol.logs.bytes_per_call / 1024,
                "log_lines_per_sec": pol.logs.lines_per_sec,
                "quarantine_after_traps": pol.limits.quarantine.after_traps,
                "quarantine_window_secs": pol.limits.quarantine.window.as_secs(),
                "quarantine_secs": pol.limits.quarantine.cool_down.as_secs(),
            },
        },
    })
}

/// The plugin's quarantine now (this process's view: a one-shot `plugins` starts closed).
fn quarantine_json(p: &LoadedPlugin) -> Value {
    let v = p.quarantine.view();
    json!({
        "state": v.state,
        "policy": p.quarantine.policy().describe(),
        "traps_in_window": v.traps_in_window,
        "quarantines": v.quarantines,
        "retry_in_ms": v.retry_in.map(|d| d.as_millis() as u64),
        "last_trap": v.last_trap,
    })
}

/// "after 5 traps in 60 s, for 30 s; closed" (plus the retry time and last trap when on).
fn quarantine_text(p: &LoadedPlugin) -> String {
    let v = p.quarantine.view();
    let mut text = format!("{}; {}", p.quarantine.policy().describe(), v.state);
    if let Some(d) = v.retry_in {
        text.push_str(&format!(", retried in {:.1} s", d.as_secs_f64()));
    }
    if v.state == "open" || v.state == "half-open" {
        if let Some(last) = &v.last_trap {
            text.push_str(&format!(" (last trap: {last})"));
        }
    }
    text
}

fn describe_text(p: &LoadedPlugin) -> String {
    let pol = &p.policy;
    let caps: Vec<&str> = p.capabilities().iter().map(|c| c.as_str()).collect();
    let creds: Vec<String> = pol
        .egress
        .credentials
        .iter()
        .map(|c| match &c.env_var {
            Some(var) => format!("{} <- ${var} ({}, {})", c.name, c.header, c.value.status()),
            None => format!("{} (not granted: map it under [credentials] in plugins/{}.toml)", c.name, p.name),
        })
        .collect();
    format!(
        "{} {}  ({}, {})\n  capabilities: {}\n  leaves: {}\n  allowed_hosts: {}\n  credentials: {}\n  max_concurrent_sandboxes: {}  image_allowlist: {}  default_idle_timeout_secs: {}\n  limits: memory {} MiB, cpu {} ms, call {} ms\n  quarantine: {}\n",
        p.name,
        p.descriptor.version,
        p.file.display(),
        p.pre.world(),
        if caps.is_empty() { "none".to_string() } else { caps.join(", ") },
        p.leaves().iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", "),
        pol.egress.allow.entries().collect::<Vec<_>>().join(", "),
        if creds.is_empty() { "none".to_string() } else { creds.join("; ") },
        pol.max_concurrent_sandboxes,
        if pol.images.0.is_empty() { "all".to_string() } else { pol.images.0.join(", ") },
        pol.default_idle_timeout_secs,
        pol.limits.memory_bytes >> 20,
        pol.limits.cpu.as_millis(),
        pol.limits.call_timeout.as_millis(),
        quarantine_text(p),
    )
}
