//! What a plugin may put into the host's log through the `log` import.
//!
//! The log is the operator's, and a plugin is third-party code: 2 000 lines of 16 KiB in
//! one call put 8.4 MiB into it in 0.4 s (issue 12). Three bounds, checked in order:
//! - each line is cut at 4 KiB (`plugin_text::MAX_LOG_LINE_BYTES`), the cut marked;
//! - each call may log `limits.max_log_lines_per_call` lines (default 1000) and
//!   `limits.max_log_kib_per_call` KiB (default 1024, i.e. 256 full-length lines):
//!   a real provider logs a handful per call, a verbose debug run of a long exec a few
//!   hundred;
//! - all calls of a plugin together share a token bucket of `limits.log_lines_per_sec`
//!   (default 100) with `limits.log_burst` banked (default 1000, one full call): 64
//!   calls in flight cannot multiply the per-call budget, and the log grows at most
//!   100 × 4 KiB/s per plugin.
//!
//! A line over any bound is dropped and counted (metrics); at the end of the call —
//! when its Store drops, however the call ended — one summary line says how many lines
//! and bytes were dropped and which keys raise the bounds.

use super::plugin_text::{bounded_owned, MAX_LOG_LINE_BYTES};
use super::rate::TokenBucket;
use std::sync::Arc;

/// A plugin's log bounds and its shared rate (one per plugin version).
#[derive(Debug)]
pub struct LogPolicy {
    pub lines_per_call: u64,
    pub bytes_per_call: u64,
    pub lines_per_sec: f64,
    rate: TokenBucket,
}

impl LogPolicy {
    pub fn new(lines_per_call: u64, bytes_per_call: u64, lines_per_sec: f64, burst: u32) -> Self {
        LogPolicy { lines_per_call, bytes_per_call, lines_per_sec, rate: TokenBucket::new(lines_per_sec, burst) }
    }
}

/// Severity of a plugin's log line, as the host writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One call's log: what was written and what was dropped.
#[derive(Debug)]
pub struct LogMeter {
    plugin: Arc<str>,
    policy: Arc<LogPolicy>,
    pub lines: u64,
    pub bytes: u64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl LogMeter {
    pub fn new(plugin: Arc<str>, policy: Arc<LogPolicy>) -> Self {
        LogMeter { plugin, policy, lines: 0, bytes: 0, dropped_lines: 0, dropped_bytes: 0 }
    }

    /// Writes `message` to the host's log if the bounds allow it, else counts it dropped.
    pub fn write(&mut self, level: LogLevel, message: String) {
        if let Some(line) = self.admit(message) {
            let plugin = &*self.plugin;
            match level {
                LogLevel::Trace => tracing::trace!(plugin, "{line}"),
                LogLevel::Debug => tracing::debug!(plugin, "{line}"),
                LogLevel::Info => tracing::info!(plugin, "{line}"),
                LogLevel::Warn => tracing::warn!(plugin, "{line}"),
                LogLevel::Error => tracing::error!(plugin, "{line}"),
            }
        }
    }

    /// The line as it may be written (cut to the line bound), or `None` when a bound
    /// drops it.
    fn admit(&mut self, message: String) -> Option<String> {
        let offered = message.len() as u64;
        let line = bounded_owned(message, MAX_LOG_LINE_BYTES);
        let size = line.len() as u64;
        let fits = self.lines < self.policy.lines_per_call && self.bytes + size <= self.policy.bytes_per_call;
        // The shared bucket is charged only for lines this call would write.
        if fits && self.policy.rate.try_take().is_ok() {
            self.lines += 1;
            self.bytes += size;
            Some(line)
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += offered;
            None
        }
    }

    /// The end-of-call summary, when something was dropped.
    pub fn summary(&self) -> Option<String> {
        if self.dropped_lines == 0 {
            return None;
        }
        let (p, policy) = (&*self.plugin, &self.policy);
        Some(format!(
            "plugin `{p}`: {} lines / {} bytes dropped from its log in this call ({} lines / {} bytes written); the bounds are \
             limits.max_log_lines_per_call = {}, limits.max_log_kib_per_call = {} and limits.log_lines_per_sec = {} in plugins/{p}.toml",
            self.dropped_lines,
            self.dropped_bytes,
            self.lines,
            self.bytes,
            policy.lines_per_call,
            policy.bytes_per_call / 1024,
            policy.lines_per_sec,
        ))
    }
}

impl Drop for LogMeter {
    fn drop(&mut self) {
        if let Some(summary) = self.summary() {
            tracing::warn!(plugin = %self.plugin, dropped_lines = self.dropped_lines, dropped_bytes = self.dropped_bytes, "{summary}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(lines: u64, bytes: u64, per_sec: f64, burst: u32) -> LogMeter {
        LogMeter::new("flood".into(), Arc::new(LogPolicy::new(lines, bytes, per_sec, burst)))
    }

    #[test]
    fn a_call_writes_its_line_budget_and_the_rest_is_counted_dropped() {
        let mut m = meter(3, 1 << 20, 1000.0, 1000);
        for _ in 0..5 {
            m.write(LogLevel::Info, "hello".into());
        }
        assert_eq!((m.lines, m.bytes, m.dropped_lines, m.dropped_bytes), (3, 15, 2, 10));
        let s = m.summary().unwrap();
        assert!(s.contains("2 lines / 10 bytes dropped") && s.contains("limits.max_log_lines_per_call = 3"), "{s}");
    }

    #[test]
    fn long_lines_are_cut_and_charged_as_cut_against_the_byte_budget() {
        let mut m = meter(1000, 16 * 1024, 1000.0, 1000);
        for _ in 0..10 {
            m.write(LogLevel::Warn, "x".repeat(16 * 1024));
        }
        // Each written line is 4 KiB plus the cut marker: three fit in 16 KiB.
        assert_eq!(m.lines, 3, "{m:?}");
        assert!(m.bytes <= 16 * 1024);
        assert_eq!((m.dropped_lines, m.dropped_bytes), (7, 7 * 16 * 1024));
    }

    #[test]
    fn calls_of_one_plugin_share_its_rate() {
        let policy = Arc::new(LogPolicy::new(1000, 1 << 20, 0.001, 4));
        let mut first = LogMeter::new("p".into(), policy.clone());
        let mut second = LogMeter::new("p".into(), policy);
        for _ in 0..3 {
            first.write(LogLevel::Info, "a".into());
            second.write(LogLevel::Info, "b".into());
        }
        assert_eq!(first.lines + second.lines, 4, "the burst is shared");
        assert_eq!(first.dropped_lines + second.dropped_lines, 2);
    }

    #[test]
    fn nothing_dropped_means_no_summary() {
        let mut m = meter(10, 1024, 10.0, 10);
        m.write(LogLevel::Debug, "fine".into());
        assert_eq!(m.summary(), None);
    }

    #[test]
    fn the_bounds_come_from_the_policy_file() {
        use crate::policy::{PluginPolicy, RawPolicy};
        let resolve = |toml: &str| PluginPolicy::resolve("p", &RawPolicy::from_toml(toml).unwrap(), &[], &[], &|_| None).unwrap();
        let l = resolve("").logs;
        assert_eq!((l.lines_per_call, l.bytes_per_call, l.lines_per_sec), (1000, 1 << 20, 100.0));
        let l = resolve("[limits]\nmax_log_lines_per_call = 0\nmax_log_kib_per_call = 8\nlog_lines_per_sec = 2.5\nlog_burst = 3").logs;
        assert_eq!((l.lines_per_call, l.bytes_per_call, l.lines_per_sec), (0, 8192, 2.5));
        let mut silenced = LogMeter::new("p".into(), l);
        silenced.write(LogLevel::Error, "x".into());
        assert_eq!((silenced.lines, silenced.dropped_lines), (0, 1), "0 lines per call silences the plugin");
        assert!(RawPolicy::from_toml("[limits]\nlog_lines_per_sec = 0").unwrap_err().contains("limits.log_lines_per_sec"));
    }
}
