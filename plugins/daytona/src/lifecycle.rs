//! A sandbox's lifetime after create: `get`, `pause`, `resume`, `set_timeout`.
//!
//! Routes (api.json at d94a1281; behaviour from v0.190.0 `sandbox.service.ts`):
//! - `POST /sandbox/{id}/stop` — `started` or `paused` → `stopping` → `stopped`; the disk is
//!   kept, processes end. Every sandbox class can stop.
//! - `POST /sandbox/{id}/pause` — `started` → `pausing` → `paused`, memory kept; only the
//!   `linux-vm` and `windows` classes (others: 422 "Pausing is not supported").
//! - `POST /sandbox/{id}/start` — "Starts a stopped or archived sandbox, or resumes a paused
//!   sandbox"; a started one is answered as it is.
//! - `POST /sandbox/{id}/autostop/{minutes}` and `POST /sandbox/{id}/ttl/{minutes}` ("Maximum
//!   time to live in minutes, re-anchored from the current time … the sandbox is destroyed").
//! - `PUT /sandbox/{id}/labels {labels}` replaces all labels.
//! - `POST /sandbox/{id}/autodelete/{minutes}` ("negative value means disabled, 0 means
//!   delete immediately upon stopping").
//!
//! Every transition is asynchronous and any call during one is 409 "state change in
//! progress", so each step waits for the previous one to settle (bounded, as create does).
//!
//! Contract decisions:
//! - `pause` uses Daytona's pause where the class has it, else stop (the sandbox keeps its
//!   files, not its processes). A stopped sandbox gets the label [`PAUSED_LABEL`] first, so
//!   `list` keeps counting it (the contract: a paused sandbox keeps its slot) while one that
//!   Daytona auto-stopped when idle still frees its slot. `resume` removes the label.
//! - Sandboxes are created with `autoDeleteInterval: 0`: one Daytona stops for idleness is
//!   deleted, as an idle E2B or Morph sandbox ends, instead of holding disk quota until
//!   it is archived a week later. Pausing by stop first turns auto-delete off (-1), and
//!   resume turns it back on.
//! - `get` reports every halted sandbox (stopped, paused, archived) as `paused`: `resume`
//!   brings each of them back.
//! - `set_timeout` sets the TTL (destroyed at the deadline, as E2B's timeout kills) and the
//!   auto-stop interval to the same minutes, so an idle sandbox is not stopped before it;
//!   both are whole minutes, rounded up. A server without the TTL route (v0.190.0 has
//!   none) gets the auto-stop interval only, logged.

use crate::api::{self, Phase, SandboxDto, PAUSED_LABEL};
use crate::errors::Checked;
use crate::units::whole_minutes;
use provider_kit::errors::{bad_input, not_found, unavailable};
use provider_kit::upstream::Call;
use provider_kit::wstd::http::Method;
use provider_kit::{log, Error, Sandbox, SandboxState};
use serde_json::json;

/// How long one step waits for a transition (the SDKs' default for start, stop and pause).
const TRANSITION_WAIT_SECS: u64 = 60;

/// Classes whose sandboxes Daytona can pause and fork (v0.190.0 `[LINUX_VM, WINDOWS]`).
pub fn vm_class(dto: &SandboxDto) -> bool {
    matches!(dto.sandbox_class.as_deref(), Some("linux-vm" | "windows"))
}

/// Gone is not-found; failed is the caller's to clean up.
fn usable(dto: SandboxDto) -> Result<SandboxDto, Error> {
    match api::phase(dto.state()) {
        Phase::Gone => Err(not_found(format!("Daytona sandbox {} is {}", dto.id, dto.state()))),
        Phase::Failed => Err(bad_input(format!(
            "Daytona sandbox {} is in state {}: {}; stop it and create a new one",
            dto.id,
            dto.state(),
            dto.error_reason.as_deref().unwrap_or("no reason given")
        ))),
        _ => Ok(dto),
    }
}

pub async fn get(id: &str) -> Result<Sandbox, Error> {
    let dto = usable(api::get(id).await?)?;
    let state = match api::phase(dto.state()) {
        Phase::Halting | Phase::Halted => SandboxState::Paused,
        _ => SandboxState::Running,
    };
    Ok(dto.into_sandbox(state))
}

/// The state `list` reports, or `None` for a sandbox that holds no slot (see module docs).
pub fn listed_state(dto: &SandboxDto) -> Option<SandboxState> {
    match api::phase(dto.state()) {
        Phase::Running | Phase::Coming | Phase::Busy => Some(SandboxState::Running),
        Phase::Halting | Phase::Halted if dto.paused_on_purpose() => Some(SandboxState::Paused),
        _ => None,
    }
}

pub async fn pause(id: &str) -> Result<(), Error> {
    // A sandbox still starting or snapshotting cannot stop yet (409).
    let dto = usable(settle(api::get(id).await?, |p| matches!(p, Phase::Coming | Phase::Busy)).await?)?;
    let dto = match api::phase(dto.state()) {
        Phase::Running if vm_class(&dto) => match post(id, "pause").await? {
            Some(paused) => paused,
            // The server does not pause this class after all (422): stop it instead.
            None => stop(dto).await?,
        },
        Phase::Running => stop(dto).await?,
        // Already halted or halting: pausing it is making sure it stays counted.
        Phase::Halting | Phase::Halted if !dto.paused_on_purpose() => mark(dto, true).await?,
        Phase::Halting | Phase::Halted => dto,
        _ => return Err(still(&dto, "pause")),
    };
    // The answer may still say `started` (the server records the wish; the runner acts).
    let dto = usable(settle(dto, |p| !matches!(p, Phase::Halted | Phase::Failed | Phase::Gone)).await?)?;
    match api::phase(dto.state()) {
        Phase::Halted => Ok(()),
        _ => Err(still(&dto, "pause")),
    }
}

fn still(dto: &SandboxDto, what: &str) -> Error {
    unavailable(format!("Daytona sandbox {} did not {what}: it is still {} after {TRANSITION_WAIT_SECS} s; retry", dto.id, dto.state()))
}

/// Labels the sandbox as paused, then stops it (the label first: a sandbox stopped but not
/// yet labelled would drop out of `list` and lose its slot).
async fn stop(dto: SandboxDto) -> Result<SandboxDto, Error> {
    let id = dto.id.clone();
    mark(dto, true).await?;
    post(&id, "stop").await?.ok_or_else(|| unavailable(format!("Daytona refused to stop sandbox {id} (422)")))
}

pub async fn resume(id: &str, timeout_secs: Option<u64>) -> Result<(), Error> {
    let waiting = |p: &Phase| matches!(p, Phase::Coming | Phase::Busy | Phase::Halting);
    let mut dto = usable(settle(api::get(id).await?, waiting).await?)?;
    if api::phase(dto.state()) == Phase::Halted {
        let started = post(id, "start").await?.ok_or_else(|| unavailable(format!("Daytona refused to start sandbox {id} (422)")))?;
        dto = usable(settle(started, |p| !matches!(p, Phase::Running | Phase::Failed | Phase::Gone)).await?)?;
    }
    if api::phase(dto.state()) != Phase::Running {
        return Err(still(&dto, "resume"));
    }
    if dto.labels.as_ref().is_some_and(|l| l.contains_key(PAUSED_LABEL)) {
        mark(dto, false).await?;
    }
    if let Some(secs) = timeout_secs {
        set_timeout(id, secs).await?;
    }
    Ok(())
}

pub async fn set_timeout(id: &str, timeout_secs: u64) -> Result<(), Error> {
    let minutes = whole_minutes(timeout_secs);
    Call::post(format!("{}/autostop/{minutes}", api::sandbox_url(id))).send().await?.checked()?;
    let reply = Call::post(format!("{}/ttl/{minutes}", api::sandbox_url(id))).send().await?;
    if api::route_missing(&reply) {
        log::log(log::Level::Warn, &format!("this Daytona server has no TTL route; sandbox {id} only auto-stops after {minutes} idle min"));
        return Ok(());
    }
    reply.ok().map(drop)
}

/// `POST /sandbox/{id}/{action}` → the Sandbox; `None` when the server refuses the action
/// for this sandbox's class (422).
async fn post(id: &str, action: &str) -> Result<Option<SandboxDto>, Error> {
    let reply = Call::post(format!("{}/{action}", api::sandbox_url(id))).send().await?;
    if reply.status == 422 {
        log::log(log::Level::Info, &format!("POST /sandbox/{id}/{action}: {}", reply.error().message));
        return Ok(None);
    }
    reply.checked()?.json().map(Some)
}

/// Sets or clears [`PAUSED_LABEL`], keeping every other label (the route replaces them all).
async fn mark(mut dto: SandboxDto, paused: bool) -> Result<SandboxDto, Error> {
    let mut labels = dto.labels.take().unwrap_or_default();
    if paused {
        labels.insert(PAUSED_LABEL.into(), "true".into());
    } else {
        labels.remove(PAUSED_LABEL);
    }
    let url = format!("{}/labels", api::sandbox_url(&dto.id));
    Call::new(Method::PUT, url).json(&json!({ "labels": labels })).send().await?.checked()?;
    dto.labels = Some(labels);
    // A sandbox paused by stopping it must outlive the stop; a resumed one is ephemeral again.
    auto_delete(&dto.id, if paused { -1 } else { 0 }).await?;
    Ok(dto)
}

/// `POST /sandbox/{id}/autodelete/{minutes}`; a server without the route is logged.
async fn auto_delete(id: &str, minutes: i64) -> Result<(), Error> {
    let reply = Call::post(format!("{}/autodelete/{minutes}", api::sandbox_url(id))).send().await?;
    if api::route_missing(&reply) {
        log::log(log::Level::Warn, &format!("this Daytona server has no auto-delete route; sandbox {id} keeps its interval"));
        return Ok(());
    }
    reply.checked().map(drop)
}

async fn settle(dto: SandboxDto, keep_waiting: fn(&Phase) -> bool) -> Result<SandboxDto, Error> {
    api::settle(dto, keep_waiting, TRANSITION_WAIT_SECS).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dto(v: serde_json::Value) -> SandboxDto {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn list_counts_live_and_purposely_paused_sandboxes_only() {
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "started"}))), Some(SandboxState::Running));
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "creating"}))), Some(SandboxState::Running));
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "stopped"}))), None, "auto-stopped when idle");
        let marked = json!({"id": "a", "state": "stopping", "labels": {PAUSED_LABEL: "true"}});
        assert_eq!(listed_state(&dto(marked)), Some(SandboxState::Paused));
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "paused"}))), Some(SandboxState::Paused));
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "error"}))), None);
        assert_eq!(listed_state(&dto(json!({"id": "a", "state": "destroyed"}))), None);
    }

    #[test]
    fn only_vm_classes_pause_natively() {
        assert!(vm_class(&dto(json!({"id": "a", "sandboxClass": "linux-vm"}))));
        assert!(!vm_class(&dto(json!({"id": "a", "sandboxClass": "container"}))));
        assert!(!vm_class(&dto(json!({"id": "a"}))), "servers before sandbox classes stop instead");
    }
}
