//! Runs one contract call in a fresh Store + instance, under the plugin's budgets, and
//! classifies how it ended. The Store is dropped at the end of every call, so a trap
//! never leaves a poisoned instance behind: the next call starts clean from the
//! cached `InstancePre`.
//!
//! Outcome precedence: memory cap (S702) > CPU/wall budget (S701) > egress denial
//! (S703, whatever the guest then reported) > upstream fan-out refusal (S704, likewise)
//! > other trap (S700) > the plugin's answer.

use crate::contract::codes::{CallError, Code};
use crate::contract::shapes::{PluginReply, Request};
use crate::plugin::LoadedPlugin;
use crate::policy::cpu::{ticks_for, CpuMeter};
use crate::policy::egress::EgressRecord;
use crate::policy::fanout::FanoutRefusal;
use crate::policy::plugin_text::{bounded, bounded_debug, bounded_owned, MAX_DESTINATION_BYTES, MAX_SNAPSHOT_ID_BYTES, MAX_URL_BYTES};
use crate::runtime::output::{OutputCollector, OutputTap};
use crate::runtime::store::StoreState;
use crate::runtime::wit::{Descriptor, PluginFailure, PluginPre};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// What the host learned about a call besides its answer (for metrics and tests).
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub cpu: Duration,
    pub peak_memory_bytes: usize,
    pub upstream_requests: u64,
    pub elapsed: Duration,
    /// (allowlist entry, requests, response body bytes) per upstream host pattern.
    pub egress: Vec<(String, u64, u64)>,
    /// A `create`/`branch` answer the guest returned but the host overruled (S702/S703,
    /// an oversized answer): what it names may exist upstream, so the lifecycle undoes it.
    pub overruled: Option<PluginReply>,
    /// Upstream requests a fan-out bound refused (`policy/fanout.rs`).
    pub upstream_refused: u64,
    /// Credential occurrences removed from upstream responses (`policy/redact.rs`).
    pub redactions: u64,
    /// `log` lines and bytes written, and dropped by the log bounds (`policy/log_budget.rs`).
    pub log_lines: u64,
    pub log_bytes: u64,
    pub log_lines_dropped: u64,
    pub log_bytes_dropped: u64,
    /// Exec output beyond the per-stream budget (`runtime/output.rs`).
    pub output_cut_bytes: u64,
}

/// How long `describe()` may take at load: it only returns constants, and a slow one
/// must not hold start-up or the watcher (the plugin's own limits are not known yet).
pub const DESCRIBE_BUDGET: Duration = Duration::from_secs(5);

/// A call still running after its caller was answered (see [`run_or_overtime`]).
pub type Overtime = tokio::task::JoinHandle<(Outcome, CallStats)>;

/// How [`run_or_overtime`] ended for the caller.
pub enum Finished {
    /// Within the wall-clock budget.
    Done(Outcome, CallStats),
    /// The budget passed: the caller's S701, and the guest still running in overtime.
    Overtime(CallError, CallStats, Overtime),
}

/// A finished call: the plugin's answer or failure, or a host-detected fault.
pub type Outcome = Result<Result<PluginReply, PluginFailure>, CallError>;

/// Runs `req` against `plugin` with a wall-clock budget of `wall`.
pub async fn run(plugin: &LoadedPlugin, req: &Request, wall: Duration) -> (Outcome, CallStats) {
    run_tapped(plugin, req, wall, None).await
}

/// As [`run`], with an exec's output also sent to `tap` as it is produced.
pub async fn run_tapped(plugin: &LoadedPlugin, req: &Request, wall: Duration, tap: Option<OutputTap>) -> (Outcome, CallStats) {
    let record = Arc::new(EgressRecord::default());
    let state = call_state(plugin, req, record.clone(), tap);
    let (mut store, meter) = budgeted_store(plugin.pre.engine(), state, plugin.policy.limits.cpu);
    let started = Instant::now();
    let idle = plugin.policy.default_idle_timeout_secs;
    let result = tokio::time::timeout(wall, plugin.pre.invoke(&mut store, req, idle)).await;
    let mut stats = CallStats {
        output_cut_bytes: store.data().output.cut_bytes(),
        cpu: meter.approx_cpu(),
        peak_memory_bytes: store.data().limiter.peak_bytes,
        upstream_requests: record.requests(),
        elapsed: started.elapsed(),
        egress: record.per_host(),
        overruled: None,
        upstream_refused: record.fanout_refused(),
        redactions: record.redactions(),
        log_lines: store.data().logs.lines,
        log_bytes: store.data().logs.bytes,
        log_lines_dropped: store.data().logs.dropped_lines,
        log_bytes_dropped: store.data().logs.dropped_bytes,
    };
    // Only what starts sandboxes is kept (an exec's output may be megabytes).
    let answered = match (&result, req) {
        (Ok(Ok(Ok(reply))), Request::Create(_) | Request::Branch { .. }) => Some(reply.clone()),
        _ => None,
    };
    let outcome = classify(plugin, req, &store, &record, result, wall).and_then(|answer| match answer {
        Ok(reply) => check_size(plugin, req, reply).and_then(|reply| check_text(plugin, req, reply)).map(Ok),
        failure => Ok(failure),
    });
    if outcome.is_err() {
        stats.overruled = answered;
    }
    (outcome, stats)
}

/// As [`run`], but at `wall` the caller gets S701 while the guest keeps running in a
/// task of its own for up to `overtime` more; that task's handle is returned, so a
/// create the host stopped waiting for can still be finished or undone. Until the wall
/// the guest runs in the caller's task, as every other call does (no spawn).
pub async fn run_or_overtime(plugin: &Arc<LoadedPlugin>, req: &Request, wall: Duration, overtime: Duration) -> Finished {
    let started = Instant::now();
    let mut guest = Box::pin({
        let (plugin, req) = (plugin.clone(), req.clone());
        async move { run(&plugin, &req, wall + overtime).await }
    });
    match tokio::time::timeout(wall, &mut guest).await {
        Ok((outcome, stats)) => Finished::Done(outcome, stats),
        Err(_) => {
            let stats = CallStats { elapsed: started.elapsed(), ..CallStats::default() };
            Finished::Overtime(wall_exceeded(&plugin.name, req.leaf(), wall), stats, tokio::spawn(guest))
        }
    }
}

/// Calls `describe()` in a fresh Store, as a call instantiates (for measurements).
pub async fn describe(plugin_name: &str, pre: &PluginPre, policy: &crate::policy::PluginPolicy) -> anyhow::Result<Descriptor> {
    describe_in_store(plugin_name, pre, policy, false).await
}

/// At load: checks that every export has its world's type (a call checks only the one
/// it calls), then calls `describe()`.
pub async fn describe_checked(plugin_name: &str, pre: &PluginPre, policy: &crate::policy::PluginPolicy) -> anyhow::Result<Descriptor> {
    describe_in_store(plugin_name, pre, policy, true).await
}

async fn describe_in_store(
    plugin_name: &str,
    pre: &PluginPre,
    policy: &crate::policy::PluginPolicy,
    check: bool,
) -> anyhow::Result<Descriptor> {
    let state = StoreState::new(plugin_name.into(), policy, Arc::default(), Arc::default());
    let (mut store, _meter) = budgeted_store(pre.engine(), state, policy.limits.cpu);
    let wall = policy.limits.call_timeout.min(DESCRIBE_BUDGET);
    let described = async {
        if check {
            pre.check_exports(&mut store).await.map_err(|e| anyhow::anyhow!("its exports do not match {}: {e:#}", pre.world()))?;
        }
        pre.describe(&mut store).await.map_err(|e| anyhow::anyhow!("describe() failed: {e:#}"))
    };
    match tokio::time::timeout(wall, described).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("describe() did not return within {wall:?}"),
    }
}

/// A Store for `state` with the memory limiter installed and `cpu` of guest time armed.
fn budgeted_store(engine: &wasmtime::Engine, state: StoreState, cpu: Duration) -> (Store<StoreState>, CpuMeter) {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let meter = CpuMeter::default();
    arm_cpu_budget(&mut store, &meter, ticks_for(cpu));
    (store, meter)
}

/// The Store contents for one call of `req` on `plugin`.
fn call_state(plugin: &LoadedPlugin, req: &Request, record: Arc<EgressRecord>, tap: Option<OutputTap>) -> StoreState {
    let mut timeouts = plugin.policy.egress.timeouts;
    if let Request::Exec(e) = req {
        if let Some(ms) = e.timeout_ms {
            timeouts = timeouts.stretched(Duration::from_millis(ms), Duration::from_millis(crate::policy::defaults::EXEC_GRACE_MS));
        }
    }
    let mut state = StoreState::with_timeouts(plugin.name.clone(), &plugin.policy, plugin.config.clone(), record, timeouts);
    state.output = OutputCollector::new(plugin.policy.limits.max_exec_output_bytes, tap);
    if matches!(req, Request::Exec(_)) {
        // A command may print far more than any answer should hold: its stream is read
        // and dropped as it goes. What the host keeps is bounded by the output budget,
        // what the plugin holds by its memory limit, how long it reads by the call's
        // wall clock; a body cap would only fail a healthy command.
        state.unlimit_upstream_bodies();
    }
    if matches!(req, Request::List) {
        state.budget_as_list();
    }
    state
}

/// Charges one tick per epoch that lands while the guest runs, yielding to the
/// executor each time; traps once `budget` ticks are spent.
fn arm_cpu_budget(store: &mut Store<StoreState>, meter: &CpuMeter, budget: u64) {
    let meter = meter.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(
        move |_| {
            if meter.charge() >= budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        },
    );
}

fn classify(
    plugin: &LoadedPlugin,
    req: &Request,
    store: &Store<StoreState>,
    record: &EgressRecord,
    result: Result<wasmtime::Result<Result<PluginReply, PluginFailure>>, tokio::time::error::Elapsed>,
    wall: Duration,
) -> Outcome {
    let name = &*plugin.name;
    let leaf = req.leaf();
    let limiter = &store.data().limiter;
    if let Some(asked) = limiter.exceeded {
        return Err(CallError::new(
            Code::PluginMemory,
            format!(
                "plugin `{name}` exceeded its memory limit of {} MiB during `{leaf}` (it asked for {} bytes); \
                 the call was stopped. Raise limits.memory_mib in plugins/{name}.toml if this plugin legitimately needs more.",
                limiter.limit_bytes() >> 20,
                asked
            ),
        ));
    }
    let trap = match result {
        Err(_) => return Err(wall_exceeded(name, leaf, wall)),
        Ok(Err(trap)) => trap,
        Ok(Ok(answer)) => {
            if let Some(d) = record.denials().into_iter().next() {
                return Err(egress_denied(name, leaf, &d));
            }
            if let Some(r) = record.fanout_refusal() {
                return Err(fanout_refused(name, leaf, r, record.fanout_refused()));
            }
            return Ok(answer);
        }
    };
    if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Err(CallError::new(
            Code::PluginTimeout,
            format!(
                "plugin `{name}` used more than its CPU budget of {} ms during `{leaf}` and was stopped; \
                 raise limits.cpu_ms in plugins/{name}.toml if that is expected.",
                plugin.policy.limits.cpu.as_millis()
            ),
        ));
    }
    if let Some(d) = record.denials().into_iter().next() {
        return Err(egress_denied(name, leaf, &d));
    }
    if let Some(r) = record.fanout_refusal() {
        return Err(fanout_refused(name, leaf, r, record.fanout_refused()));
    }
    if trap.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return Err(CallError::new(
            Code::RateLimited,
            format!("the host is running its maximum number of plugin instances; `{leaf}` on `{name}` was not started. Retry shortly."),
        )
        .with_retry_after(Some(100)));
    }
    // The cause first (the trap kind, then what the guest printed, e.g. its panic
    // message); the wasm backtrace goes to the log only, it would bury both.
    let cause = match trap.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => format!("{}", trap.root_cause()),
    };
    // The backtrace names functions from the plugin's own name section: bounded too.
    tracing::warn!(plugin = name, %leaf, "plugin trapped: {}", bounded_debug(&trap, TRAP_LOG_BYTES));
    let stderr = store.data().stderr_tail(512);
    let detail = if stderr.is_empty() { cause } else { format!("{cause}; plugin stderr: {stderr}") };
    Err(CallError::new(
        Code::PluginTrapped,
        format!("plugin `{name}` crashed during `{leaf}` ({}); the host is unaffected and the next call starts a fresh instance. Report this to the plugin's author.", one_line(&detail, 600)),
    ))
}

/// How much of a trap's backtrace goes to the log.
const TRAP_LOG_BYTES: usize = 16 * 1024;

/// What one `list` row is charged against `limits.max_response_kib` (so the default
/// 16 MiB admits 16 384 rows, far beyond any provider account's concurrency).
const LIST_ROW_BYTES: usize = 1024;

/// Refuses an answer larger than `limits.max_response_kib`.
fn check_size(plugin: &LoadedPlugin, req: &Request, reply: PluginReply) -> Result<PluginReply, CallError> {
    let size = match &reply {
        PluginReply::Created(s) | PluginReply::Got(s) => {
            s.sandbox_id.len() + s.image.len() + s.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        }
        PluginReply::Executed(o) => o.stdout.len() + o.stderr.len(),
        PluginReply::Stopped | PluginReply::Written | PluginReply::TimeoutSet | PluginReply::Paused | PluginReply::Resumed => 0,
        // A row costs the host far more than its strings (JSON, the slot book): weigh
        // it at LIST_ROW_BYTES so a flood of tiny rows cannot multiply host memory.
        PluginReply::Listed(rows) => rows.iter().map(|s| s.sandbox_id.len() + s.image.len() + LIST_ROW_BYTES).sum(),
        PluginReply::Snapshotted(s) => s.len(),
        PluginReply::Exposed(e) => e.url.len() + e.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        PluginReply::Branched(ids) => ids.iter().map(String::len).sum(),
        PluginReply::Read(bytes) => bytes.len(),
    };
    let max = plugin.policy.limits.max_response_bytes;
    if size > max {
        let name = &*plugin.name;
        return Err(CallError::new(
            Code::PluginTrapped,
            format!(
                "plugin `{name}` answered `{}` with {size} bytes, over its limit of {max} bytes; the answer was dropped. \
                 Raise limits.max_response_kib in plugins/{name}.toml if such answers are expected.",
                req.leaf()
            ),
        ));
    }
    Ok(reply)
}

/// Refuses a snapshot id or URL longer than any real one (`policy/plugin_text.rs`): a
/// cut id would name nothing, so the answer is a plugin fault, quoting a bounded prefix.
fn check_text(plugin: &LoadedPlugin, req: &Request, reply: PluginReply) -> Result<PluginReply, CallError> {
    let (what, text, max) = match &reply {
        PluginReply::Snapshotted(id) => ("a snapshot id", id, MAX_SNAPSHOT_ID_BYTES),
        PluginReply::Exposed(e) => ("a URL", &e.url, MAX_URL_BYTES),
        _ => return Ok(reply),
    };
    if text.len() <= max {
        return Ok(reply);
    }
    let name = &*plugin.name;
    Err(CallError::new(
        Code::PluginTrapped,
        format!(
            "plugin `{name}` answered `{}` with {what} of {} bytes, over the host's bound of {max} bytes; the answer was dropped \
             ({:?}). Report this to the plugin's author.",
            req.leaf(),
            text.len(),
            bounded(text, 80)
        ),
    ))
}

fn fanout_refused(name: &str, leaf: crate::contract::shapes::Leaf, refusal: FanoutRefusal, refused: u64) -> CallError {
    CallError::new(
        Code::UpstreamBudget,
        format!(
            "plugin `{name}` {} during `{leaf}`; {refused} request(s) were refused before any connection and the call failed. \
             Raise {} in plugins/{name}.toml if this plugin legitimately needs more.",
            refusal.what(),
            refusal.key()
        ),
    )
}

fn wall_exceeded(name: &str, leaf: crate::contract::shapes::Leaf, wall: Duration) -> CallError {
    CallError::new(
        Code::PluginTimeout,
        format!(
            "plugin `{name}` did not finish `{leaf}` within its wall-clock budget of {} ms (upstream waits included); \
             the call was stopped. Retry, or raise limits.call_timeout_ms in plugins/{name}.toml.",
            wall.as_millis()
        ),
    )
}

fn egress_denied(name: &str, leaf: crate::contract::shapes::Leaf, d: &crate::policy::egress::Denial) -> CallError {
    let destination = bounded(&d.destination, MAX_DESTINATION_BYTES);
    let entry = bounded(&d.entry, MAX_DESTINATION_BYTES);
    if d.private_address {
        return CallError::new(
            Code::EgressDenied,
            format!(
                "plugin `{name}` tried to reach {} during `{leaf}`, an allowed name that resolves only to private or local addresses; \
                 the request was blocked. If that is intended, set allow_private_networks = true in plugins/{name}.toml.",
                destination
            ),
        );
    }
    CallError::new(
        Code::EgressDenied,
        format!(
            "plugin `{name}` tried to reach {} during `{leaf}`, which is outside its egress allowlist; the request was blocked. \
             If that host is legitimate, add \"{}\" to allowed_hosts in plugins/{name}.toml.",
            destination, entry
        ),
    )
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    bounded_owned(flat, max)
}
