//! A sandbox's lifetime on E2B's control plane (`spec/openapi.yml`):
//! `POST /sandboxes/{id}/pause` (204; 409 paused already), `POST /sandboxes/{id}/connect`
//! `ConnectSandbox{timeout}` (200 running, 201 resumed; "TTL is only extended"; the
//! spec's current resume, `/resume` being deprecated), `POST /sandboxes/{id}/timeout`
//! `SandboxTimeoutRequest{timeout}` (204), and `POST /sandboxes/{id}/fork`
//! `SandboxForkRequest{timeout, count 1..=100}` → 201 `[SandboxForkResult{sandbox | error}]`.
//! Statuses as the API handlers of e2b-dev/infra answer them (`sandbox_pause.go`,
//! `sandbox_connect.go`, `sandbox_timeout.go`, `sandbox_fork.go`).

use crate::api::{self, sandbox_url, Created};
use provider_kit::errors::{bad_input, from_status, unavailable};
use provider_kit::log::{log, Level};
use provider_kit::upstream::{Call, Reply};
use provider_kit::Error;
use serde::Deserialize;
use serde_json::json;

/// The lifetime E2B's SDKs give a resumed or forked sandbox when the caller names none
/// (`DEFAULT_SANDBOX_TIMEOUT_MS`, 5 minutes); the API's own default is 15 s.
pub const SDK_DEFAULT_TIMEOUT_SECS: u64 = 300;

/// E2B's bound on one fork request (`maxForkCount`).
const MAX_FORKS: u32 = 100;

/// Seconds as the spec's int32 `timeout`.
fn timeout(secs: u64) -> Result<i32, Error> {
    i32::try_from(secs).map_err(|_| bad_input(format!("a timeout of {secs} s is too large for E2B (an int32)")))
}

/// `reply`'s error, as a caller error when the sandbox turns out to be paused: E2B answers
/// 404 or 409 for a paused sandbox where only a running one can be acted on.
async fn unless_paused(id: &str, reply: &Reply, paused: &str) -> Error {
    let err = reply.error();
    match api::detail(id).await {
        Ok(d) if d.is_paused() => bad_input(format!("sandbox {id} is paused; {paused} ({})", err.message)),
        _ => err,
    }
}

/// Pauses with the memory kept (the spec's default). 409 is "already paused" or "cannot
/// be paused in this state": the sandbox's state tells which, and paused is success.
pub async fn pause(id: &str) -> Result<(), Error> {
    let reply = Call::post(sandbox_url(id, "/pause")).send().await?;
    if reply.status == 409 {
        let err = reply.error();
        return match api::detail(id).await {
            Ok(d) if d.is_paused() => Ok(()),
            _ => Err(err),
        };
    }
    reply.ok().map(drop)
}

/// Resumes a paused sandbox for `secs` from now; on a running one E2B only ever extends
/// the lifetime, and answers 200: success either way.
pub async fn resume(id: &str, secs: Option<u64>) -> Result<(), Error> {
    let body = json!({ "timeout": timeout(secs.unwrap_or(SDK_DEFAULT_TIMEOUT_SECS))? });
    Call::post(sandbox_url(id, "/connect")).json(&body).send().await?.ok().map(drop)
}

/// The sandbox expires `secs` from now (each call re-anchors at the current time).
pub async fn set_timeout(id: &str, secs: u64) -> Result<(), Error> {
    let body = json!({ "timeout": timeout(secs)? });
    let reply = Call::post(sandbox_url(id, "/timeout")).json(&body).send().await?;
    if reply.status == 404 {
        return Err(unless_paused(id, &reply, "resume it with a timeout instead").await);
    }
    reply.ok().map(drop)
}

#[derive(Debug, Deserialize)]
struct ForkResult {
    sandbox: Option<Created>,
    error: Option<ForkError>,
}

#[derive(Debug, Deserialize)]
struct ForkError {
    code: u16,
    #[serde(default)]
    message: String,
}

/// `POST /sandboxes/{id}/snapshots` (201 `SnapshotInfo`): a persistent template of the
/// sandbox's current state; its `snapshotID` is what `create` starts new sandboxes from.
/// The sandbox keeps running (pausing is the `pause` leaf's job).
pub async fn snapshot(id: &str) -> Result<String, Error> {
    #[derive(Deserialize)]
    struct SnapshotInfo {
        #[serde(rename = "snapshotID")]
        snapshot_id: String,
    }
    let reply = Call::post(sandbox_url(id, "/snapshots")).json(&json!({})).send().await?.ok()?;
    let info: SnapshotInfo = reply.json()?;
    if info.snapshot_id.is_empty() {
        return Err(unavailable(format!("{} answered an empty snapshotID", reply.what)));
    }
    Ok(info.snapshot_id)
}

/// `count` live copies of a running sandbox, memory included (the parent keeps its id and
/// lifetime). Each fork starts or fails on its own: the started ones are returned (they
/// exist and must be counted), the failures logged; all failing is the first one's error.
pub async fn fork(id: &str, count: u32) -> Result<Vec<String>, Error> {
    if count > MAX_FORKS {
        return Err(bad_input(format!("E2B forks at most {MAX_FORKS} sandboxes at once (count {count})")));
    }
    let body = json!({ "timeout": timeout(SDK_DEFAULT_TIMEOUT_SECS)?, "count": count });
    let reply = Call::post(sandbox_url(id, "/fork")).json(&body).send().await?;
    if reply.status == 409 {
        return Err(unless_paused(id, &reply, "resume it before branching").await);
    }
    let reply = reply.ok()?;
    let results: Vec<ForkResult> = reply.json()?;
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match (r.sandbox, r.error) {
            (Some(s), _) => ids.push(s.sandbox_id),
            (None, Some(e)) => failures.push(from_status(&format!("{} (fork {})", reply.what, i + 1), e.code, &e.message, None)),
            (None, None) => failures.push(unavailable(format!("{} (fork {}) reported neither a sandbox nor an error", reply.what, i + 1))),
        }
    }
    if ids.is_empty() {
        return Err(failures.into_iter().next().unwrap_or_else(|| unavailable(format!("{} answered no forks", reply.what))));
    }
    for f in &failures {
        log(Level::Warn, &format!("branch of {id}: {} of {count} forks started; {}", ids.len(), f.message));
    }
    Ok(ids)
}
