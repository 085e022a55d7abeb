//! What lives in a call's [`Store`]: WASI and wasi-http contexts, the egress hooks,
//! the memory limiter, the log meter, the plugin's non-secret config. One Store per
//! call, dropped after it (and always after a trap), so no state leaks between calls;
//! the log meter's end-of-call summary is written as it drops.

use crate::policy::egress::{EgressHooks, EgressRecord};
use crate::policy::log_budget::LogMeter;
use crate::policy::memory::MemoryLimiter;
use crate::policy::PluginPolicy;
use crate::runtime::output::OutputCollector;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Bytes of guest stderr kept per call (panic messages end up here).
const STDERR_CAPACITY: usize = 64 * 1024;

pub struct StoreState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: EgressHooks,
    pub limiter: MemoryLimiter,
    pub config: Arc<BTreeMap<String, String>>,
    pub stderr: MemoryOutputPipe,
    /// This call's `log` lines: written, dropped (see `policy/log_budget.rs`).
    pub logs: LogMeter,
    /// An exec's output, bounded per stream (see `runtime/output.rs`).
    pub output: OutputCollector,
}

impl StoreState {
    pub fn new(plugin: Arc<str>, policy: &PluginPolicy, config: Arc<BTreeMap<String, String>>, record: Arc<EgressRecord>) -> Self {
        Self::with_timeouts(plugin, policy, config, record, policy.egress.timeouts)
    }

    /// As `new`, with this call's upstream bounds (see `UpstreamTimeouts::stretched`).
    pub fn with_timeouts(
        plugin: Arc<str>,
        policy: &PluginPolicy,
        config: Arc<BTreeMap<String, String>>,
        record: Arc<EgressRecord>,
        timeouts: crate::policy::egress::UpstreamTimeouts,
    ) -> Self {
        let mut hooks = EgressHooks::new(policy.egress.clone(), record);
        hooks.timeouts = timeouts;
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No env, no args, no preopens, no sockets, no name lookup: wasi:http is the only way out.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build();
        StoreState {
            logs: LogMeter::new(plugin.clone(), policy.logs.clone()),
            plugin,
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            limiter: MemoryLimiter::new(policy.limits.memory_bytes),
            config,
            stderr,
            output: OutputCollector::new(policy.limits.max_exec_output_bytes, None),
        }
    }

    /// This call's egress state, for the `upstream` import (`runtime/whole_body.rs`).
    pub fn egress(&mut self) -> &mut EgressHooks {
        &mut self.hooks
    }

    /// Counts this call's upstream requests against the list budget (it follows pages).
    pub fn budget_as_list(&mut self) {
        self.hooks.listing = true;
    }

    /// Lets this call read upstream bodies of any size (an exec's output stream).
    pub fn unlimit_upstream_bodies(&mut self) {
        self.hooks.max_body_bytes = u64::MAX;
    }

    /// The guest's stderr so far, lossy UTF-8, last `max` bytes; an earlier part left
    /// out is marked (`[first N bytes cut] …`).
    pub fn stderr_tail(&self, max: usize) -> String {
        let bytes = self.stderr.contents();
        let start = bytes.len().saturating_sub(max);
        let tail = String::from_utf8_lossy(&bytes[start..]).trim().to_string();
        if start == 0 {
            return tail;
        }
        format!("[first {start} bytes cut] …{tail}")
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}
