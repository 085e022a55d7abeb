//! The bare-id router (`sandbox::<leaf>`) claims only ids no other worker owns.
//!
//! The engine's own sandbox daemon (worker `iii-sandbox`) registers `sandbox::create`,
//! `exec`, `stop`, `list`, `fs::read`, `fs::write` in the same namespace, and the engine
//! keeps the first live registrant of an id, refusing the others with
//! `FUNCTION_NAMESPACE_CONFLICT` (which iii-sdk 0.25 only logs, `src/iii.rs:3841-3875`).
//! Taking those ids would silently turn the engine's `sandbox::create` into ours, or
//! leave a router half ours and half the daemon's depending on who connected first.
//!
//! So, after every connect and only when the router is enabled: the engine's function
//! list (`engine::functions::list {prefix: "sandbox::"}`, read as JSON for its
//! `worker_name`) is read *before* registering, and an id another worker owns is left
//! alone. Then the list is read again until every id claimed shows this worker as its
//! owner: the daemon may have connected between the two (the engine then refused ours,
//! and the id shows as the daemon's), and such an id is given up here too (its
//! unregister is harmless: the engine ignores an unregister from a worker that is not the
//! owner, engine `src/engine/mod.rs:1967-2040`). The log names every id left alone and its
//! owner.

use super::Bridge;
use crate::bridge::iii::router_function_id;
use crate::Leaf;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Between the registrations and each check of their outcome (the engine files a
/// connection's registrations once its `engine::workers::register` arrives).
const SETTLE: Duration = Duration::from_secs(1);
/// Lists before and checks after, per connect.
const CHECKS: usize = 8;

/// What the last claim found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterReport {
    /// Bare ids this host registered and the engine confirmed as its own.
    pub serving: Vec<String>,
    /// Bare ids left to another worker → that worker's name.
    pub left_alone: BTreeMap<String, String>,
    /// Bare ids registered whose owner the engine had not confirmed after every check.
    pub unconfirmed: Vec<String>,
}

/// Who owns an id, as the engine lists it.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Nobody,
    Us,
    Other(String),
    /// Registered, but the engine does not know the worker's name yet: it names such an
    /// owner by the id's first segment (`sandbox`, engine
    /// `workers/engine_fn/mod.rs:643-652`) until that worker's `engine::workers::register`.
    Unnamed,
}

fn owner(listed: &BTreeMap<String, String>, id: &str, us: &str) -> Owner {
    match listed.get(id) {
        None => Owner::Nobody,
        Some(name) if name == us => Owner::Us,
        Some(name) if id.split("::").next() == Some(name.as_str()) => Owner::Unnamed,
        Some(name) => Owner::Other(name.clone()),
    }
}

/// Claims the router's ids on a fresh connection; a no-op when the router is disabled.
pub(super) async fn after_connect(bridge: &Bridge) {
    if !bridge.host.config.router {
        return;
    }
    let Some(listed) = list_until_answered(bridge).await else {
        tracing::warn!(
            "router: could not read the engine's function list, so no `sandbox::<leaf>` id is registered; \
             it is tried again on the next connect"
        );
        return;
    };
    let us = bridge.worker_name.as_str();
    let mut left_alone = BTreeMap::new();
    let mut claim = Vec::new();
    for leaf in Leaf::ALL {
        let id = router_function_id(leaf);
        match owner(&listed, &id, us) {
            Owner::Other(name) => {
                left_alone.insert(id, name);
            }
            // Ours from before a reconnect, whose owner the engine has not filed yet.
            Owner::Unnamed if bridge.lock().is_served(&id) => claim.push(leaf),
            Owner::Unnamed => {
                left_alone.insert(id, "(a worker that has not told the engine its name yet)".into());
            }
            Owner::Nobody | Owner::Us => claim.push(leaf),
        }
    }
    bridge.give_up_router_ids(left_alone.keys());
    bridge.serve_router(&claim);
    let mut pending: BTreeSet<String> = claim.into_iter().map(router_function_id).collect();
    let mut serving = Vec::new();
    for _ in 0..CHECKS {
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let Ok(listed) = list(bridge).await else { continue };
        for id in pending.clone() {
            match owner(&listed, &id, us) {
                Owner::Us => serving.push(id.clone()),
                Owner::Other(name) => {
                    bridge.give_up_router_ids([&id]);
                    left_alone.insert(id.clone(), name);
                }
                Owner::Nobody | Owner::Unnamed => continue,
            }
            pending.remove(&id);
        }
    }
    serving.sort();
    let report = RouterReport { serving, left_alone, unconfirmed: pending.into_iter().collect() };
    log(&report, us);
    *bridge.router_report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
}

/// Records router ids taken over from a gone owner (`ownership.rs`) as served.
pub(super) fn took_over(bridge: &Bridge, leaves: &[Leaf]) {
    let mut report = bridge.router_report.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = report.as_mut() {
        for id in leaves.iter().map(|l| router_function_id(*l)) {
            r.left_alone.remove(&id);
            if !r.serving.contains(&id) {
                r.serving.push(id);
            }
        }
        r.serving.sort();
    }
}

fn log(report: &RouterReport, us: &str) {
    if !report.serving.is_empty() {
        tracing::info!("router: serving {} `sandbox::<leaf>` id(s) as worker {us:?}: {}", report.serving.len(), report.serving.join(", "));
    }
    if !report.left_alone.is_empty() {
        let why: Vec<String> = report.left_alone.iter().map(|(id, owner)| format!("{id} (owned by worker {owner:?})")).collect();
        tracing::warn!(
            "router: left {} `sandbox::<leaf>` id(s) to other workers, calls of them reach those workers: {}",
            why.len(),
            why.join(", ")
        );
    }
    if !report.unconfirmed.is_empty() {
        tracing::warn!(
            "router: registered {} but the engine did not confirm this worker as their owner after {CHECKS} checks: {}",
            report.unconfirmed.len(),
            report.unconfirmed.join(", ")
        );
    }
}

async fn list_until_answered(bridge: &Bridge) -> Option<BTreeMap<String, String>> {
    for attempt in 0..CHECKS {
        match list(bridge).await {
            Ok(listed) => return Some(listed),
            Err(e) => tracing::debug!("router: listing the engine's functions failed ({e}), attempt {}", attempt + 1),
        }
        tokio::time::sleep(SETTLE).await;
    }
    None
}

/// Bare `sandbox::<leaf>` ids in this worker's namespace → the owning worker's name.
async fn list(bridge: &Bridge) -> Result<BTreeMap<String, String>, String> {
    let bare: BTreeSet<String> = Leaf::ALL.into_iter().map(router_function_id).collect();
    Ok(super::reattach::engine_functions(bridge).await?.into_iter().filter(|(id, _)| bare.contains(id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_us_another_worker_nobody_or_not_yet_named() {
        let listed: BTreeMap<String, String> =
            [("sandbox::create", "iii-sandbox"), ("sandbox::exec", "host:1"), ("sandbox::stop", "sandbox"), ("sandbox::list", "")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        assert_eq!(owner(&listed, "sandbox::create", "host:1"), Owner::Other("iii-sandbox".into()));
        assert_eq!(owner(&listed, "sandbox::exec", "host:1"), Owner::Us);
        assert_eq!(owner(&listed, "sandbox::stop", "host:1"), Owner::Unnamed);
        assert_eq!(owner(&listed, "sandbox::branch", "host:1"), Owner::Nobody);
        // An owner without any name is still someone else's.
        assert_eq!(owner(&listed, "sandbox::list", "host:1"), Owner::Other(String::new()));
    }
}
