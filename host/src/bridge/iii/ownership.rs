//! Active / standby: several hosts `serve` the same plugins on one engine, each under its
//! own worker name. The engine keeps the first live registrant of an id and refuses the
//! others (`FUNCTION_NAMESPACE_CONFLICT`, which iii-sdk 0.25 only logs, keeping the
//! function in its own map), so the first host to connect is *active* for an id and the
//! others are *standbys* for it. No id is ever served by two hosts at once.
//!
//! A standby watches the engine's function list (`engine::functions::list`, polled every
//! [`POLL`]; the engine's own `engine::functions-available` trigger fires only every 5 s)
//! and, when an id it serves has had no owner in two lists in a row (its owner
//! disconnected: the engine drops a gone worker's functions), registers it again
//! (`Registrations::re_register`), which the engine now grants. The bare router ids
//! another host of ours held (`router_claims.rs` left them alone) are claimed the same way
//! when the router is enabled. Right after a takeover, and after every (re)connect when
//! the slot books live in iii state, every provider is listed so the books count what
//! the gone host left running.
//!
//! What this host is for each id is logged when it changes, kept in [`ServingReport`]
//! and shown by `sandbox-host stats` (`serving` in `/stats`).

use super::{router_claims, Bridge};
use crate::bridge::iii::router_function_id;
use crate::Leaf;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

/// Between two looks at the engine's function list.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a host with shared books waits for its first connection before registering.
pub const FIRST_CONNECT: Duration = Duration::from_secs(30);
/// Polls between two heartbeats of a host with shared books (`shared_book::heartbeat`).
const HEARTBEAT_EVERY: u32 = 5;
/// How long each provider's list may take after a takeover or a connect.
const RECOUNT: Duration = Duration::from_secs(15);

/// What this host is on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not connected, or not yet looked.
    Unknown,
    /// Owns every provider id it serves.
    Active,
    /// Another worker owns every provider id it serves; it takes them over if that one goes.
    Standby,
    /// Owns some, waits for others (e.g. a plugin only this host has).
    Partial,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Partial => "partial",
        }
    }
}

/// The last look at the engine's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingReport {
    pub role: Role,
    pub worker: String,
    /// Ids this host serves that another worker owns → that worker.
    pub waiting: BTreeMap<String, String>,
    /// Ids taken over from a gone owner since start.
    pub took_over: usize,
}

impl ServingReport {
    pub fn json(&self) -> Value {
        json!({"role": self.role.as_str(), "worker": self.worker, "waiting_for": self.waiting, "took_over": self.took_over})
    }
}

/// Watches ownership until the bridge is dropped or shut down.
pub(super) async fn watch(bridge: Weak<Bridge>) {
    let mut connected = false;
    // The first connect's count is `count_running`'s, before anything is registered.
    let mut first = true;
    let mut unowned_before: BTreeSet<String> = BTreeSet::new();
    // Ids another worker owned (or nobody, since it left) at the last look → that worker.
    let mut theirs_before: BTreeMap<String, String> = BTreeMap::new();
    let mut took_over = 0;
    let mut polls: u32 = 0;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(b) = bridge.upgrade() else { return };
        if b.is_closed() {
            return;
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(HEARTBEAT_EVERY) && b.is_connected() {
            beat(&b).await;
        }
        if !b.is_connected() {
            if connected {
                publish(&b, Role::Unknown, BTreeMap::new(), took_over);
            }
            connected = false;
            unowned_before.clear();
            theirs_before.clear();
            continue;
        }
        if !connected {
            connected = true;
            if b.host.slot_books_shared() && !std::mem::take(&mut first) {
                // The engine may have restarted with empty state: count what runs.
                recount(&b);
            }
        }
        let Ok(listed) = super::reattach::engine_functions(&b).await else { continue };
        let us = b.worker_name.clone();
        let mut waiting = BTreeMap::new();
        let mut unowned = BTreeSet::new();
        let (mut mine, mut theirs) = (0, 0);
        let served = b.function_ids();
        for id in &served {
            match listed.get(id).map(String::as_str) {
                None => {
                    unowned.insert(id.clone());
                }
                Some(owner) if owner == us => mine += usize::from(id.starts_with("sandbox::provider::")),
                // An owner the engine has not named yet (see router_claims::Owner::Unnamed).
                Some(owner) if id.split("::").next() == Some(owner) => {}
                Some(owner) => {
                    theirs += usize::from(id.starts_with("sandbox::provider::"));
                    waiting.insert(id.clone(), owner.to_string());
                }
            }
        }
        // Router ids left to another host of ours, now free.
        let free_router: Vec<Leaf> = match (b.host.config.router, b.router_report()) {
            (true, Some(report)) => Leaf::ALL
                .into_iter()
                .filter(|l| report.left_alone.contains_key(&router_function_id(*l)) && !listed.contains_key(&router_function_id(*l)))
                .collect(),
            _ => Vec::new(),
        };
        unowned.extend(free_router.iter().map(|l| router_function_id(*l)));
        // An id nobody owns yet (its owner just left) is not this host's either.
        let vacant = unowned.iter().filter(|id| id.starts_with("sandbox::provider::")).count();
        // Ids another worker held that are this host's now: taken over, by the registration
        // below or by the reconnect check (`reattach.rs`), whichever came first.
        let ours_now: Vec<&String> = theirs_before.keys().filter(|id| listed.get(*id) == Some(&us)).collect();
        if !ours_now.is_empty() {
            let from: BTreeSet<&String> = ours_now.iter().filter_map(|id| theirs_before.get(*id)).collect();
            took_over += ours_now.len();
            tracing::warn!(
                "took over {} function id(s) from worker(s) {from:?}, which left the engine; this host serves them now",
                ours_now.len()
            );
            recount(&b);
        }
        let mut still: BTreeMap<String, String> = theirs_before.into_iter().filter(|(id, _)| unowned.contains(id)).collect();
        still.extend(waiting.iter().map(|(id, o)| (id.clone(), o.clone())));
        theirs_before = still;
        let confirmed: Vec<String> = unowned.intersection(&unowned_before).cloned().collect();
        if !confirmed.is_empty() {
            let (router_ids, provider_ids): (Vec<String>, Vec<String>) = confirmed.into_iter().partition(|id| !served.contains(id));
            let again = b.re_register(&provider_ids);
            let leaves: Vec<Leaf> = free_router.into_iter().filter(|l| router_ids.contains(&router_function_id(*l))).collect();
            if !leaves.is_empty() {
                b.serve_router(&leaves);
                router_claims::took_over(&b, &leaves);
            }
            tracing::info!(
                "registering {} function id(s) again whose owner left the engine: {}",
                again.len() + leaves.len(),
                again.iter().cloned().chain(leaves.iter().map(|l| router_function_id(*l))).collect::<Vec<_>>().join(", ")
            );
            for id in leaves.iter().map(|l| router_function_id(*l)) {
                theirs_before.entry(id).or_default();
            }
            unowned_before.clear();
        } else {
            unowned_before = unowned;
        }
        let role = match (mine, theirs + vacant) {
            (_, 0) => Role::Active,
            (0, _) => Role::Standby,
            _ => Role::Partial,
        };
        publish(&b, role, waiting, took_over);
    }
}

/// Records and logs the role when it changed.
fn publish(bridge: &Bridge, role: Role, waiting: BTreeMap<String, String>, took_over: usize) {
    let report = ServingReport { role, worker: bridge.worker_name.clone(), waiting, took_over };
    let mut last = bridge.serving.lock().unwrap_or_else(|p| p.into_inner());
    let changed = last.as_ref().is_none_or(|l| l.role != report.role || l.waiting != report.waiting);
    if changed {
        let owners: BTreeSet<&String> = report.waiting.values().collect();
        match role {
            Role::Standby | Role::Partial => tracing::warn!(
                "{}: {} function id(s) this host serves are owned by worker(s) {:?}; this host takes them over if they disconnect",
                role.as_str(),
                report.waiting.len(),
                owners
            ),
            Role::Active => tracing::info!("active: this host (worker {:?}) owns every function id it serves", report.worker),
            Role::Unknown => tracing::warn!("not connected to the engine: serving nothing until it is back"),
        }
    }
    bridge.host.metrics.set_serving(report.json());
    *last = Some(report);
}

/// Lists every provider (each within [`RECOUNT`]); the ones that failed are retried in
/// the background.
pub(super) async fn count_running(bridge: &Bridge) {
    beat(bridge).await;
    let unknown = bridge.host.reconcile_all(RECOUNT).await;
    if !unknown.is_empty() {
        tracing::warn!("could not learn the running sandboxes of {}; retrying in the background", unknown.join(", "));
        let (host, stop) = (bridge.host.clone(), bridge.stop.subscribe());
        bridge.runtime.spawn(async move { host.reconcile_until_known(unknown, stop).await });
    }
}

/// Says this host is alive to the other hosts sharing its books (so a list does not drop
/// the slots of its creates in flight).
async fn beat(bridge: &Bridge) {
    if let Some(state) = bridge.host.shared_state() {
        if let Err(e) = crate::policy::shared_book::heartbeat(&*state).await {
            tracing::debug!("could not write this host's heartbeat to iii state: {e}");
        }
    }
}

/// Lists every provider in the background, so the slot books count what really runs.
fn recount(bridge: &Bridge) {
    let host = bridge.host.clone();
    let stop = bridge.stop.subscribe();
    bridge.runtime.spawn(async move {
        let unknown = host.reconcile_all(RECOUNT).await;
        if !unknown.is_empty() {
            tracing::warn!("could not learn the running sandboxes of {}; retrying in the background", unknown.join(", "));
            host.reconcile_until_known(unknown, stop).await;
        }
    });
}
