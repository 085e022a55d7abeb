//! Creates (and branches) the host gave up on after their request reached the
//! upstream: the wall-clock or CPU budget ran out, the guest trapped, or its answer was
//! overruled (S702/S703, an oversized answer). The caller already has its S70x, but the
//! upstream may have started a sandbox that nobody knows of, billed until it expires
//! and outside the cap. The host finishes or undoes each one, in the background:
//!
//! - **still running** (the wall passed): the guest gets [`overtime`] more in its own
//!   Store; a sandbox it then reports is stopped, a failure just releases the slot;
//! - **answered but overruled**: the sandboxes it named are stopped;
//! - **gone without an answer** (a trap): the slot stays counted as unknown and a list
//!   right away counts whatever the upstream has, the orphan included.
//!
//! A sandbox that cannot be stopped stays counted in the slot book and is logged by id.
//! [`Settlements`] tracks these tasks so `call` and `serve`'s drain can wait for them.

use super::create::record_started;
use super::list::{list_upstream, ListFailure};
use super::stop::stop_sandbox;
use crate::contract::shapes::PluginReply;
use crate::contract::validate::valid_sandbox_id;
use crate::in_flight::InFlight;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{Book, Slot};
use crate::runtime::invoke::{CallStats, Overtime};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long an abandoned create's guest may keep running: its own call budget again,
/// at most 5 minutes.
pub fn overtime(plugin: &LoadedPlugin) -> Duration {
    plugin.policy.limits.call_timeout.min(Duration::from_secs(300))
}

/// Waits before recounting, so an upstream still committing the aborted request is seen.
const RECOUNT_DELAY: Duration = Duration::from_millis(500);

/// Pauses between failed recounts.
const RECOUNT_RETRIES: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(15)];

/// The slots a create (one) or a branch (several) holds.
pub trait Slots: Send + 'static {
    fn into_slots(self) -> Vec<Slot>;
}

impl Slots for Slot {
    fn into_slots(self) -> Vec<Slot> {
        vec![self]
    }
}

impl Slots for Vec<Slot> {
    fn into_slots(self) -> Vec<Slot> {
        self
    }
}

/// Settlement tasks in flight.
#[derive(Debug, Default)]
pub struct Settlements(Arc<InFlight>);

impl Settlements {
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let entered = self.0.enter();
        tokio::spawn(async move {
            work.await;
            drop(entered);
        });
    }

    pub fn running(&self) -> usize {
        self.0.count()
    }

    /// Waits up to `limit` for every settlement to finish; true when they all did.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.0.idle_within(limit).await
    }
}

/// The guest of an abandoned call, still running: undo what it reports it started.
pub async fn finish_overtime(plugin: Arc<LoadedPlugin>, book: Arc<dyn Book>, guest: Overtime, slots: Vec<Slot>) {
    let name = &*plugin.name;
    let (outcome, stats) = match guest.await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(plugin = name, "the abandoned call's task failed ({e}); recounting what runs upstream");
            // Nothing is known of its requests: assume one went out.
            let stats = CallStats { upstream_requests: 1, ..CallStats::default() };
            return after_fault(plugin.clone(), book, stats, slots).await;
        }
    };
    match outcome {
        Ok(Ok(reply)) => undo(&plugin, &book, &reply, slots).await,
        Ok(Err(failure)) => {
            tracing::info!(
                plugin = name,
                "an abandoned create failed upstream on its own ({}); its slot is released",
                failure.message.trim()
            );
        }
        Err(fault) => {
            tracing::warn!(plugin = name, "an abandoned create did not finish in overtime either: {fault}");
            after_fault(plugin.clone(), book, stats, slots).await
        }
    }
}

/// A create that ended in a host fault after it reached the upstream.
pub async fn after_fault(plugin: Arc<LoadedPlugin>, book: Arc<dyn Book>, stats: CallStats, slots: Vec<Slot>) {
    if let Some(reply) = &stats.overruled {
        return undo(&plugin, &book, reply, slots).await;
    }
    if stats.upstream_requests == 0 {
        return;
    }
    for slot in slots {
        slot.abandon().await;
    }
    recount(&plugin, &book).await;
}

/// Stops the sandboxes `reply` names; each stays counted until its stop succeeds.
async fn undo(plugin: &LoadedPlugin, book: &Arc<dyn Book>, reply: &PluginReply, slots: Vec<Slot>) {
    let name = &*plugin.name;
    let ids: Vec<String> = match reply {
        PluginReply::Created(info) => vec![info.sandbox_id.clone()],
        PluginReply::Branched(ids) => ids.clone(),
        _ => Vec::new(),
    };
    if ids.iter().any(|id| !valid_sandbox_id(id)) {
        tracing::error!(plugin = name, "an abandoned create named unusable sandbox ids; recounting what runs upstream");
        for slot in slots {
            slot.abandon().await;
        }
        return recount(plugin, book).await;
    }
    record_started(&**book, &ids, slots).await;
    let wall = plugin.policy.limits.call_timeout;
    for id in &ids {
        match stop_sandbox(plugin, &**book, id, wall).await.0 {
            Ok(()) => {
                tracing::info!(plugin = name, sandbox = %id, "stopped sandbox {id}, started by a create whose caller was answered with an error")
            }
            Err(e) => tracing::error!(
                plugin = name,
                sandbox = %id,
                "sandbox {id} was started by a create whose caller got an error, and stopping it failed ({e}); it may still run \
                 upstream and stays counted against the cap: stop it with sandbox::provider::{name}::stop"
            ),
        }
    }
}

/// Lists upstream so the book counts whatever the abandoned create left running.
async fn recount(plugin: &LoadedPlugin, book: &Arc<dyn Book>) {
    let name = &*plugin.name;
    tokio::time::sleep(RECOUNT_DELAY).await;
    for pause in RECOUNT_RETRIES {
        match list_upstream(plugin, &**book, None, plugin.policy.limits.call_timeout).await.0 {
            Ok(out) => {
                tracing::info!(plugin = name, in_flight = out.in_flight, "recounted the sandboxes upstream after an abandoned create");
                return;
            }
            Err(ListFailure::Unusable(e) | ListFailure::Fault(e)) => {
                tracing::warn!(plugin = name, "recounting after an abandoned create failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
    tracing::error!(
        plugin = name,
        "could not recount after an abandoned create; its slot stays held until a list succeeds (sandbox::list)"
    );
}
