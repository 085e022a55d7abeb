//! Per-plugin metrics: calls by leaf, errors by S-code, a latency histogram, guest CPU
//! time, peak memory, egress requests and bytes per upstream host, denials, upstream
//! requests refused by the fan-out bounds, credential redactions, log lines and bytes
//! written and dropped, quarantines (how many, calls refused by one, whether one is on).
//! Exposed as
//! Prometheus text (`serve --metrics-addr`) and as JSON for `sandbox-host stats`. Labels
//! come from `Leaf::as_str` and `Code::as_str`, so they are stable.
//!
//! Recording takes one short mutex per call; `bench` measures it on vs off.

use crate::contract::codes::Code;
use crate::runtime::invoke::CallStats;
use crate::Leaf;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default, Clone)]
struct PluginMetrics {
    calls: BTreeMap<&'static str, u64>,
    errors: BTreeMap<(&'static str, &'static str), u64>,
    latency_buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    cpu_seconds: f64,
    peak_memory_bytes: usize,
    egress: BTreeMap<String, (u64, u64)>,
    denials: u64,
    upstream_refused: u64,
    redactions: u64,
    log: LogCounts,
    quarantine: QuarantineCounts,
}

#[derive(Debug, Default, Clone)]
struct QuarantineCounts {
    /// Times the plugin was quarantined (again after a failed retry included).
    opened: u64,
    /// Calls refused at once because it was.
    refused: u64,
    /// Quarantined now (open or awaiting its retry call); a new version clears it.
    on: bool,
    /// Why, when it last was.
    reason: Option<String>,
}

/// Reads one per-plugin counter (for the families that are one number per plugin).
type PluginCounter = fn(&PluginMetrics) -> u64;

#[derive(Debug, Default, Clone, Copy)]
struct LogCounts {
    lines: u64,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    plugins: Mutex<BTreeMap<String, PluginMetrics>>,
    /// This host's place beside others on the engine (`bridge/iii/ownership.rs`), once known.
    serving: Mutex<Option<Value>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

impl Metrics {
    pub fn new(enabled: bool) -> Self {
        Metrics { enabled, plugins: Mutex::default(), serving: Mutex::default() }
    }

    /// Records one finished call.
    pub fn record(&self, plugin: &str, leaf: Leaf, error: Option<Code>, elapsed: Duration, stats: Option<&CallStats>) {
        if !self.enabled {
            return;
        }
        let mut all = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let m = match all.get_mut(plugin) {
            Some(m) => m,
            None => all.entry(plugin.to_string()).or_default(),
        };
        *m.calls.entry(leaf.as_str()).or_default() += 1;
        if let Some(code) = error {
            *m.errors.entry((leaf.as_str(), code.as_str())).or_default() += 1;
            if code == Code::EgressDenied {
                m.denials += 1;
            }
        }
        let secs = elapsed.as_secs_f64();
        m.latency_count += 1;
        m.latency_sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            m.latency_buckets[i] += 1;
        }
        if let Some(s) = stats {
            m.cpu_seconds += s.cpu.as_secs_f64();
            m.peak_memory_bytes = m.peak_memory_bytes.max(s.peak_memory_bytes);
            for (host, requests, bytes) in &s.egress {
                let e = m.egress.entry(host.clone()).or_default();
                e.0 += requests;
                e.1 += bytes;
            }
            m.upstream_refused += s.upstream_refused;
            m.redactions += s.redactions;
            m.log.lines += s.log_lines;
            m.log.bytes += s.log_bytes;
            m.log.dropped_lines += s.log_lines_dropped;
            m.log.dropped_bytes += s.log_bytes_dropped;
        }
    }

    fn with_plugin(&self, plugin: &str, f: impl FnOnce(&mut PluginMetrics)) {
        if !self.enabled {
            return;
        }
        let mut all = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(plugin) {
            Some(m) => f(m),
            None => f(all.entry(plugin.to_string()).or_default()),
        }
    }

    /// A call refused at once because the plugin is quarantined (S502): counted as a call
    /// and an error, and as a refusal.
    pub fn quarantine_refused(&self, plugin: &str, leaf: Leaf, elapsed: Duration) {
        self.record(plugin, leaf, Some(Code::Unavailable), elapsed, None);
        self.with_plugin(plugin, |m| m.quarantine.refused += 1);
    }

    /// The plugin was quarantined, or its quarantine ended.
    pub fn quarantine_changed(&self, plugin: &str, change: &crate::policy::quarantine::Change) {
        use crate::policy::quarantine::Change;
        self.with_plugin(plugin, |m| match change {
            Change::Opened(reason) => {
                m.quarantine.opened += 1;
                m.quarantine.on = true;
                m.quarantine.reason = Some(reason.clone());
            }
            Change::Closed => m.quarantine.on = false,
        });
    }

    /// A new version (or none) of `plugin` is loaded: it is not quarantined.
    pub fn quarantine_reset(&self, plugin: &str) {
        let mut all = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = all.get_mut(plugin) {
            m.quarantine.on = false;
        }
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let all = self.plugins.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, body: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            body(&mut out);
        };
        family("sandbox_plugin_calls_total", "counter", "Calls per plugin and leaf.", &mut |o| {
            for (p, m) in &all {
                for (leaf, n) in &m.calls {
                    let _ = writeln!(o, "sandbox_plugin_calls_total{{plugin=\"{p}\",leaf=\"{leaf}\"}} {n}");
                }
            }
        });
        family("sandbox_plugin_errors_total", "counter", "Failed calls per plugin, leaf and S-code.", &mut |o| {
            for (p, m) in &all {
                for ((leaf, code), n) in &m.errors {
                    let _ = writeln!(o, "sandbox_plugin_errors_total{{plugin=\"{p}\",leaf=\"{leaf}\",code=\"{code}\"}} {n}");
                }
            }
        });
        family("sandbox_plugin_call_seconds", "histogram", "Call latency, validation to answer.", &mut |o| {
            for (p, m) in &all {
                let mut cumulative = 0;
                for (b, n) in BUCKETS.iter().zip(m.latency_buckets) {
                    cumulative += n;
                    let _ = writeln!(o, "sandbox_plugin_call_seconds_bucket{{plugin=\"{p}\",le=\"{b}\"}} {cumulative}");
                }
                let _ = writeln!(o, "sandbox_plugin_call_seconds_bucket{{plugin=\"{p}\",le=\"+Inf\"}} {}", m.latency_count);
                let _ = writeln!(o, "sandbox_plugin_call_seconds_sum{{plugin=\"{p}\"}} {}", m.latency_sum);
                let _ = writeln!(o, "sandbox_plugin_call_seconds_count{{plugin=\"{p}\"}} {}", m.latency_count);
            }
        });
        family("sandbox_plugin_cpu_seconds_total", "counter", "Guest CPU time (epoch-metered).", &mut |o| {
            for (p, m) in &all {
                let _ = writeln!(o, "sandbox_plugin_cpu_seconds_total{{plugin=\"{p}\"}} {}", m.cpu_seconds);
            }
        });
        family("sandbox_plugin_peak_memory_bytes", "gauge", "Largest instance memory seen.", &mut |o| {
            for (p, m) in &all {
                let _ = writeln!(o, "sandbox_plugin_peak_memory_bytes{{plugin=\"{p}\"}} {}", m.peak_memory_bytes);
            }
        });
        family("sandbox_plugin_egress_requests_total", "counter", "Upstream requests per host.", &mut |o| {
            for (p, m) in &all {
                for (h, (n, _)) in &m.egress {
                    let _ = writeln!(o, "sandbox_plugin_egress_requests_total{{plugin=\"{p}\",host=\"{h}\"}} {n}");
                }
            }
        });
        family("sandbox_plugin_egress_bytes_total", "counter", "Upstream response body bytes per host.", &mut |o| {
            for (p, m) in &all {
                for (h, (_, b)) in &m.egress {
                    let _ = writeln!(o, "sandbox_plugin_egress_bytes_total{{plugin=\"{p}\",host=\"{h}\"}} {b}");
                }
            }
        });
        family("sandbox_plugin_egress_denials_total", "counter", "Calls refused for egress outside the allowlist.", &mut |o| {
            for (p, m) in &all {
                let _ = writeln!(o, "sandbox_plugin_egress_denials_total{{plugin=\"{p}\"}} {}", m.denials);
            }
        });
        family("sandbox_plugin_quarantined", "gauge", "1 while the plugin is quarantined (its calls fail fast with S502).", &mut |o| {
            for (p, m) in &all {
                let _ = writeln!(o, "sandbox_plugin_quarantined{{plugin=\"{p}\"}} {}", u8::from(m.quarantine.on));
            }
        });
        let per_plugin: [(&str, &str, PluginCounter); 8] = [
            ("sandbox_plugin_upstream_refusals_total", "Upstream requests refused by the fan-out bounds (S704).", |m| m.upstream_refused),
            ("sandbox_plugin_credential_redactions_total", "Credential occurrences removed from upstream responses.", |m| m.redactions),
            ("sandbox_plugin_log_lines_total", "Plugin log lines written to the host's log.", |m| m.log.lines),
            ("sandbox_plugin_log_bytes_total", "Plugin log bytes written to the host's log.", |m| m.log.bytes),
            ("sandbox_plugin_log_dropped_lines_total", "Plugin log lines dropped by the log bounds.", |m| m.log.dropped_lines),
            ("sandbox_plugin_log_dropped_bytes_total", "Plugin log bytes dropped by the log bounds.", |m| m.log.dropped_bytes),
            ("sandbox_plugin_quarantines_total", "Times the plugin was quarantined after repeated traps (S700).", |m| m.quarantine.opened),
            ("sandbox_plugin_quarantine_refusals_total", "Calls refused at once (S502) while the plugin was quarantined.", |m| {
                m.quarantine.refused
            }),
        ];
        for (name, help, value) in per_plugin {
            family(name, "counter", help, &mut |o| {
                for (p, m) in &all {
                    let _ = writeln!(o, "{name}{{plugin=\"{p}\"}} {}", value(m));
                }
            });
        }
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(role) = serving.as_ref().and_then(|s| s["role"].as_str()) {
            family("sandbox_host_standby", "gauge", "1 while another worker owns function ids this host serves (standby).", &mut |o| {
                let _ = writeln!(o, "sandbox_host_standby {}", u8::from(role != "active"));
            });
        }
        out
    }

    /// The same numbers as JSON, for `sandbox-host stats`.
    pub fn json(&self) -> Value {
        let all = self.plugins.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let plugins: serde_json::Map<String, Value> = all
            .into_iter()
            .map(|(p, m)| {
                let errors: BTreeMap<String, u64> = m.errors.iter().fold(BTreeMap::new(), |mut acc, ((_, code), n)| {
                    *acc.entry(code.to_string()).or_default() += n;
                    acc
                });
                let p50 = quantile(&m, 0.5);
                let p99 = quantile(&m, 0.99);
                (
                    p,
                    json!({
                        "calls": m.calls.values().sum::<u64>(),
                        "calls_by_leaf": m.calls,
                        "errors_by_code": errors,
                        "latency_p50_le_seconds": p50,
                        "latency_p99_le_seconds": p99,
                        "latency_mean_seconds": if m.latency_count == 0 { 0.0 } else { m.latency_sum / m.latency_count as f64 },
                        "cpu_seconds": m.cpu_seconds,
                        "peak_memory_bytes": m.peak_memory_bytes,
                        "egress": m.egress.iter().map(|(h, (n, b))| (h.clone(), json!({"requests": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
                        "egress_denials": m.denials,
                        "upstream_refused": m.upstream_refused,
                        "credential_redactions": m.redactions,
                        "quarantined": m.quarantine.on,
                        "quarantines": m.quarantine.opened,
                        "quarantine_refusals": m.quarantine.refused,
                        "quarantine_reason": m.quarantine.reason,
                        "log": {
                            "lines": m.log.lines,
                            "bytes": m.log.bytes,
                            "dropped_lines": m.log.dropped_lines,
                            "dropped_bytes": m.log.dropped_bytes,
                        },
                    }),
                )
            })
            .collect();
        let mut out = json!({ "plugins": plugins });
        if let Some(serving) = self.serving.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            out["serving"] = serving;
        }
        out
    }

    /// Records whether this host is active or standby on its engine (shown by `stats`).
    pub fn set_serving(&self, report: Value) {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
}

/// Upper bucket bound under which `q` of the calls fall.
fn quantile(m: &PluginMetrics, q: f64) -> Option<f64> {
    if m.latency_count == 0 {
        return None;
    }
    let target = (m.latency_count as f64 * q).ceil() as u64;
    let mut cumulative = 0;
    for (b, n) in BUCKETS.iter().zip(m.latency_buckets) {
        cumulative += n;
        if cumulative >= target {
            return Some(*b);
        }
    }
    Some(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_errors_latency_and_egress_show_up_in_the_exposition() {
        let m = Metrics::new(true);
        let stats = CallStats { egress: vec![("api.e2b.app".into(), 2, 300)], peak_memory_bytes: 1 << 20, ..Default::default() };
        m.record("e2b", Leaf::Create, None, Duration::from_millis(3), Some(&stats));
        m.record("e2b", Leaf::Create, Some(Code::EgressDenied), Duration::from_millis(40), None);
        let text = m.prometheus();
        assert!(text.contains("sandbox_plugin_calls_total{plugin=\"e2b\",leaf=\"create\"} 2"), "{text}");
        assert!(text.contains("sandbox_plugin_errors_total{plugin=\"e2b\",leaf=\"create\",code=\"S703\"} 1"));
        assert!(text.contains("sandbox_plugin_call_seconds_bucket{plugin=\"e2b\",le=\"0.005\"} 1"));
        assert!(text.contains("sandbox_plugin_call_seconds_count{plugin=\"e2b\"} 2"));
        assert!(text.contains("sandbox_plugin_egress_bytes_total{plugin=\"e2b\",host=\"api.e2b.app\"} 300"));
        assert!(text.contains("sandbox_plugin_egress_denials_total{plugin=\"e2b\"} 1"));
        let j = m.json();
        assert_eq!(j["plugins"]["e2b"]["errors_by_code"]["S703"], 1);
        assert_eq!(j["plugins"]["e2b"]["latency_p50_le_seconds"], 0.005);
    }

    #[test]
    fn fanout_refusals_redactions_and_log_drops_are_counted() {
        let m = Metrics::new(true);
        let stats = CallStats {
            upstream_refused: 468,
            redactions: 3,
            log_lines: 256,
            log_bytes: 1 << 20,
            log_lines_dropped: 1744,
            log_bytes_dropped: 1744 * 16384,
            ..Default::default()
        };
        m.record("flood", Leaf::Exec, Some(Code::UpstreamBudget), Duration::from_millis(3), Some(&stats));
        m.record("flood", Leaf::Exec, None, Duration::from_millis(3), Some(&stats));
        let text = m.prometheus();
        assert!(text.contains("sandbox_plugin_errors_total{plugin=\"flood\",leaf=\"exec\",code=\"S704\"} 1"), "{text}");
        assert!(text.contains("sandbox_plugin_upstream_refusals_total{plugin=\"flood\"} 936"), "{text}");
        assert!(text.contains("sandbox_plugin_credential_redactions_total{plugin=\"flood\"} 6"));
        assert!(text.contains("sandbox_plugin_log_dropped_lines_total{plugin=\"flood\"} 3488"));
        assert!(text.contains("# TYPE sandbox_plugin_log_dropped_bytes_total counter"));
        let j = m.json();
        assert_eq!(j["plugins"]["flood"]["log"]["dropped_bytes"], 2 * 1744 * 16384);
        assert_eq!(j["plugins"]["flood"]["credential_redactions"], 6);
    }

    #[test]
    fn quarantines_refusals_and_the_flag_show_up() {
        use crate::policy::quarantine::Change;
        let m = Metrics::new(true);
        m.quarantine_changed("panic", &Change::Opened("it trapped 3 times within 60 s (last: boom)".into()));
        m.quarantine_refused("panic", Leaf::Exec, Duration::from_micros(20));
        m.quarantine_refused("panic", Leaf::List, Duration::from_micros(20));
        let text = m.prometheus();
        assert!(text.contains("# TYPE sandbox_plugin_quarantined gauge\nsandbox_plugin_quarantined{plugin=\"panic\"} 1"), "{text}");
        assert!(text.contains("sandbox_plugin_quarantines_total{plugin=\"panic\"} 1"), "{text}");
        assert!(text.contains("sandbox_plugin_quarantine_refusals_total{plugin=\"panic\"} 2"), "{text}");
        assert!(text.contains("sandbox_plugin_errors_total{plugin=\"panic\",leaf=\"exec\",code=\"S502\"} 1"), "{text}");
        let j = &m.json()["plugins"]["panic"];
        assert_eq!(
            (j["quarantined"].clone(), j["quarantines"].clone(), j["quarantine_refusals"].clone()),
            (json!(true), json!(1), json!(2))
        );
        assert_eq!(j["quarantine_reason"], "it trapped 3 times within 60 s (last: boom)");
        m.quarantine_changed("panic", &Change::Closed);
        assert!(m.prometheus().contains("sandbox_plugin_quarantined{plugin=\"panic\"} 0"));
        m.quarantine_changed("panic", &Change::Opened("again".into()));
        m.quarantine_reset("panic");
        assert_eq!(m.json()["plugins"]["panic"]["quarantined"], false, "a new version is not quarantined");
        assert_eq!(m.json()["plugins"]["panic"]["quarantines"], 2);
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let m = Metrics::new(false);
        m.record("e2b", Leaf::List, None, Duration::from_millis(1), None);
        assert_eq!(m.json(), json!({"plugins": {}}));
    }
}
