//! `create` and `branch`: the image allowlist before any upstream call, slots reserved
//! up front and committed or rolled back, and a create the host gives up on after it
//! reached the upstream finished or undone (`abandoned`).

use super::abandoned::{self, Slots};
use super::answer::{answer, mismatch, now_rfc3339, rfc3339, unsupported_field, unusable_id, wall_budget};
use super::events::EventKind;
use super::{Answered, Call};
use crate::contract::codes::{CallError, Code};
use crate::contract::shapes::{reply, Capability, Leaf, ListedSandbox, PluginReply, Request};
use crate::contract::validate::valid_sandbox_id;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{Book, LiveSandbox};
use crate::policy::plugin_text::bounded;
use crate::runtime::invoke::{self, CallStats, Finished};
use crate::runtime::wit::ErrorKind;
use std::time::Duration;

/// Metadata on every sandbox the host creates: the machine that created it, so a host
/// restarted after a crash (or an operator) can tell its own sandboxes from others'.
pub const CREATED_BY: &str = "iii.dev/sandbox-host";

pub(super) async fn create(call: &Call<'_>, mut req: Request) -> Answered {
    let plugin = call.plugin;
    let name = &*plugin.name;
    // A caller's own `CREATED_BY` was refused by validation (contract/validate.rs).
    if let Request::Create(c) = &mut req {
        c.metadata.push((CREATED_BY.to_string(), super::events::machine_name().to_string()));
    }
    let Request::Create(c) = &req else { unreachable!("create() is only called with a create") };
    if let Err(e) = plugin.policy.images.check(name, &c.image) {
        return (Err(e), None);
    }
    let caps = plugin.capabilities();
    if c.network == Some(false) && !caps.contains(&Capability::NetworkOff) {
        return (Err(unsupported_field(name, Leaf::Create, "network: false", "network_off")), None);
    }
    // Sizing is a hint the provider may not take: said in the answer, never dropped silently.
    let mut ignored = Vec::new();
    if !caps.contains(&Capability::Sizing) {
        ignored.extend(c.cpus.map(|_| "cpus"));
        ignored.extend(c.memory_mb.map(|_| "memory_mb"));
    }
    let reservation = match call.book.reserve(name, plugin.policy.max_concurrent_sandboxes).await {
        Ok(r) => r,
        Err(e) => return (Err(e), None),
    };
    let wall = wall_budget(plugin, &req);
    let (result, stats, reservation) = match run_starting(call, &req, wall, reservation).await {
        Started::Answered(result, stats, reservation) => (result, stats, reservation),
        Started::Abandoned(err, stats) => return (Err(err), Some(stats)),
    };
    // On any error the reservation drops here and the slot is released.
    let result = match result {
        Ok(PluginReply::Created(info)) => {
            if !valid_sandbox_id(&info.sandbox_id) {
                return (
                    Err(CallError::new(
                        Code::Unavailable,
                        format!(
                            "provider `{name}` create returned the unusable sandbox id {:?}; a sandbox may have been created upstream under it, check the provider's console.",
                            info.sandbox_id.chars().take(80).collect::<String>()
                        ),
                    )),
                    Some(stats),
                );
            }
            // The sandbox exists: an odd start time must not lose it.
            let started_at = match info.started_at.as_deref().map(|s| (s, rfc3339(s))) {
                Some((_, Some(t))) => t,
                Some((raw, None)) => {
                    tracing::warn!(plugin = name, sandbox = %info.sandbox_id, "create returned start time {:?}, not RFC 3339; using now", bounded(raw, 80));
                    now_rfc3339()
                }
                None => now_rfc3339(),
            };
            let image = if info.image.is_empty() { c.image.clone() } else { info.image.clone() };
            let mut metadata = info.metadata.clone();
            for (k, v) in &c.metadata {
                if !metadata.iter().any(|(mk, _)| mk == k) {
                    metadata.push((k.clone(), v.clone()));
                }
            }
            let row = ListedSandbox {
                sandbox_id: info.sandbox_id.clone(),
                image: image.clone(),
                started_at: started_at.clone(),
                state: info.state,
                ends_at: info.ends_at.as_deref().and_then(rfc3339),
                metadata,
            };
            let live = LiveSandbox { image: image.clone(), started_at: Some(started_at), name: row.name().map(str::to_string) };
            // An upstream end time is absolute (E2B, Morph): kept moving while in use.
            if let Some(ends) = row.ends_at.as_deref().and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok()) {
                let left = (ends.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds().max(1) as u64;
                call.keepalive.track(plugin, &info.sandbox_id, c.idle_timeout_secs.unwrap_or(left));
            }
            reservation.commit(info.sandbox_id, live).await;
            call.events.emit(EventKind::Created, name, &row.sandbox_id, &image);
            Ok(reply::created(&row, plugin.capabilities(), &ignored))
        }
        Ok(other) => Err(mismatch(name, Leaf::Create, &other)),
        Err(e) => Err(e),
    };
    (result, Some(stats))
}

pub(super) async fn branch(call: &Call<'_>, req: Request) -> Answered {
    let Request::Branch { count, .. } = &req else { unreachable!("branch() is only called with a branch") };
    let plugin = call.plugin;
    let name = &*plugin.name;
    // Siblings are sandboxes like any other: they need slots, reserved up front.
    let reservations = match call.book.reserve_many(name, plugin.policy.max_concurrent_sandboxes, *count as usize).await {
        Ok(r) => r,
        Err(e) => return (Err(e), None),
    };
    let wall = wall_budget(plugin, &req);
    let (result, stats, reservations) = match run_starting(call, &req, wall, reservations).await {
        Started::Answered(result, stats, reservations) => (result, stats, reservations),
        Started::Abandoned(err, stats) => return (Err(err), Some(stats)),
    };
    let result = match result {
        Ok(PluginReply::Branched(ids)) => {
            if let Some(bad) = ids.iter().find(|id| !valid_sandbox_id(id)) {
                return (Err(unusable_id(name, Leaf::Branch, bad)), Some(stats));
            }
            if ids.len() > reservations.len() {
                tracing::warn!(
                    plugin = name,
                    "branch returned {} siblings, {} were requested; all are counted",
                    ids.len(),
                    reservations.len()
                );
            }
            record_started(&**call.book, &ids, reservations).await;
            for id in &ids {
                call.events.emit(EventKind::Created, name, id, "");
            }
            Ok(reply::branched(&ids))
        }
        Ok(other) => Err(mismatch(name, Leaf::Branch, &other)),
        Err(e) => Err(e),
    };
    (result, Some(stats))
}

/// How a create or branch ended for its caller.
enum Started<S> {
    /// The guest answered, or failed before anything reached the upstream: the caller
    /// commits or drops the slots.
    Answered(Result<PluginReply, CallError>, CallStats, S),
    /// The host gave up on it after its request reached the upstream; the slots went
    /// to a settlement that finishes or undoes whatever it started.
    Abandoned(CallError, CallStats),
}

/// Runs a create or branch holding `slots`.
async fn run_starting<S: Slots>(call: &Call<'_>, req: &Request, wall: Duration, slots: S) -> Started<S> {
    let plugin = call.plugin;
    let (outcome, stats) = match invoke::run_or_overtime(plugin, req, wall, abandoned::overtime(plugin)).await {
        Finished::Done(outcome, stats) => (outcome, stats),
        Finished::Overtime(err, stats, guest) => {
            call.settling.spawn(abandoned::finish_overtime(plugin.clone(), call.book.clone(), guest, slots.into_slots()));
            return Started::Abandoned(err, stats);
        }
    };
    match outcome {
        Err(fault) if stats.overruled.is_some() || stats.upstream_requests > 0 => {
            call.settling.spawn(abandoned::after_fault(plugin.clone(), call.book.clone(), stats.clone(), slots.into_slots()));
            Started::Abandoned(fault, stats)
        }
        outcome if req.leaf() == Leaf::Create => Started::Answered(create_answer(plugin, outcome), stats, slots),
        outcome => Started::Answered(answer(plugin, req.leaf(), outcome), stats, slots),
    }
}

/// Records sandboxes a create or branch started: the reserved slots first, any extra
/// (an upstream that returned more than asked) counted all the same.
pub(crate) async fn record_started(book: &dyn Book, ids: &[String], reservations: impl Slots) {
    let now = now_rfc3339();
    let mut reservations = reservations.into_slots().into_iter();
    for id in ids {
        let live = LiveSandbox { image: String::new(), started_at: Some(now.clone()), name: None };
        match reservations.next() {
            Some(r) => r.commit(id.clone(), live).await,
            None => book.adopt(id.clone(), live).await,
        }
    }
    // Unused reservations are released as they drop.
}

/// As [`answer`] for `create`, where "not found" cannot mean the caller's sandbox (it
/// has none yet). A plugin reports an unknown image as bad input itself; any other
/// not-found (e.g. the new sandbox reaped while it booted) is the upstream's, and a
/// retry may well succeed: S502, not S410 or a never-retry S422.
fn create_answer(plugin: &LoadedPlugin, outcome: invoke::Outcome) -> Result<PluginReply, CallError> {
    match outcome {
        Ok(Err(f)) if f.kind == ErrorKind::NotFound => {
            let message = f.message.trim().trim_end_matches('.');
            Err(CallError::new(
                Code::Unavailable,
                format!(
                    "provider `{}` create failed: {message}; the new sandbox disappeared upstream while it was being created \
                     (e.g. reaped during boot). Retry the create.",
                    plugin.name
                ),
            ))
        }
        other => answer(plugin, Leaf::Create, other),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::concurrency::{Book, LocalBook, SlotBook};

    /// Review item 12: siblings beyond the reserved count are recorded all the same.
    #[tokio::test]
    async fn every_sibling_a_branch_returns_is_counted() {
        let slots = SlotBook::new();
        let book = LocalBook(slots.clone());
        let two = book.reserve_many("p", 5, 2).await.unwrap();
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        super::record_started(&book, &ids, two).await;
        assert_eq!(slots.in_flight(), 3);
        assert!(slots.release("c"), "the extra sibling is in the book");
        // Fewer than reserved: the unused slot is released.
        let three = book.reserve_many("p", 5, 3).await.unwrap();
        super::record_started(&book, &["d".to_string()], three).await;
        assert_eq!(slots.in_flight(), 3);
    }
}
