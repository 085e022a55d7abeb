//! Contract semantics every provider gets from the host, once (docs/contract.md "What the host guarantees"):
//! image allowlist before any upstream call, slot reservation with rollback, idempotent
//! stop that releases a slot exactly once, list reconciliation, capability gating and
//! RFC 3339 `started_at`. The plugin is only asked to translate.

use super::abandoned::{self, Settlements, Slots};
use super::codes::{CallError, Code};
use super::shapes::{reply, Leaf, ListOutput, ListedSandbox, PluginReply, Request};
use super::validate::valid_sandbox_id;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{LiveSandbox, SlotBook};
use crate::policy::plugin_text::{bounded, bounded_debug, MAX_ERROR_MESSAGE_BYTES};
use crate::runtime::invoke::{self, CallStats, Finished};
use crate::runtime::wit::{ErrorKind, PluginFailure};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Runs a validated request against `plugin` with the contract's semantics. A create
/// or branch the host gives up on after it reached the upstream is finished or undone
/// in a task tracked by `settling` (see [`abandoned`]).
pub async fn execute(
    plugin: &Arc<LoadedPlugin>,
    book: &Arc<SlotBook>,
    settling: &Arc<Settlements>,
    req: Request,
) -> (Result<Value, CallError>, Option<CallStats>) {
    let name = &*plugin.name;
    let leaf = req.leaf();
    // Capability gating (S404) happened in `Host::call`, before validation, so an
    // absent leaf never answers S422.
    if let Some(refused) = credential_refusal(plugin) {
        return (Err(refused), None);
    }
    let wall = wall_budget(plugin, &req);
    match &req {
        Request::Create(c) => {
            if let Err(e) = plugin.policy.images.check(name, &c.image) {
                return (Err(e), None);
            }
            let reservation = match book.reserve(name, plugin.policy.max_concurrent_sandboxes) {
                Ok(r) => r,
                Err(e) => return (Err(e), None),
            };
            let (result, stats, reservation) = match run_starting(plugin, book, settling, &req, wall, reservation).await {
                Started::Answered(result, stats, reservation) => (result, stats, reservation),
                Started::Abandoned(err, stats) => return (Err(err), Some(stats)),
            };
            // On any error the reservation drops here and the slot is released.
            let result = result.and_then(|r| match r {
                PluginReply::Created(info) => {
                    if !valid_sandbox_id(&info.sandbox_id) {
                        return Err(CallError::new(
                            Code::Unavailable,
                            format!(
                                "provider `{name}` create returned the unusable sandbox id {:?}; a sandbox may have been created upstream under it, check the provider's console.",
                                info.sandbox_id.chars().take(80).collect::<String>()
                            ),
                        ));
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
                    let row = ListedSandbox { sandbox_id: info.sandbox_id.clone(), image: image.clone(), started_at: started_at.clone() };
                    reservation.commit(info.sandbox_id, LiveSandbox { image, started_at: Some(started_at) });
                    Ok(reply::created(&row, plugin.capabilities()))
                }
                other => Err(mismatch(name, leaf, &other)),
            });
            (result, Some(stats))
        }
        Request::Stop { sandbox_id } => {
            let (result, stats) = stop_sandbox(plugin, book, sandbox_id, wall).await;
            (result.map(|()| reply::empty()), Some(stats))
        }
        Request::List => {
            let (listed, stats) = list_upstream(plugin, book, wall).await;
            let result = match listed {
                Ok(out) => Ok(reply::listed(&out)),
                // Whenever the upstream list cannot be used, answer from the local book,
                // flagged unreconciled, with the reason.
                Err(ListFailure::Unusable(why)) => {
                    let cap = plugin.policy.max_concurrent_sandboxes;
                    let out = ListOutput { sandboxes: Vec::new(), in_flight: book.in_flight(), cap, reconciled: false };
                    let mut v = reply::listed(&out);
                    v["reconcile_error"] = Value::String(why.message());
                    Ok(v)
                }
                Err(ListFailure::Fault(e)) => Err(e),
            };
            (result, Some(stats))
        }
        Request::Branch { count, .. } => {
            // Siblings are sandboxes like any other: they need slots, reserved up front.
            let reservations = match book.reserve_many(name, plugin.policy.max_concurrent_sandboxes, *count as usize) {
                Ok(r) => r,
                Err(e) => return (Err(e), None),
            };
            let (result, stats, reservations) = match run_starting(plugin, book, settling, &req, wall, reservations).await {
                Started::Answered(result, stats, reservations) => (result, stats, reservations),
                Started::Abandoned(err, stats) => return (Err(err), Some(stats)),
            };
            let result = result.and_then(|r| match r {
                PluginReply::Branched(ids) => {
                    if let Some(bad) = ids.iter().find(|id| !valid_sandbox_id(id)) {
                        return Err(CallError::new(
                            Code::Unavailable,
                            format!(
                                "provider `{name}` branch returned the unusable sandbox id {:?}.",
                                bad.chars().take(80).collect::<String>()
                            ),
                        ));
                    }
                    if ids.len() > reservations.len() {
                        tracing::warn!(
                            plugin = name,
                            "branch returned {} siblings, {} were requested; all are counted",
                            ids.len(),
                            reservations.len()
                        );
                    }
                    record_started(book, &ids, reservations);
                    Ok(reply::branched(&ids))
                }
                other => Err(mismatch(name, leaf, &other)),
            });
            (result, Some(stats))
        }
        Request::Exec(e) if e.timeout_ms.is_some_and(|ms| ms > plugin.policy.limits.max_exec_timeout_ms) => {
            let max = plugin.policy.limits.max_exec_timeout_ms;
            (
                Err(CallError::bad_input(format!(
                    "exec: `timeout_ms` {} exceeds provider `{name}`'s limit of {max} ms (limits.max_exec_timeout_ms in plugins/{name}.toml).",
                    e.timeout_ms.unwrap_or_default()
                ))),
                None,
            )
        }
        _ => {
            let (outcome, stats) = invoke::run(plugin, &req, wall).await;
            let result = answer(plugin, leaf, outcome).and_then(|r| match (leaf, r) {
                (Leaf::Exec, PluginReply::Executed(out)) => Ok(reply::executed(&out)),
                (Leaf::Snapshot, PluginReply::Snapshotted(id)) => Ok(reply::snapshotted(&id)),
                (Leaf::ExposePort, PluginReply::Exposed(url)) => Ok(reply::exposed(&url)),
                (Leaf::FsRead, PluginReply::Read(bytes)) => Ok(reply::read(&bytes)),
                (Leaf::FsWrite, PluginReply::Written) => Ok(reply::empty()),
                (_, other) => Err(mismatch(name, leaf, &other)),
            });
            (result, Some(stats))
        }
    }
}

/// S503 when a credential the plugin needs cannot be sent (not granted, unset,
/// invalid): refused before the plugin runs, so no request goes out without it.
pub(crate) fn credential_refusal(plugin: &LoadedPlugin) -> Option<CallError> {
    let why = plugin.policy.egress.credentials.iter().find_map(|c| c.unusable_sentence(&plugin.name))?;
    Some(CallError::new(Code::AuthInvalid, why))
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
async fn run_starting<S: Slots>(
    plugin: &Arc<LoadedPlugin>,
    book: &Arc<SlotBook>,
    settling: &Arc<Settlements>,
    req: &Request,
    wall: Duration,
    slots: S,
) -> Started<S> {
    let (outcome, stats) = match invoke::run_or_overtime(plugin, req, wall, abandoned::overtime(plugin)).await {
        Finished::Done(outcome, stats) => (outcome, stats),
        Finished::Overtime(err, stats, guest) => {
            settling.spawn(abandoned::finish_overtime(plugin.clone(), book.clone(), guest, slots.into_slots()));
            return Started::Abandoned(err, stats);
        }
    };
    match outcome {
        Err(fault) if stats.overruled.is_some() || stats.upstream_requests > 0 => {
            settling.spawn(abandoned::after_fault(plugin.clone(), book.clone(), stats.clone(), slots.into_slots()));
            Started::Abandoned(fault, stats)
        }
        outcome if req.leaf() == Leaf::Create => Started::Answered(create_answer(plugin, outcome), stats, slots),
        outcome => Started::Answered(answer(plugin, req.leaf(), outcome), stats, slots),
    }
}

/// Records sandboxes a create or branch started: the reserved slots first, any extra
/// (an upstream that returned more than asked) counted all the same.
pub(crate) fn record_started(book: &SlotBook, ids: &[String], reservations: impl Slots) {
    let now = now_rfc3339();
    let mut reservations = reservations.into_slots().into_iter();
    for id in ids {
        let live = LiveSandbox { image: String::new(), started_at: Some(now.clone()) };
        match reservations.next() {
            Some(r) => r.commit(id.clone(), live),
            None => book.adopt(id.clone(), live),
        }
    }
    // Unused reservations are released as they drop.
}

/// Stops `sandbox_id`, idempotently: gone (404) or already going (409) is success, and
/// the slot is released once.
pub(crate) async fn stop_sandbox(
    plugin: &LoadedPlugin,
    book: &SlotBook,
    sandbox_id: &str,
    wall: Duration,
) -> (Result<(), CallError>, CallStats) {
    let req = Request::Stop { sandbox_id: sandbox_id.to_string() };
    let (outcome, stats) = invoke::run(plugin, &req, wall).await;
    let result = match outcome {
        Ok(Err(f)) if f.kind == ErrorKind::NotFound || matches!(f.upstream_status, Some(404 | 409)) => Ok(PluginReply::Stopped),
        other => answer(plugin, Leaf::Stop, other),
    }
    .and_then(|r| match r {
        PluginReply::Stopped => {
            book.release(sandbox_id);
            Ok(())
        }
        other => Err(mismatch(&plugin.name, Leaf::Stop, &other)),
    });
    (result, stats)
}

/// Why a list could not be reconciled.
pub(crate) enum ListFailure {
    /// The upstream's answer cannot be used (its error, or unusable rows): the caller
    /// gets the local book, flagged unreconciled.
    Unusable(CallError),
    /// The plugin misbehaved (S70x): the caller must see it.
    Fault(CallError),
}

/// Lists upstream and replaces the slot book's live set with the answer.
pub(crate) async fn list_upstream(
    plugin: &LoadedPlugin,
    book: &Arc<SlotBook>,
    wall: Duration,
) -> (Result<ListOutput, ListFailure>, CallStats) {
    let ticket = book.begin_list();
    let (outcome, stats) = invoke::run(plugin, &Request::List, wall).await;
    let result = match outcome {
        Ok(Ok(PluginReply::Listed(rows))) => reconcile(plugin, book, rows, ticket).map_err(ListFailure::Unusable),
        Ok(Ok(other)) => Err(ListFailure::Fault(mismatch(&plugin.name, Leaf::List, &other))),
        Ok(Err(f)) => Err(ListFailure::Unusable(plugin_error(plugin, Leaf::List, f))),
        // A hung upstream surfaces as the plugin's own error (its upstream waits are
        // bounded well inside the call's budget); S70x means the plugin misbehaved.
        Err(host_fault) => Err(ListFailure::Fault(host_fault)),
    };
    (result, stats)
}

/// Wall-clock budget: the plugin's call timeout, stretched to cover an exec's own deadline.
fn wall_budget(plugin: &LoadedPlugin, req: &Request) -> Duration {
    let base = plugin.policy.limits.call_timeout;
    match req {
        Request::Exec(e) => match e.timeout_ms {
            Some(ms) => base.max(Duration::from_millis(ms.saturating_add(crate::policy::defaults::EXEC_GRACE_MS))),
            None => base,
        },
        _ => base,
    }
}

fn reconcile(
    plugin: &LoadedPlugin,
    book: &SlotBook,
    rows: Vec<crate::contract::shapes::SandboxInfo>,
    ticket: crate::policy::concurrency::ListTicket,
) -> Result<ListOutput, CallError> {
    let name = &*plugin.name;
    let mut listed = Vec::with_capacity(rows.len());
    for row in rows {
        if !valid_sandbox_id(&row.sandbox_id) {
            return Err(CallError::new(
                Code::Unavailable,
                format!(
                    "provider `{name}` list returned the unusable sandbox id {:?}; the upstream answer was unusable.",
                    row.sandbox_id.chars().take(80).collect::<String>()
                ),
            ));
        }
        let known = book.get(&row.sandbox_id);
        let started_at = match &row.started_at {
            Some(s) => rfc3339(s).ok_or_else(|| bad_time(name, Leaf::List, &row.sandbox_id, s))?,
            None => known.and_then(|k| k.started_at).ok_or_else(|| {
                CallError::new(
                    Code::Unavailable,
                    format!(
                        "provider `{name}` list returned sandbox {:?} without a start time; the upstream answer was incomplete.",
                        row.sandbox_id
                    ),
                )
            })?,
        };
        listed.push(ListedSandbox { sandbox_id: row.sandbox_id, image: row.image, started_at });
    }
    book.reconcile(
        listed.iter().map(|s| (s.sandbox_id.clone(), LiveSandbox { image: s.image.clone(), started_at: Some(s.started_at.clone()) })),
        ticket,
    );
    Ok(ListOutput { sandboxes: listed, in_flight: book.in_flight(), cap: plugin.policy.max_concurrent_sandboxes, reconciled: true })
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

/// The plugin's reply, or its failure mapped to an S-code.
fn answer(plugin: &LoadedPlugin, leaf: Leaf, outcome: invoke::Outcome) -> Result<PluginReply, CallError> {
    match outcome {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(f)) => Err(plugin_error(plugin, leaf, f)),
        Err(host) => Err(host),
    }
}

/// Maps a plugin-reported failure to its S-code, with what to do about it.
pub fn plugin_error(plugin: &LoadedPlugin, leaf: Leaf, f: PluginFailure) -> CallError {
    let name = &*plugin.name;
    let (code, advice) = match f.kind {
        ErrorKind::BadInput => (Code::BadInput, "fix the input; retrying it unchanged will fail again.".to_string()),
        ErrorKind::NotFound => (Code::NotFound, "the sandbox does not exist (stopped or expired); create a new one.".to_string()),
        ErrorKind::RateLimited => (
            Code::RateLimited,
            match f.retry_after_ms {
                Some(ms) => format!("the provider is rate limiting; retry after {ms} ms."),
                None => "the provider is rate limiting; retry later with backoff.".to_string(),
            },
        ),
        ErrorKind::QuotaExhausted => {
            (Code::QuotaExhausted, "the provider account's quota is exhausted; free capacity or raise the plan's limits.".to_string())
        }
        ErrorKind::Unavailable => (Code::Unavailable, "the provider is unavailable; retry later.".to_string()),
        ErrorKind::AuthInvalid => {
            let vars: Vec<&str> = plugin.policy.egress.credentials.iter().filter_map(|c| c.env_var.as_deref()).collect();
            (
                Code::AuthInvalid,
                format!(
                    "the provider rejected the credential; check {}.",
                    if vars.is_empty() { "the plugin's credentials".to_string() } else { vars.join(", ") }
                ),
            )
        }
        ErrorKind::Unsupported => return unsupported(name, leaf),
    };
    let message = f.message.trim().trim_end_matches('.');
    CallError::new(code, format!("provider `{name}` {leaf} failed: {message}; {advice}")).with_retry_after(f.retry_after_ms)
}

fn unsupported(name: &str, leaf: Leaf) -> CallError {
    CallError::new(
        Code::Unsupported,
        format!(
            "provider `{name}` does not support `{leaf}`; check its capabilities (sandbox-host plugins) or use a provider that has it."
        ),
    )
}

fn mismatch(name: &str, leaf: Leaf, got: &PluginReply) -> CallError {
    // The wrong answer may be megabytes (an exec's output): quote its start only.
    let got = bounded_debug(got, MAX_ERROR_MESSAGE_BYTES);
    CallError::new(
        Code::PluginTrapped,
        format!("plugin `{name}` answered `{leaf}` with the wrong kind of result ({got}); report this to the plugin's author."),
    )
}

fn bad_time(name: &str, leaf: Leaf, id: &str, s: &str) -> CallError {
    let s = bounded(s, 80);
    CallError::new(
        Code::Unavailable,
        format!("provider `{name}` {leaf} returned start time {s:?} for sandbox {id:?}, which is not RFC 3339; the upstream answer was unusable."),
    )
}

/// Normalises an RFC 3339 timestamp to UTC with a `Z` suffix.
pub fn rfc3339(s: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use crate::policy::concurrency::SlotBook;

    /// Review item 12: siblings beyond the reserved count are recorded all the same.
    #[test]
    fn every_sibling_a_branch_returns_is_counted() {
        let book = SlotBook::new();
        let two = book.reserve_many("p", 5, 2).unwrap();
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        super::record_started(&book, &ids, two);
        assert_eq!(book.in_flight(), 3);
        assert!(book.release("c"), "the extra sibling is in the book");
        // Fewer than reserved: the unused slot is released.
        let three = book.reserve_many("p", 5, 3).unwrap();
        super::record_started(&book, &["d".to_string()], three);
        assert_eq!(book.in_flight(), 3);
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        assert_eq!(super::rfc3339("2025-01-02T03:04:05+02:00").as_deref(), Some("2025-01-02T01:04:05Z"));
        assert_eq!(super::rfc3339("2025-01-02T03:04:05.5Z").as_deref(), Some("2025-01-02T03:04:05.500Z"));
        assert_eq!(super::rfc3339("yesterday"), None);
    }
}
