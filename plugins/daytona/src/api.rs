//! Daytona's control plane (`{api-base}`, `Authorization: Bearer` set by the host).
//!
//! Shapes, from daytonaio/daytona `apps/api/src/sandbox`:
//! - `dto/create-sandbox.dto.ts` — `POST /sandbox` body (`snapshot`, `env`, `labels`,
//!   `autoStopInterval` in minutes; no `image` field);
//! - `dto/sandbox.dto.ts` — the `Sandbox` answer (`id`, `snapshot`, `state`, `createdAt`,
//!   `toolboxProxyUrl`, `errorReason`, …);
//! - `controllers/sandbox.controller.ts` — `GET/DELETE /sandbox/{id}`,
//!   `POST /sandbox/{id}/snapshot` (`CreateSandboxSnapshotDto {name}` → Sandbox),
//!   `GET /sandbox/{id}/toolbox-proxy-url` (`{url}`),
//!   `GET /sandbox/{id}/ports/{port}/preview-url` (`PortPreviewUrlDto {sandboxId?, url, token}`);
//! - `dto/list-sandboxes-response.dto.ts` — `GET /sandbox` → `{items, nextCursor}`
//!   (v0.180.0); older servers answer a bare array, the deprecated paginated form
//!   `{items, total, page, totalPages}`.
//!
//! Errors are NestJS's `{statusCode, message, error}` (message may be a list for
//! validation failures); the kit's `error_detail` reads `message`.

use crate::units::rfc3339;
use provider_kit::errors::{bad_input, unavailable};
use provider_kit::upstream::{encode, Call};
use provider_kit::wstd::time::Duration;
use provider_kit::{config_or, log, Error, Sandbox};
use serde::Deserialize;
use serde_json::{json, Value};

pub const DEFAULT_API_BASE: &str = "https://app.daytona.io/api";
/// Largest number of list pages followed (100 × 100 sandboxes is far past any quota).
const MAX_PAGES: usize = 100;

pub fn base() -> String {
    config_or("api-base", DEFAULT_API_BASE).trim_end_matches('/').to_string()
}

pub fn sandbox_url(id: &str) -> String {
    format!("{}/sandbox/{}", base(), encode(id))
}

/// The parts of Daytona's `Sandbox` (and `SandboxListItem`) the plugin uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDto {
    pub id: String,
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Pre-snapshot servers (the "workspace" era) named it `image`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub toolbox_proxy_url: Option<String>,
    #[serde(default)]
    pub error_reason: Option<String>,
    /// Where the sandbox is headed: `destroyed` once a delete is under way.
    #[serde(default)]
    pub desired_state: Option<String>,
}

impl SandboxDto {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("unknown")
    }

    pub fn image(&self) -> String {
        self.snapshot.clone().or_else(|| self.image.clone()).unwrap_or_default()
    }

    pub fn into_sandbox(self) -> Sandbox {
        let started_at = self.created_at.as_deref().and_then(rfc3339);
        provider_kit::running(self.id.clone(), self.image(), started_at)
    }
}

/// Where a sandbox stands, for the caller-facing decisions.
#[derive(Debug, PartialEq, Eq)]
pub enum Phase {
    /// `started`: the toolbox answers.
    Running,
    /// On its way to `started` (creating, starting, restoring, pulling/building a snapshot…).
    Coming,
    /// Snapshot or fork in progress: still running, back to `started` afterwards.
    Busy,
    /// Not running but resumable (stopped, archived, …).
    Halted,
    /// Failed (`error`, `build_failed`).
    Failed,
    /// Gone or going (`destroyed`, `destroying`).
    Gone,
}

/// Maps Daytona's `SandboxState` (`enums/sandbox-state.enum.ts`). Unknown states count
/// as coming up: the safe reading for both the concurrency count and a fresh create.
pub fn phase(state: &str) -> Phase {
    match state {
        "started" => Phase::Running,
        "snapshotting" | "forking" | "resizing" => Phase::Busy,
        "stopped" | "stopping" | "archived" | "archiving" => Phase::Halted,
        "error" | "build_failed" => Phase::Failed,
        "destroyed" | "destroying" => Phase::Gone,
        _ => Phase::Coming,
    }
}

pub async fn create(body: &Value) -> Result<SandboxDto, Error> {
    Call::post(format!("{}/sandbox", base())).json(body).send().await?.ok()?.json()
}

pub async fn get(id: &str) -> Result<SandboxDto, Error> {
    Call::get(sandbox_url(id)).send().await?.ok()?.json()
}

/// Pauses between deletes refused with 409 (about 3.5 s in all).
const DELETE_RETRY_MS: [u64; 3] = [500, 1000, 2000];

/// `DELETE /sandbox/{id}`: any 2xx is done (older servers answer an empty 200, newer the
/// Sandbox in `destroying`); 404 comes back as not-found (gone: the host counts the stop).
/// 409 is "state change in progress": Daytona refuses to destroy during any transition
/// (creating, starting, snapshotting, …) and destroys nothing, so it is not success unless
/// a delete is already under way (`desiredState: destroyed`, or the sandbox is gone). Else
/// the delete is retried after the transition; still refused, it is S502 and the slot stays.
pub async fn delete(id: &str) -> Result<(), Error> {
    let mut pauses = DELETE_RETRY_MS.iter();
    loop {
        let reply = Call::delete(sandbox_url(id)).send().await?;
        if reply.status != 409 {
            return reply.ok().map(drop);
        }
        let refusal = reply.error();
        let dto = get(id).await?;
        if dto.desired_state.as_deref() == Some("destroyed") || phase(dto.state()) == Phase::Gone {
            return Ok(());
        }
        let Some(pause) = pauses.next() else {
            return Err(unavailable(format!(
                "DELETE /sandbox/{id} kept answering 409 ({}) while the sandbox is {}: it was not deleted; retry the stop",
                refusal.message.trim(),
                dto.state()
            )));
        };
        provider_kit::wstd::task::sleep(Duration::from_millis(*pause)).await;
    }
}

/// Waits until a sandbox leaves the transitional states, polling `GET /sandbox/{id}` with
/// backoff (500 ms doubling to 5 s: a 60 s wait costs about 15 polls, well inside the
/// host's per-call request budget). After `max_secs` it returns the state it saw last.
pub async fn settle(mut dto: SandboxDto, keep_waiting: fn(&Phase) -> bool, max_secs: u64) -> Result<SandboxDto, Error> {
    let (mut step_ms, mut waited_ms) = (500, 0);
    while keep_waiting(&phase(dto.state())) && waited_ms < max_secs * 1000 {
        let pause = step_ms.min(max_secs * 1000 - waited_ms);
        provider_kit::wstd::task::sleep(Duration::from_millis(pause)).await;
        waited_ms += pause;
        step_ms = (step_ms * 2).min(5_000);
        dto = get(&dto.id).await?;
    }
    Ok(dto)
}

/// `POST /sandbox/{id}/snapshot {name}` → 200 Sandbox (state `snapshotting`).
pub async fn snapshot(id: &str, name: &str) -> Result<SandboxDto, Error> {
    let reply = Call::post(format!("{}/snapshot", sandbox_url(id))).json(&json!({ "name": name })).send().await?;
    if reply.status == 404 && reply.error().message.contains("Cannot POST") {
        // Express's own 404 for a route this server does not have (pre-snapshot versions).
        return Err(provider_kit::errors::error(
            provider_kit::ErrorKind::Unsupported,
            format!("this Daytona server has no sandbox snapshot endpoint ({})", reply.error().message),
        ));
    }
    reply.ok()?.json()
}

#[derive(Debug, Deserialize)]
struct UrlDto {
    url: String,
}

/// `GET /sandbox/{id}/toolbox-proxy-url` → `{url}`; `None` when this server predates it.
pub async fn toolbox_proxy_url(id: &str) -> Result<Option<String>, Error> {
    let reply = Call::get(format!("{}/toolbox-proxy-url", sandbox_url(id))).send().await?;
    if reply.status == 404 {
        // The sandbox was just found, so a 404 here is the route, not the sandbox.
        return Ok(None);
    }
    let dto: UrlDto = reply.ok()?.json()?;
    Ok(Some(dto.url).filter(|u| !u.is_empty()))
}

/// `GET /sandbox/{id}/ports/{port}/preview-url` → `{url, token, …}`.
pub async fn preview_url(id: &str, port: u16) -> Result<String, Error> {
    let dto: UrlDto = Call::get(format!("{}/ports/{port}/preview-url", sandbox_url(id))).send().await?.ok()?.json()?;
    if dto.url.is_empty() {
        return Err(unavailable(format!("Daytona answered an empty preview URL for port {port} of sandbox {id}")));
    }
    Ok(dto.url)
}

/// Every sandbox the key can see, in all three historic list shapes, following pages.
pub async fn list_all() -> Result<Vec<SandboxDto>, Error> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let url = match &next {
            None => format!("{}/sandbox", base()),
            Some(q) => format!("{}/sandbox?{q}", base()),
        };
        let reply = Call::get(url).send().await?.ok()?;
        let (items, following) = parse_page(&reply.what, reply.json()?)?;
        out.extend(items);
        match following {
            Some(q) => next = Some(q),
            None => return Ok(out),
        }
    }
    log::log(log::Level::Warn, &format!("GET /sandbox: stopped after {MAX_PAGES} pages; the count may be short"));
    Ok(out)
}

/// One page: its sandboxes and the query of the next page, if any.
fn parse_page(what: &str, body: Value) -> Result<(Vec<SandboxDto>, Option<String>), Error> {
    let bad = |why: &str| unavailable(format!("{what} answered a list Daytona never sends ({why})"));
    let items = |v: Value| -> Result<Vec<SandboxDto>, Error> {
        serde_json::from_value(v).map_err(|e| unavailable(format!("{what} answered a sandbox row that is not a Daytona Sandbox ({e})")))
    };
    match body {
        // Oldest servers: a bare array, no paging.
        Value::Array(_) => Ok((items(body)?, None)),
        Value::Object(mut obj) => {
            let rows = items(obj.remove("items").ok_or_else(|| bad("no `items`"))?)?;
            // Current: cursor paging.
            if let Some(cursor) = obj.get("nextCursor") {
                return match cursor {
                    Value::String(c) if !c.is_empty() => Ok((rows, Some(format!("cursor={}", encode(c))))),
                    Value::Null | Value::String(_) => Ok((rows, None)),
                    _ => Err(bad("`nextCursor` is not a string")),
                };
            }
            // Deprecated page/totalPages form.
            let page = obj.get("page").and_then(Value::as_u64);
            let pages = obj.get("totalPages").and_then(Value::as_u64);
            match (page, pages) {
                (Some(p), Some(t)) if p < t && !rows.is_empty() => Ok((rows, Some(format!("page={}", p + 1)))),
                _ => Ok((rows, None)),
            }
        }
        _ => Err(bad("neither an array nor an object")),
    }
}

/// Builds the `POST /sandbox` body (`CreateSandbox`).
pub fn create_body(image: &str, auto_stop_minutes: u64, env: &[(String, String)], labels: &[(String, String)]) -> Result<Value, Error> {
    // Postgres `integer` column upstream.
    if auto_stop_minutes > i32::MAX as u64 {
        return Err(bad_input(format!("idle_timeout_secs is too large for Daytona (autoStopInterval {auto_stop_minutes} min)")));
    }
    let mut body = json!({ "autoStopInterval": auto_stop_minutes });
    // No snapshot → Daytona's default snapshot for the organisation.
    if !image.is_empty() {
        body["snapshot"] = json!(image);
    }
    if !env.is_empty() {
        body["env"] = pairs(env);
    }
    if !labels.is_empty() {
        body["labels"] = pairs(labels);
    }
    Ok(body)
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_omits_what_is_empty() {
        assert_eq!(create_body("", 1, &[], &[]).unwrap(), json!({"autoStopInterval": 1}));
        let b = create_body("daytona-small", 5, &[("A".into(), "1".into())], &[("team".into(), "x".into())]).unwrap();
        assert_eq!(b, json!({"autoStopInterval": 5, "snapshot": "daytona-small", "env": {"A": "1"}, "labels": {"team": "x"}}));
        assert!(create_body("", u64::MAX / 60, &[], &[]).is_err());
    }

    #[test]
    fn all_three_list_shapes_parse_and_say_where_the_next_page_is() {
        let row = json!({"id":"a","snapshot":"s","state":"started","createdAt":"2024-10-01T12:00:00.000Z"});
        let (rows, next) = parse_page("GET /sandbox", json!([row])).unwrap();
        assert_eq!((rows.len(), next), (1, None));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"nextCursor":"c/1"})).unwrap();
        assert_eq!(next.as_deref(), Some("cursor=c%2F1"));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"nextCursor":null})).unwrap();
        assert_eq!(next, None);
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"total":3,"page":1,"totalPages":3})).unwrap();
        assert_eq!(next.as_deref(), Some("page=2"));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"total":3,"page":3,"totalPages":3})).unwrap();
        assert_eq!(next, None);
        assert!(parse_page("GET /sandbox", json!({"sandboxes":[]})).is_err());
        assert!(parse_page("GET /sandbox", json!({"items":[{"state":"started"}]})).is_err());
        assert!(parse_page("GET /sandbox", json!("nope")).is_err());
    }

    #[test]
    fn states_map_to_phases() {
        assert_eq!(phase("started"), Phase::Running);
        assert_eq!(phase("pulling_snapshot"), Phase::Coming);
        assert_eq!(phase("something_new"), Phase::Coming);
        assert_eq!(phase("stopped"), Phase::Halted);
        assert_eq!(phase("build_failed"), Phase::Failed);
        assert_eq!(phase("destroying"), Phase::Gone);
    }

    #[test]
    fn a_sandbox_row_tolerates_nulls_and_the_old_image_field() {
        let dto: SandboxDto =
            serde_json::from_str(r#"{"id":"a","snapshot":null,"image":"ubuntu","state":"started","createdAt":"2024-10-01T12:00:00.000Z","toolboxProxyUrl":null}"#).unwrap();
        let s = dto.into_sandbox();
        assert_eq!((s.sandbox_id.as_str(), s.image.as_str(), s.started_at.as_deref()), ("a", "ubuntu", Some("2024-10-01T12:00:00.000Z")));
        assert!(serde_json::from_str::<SandboxDto>(r#"{"state":"started"}"#).is_err());
    }
}
