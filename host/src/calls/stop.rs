//! `stop`, `pause`, `resume` and `set_timeout`: a sandbox's lifetime. Stop is
//! idempotent and releases the slot exactly once; a paused sandbox keeps its slot (it
//! can be resumed at any time); lifetimes are bounded by `limits.max_timeout_secs`.

use super::answer::{answer, check_lifetime, mismatch, rfc3339_in, wall_budget};
use super::events::EventKind;
use super::{Answered, Call};
use crate::contract::codes::CallError;
use crate::contract::shapes::{reply, Leaf, PluginReply, Request, SandboxState};
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{Book, LiveSandbox};
use crate::runtime::invoke::{self, CallStats};
use crate::runtime::wit::ErrorKind;
use serde_json::json;
use std::time::Duration;

pub(super) async fn stop(call: &Call<'_>, sandbox_id: &str) -> Answered {
    let wall = call.plugin.policy.limits.call_timeout;
    let image = call.book.get(sandbox_id).await.map(|s| s.image).unwrap_or_default();
    let (result, stats) = stop_sandbox(call.plugin, &**call.book, sandbox_id, wall).await;
    if result.is_ok() {
        call.keepalive.forget(&call.plugin.name, sandbox_id);
        call.events.emit(EventKind::Stopped, &call.plugin.name, sandbox_id, &image);
    }
    (result.map(|()| reply::stopped(sandbox_id)), Some(stats))
}

/// Stops `sandbox_id`, idempotently: gone (404) or already going (409) is success, and
/// the slot is released once.
pub(crate) async fn stop_sandbox(
    plugin: &LoadedPlugin,
    book: &dyn Book,
    sandbox_id: &str,
    wall: Duration,
) -> (Result<(), CallError>, CallStats) {
    let req = Request::Stop { sandbox_id: sandbox_id.to_string() };
    let (outcome, stats) = invoke::run(plugin, &req, wall).await;
    let result = match outcome {
        Ok(Err(f)) if f.kind == ErrorKind::NotFound || matches!(f.upstream_status, Some(404 | 409)) => Ok(PluginReply::Stopped),
        other => answer(plugin, Leaf::Stop, other),
    };
    let result = match result {
        Ok(PluginReply::Stopped) => {
            book.release(sandbox_id).await;
            Ok(())
        }
        Ok(other) => Err(mismatch(&plugin.name, Leaf::Stop, &other)),
        Err(e) => Err(e),
    };
    (result, stats)
}

/// Pause keeps the slot; resume counts a sandbox the book did not know (one paused
/// before this host started), so the cap sees it from now on.
pub(super) async fn pause_or_resume(call: &Call<'_>, req: Request) -> Answered {
    let plugin = call.plugin;
    let leaf = req.leaf();
    if let Request::Resume { timeout_secs: Some(secs), .. } = &req {
        if let Err(e) = check_lifetime(plugin, leaf, *secs) {
            return (Err(e), None);
        }
    }
    let sandbox_id = req.sandbox_id().unwrap_or_default().to_string();
    let (outcome, stats) = invoke::run(plugin, &req, wall_budget(plugin, &req)).await;
    let image = call.book.get(&sandbox_id).await.map(|s| s.image);
    let result = match answer(plugin, leaf, outcome) {
        Err(e) => Err(e),
        Ok(r) => settle_pause_or_resume(call, &req, &sandbox_id, image, r).await,
    };
    (result, Some(stats))
}

async fn settle_pause_or_resume(
    call: &Call<'_>,
    req: &Request,
    sandbox_id: &str,
    image: Option<String>,
    reply: PluginReply,
) -> Result<serde_json::Value, CallError> {
    let plugin = call.plugin;
    let leaf = req.leaf();
    match (leaf, reply) {
        (Leaf::Pause, PluginReply::Paused) => {
            call.events.emit(EventKind::Paused, &plugin.name, sandbox_id, image.as_deref().unwrap_or_default());
            Ok(reply::state(sandbox_id, SandboxState::Paused))
        }
        (Leaf::Resume, PluginReply::Resumed) => {
            if matches!(req, Request::Resume { timeout_secs: Some(_), .. }) {
                call.keepalive.forget(&plugin.name, sandbox_id);
            }
            if image.is_none() {
                call.book.adopt(sandbox_id.to_string(), LiveSandbox { image: String::new(), started_at: None, name: None }).await;
            }
            call.events.emit(EventKind::Resumed, &plugin.name, sandbox_id, image.as_deref().unwrap_or_default());
            Ok(reply::state(sandbox_id, SandboxState::Running))
        }
        (_, other) => Err(mismatch(&plugin.name, leaf, &other)),
    }
}

pub(super) async fn set_timeout(call: &Call<'_>, req: Request) -> Answered {
    let Request::SetTimeout { sandbox_id, timeout_secs } = &req else { unreachable!("set_timeout() is only called with one") };
    let plugin = call.plugin;
    if let Err(e) = check_lifetime(plugin, Leaf::SetTimeout, *timeout_secs) {
        return (Err(e), None);
    }
    let (outcome, stats) = invoke::run(plugin, &req, wall_budget(plugin, &req)).await;
    let result = answer(plugin, Leaf::SetTimeout, outcome).and_then(|r| match r {
        PluginReply::TimeoutSet => {
            // The caller chose the end: the host no longer moves it.
            call.keepalive.forget(&plugin.name, sandbox_id);
            Ok(json!({ "sandbox_id": sandbox_id, "timeout_secs": timeout_secs, "ends_at": rfc3339_in(*timeout_secs) }))
        }
        other => Err(mismatch(&plugin.name, Leaf::SetTimeout, &other)),
    });
    (result, Some(stats))
}
