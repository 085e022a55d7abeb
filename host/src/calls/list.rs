//! `list` and `get`: what runs upstream. A list replaces the slot book's live set (so
//! the cap counts sandboxes this host did not start) and reports what went away as
//! reaped; an unusable answer falls back to the book, flagged unreconciled.

use super::answer::{answer, bad_time, mismatch, plugin_error, rfc3339, unusable_id, wall_budget};
use super::events::{EventKind, Events};
use super::{Answered, Call};
use crate::contract::codes::{CallError, Code};
use crate::contract::shapes::{reply, Leaf, ListOutput, ListedSandbox, PluginReply, Request, SandboxInfo};
use crate::contract::validate::valid_sandbox_id;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{Book, LiveSandbox, Ticket};
use crate::runtime::invoke::{self, CallStats};
use serde_json::Value;
use std::time::Duration;

pub(super) async fn list(call: &Call<'_>) -> Answered {
    let plugin = call.plugin;
    let (listed, stats) = list_upstream(plugin, &**call.book, Some(call.events), plugin.policy.limits.call_timeout).await;
    let result = match listed {
        Ok(out) => Ok(reply::listed(&out)),
        // Whenever the upstream list cannot be used, answer from the book, flagged
        // unreconciled, with the reason (a book that cannot count either fails the call).
        Err(ListFailure::Unusable(why)) => match call.book.in_flight().await {
            Ok(in_flight) => {
                let cap = plugin.policy.max_concurrent_sandboxes;
                let out = ListOutput { sandboxes: Vec::new(), in_flight, cap, reconciled: false };
                let mut v = reply::listed(&out);
                v["reconcile_error"] = Value::String(why.message());
                Ok(v)
            }
            Err(e) => Err(e),
        },
        Err(ListFailure::Fault(e)) => Err(e),
    };
    (result, Some(stats))
}

/// One sandbox upstream. A sandbox the book did not know (started elsewhere, or before
/// this host) is counted from now on, as a list would.
pub(super) async fn get(call: &Call<'_>, req: Request) -> Answered {
    let plugin = call.plugin;
    let name = &*plugin.name;
    call.keepalive.touch(plugin, req.sandbox_id().unwrap_or_default(), 0);
    let (outcome, stats) = invoke::run(plugin, &req, wall_budget(plugin, &req)).await;
    let result = match answer(plugin, Leaf::Get, outcome) {
        Ok(PluginReply::Got(info)) if Some(info.sandbox_id.as_str()) != req.sandbox_id() => {
            Err(unusable_id(name, Leaf::Get, &info.sandbox_id))
        }
        Ok(PluginReply::Got(info)) => {
            let known = call.book.get(&info.sandbox_id).await;
            match listed_row(name, Leaf::Get, info, known.as_ref()) {
                Ok(row) => {
                    if known.is_none() {
                        call.book.adopt(row.sandbox_id.clone(), live(&row)).await;
                    }
                    Ok(reply::got(&row))
                }
                Err(e) => Err(e),
            }
        }
        Ok(other) => Err(mismatch(name, Leaf::Get, &other)),
        Err(e) => Err(e),
    };
    (result, Some(stats))
}

/// Why a list could not be reconciled.
pub(crate) enum ListFailure {
    /// The upstream's answer cannot be used (its error, or unusable rows): the caller
    /// gets the local book, flagged unreconciled.
    Unusable(CallError),
    /// The plugin misbehaved (S70x): the caller must see it.
    Fault(CallError),
}

/// Lists upstream and replaces the slot book's live set with the answer; sandboxes
/// that went away are published on `events` as reaped.
pub(crate) async fn list_upstream(
    plugin: &LoadedPlugin,
    book: &dyn Book,
    events: Option<&Events>,
    wall: Duration,
) -> (Result<ListOutput, ListFailure>, CallStats) {
    let ticket = book.begin_list().await;
    let (outcome, stats) = invoke::run(plugin, &Request::List, wall).await;
    let result = match outcome {
        Ok(Ok(PluginReply::Listed(rows))) => reconcile(plugin, book, events, rows, ticket).await.map_err(ListFailure::Unusable),
        Ok(Ok(other)) => Err(ListFailure::Fault(mismatch(&plugin.name, Leaf::List, &other))),
        Ok(Err(f)) => Err(ListFailure::Unusable(plugin_error(plugin, Leaf::List, f))),
        // A hung upstream surfaces as the plugin's own error (its upstream waits are
        // bounded well inside the call's budget); S70x means the plugin misbehaved.
        Err(host_fault) => Err(ListFailure::Fault(host_fault)),
    };
    (result, stats)
}

async fn reconcile(
    plugin: &LoadedPlugin,
    book: &dyn Book,
    events: Option<&Events>,
    rows: Vec<SandboxInfo>,
    ticket: Ticket,
) -> Result<ListOutput, CallError> {
    let name = &*plugin.name;
    let known = book.known().await;
    let mut listed = Vec::with_capacity(rows.len());
    for row in rows {
        let known = known.get(&row.sandbox_id);
        listed.push(listed_row(name, Leaf::List, row, known)?);
    }
    let reaped = book.reconcile(listed.iter().map(|s| (s.sandbox_id.clone(), live(s))).collect(), ticket).await?;
    if let Some(events) = events {
        for (id, gone) in &reaped {
            events.emit(EventKind::Reaped, name, id, &gone.image);
        }
    }
    let in_flight = book.in_flight().await?;
    Ok(ListOutput { sandboxes: listed, in_flight, cap: plugin.policy.max_concurrent_sandboxes, reconciled: true })
}

/// A plugin's row, checked: a usable id, RFC 3339 times (the book's start time when
/// the upstream gave none).
fn listed_row(name: &str, leaf: Leaf, row: SandboxInfo, known: Option<&LiveSandbox>) -> Result<ListedSandbox, CallError> {
    if !valid_sandbox_id(&row.sandbox_id) {
        return Err(unusable_id(name, leaf, &row.sandbox_id));
    }
    let started_at = match &row.started_at {
        Some(s) => rfc3339(s).ok_or_else(|| bad_time(name, leaf, &row.sandbox_id, s))?,
        None => known.and_then(|k| k.started_at.clone()).ok_or_else(|| {
            CallError::new(
                Code::Unavailable,
                format!(
                    "provider `{name}` {leaf} returned sandbox {:?} without a start time; the upstream answer was incomplete.",
                    row.sandbox_id
                ),
            )
        })?,
    };
    let ends_at = match &row.ends_at {
        Some(s) => Some(rfc3339(s).ok_or_else(|| bad_time(name, leaf, &row.sandbox_id, s))?),
        None => None,
    };
    let image = if row.image.is_empty() { known.map(|k| k.image.clone()).unwrap_or_default() } else { row.image };
    let mut metadata = row.metadata;
    // The caller's label survives an upstream that keeps no metadata.
    if let Some(name) = known.and_then(|k| k.name.clone()).filter(|_| !metadata.iter().any(|(k, _)| k == "name")) {
        metadata.push(("name".into(), name));
    }
    Ok(ListedSandbox { sandbox_id: row.sandbox_id, image, started_at, state: row.state, ends_at, metadata })
}

/// The slot book's record of a listed sandbox.
fn live(s: &ListedSandbox) -> LiveSandbox {
    LiveSandbox { image: s.image.clone(), started_at: Some(s.started_at.clone()), name: s.name().map(str::to_string) }
}
