//! Lifecycle routes of the API: start, stop, pause, fork, the auto-stop interval, the TTL
//! and labels, with v0.190.0 `sandbox.service.ts`'s rules (`start`, `stop`, `pause`,
//! `forkSandbox`, `setAutostopInterval`, `replaceLabels`) and api.json's shapes and
//! statuses: autostop and ttl answer 200 as api.json documents (v0.190.0's controller had
//! no `@HttpCode(200)` there, so it answered NestJS's default 201; a plugin should take
//! either).

use super::{conflict, error, new_id, not_found, sandbox_json, session, Settle, SimSandbox, State};
use crate::server::{json, Recorded, Reply};
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub(super) fn route(st: &State, method: &str, id: &str, action: &[&str], rec: &Recorded) -> Reply {
    let polls = st.transition_polls.load(Ordering::Relaxed);
    match (method, action) {
        ("POST", ["fork"]) => fork(st, id, polls),
        ("PUT", ["labels"]) => labels(st, id, rec),
        ("POST", [what @ ("start" | "stop" | "pause" | "autostop" | "autodelete" | "ttl"), rest @ ..]) => {
            let mut boxes = st.sandboxes.lock().unwrap();
            let Some(s) = boxes.get_mut(id).filter(|s| s.state != "destroyed") else { return not_found(id) };
            let result = match (*what, rest) {
                ("start", []) => start(s, polls),
                ("stop", []) => stop(s, polls),
                ("pause", []) => pause(s, polls),
                ("autostop", [minutes]) => minutes_param(minutes).map(|m| {
                    s.auto_stop_interval = m;
                    200
                }),
                // "negative value means disabled, 0 means delete immediately upon stopping".
                ("autodelete", [minutes]) => match minutes.parse::<i64>() {
                    Ok(m) => {
                        s.auto_delete_interval = m;
                        Ok(200)
                    }
                    Err(_) => Err(error(400, "Invalid interval value")),
                },
                ("ttl", [minutes]) => minutes_param(minutes).map(|m| {
                    // "re-anchored from the current time (0 to disable)".
                    s.auto_destroy_at = (m > 0).then(|| Utc::now() + chrono::Duration::minutes(m as i64));
                    200
                }),
                _ => Err(error(404, format!("Cannot {method} {}", rec.path))),
            };
            match result {
                Ok(status) => json(status, &sandbox_json(st, s, true)),
                Err(r) => r,
            }
        }
        _ => error(404, format!("Cannot {method} {}", rec.path)),
    }
}

/// An interval path parameter: minutes, a non-negative number.
fn minutes_param(raw: &str) -> Result<u64, Reply> {
    raw.parse::<f64>().ok().filter(|m| *m >= 0.0 && m.is_finite()).map(|m| m as u64).ok_or_else(|| error(400, "Invalid interval value"))
}

/// Stopped, archived: start; paused: resume (VM classes only); started: answered as is.
fn start(s: &mut SimSandbox, polls: u32) -> Result<u16, Reply> {
    if s.state == "started" && s.settle.is_none() {
        return Ok(200);
    }
    if s.state == "error" || s.state == "build_failed" {
        return Err(error(400, "Sandbox is in an errored state"));
    }
    if s.settle.is_some() {
        return Err(conflict());
    }
    match s.state.as_str() {
        "paused" => {
            s.begin("resuming", "started", polls);
            s.sessions.signal_all("-CONT");
        }
        "stopped" | "archived" => s.begin("starting", "started", polls),
        _ => return Err(error(400, "Sandbox is not in valid state")),
    }
    Ok(200)
}

/// Started or paused: stop (the daemon and every session process end; files stay).
fn stop(s: &mut SimSandbox, polls: u32) -> Result<u16, Reply> {
    if s.settle.is_some() {
        return Err(conflict());
    }
    if s.state != "started" && s.state != "paused" {
        return Err(error(400, "Sandbox is not in a stoppable state"));
    }
    s.sessions.kill_all();
    // "0 means delete immediately upon stopping".
    s.begin("stopping", if s.auto_delete_interval == 0 { "destroyed" } else { "stopped" }, polls);
    Ok(200)
}

/// Started VM-class sandboxes only; the processes are frozen, not ended.
fn pause(s: &mut SimSandbox, polls: u32) -> Result<u16, Reply> {
    if s.state != "started" {
        return Err(error(400, "Sandbox must be in started state to pause"));
    }
    if s.settle.is_some() {
        return Err(conflict());
    }
    if !vm(s) {
        return Err(error(422, "Pausing is not supported for this sandbox"));
    }
    s.sessions.signal_all("-STOP");
    // v0.190.0 sets PAUSING before it asks the runner, so the answer already shows it.
    s.state = "pausing".into();
    s.begin("pausing", "paused", polls);
    Ok(200)
}

fn vm(s: &SimSandbox) -> bool {
    matches!(s.class.as_str(), "linux-vm" | "windows")
}

/// `ForkSandbox {name?}` → the new Sandbox (`creating`; a copy of the source's files,
/// env, labels and settings); the source is `forking` meanwhile.
fn fork(st: &State, id: &str, polls: u32) -> Reply {
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(src) = boxes.get_mut(id).filter(|s| s.state != "destroyed") else { return not_found(id) };
    if !vm(src) {
        return error(422, "Forking is not supported for this sandbox");
    }
    if src.state != "started" {
        return error(400, "Sandbox must be in started state to fork");
    }
    if src.settle.is_some() {
        return conflict();
    }
    let root = match tempfile::Builder::new().prefix("daytona-sim-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, format!("cannot fork: {e}")),
    };
    if let Err(e) = crate::files::copy_tree(src.root.path(), root.path()) {
        return error(500, format!("cannot fork: {e}"));
    }
    src.state = "forking".into();
    src.settle = Some(Settle { via: "forking".into(), to: "started".into(), polls: polls.max(1) });
    let child = SimSandbox {
        id: new_id(st),
        snapshot: src.snapshot.clone(),
        state: "creating".into(),
        settle: Some(Settle { via: "creating".into(), to: "started".into(), polls: polls.max(1) }),
        class: src.class.clone(),
        created_at: Utc::now(),
        auto_stop_interval: src.auto_stop_interval,
        auto_delete_interval: src.auto_delete_interval,
        auto_destroy_at: None,
        cpu: src.cpu,
        memory: src.memory,
        disk: src.disk,
        network_block_all: src.network_block_all,
        env: src.env.clone(),
        labels: src.labels.clone(),
        root,
        sessions: session::Sessions::default(),
    };
    let v = sandbox_json(st, &child, true);
    boxes.insert(child.id.clone(), child);
    json(200, &v)
}

/// `PUT /sandbox/{id}/labels {labels}` replaces them all; answers `SandboxLabels`.
fn labels(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    let labels = match body.get("labels") {
        Some(Value::Object(_)) => match super::string_map(&body, "labels") {
            Ok(l) => l,
            Err(r) => return r,
        },
        _ => return error(400, json!(["labels must be an object"])),
    };
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get_mut(id).filter(|s| s.state != "destroyed") else { return not_found(id) };
    s.labels = labels;
    json(200, &json!({ "labels": s.labels }))
}
