//! `branch`: `count` forks of a running sandbox, through `POST /sandbox/{id}/fork`
//! (`ForkSandbox {name?}` → the new Sandbox, state `creating`; api.json at d94a1281).
//!
//! One fork per request, one after the other: the source goes `forking` while a fork is
//! made and refuses another (409 "state change in progress"), so each fork waits for the
//! source to be `started` again. Like the SDK's `fork`, each one waits for its copy to
//! start, so the caller gets sandboxes it can use at once. Daytona forks only `linux-vm`
//! and `windows` sandboxes: on others it answers 422 "Forking is not supported for this
//! sandbox", which reaches the caller as S422.
//!
//! If a fork fails after others were made, those are deleted before the error is returned:
//! the host releases every slot it reserved for the branch, so nothing may be left running.

use crate::api::{self, Phase};
use crate::errors::Checked;
use provider_kit::errors::unavailable;
use provider_kit::upstream::Call;
use provider_kit::{log, Error};
use serde_json::json;

/// How long one fork may take to start (the SDK's default fork timeout).
const FORK_WAIT_SECS: u64 = 60;

pub async fn branch(source: &str, count: u32) -> Result<Vec<String>, Error> {
    let mut made = Vec::new();
    for i in 0..count {
        let next = async {
            if i > 0 {
                wait_for_source(source).await?;
            }
            fork_one(source).await
        };
        match next.await {
            Ok(id) => made.push(id),
            Err(e) => {
                undo(&made).await;
                return Err(e);
            }
        }
    }
    Ok(made)
}

async fn wait_for_source(source: &str) -> Result<(), Error> {
    let dto = api::settle(api::get(source).await?, |p| *p == Phase::Busy, FORK_WAIT_SECS).await?;
    match api::phase(dto.state()) {
        Phase::Running => Ok(()),
        _ => Err(unavailable(format!("Daytona sandbox {source} is {} after a fork; it cannot be forked again", dto.state()))),
    }
}

async fn fork_one(source: &str) -> Result<String, Error> {
    let url = format!("{}/fork", api::sandbox_url(source));
    let child: api::SandboxDto = Call::post(url).json(&json!({})).send().await?.checked()?.json()?;
    let id = child.id.clone();
    let child = match api::settle(child, |p| matches!(p, Phase::Coming | Phase::Busy), FORK_WAIT_SECS).await {
        Ok(c) => c,
        Err(e) => {
            undo(std::slice::from_ref(&id)).await;
            return Err(e);
        }
    };
    if api::phase(child.state()) != Phase::Running {
        let why = child.error_reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| format!("it is {}", child.state()));
        undo(std::slice::from_ref(&id)).await;
        return Err(unavailable(format!("Daytona fork {id} of sandbox {source} did not start ({why}); it was deleted")));
    }
    Ok(id)
}

/// Deletes forks made by a branch that failed; one that cannot be deleted is logged by id.
async fn undo(ids: &[String]) {
    for id in ids {
        if let Err(e) = api::delete(id).await {
            log::log(log::Level::Warn, &format!("deleting fork {id} of a failed branch failed: {}; it may still run", e.message));
        }
    }
}
