//! Per-plugin policy: `plugins/<name>.toml` → [`RawPolicy`] (serde, unknown keys
//! rejected, no I/O) → [`PluginPolicy`] (built matchers, resolved credentials,
//! durations), once the plugin's `describe()` is known.
//!
//! One module per quota: `allowed_hosts` + `egress` (where requests may go),
//! `credentials` (what the host injects), `image` (S100), `concurrency` (S400),
//! `memory` (S702), `cpu` (S701), `quarantine` (a plugin that keeps trapping → S502 at once).
//!
//! ```toml
//! api_base = "https://api.e2b.app"          # passed to the plugin as config `api-base`
//! allowed_hosts = ["api.e2b.app", "*.e2b.app"]   # default: the plugin's own list + api_base
//! max_concurrent_sandboxes = 10
//! image_allowlist = []                       # empty = every image
//! default_idle_timeout_secs = 300
//! allow_private_networks = false             # may allowed names resolve to private addresses?
//! [credentials]
//! api-key = "E2B_API_KEY"                    # or { env = "E2B_API_KEY", hosts = ["api.e2b.app"] }
//! [config]                                   # non-secret strings the plugin may read
//! domain = "e2b.app"
//! [limits]
//! memory_mib = 64
//! cpu_ms = 5000
//! call_timeout_ms = 120000
//! connect_timeout_ms = 10000
//! first_byte_timeout_ms = 60000
//! between_bytes_timeout_ms = 60000
//! max_calls_in_flight = 64                   # more at once → S500 at once, with a retry hint
//! rate_per_sec = 20.0                        # token bucket (unset = no rate limit) → S500
//! burst = 20
//! max_response_kib = 16384                   # a larger answer from the plugin → S700
//! max_upstream_body_mib = 64                 # a larger upstream body is cut off → S502
//! max_exec_timeout_ms = 3600000              # an exec asking for longer → S422
//! default_exec_timeout_ms = 60000            # an exec without timeout_ms gets this deadline
//! max_exec_output_kib = 1024                 # per stream; more is cut, counted, `truncated: true`
//! max_timeout_secs = 86400                   # set_timeout/resume asking for longer → S422
//! max_upstream_requests_per_call = 32        # one call's upstream requests; more → S704
//! max_upstream_requests_per_list = 128       # a list's (it follows pages); more → S704
//! max_concurrent_upstream_requests = 16      # in flight at once, across calls; more → S704
//! max_log_lines_per_call = 1000              # more log lines are dropped, counted, summarised
//! max_log_kib_per_call = 1024
//! log_lines_per_sec = 100.0                  # the plugin's log rate (token bucket), across calls
//! log_burst = 1000
//! quarantine_after_traps = 5                 # S700 traps within the window that quarantine it (0 = never)
//! quarantine_window_secs = 60
//! quarantine_secs = 30                       # calls fail fast (S502) this long, then one is retried
//! ```

pub mod allowed_hosts;
pub mod concurrency;
pub mod cpu;
pub mod credentials;
pub mod egress;
pub mod egress_observer;
pub mod fanout;
pub mod image;
pub mod log_budget;
pub mod memory;
pub mod plugin_text;
pub mod quarantine;
pub mod rate;
pub mod redact;
pub mod shared_book;

use allowed_hosts::{entry_for, AllowList};
use credentials::{Credential, CredentialValue};
use egress::{EgressPolicy, UpstreamTimeouts};
use fanout::UpstreamFanout;
use image::ImageAllowlist;
use log_budget::LogPolicy;
use redact::Redactor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Defaults for every key, in one list (shown by `sandbox-host plugins`).
pub mod defaults {
    pub const MAX_CONCURRENT_SANDBOXES: usize = 10;
    pub const IDLE_TIMEOUT_SECS: u64 = 300;
    pub const MEMORY_MIB: u64 = 64;
    pub const CPU_MS: u64 = 5_000;
    pub const CALL_TIMEOUT_MS: u64 = 120_000;
    pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
    pub const FIRST_BYTE_TIMEOUT_MS: u64 = 60_000;
    pub const BETWEEN_BYTES_TIMEOUT_MS: u64 = 60_000;
    pub const MAX_CALLS_IN_FLIGHT: usize = 64;
    /// Longest `timeout_ms` an exec may ask for (one hour).
    pub const MAX_EXEC_TIMEOUT_MS: u64 = 3_600_000;
    /// A minute: E2B's SDK default; Daytona's own (10 s when omitted) never decides.
    pub const DEFAULT_EXEC_TIMEOUT_MS: u64 = 60_000;
    /// 1 MiB per stream, as the engine daemon keeps.
    pub const MAX_EXEC_OUTPUT_KIB: u64 = 1_024;
    /// A day: E2B's longest sandbox lifetime on its paid plans.
    pub const MAX_TIMEOUT_SECS: u64 = 86_400;
    pub const MAX_RESPONSE_KIB: u64 = 16 * 1024;
    pub const MAX_UPSTREAM_BODY_MIB: u64 = 64;
    /// Extra wall-clock allowed on top of an exec's own `timeout_ms`.
    pub const EXEC_GRACE_MS: u64 = 15_000;
    /// Upstream requests one call may send (Fastly's per-invocation backend limit).
    pub const MAX_UPSTREAM_REQUESTS_PER_CALL: u64 = 32;
    /// Upstream requests one `list` may send: 128 pages of 100 rows (`fanout.rs`).
    pub const MAX_UPSTREAM_REQUESTS_PER_LIST: u64 = 128;
    /// Upstream requests of one plugin in flight at once, across its calls.
    pub const MAX_CONCURRENT_UPSTREAM_REQUESTS: usize = 16;
    /// Log lines and KiB one call may write (see `log_budget.rs` for why).
    pub const MAX_LOG_LINES_PER_CALL: u64 = 1_000;
    pub const MAX_LOG_KIB_PER_CALL: u64 = 1_024;
    /// A plugin's log rate across its calls, and what it may bank.
    pub const LOG_LINES_PER_SEC: f64 = 100.0;
    pub const LOG_BURST: u32 = 1_000;
    /// Quarantine after 5 traps (S700) in 60 s, for 30 s (`quarantine.rs`).
    pub const QUARANTINE_AFTER_TRAPS: u32 = 5;
    pub const QUARANTINE_WINDOW_SECS: u64 = 60;
    pub const QUARANTINE_SECS: u64 = 30;
    /// The longest window and cool-down accepted (a day).
    pub const QUARANTINE_MAX_SECS: u64 = 86_400;
}

/// `plugins/<name>.toml` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub api_base: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub max_concurrent_sandboxes: Option<usize>,
    pub image_allowlist: Option<Vec<String>>,
    pub default_idle_timeout_secs: Option<u64>,
    /// Let allowed *names* resolve to loopback/private/link-local addresses (default false).
    pub allow_private_networks: Option<bool>,
    #[serde(default)]
    pub credentials: BTreeMap<String, RawCredential>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawCredential {
    Env(String),
    Full { env: String, hosts: Option<Vec<String>> },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory_mib: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub between_bytes_timeout_ms: Option<u64>,
    pub max_calls_in_flight: Option<usize>,
    pub rate_per_sec: Option<f64>,
    pub burst: Option<u32>,
    pub max_response_kib: Option<u64>,
    pub max_upstream_body_mib: Option<u64>,
    pub max_exec_timeout_ms: Option<u64>,
    pub max_exec_output_kib: Option<u64>,
    pub default_exec_timeout_ms: Option<u64>,
    pub max_timeout_secs: Option<u64>,
    pub max_upstream_requests_per_call: Option<u64>,
    pub max_upstream_requests_per_list: Option<u64>,
    pub max_concurrent_upstream_requests: Option<usize>,
    /// 0 silences the plugin's log.
    pub max_log_lines_per_call: Option<u64>,
    pub max_log_kib_per_call: Option<u64>,
    pub log_lines_per_sec: Option<f64>,
    pub log_burst: Option<u32>,
    /// 0 turns quarantine off.
    pub quarantine_after_traps: Option<u32>,
    pub quarantine_window_secs: Option<u64>,
    /// 0 turns quarantine off too.
    pub quarantine_secs: Option<u64>,
}

impl RawPolicy {
    /// Parses the TOML text of a policy file; the error names the bad key or value.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        raw.check()?;
        Ok(raw)
    }

    /// Checks that need no I/O and no plugin.
    fn check(&self) -> Result<(), String> {
        if let Some(base) = &self.api_base {
            api_base_entry(base)?;
        }
        if let Some(hosts) = &self.allowed_hosts {
            AllowList::parse(hosts).map_err(|e| format!("allowed_hosts: {e}"))?;
        }
        if self.max_concurrent_sandboxes == Some(0) {
            return Err("max_concurrent_sandboxes must be at least 1".into());
        }
        if self.default_idle_timeout_secs == Some(0) {
            return Err("default_idle_timeout_secs must be at least 1".into());
        }
        for (name, c) in &self.credentials {
            if let RawCredential::Full { hosts: Some(h), .. } = c {
                AllowList::parse(h).map_err(|e| format!("credentials.{name}.hosts: {e}"))?;
            }
        }
        let l = &self.limits;
        for (key, v) in [
            ("memory_mib", l.memory_mib),
            ("cpu_ms", l.cpu_ms),
            ("call_timeout_ms", l.call_timeout_ms),
            ("connect_timeout_ms", l.connect_timeout_ms),
            ("first_byte_timeout_ms", l.first_byte_timeout_ms),
            ("between_bytes_timeout_ms", l.between_bytes_timeout_ms),
            ("max_calls_in_flight", l.max_calls_in_flight.map(|v| v as u64)),
            ("burst", l.burst.map(u64::from)),
            ("max_response_kib", l.max_response_kib),
            ("max_upstream_body_mib", l.max_upstream_body_mib),
            ("max_exec_timeout_ms", l.max_exec_timeout_ms),
            ("max_exec_output_kib", l.max_exec_output_kib),
            ("default_exec_timeout_ms", l.default_exec_timeout_ms),
            ("max_timeout_secs", l.max_timeout_secs),
            ("max_upstream_requests_per_call", l.max_upstream_requests_per_call),
            ("max_upstream_requests_per_list", l.max_upstream_requests_per_list),
            ("max_concurrent_upstream_requests", l.max_concurrent_upstream_requests.map(|v| v as u64)),
            ("log_burst", l.log_burst.map(u64::from)),
            ("quarantine_window_secs", l.quarantine_window_secs),
        ] {
            if v == Some(0) {
                return Err(format!("limits.{key} must be at least 1"));
            }
        }
        for (key, v) in [("quarantine_window_secs", l.quarantine_window_secs), ("quarantine_secs", l.quarantine_secs)] {
            if v.is_some_and(|v| v > defaults::QUARANTINE_MAX_SECS) {
                return Err(format!("limits.{key} must be at most {} (a day)", defaults::QUARANTINE_MAX_SECS));
            }
        }
        let max_mib = (crate::runtime::engine::MAX_MEMORY_BYTES >> 20) as u64;
        if l.memory_mib.is_some_and(|m| m > max_mib) {
            return Err(format!("limits.memory_mib must be at most {max_mib} (the host's per-instance maximum)"));
        }
        if l.rate_per_sec.is_some_and(|r| !(r.is_finite() && r >= 0.001)) {
            return Err("limits.rate_per_sec must be a number of at least 0.001".into());
        }
        if l.log_lines_per_sec.is_some_and(|r| !(r.is_finite() && r >= 0.001)) {
            return Err(
                "limits.log_lines_per_sec must be a number of at least 0.001 (set limits.max_log_lines_per_call = 0 to silence a plugin)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The allowlist entry for an `api_base` URL (its authority).
fn api_base_entry(base: &str) -> Result<String, String> {
    api_base_target(base).map(|(host, port)| entry_for(&host, port))
}

/// The (lower-case host, port) an `api_base` URL points at.
fn api_base_target(base: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = base.parse().map_err(|e| format!("api_base {base:?} is not a URL: {e}"))?;
    let scheme = uri.scheme_str().ok_or_else(|| format!("api_base {base:?} needs a scheme (https://…)"))?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("api_base {base:?} must be http or https"));
    }
    let auth = uri.authority().ok_or_else(|| format!("api_base {base:?} has no host"))?;
    let port = auth.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
    Ok((auth.host().to_ascii_lowercase(), port))
}

/// What a plugin declares about its credentials (from `describe()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpec {
    pub name: String,
    pub header: String,
    pub value_prefix: String,
    pub hosts: Vec<String>,
}

/// Resolved limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub cpu: Duration,
    pub call_timeout: Duration,
    pub max_calls_in_flight: usize,
    /// Tokens per second; `None` = no rate limit.
    pub rate_per_sec: Option<f64>,
    pub burst: Option<u32>,
    /// Largest answer a plugin may return (stdout+stderr, file bytes, lists).
    pub max_response_bytes: usize,
    /// Largest upstream response body the host lets a plugin read.
    pub max_upstream_body_bytes: u64,
    /// Longest `timeout_ms` an exec may ask for (it stretches the call's budgets).
    pub max_exec_timeout_ms: u64,
    /// The deadline of an exec that names none: the host always sends one, so it (never a
    /// provider's own default) governs the call's upstream waits. At most `max_exec_timeout_ms`.
    pub default_exec_timeout_ms: u64,
    /// Output an exec keeps per stream; the rest is cut and counted (`runtime/output.rs`).
    pub max_exec_output_bytes: usize,
    /// Longest lifetime `set_timeout` or `resume` may ask for.
    pub max_timeout_secs: u64,
    /// When repeated traps quarantine the plugin (`quarantine.rs`).
    pub quarantine: quarantine::QuarantinePolicy,
}

/// A plugin's policy, ready to enforce.
#[derive(Debug, Clone)]
pub struct PluginPolicy {
    pub api_base: Option<String>,
    pub max_concurrent_sandboxes: usize,
    pub images: ImageAllowlist,
    pub default_idle_timeout_secs: u64,
    /// Non-secret config visible to the plugin (`api-base` included when set).
    pub config: BTreeMap<String, String>,
    pub egress: Arc<EgressPolicy>,
    pub limits: Limits,
    /// What the plugin may write to the host's log, and its rate across calls.
    pub logs: Arc<LogPolicy>,
}

impl PluginPolicy {
    /// Resolves `raw` for plugin `name` that declared `default_hosts` and `specs`.
    /// `env` looks up environment variables (injected so tests need not touch the process env).
    pub fn resolve(
        name: &str,
        raw: &RawPolicy,
        default_hosts: &[String],
        specs: &[CredentialSpec],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let base_entry = raw.api_base.as_deref().map(api_base_entry).transpose()?;
        let base_target = raw.api_base.as_deref().map(api_base_target).transpose()?;
        let base_is_http = raw.api_base.as_deref().is_some_and(|b| b.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")));
        // What a plugin asks for by default is trusted less than what the operator writes:
        // a non-public IP literal (e.g. the cloud metadata address) is never granted by default.
        let plugin_hosts: Vec<String> = default_hosts
            .iter()
            .filter(|h| {
                let keep = !is_private_ip_entry(h);
                if !keep {
                    tracing::warn!(
                        plugin = name,
                        "ignoring default egress host {h:?}: a non-public address needs an explicit allowed_hosts entry"
                    );
                }
                keep
            })
            .cloned()
            .collect();
        let allow = match &raw.allowed_hosts {
            Some(list) => AllowList::parse(list),
            None => AllowList::parse(&plugin_hosts.iter().cloned().chain(base_entry.clone()).collect::<Vec<_>>()),
        }
        .map_err(|e| format!("allowed_hosts: {e}"))?;

        for key in raw.credentials.keys() {
            if !specs.iter().any(|s| &s.name == key) {
                return Err(format!(
                    "credentials.{key}: plugin `{name}` declares no credential of that name (it declares: {})",
                    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let mut credentials = Vec::new();
        for spec in specs {
            let granted = raw.credentials.get(&spec.name).map(|c| match c {
                RawCredential::Env(v) => (v.clone(), None),
                RawCredential::Full { env, hosts } => (env.clone(), hosts.clone()),
            });
            let pinned = granted.as_ref().and_then(|(_, h)| h.clone());
            // Operator-written hosts are taken as written. A plugin's own declaration is
            // honoured for exact hosts only: a wildcard would send the key to every
            // subdomain, and providers serve sandbox-controlled ports under them.
            let hosts = match &pinned {
                Some(h) => h.clone(),
                None => {
                    let exact = spec.hosts.iter().filter(|h| {
                        let wildcard = h.trim_start().starts_with("*.");
                        if wildcard {
                            tracing::warn!(plugin = name, "credential `{}`: not sending it to the plugin-declared wildcard {h:?}; list exact hosts under [credentials] in plugins/{name}.toml", spec.name);
                        }
                        !wildcard && !is_private_ip_entry(h)
                    });
                    exact.cloned().chain(base_entry.clone()).collect()
                }
            };
            let hosts = AllowList::parse(&hosts).map_err(|e| format!("credential `{}` hosts: {e}", spec.name))?;
            let header = http::HeaderName::from_bytes(spec.header.as_bytes())
                .map_err(|_| format!("plugin `{name}` declares credential `{}` with an invalid header {:?}", spec.name, spec.header))?;
            // Over plain http only to an operator-configured http:// api_base, and only
            // when that base is among the credential's hosts (a pin excludes it otherwise).
            let plain_http_hosts = match (&base_entry, base_is_http) {
                (Some(entry), true) if pinned.is_none() || base_target.as_ref().is_some_and(|(h, p)| hosts.allows(h, *p)) => {
                    AllowList::parse(std::slice::from_ref(entry)).map_err(|e| format!("api_base: {e}"))?
                }
                _ => AllowList::default(),
            };
            let (env_var, value) = match granted {
                Some((var, _)) => {
                    let value = CredentialValue::from_env(&spec.value_prefix, env(&var));
                    (Some(var), value)
                }
                None => {
                    tracing::warn!(
                        plugin = name,
                        "credential `{}` is not granted: calls answer S503 until plugins/{name}.toml maps it under [credentials]",
                        spec.name
                    );
                    (None, CredentialValue::NotGranted)
                }
            };
            credentials.push(Credential { name: spec.name.clone(), env_var, header, hosts, plain_http_hosts, value });
        }

        let l = &raw.limits;
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
        let redactor = Arc::new(Redactor::for_secrets(credentials.iter().filter_map(Credential::secret)));
        let mut config = raw.config.clone();
        if let Some(base) = &raw.api_base {
            config.insert("api-base".into(), base.trim_end_matches('/').to_string());
        }
        Ok(PluginPolicy {
            api_base: raw.api_base.clone(),
            max_concurrent_sandboxes: raw.max_concurrent_sandboxes.unwrap_or(defaults::MAX_CONCURRENT_SANDBOXES),
            images: ImageAllowlist(raw.image_allowlist.clone().unwrap_or_default()),
            default_idle_timeout_secs: raw.default_idle_timeout_secs.unwrap_or(defaults::IDLE_TIMEOUT_SECS),
            config,
            egress: Arc::new(EgressPolicy {
                plugin: name.into(),
                allow,
                credentials,
                timeouts: UpstreamTimeouts {
                    connect: ms(l.connect_timeout_ms, defaults::CONNECT_TIMEOUT_MS),
                    first_byte: ms(l.first_byte_timeout_ms, defaults::FIRST_BYTE_TIMEOUT_MS),
                    between_bytes: ms(l.between_bytes_timeout_ms, defaults::BETWEEN_BYTES_TIMEOUT_MS),
                },
                max_body_bytes: l.max_upstream_body_mib.unwrap_or(defaults::MAX_UPSTREAM_BODY_MIB).saturating_mul(1 << 20),
                client: crate::runtime::upstream::UpstreamClient::from_env(
                    ms(l.connect_timeout_ms, defaults::CONNECT_TIMEOUT_MS),
                    raw.allow_private_networks.unwrap_or(false),
                    l.max_concurrent_upstream_requests.unwrap_or(defaults::MAX_CONCURRENT_UPSTREAM_REQUESTS),
                ),
                fanout: UpstreamFanout::new(
                    l.max_upstream_requests_per_call.unwrap_or(defaults::MAX_UPSTREAM_REQUESTS_PER_CALL),
                    l.max_upstream_requests_per_list.unwrap_or(defaults::MAX_UPSTREAM_REQUESTS_PER_LIST),
                    l.max_concurrent_upstream_requests.unwrap_or(defaults::MAX_CONCURRENT_UPSTREAM_REQUESTS),
                ),
                redactor,
                observer: Default::default(),
            }),
            limits: Limits {
                memory_bytes: (l.memory_mib.unwrap_or(defaults::MEMORY_MIB) as usize) << 20,
                cpu: ms(l.cpu_ms, defaults::CPU_MS),
                call_timeout: ms(l.call_timeout_ms, defaults::CALL_TIMEOUT_MS),
                max_calls_in_flight: l.max_calls_in_flight.unwrap_or(defaults::MAX_CALLS_IN_FLIGHT),
                rate_per_sec: l.rate_per_sec,
                burst: l.burst,
                max_response_bytes: (l.max_response_kib.unwrap_or(defaults::MAX_RESPONSE_KIB) as usize).saturating_mul(1024),
                max_upstream_body_bytes: l.max_upstream_body_mib.unwrap_or(defaults::MAX_UPSTREAM_BODY_MIB).saturating_mul(1 << 20),
                max_exec_timeout_ms: l.max_exec_timeout_ms.unwrap_or(defaults::MAX_EXEC_TIMEOUT_MS),
                default_exec_timeout_ms: l
                    .default_exec_timeout_ms
                    .unwrap_or(defaults::DEFAULT_EXEC_TIMEOUT_MS)
                    .min(l.max_exec_timeout_ms.unwrap_or(defaults::MAX_EXEC_TIMEOUT_MS)),
                max_exec_output_bytes: (l.max_exec_output_kib.unwrap_or(defaults::MAX_EXEC_OUTPUT_KIB) as usize).saturating_mul(1024),
                max_timeout_secs: l.max_timeout_secs.unwrap_or(defaults::MAX_TIMEOUT_SECS),
                quarantine: quarantine::QuarantinePolicy {
                    after_traps: l.quarantine_after_traps.unwrap_or(defaults::QUARANTINE_AFTER_TRAPS),
                    window: Duration::from_secs(l.quarantine_window_secs.unwrap_or(defaults::QUARANTINE_WINDOW_SECS)),
                    cool_down: Duration::from_secs(l.quarantine_secs.unwrap_or(defaults::QUARANTINE_SECS)),
                },
            },
            logs: Arc::new(LogPolicy::new(
                l.max_log_lines_per_call.unwrap_or(defaults::MAX_LOG_LINES_PER_CALL),
                l.max_log_kib_per_call.unwrap_or(defaults::MAX_LOG_KIB_PER_CALL).saturating_mul(1024),
                l.log_lines_per_sec.unwrap_or(defaults::LOG_LINES_PER_SEC),
                l.log_burst.unwrap_or(defaults::LOG_BURST),
            )),
        })
    }
}

/// True for an allowlist entry that is a non-public IP literal (`10.0.0.1`, `[::1]:9`, …).
fn is_private_ip_entry(entry: &str) -> bool {
    let host = match entry.trim().strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => entry.trim().rsplit_once(':').map_or(entry.trim(), |(h, _)| h),
    };
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| !crate::runtime::upstream::is_public(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Vec<CredentialSpec> {
        vec![CredentialSpec {
            name: "api-key".into(),
            header: "x-api-key".into(),
            value_prefix: String::new(),
            hosts: vec!["api.e2b.app".into()],
        }]
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_naming_them() {
        assert!(RawPolicy::from_toml("max_concurent_sandboxes = 3").unwrap_err().contains("max_concurent_sandboxes"));
        assert!(RawPolicy::from_toml("max_concurrent_sandboxes = 0").unwrap_err().contains("at least 1"));
        assert!(RawPolicy::from_toml("allowed_hosts = [\"https://x.com\"]").unwrap_err().contains("\"https://x.com\""));
        assert!(RawPolicy::from_toml("api_base = \"api.e2b.app\"").unwrap_err().contains("scheme"));
        assert!(RawPolicy::from_toml("[limits]\nmemroy_mib = 3").unwrap_err().contains("memroy_mib"));
    }

    #[test]
    fn defaults_fill_every_key_and_api_base_joins_hosts_and_credentials() {
        let raw = RawPolicy::from_toml("api_base = \"http://127.0.0.1:9000/\"\n[credentials]\napi-key = \"E2B_API_KEY\"").unwrap();
        let env = |k: &str| (k == "E2B_API_KEY").then(|| "secret".to_string());
        let p = PluginPolicy::resolve("e2b", &raw, &["*.e2b.app".into()], &spec(), &env).unwrap();
        assert_eq!(p.max_concurrent_sandboxes, 10);
        assert_eq!(p.default_idle_timeout_secs, 300);
        assert_eq!(p.config.get("api-base").unwrap(), "http://127.0.0.1:9000");
        assert!(p.egress.allow.allows("127.0.0.1", 9000));
        assert!(p.egress.allow.allows("x.e2b.app", 443));
        let c = &p.egress.credentials[0];
        assert_eq!(c.env_var.as_deref(), Some("E2B_API_KEY"));
        assert!(c.hosts.allows("127.0.0.1", 9000) && c.hosts.allows("api.e2b.app", 443));
        assert!(!c.hosts.allows("x.e2b.app", 443));
        assert!(c.header_value().is_some());
        assert_eq!(p.limits.memory_bytes, 64 << 20);
        assert_eq!(p.limits.quarantine.describe(), "after 5 traps in 60 s, for 30 s");
    }

    #[test]
    fn quarantine_keys_resolve_and_are_checked() {
        let l = |toml: &str| PluginPolicy::resolve("p", &RawPolicy::from_toml(toml).unwrap(), &[], &[], &|_| None).unwrap().limits;
        let q = l("[limits]\nquarantine_after_traps = 2\nquarantine_window_secs = 5\nquarantine_secs = 1").quarantine;
        assert_eq!((q.after_traps, q.window, q.cool_down), (2, Duration::from_secs(5), Duration::from_secs(1)));
        assert!(!l("[limits]\nquarantine_after_traps = 0").quarantine.enabled());
        assert!(!l("[limits]\nquarantine_secs = 0").quarantine.enabled());
        assert!(RawPolicy::from_toml("[limits]\nquarantine_window_secs = 0")
            .unwrap_err()
            .contains("quarantine_window_secs must be at least 1"));
        assert!(RawPolicy::from_toml("[limits]\nquarantine_secs = 100000").unwrap_err().contains("quarantine_secs must be at most 86400"));
        assert!(RawPolicy::from_toml("[limits]\nquarantine_after = 3").unwrap_err().contains("quarantine_after"));
    }

    #[test]
    fn plugin_defaults_never_grant_private_ips_or_wildcard_credential_hosts() {
        let spec = vec![CredentialSpec {
            name: "api-key".into(),
            header: "x-api-key".into(),
            value_prefix: String::new(),
            hosts: vec!["api.example.com".into(), "*.example.com".into(), "169.254.169.254".into()],
        }];
        let raw = RawPolicy::from_toml("[credentials]\napi-key = \"K\"").unwrap();
        let p =
            PluginPolicy::resolve("p", &raw, &["api.example.com".into(), "169.254.169.254".into(), "10.0.0.1:80".into()], &spec, &|_| {
                Some("k".into())
            })
            .unwrap();
        assert!(p.egress.allow.allows("api.example.com", 443));
        assert!(!p.egress.allow.allows("169.254.169.254", 80) && !p.egress.allow.allows("10.0.0.1", 80));
        let c = &p.egress.credentials[0];
        assert!(c.hosts.allows("api.example.com", 443));
        assert!(!c.hosts.allows("sbx.example.com", 443) && !c.hosts.allows("169.254.169.254", 443));
        // What the operator writes is taken as written.
        let raw = RawPolicy::from_toml(
            "allowed_hosts = [\"10.0.0.1:80\"]\n[credentials]\napi-key = { env = \"K\", hosts = [\"*.example.com\"] }",
        )
        .unwrap();
        let p = PluginPolicy::resolve("p", &raw, &[], &spec, &|_| Some("k".into())).unwrap();
        assert!(p.egress.allow.allows("10.0.0.1", 80));
        assert!(p.egress.credentials[0].hosts.allows("sbx.example.com", 443));
    }

    #[test]
    fn a_credential_the_plugin_does_not_declare_is_an_error() {
        let raw = RawPolicy::from_toml("[credentials]\ntoken = \"X\"").unwrap();
        let err = PluginPolicy::resolve("e2b", &raw, &[], &spec(), &|_| None).unwrap_err();
        assert!(err.contains("credentials.token") && err.contains("api-key"), "{err}");
    }

    #[test]
    fn a_plugin_cannot_choose_which_secret_it_gets() {
        // A drop-in plugin with no policy file, declaring a credential whose derived
        // name would be a real secret of the host's environment.
        let spec = vec![CredentialSpec {
            name: "secret-access-key".into(),
            header: "x-k".into(),
            value_prefix: String::new(),
            hosts: vec!["c.attacker.example".into()],
        }];
        let env = |k: &str| (k == "AWS_SECRET_ACCESS_KEY").then(|| "wJalrXUtnFEMI".to_string());
        let p = PluginPolicy::resolve("aws", &RawPolicy::default(), &["c.attacker.example".into()], &spec, &env).unwrap();
        let c = &p.egress.credentials[0];
        assert!(c.env_var.is_none() && c.header_value().is_none(), "{c:?}");
        assert_eq!(c.value.status(), "not granted");
        assert!(c.unusable_sentence("aws").unwrap().contains("not granted"));
        // Granted by the operator, it is read from the variable the operator named.
        let raw = RawPolicy::from_toml("[credentials]\nsecret-access-key = \"AWS_SECRET_ACCESS_KEY\"").unwrap();
        let p = PluginPolicy::resolve("aws", &raw, &[], &spec, &env).unwrap();
        assert_eq!(p.egress.credentials[0].header_value().unwrap().as_bytes(), b"wJalrXUtnFEMI");
    }

    #[test]
    fn pinned_credential_hosts_keep_the_key_off_a_plain_http_api_base() {
        let toml = "api_base = \"http://127.0.0.1:46881\"\n[credentials]\napi-key = { env = \"K\", hosts = [\"api.e2b.app\"] }";
        let p = PluginPolicy::resolve("e2b", &RawPolicy::from_toml(toml).unwrap(), &[], &spec(), &|_| Some("k".into())).unwrap();
        let c = &p.egress.credentials[0];
        assert!(!c.plain_http_hosts.allows("127.0.0.1", 46881), "{c:?}");
        assert!(!c.hosts.allows("127.0.0.1", 46881));
        // Pinned to the base itself, it goes there (the operator said so).
        let toml = "api_base = \"http://127.0.0.1:46881\"\n[credentials]\napi-key = { env = \"K\", hosts = [\"127.0.0.1:46881\"] }";
        let p = PluginPolicy::resolve("e2b", &RawPolicy::from_toml(toml).unwrap(), &[], &spec(), &|_| Some("k".into())).unwrap();
        assert!(p.egress.credentials[0].plain_http_hosts.allows("127.0.0.1", 46881));
    }

    #[test]
    fn an_upper_case_http_scheme_is_still_an_http_api_base() {
        let toml = "api_base = \"HTTP://127.0.0.1:9000\"\n[credentials]\napi-key = \"K\"";
        let p = PluginPolicy::resolve("e2b", &RawPolicy::from_toml(toml).unwrap(), &[], &spec(), &|_| Some("k".into())).unwrap();
        assert!(p.egress.credentials[0].plain_http_hosts.allows("127.0.0.1", 9000));
    }
}
