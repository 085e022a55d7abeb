//! E2B's control plane (`spec/openapi.yml`), each route one or two `Host::call`s:
//! create, list, detail, kill, timeout, refresh, pause and connect (resume).

use super::errors::ApiError;
use super::http::{self, Reply};
use super::ids::{resolve_template, SandboxRef};
use super::{quota, views, E2bApi, Owned};
use crate::contract::shapes::{Capability, Leaf, SandboxState};
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Map, Value};

/// Control-plane bodies are small JSON objects.
const BODY_LIMIT: usize = 1 << 20;
/// A sandbox's lifetime when create names none: the SDK's documented default.
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// `refreshes` without a duration (E2B allows 0..=3600).
const DEFAULT_REFRESH_SECS: u64 = 60;

pub async fn handle(api: &E2bApi, req: Request<Incoming>) -> Reply {
    match route(api, req).await {
        Ok(reply) => reply,
        Err(e) => http::api_error(&e),
    }
}

async fn route(api: &E2bApi, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let caller = api.caller(&req)?;
    let (parts, incoming) = req.into_parts();
    let method = parts.method;
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let query = http::query_pairs(parts.uri.query());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = |incoming: Incoming| async move { http::read_body(incoming, BODY_LIMIT).await.and_then(|b| json_object(&b)) };
    match (&method, segments.as_slice()) {
        (&Method::POST, ["v2", "sandboxes"] | ["sandboxes"]) => create(api, caller, body(incoming).await?).await,
        (&Method::GET, ["v2", "sandboxes"] | ["sandboxes"]) => list(api, caller, &query).await,
        (&Method::GET, ["sandboxes", id]) => {
            let owned = api.owned(caller, id).await?;
            let token = api.keys.envd_token(caller, id);
            Ok(http::json(200, &views::detail(&owned.sandbox, &owned.row, &token)))
        }
        (&Method::DELETE, ["sandboxes", id]) => {
            let owned = api.owned(caller, id).await?;
            api.call(&owned.sandbox.provider, Leaf::Stop, json!({ "sandbox_id": owned.sandbox.upstream_id })).await?;
            Ok(http::empty(204))
        }
        (&Method::POST, ["sandboxes", id, "timeout"]) => {
            let secs = seconds(&body(incoming).await?, "timeout", None)?;
            within_lifetime_limit(api, id, secs)?;
            let owned = api.owned(caller, id).await?;
            set_timeout(api, &owned, secs).await?;
            Ok(http::empty(204))
        }
        (&Method::POST, ["sandboxes", id, "refreshes"]) => {
            let secs = seconds(&body(incoming).await?, "duration", Some(DEFAULT_REFRESH_SECS))?;
            if secs > 3600 {
                return Err(ApiError::bad_request(format!("duration {secs} is over the 3600 seconds a refresh may add")));
            }
            within_lifetime_limit(api, id, secs)?;
            let owned = api.owned(caller, id).await?;
            set_timeout(api, &owned, secs).await?;
            Ok(http::empty(204))
        }
        (&Method::POST, ["sandboxes", id, "pause"]) => {
            let owned = api.owned(caller, id).await?;
            if owned.row["state"] == SandboxState::Paused.as_str() {
                return Err(ApiError::new(409, format!("sandbox {id} is already paused")));
            }
            api.call(&owned.sandbox.provider, Leaf::Pause, json!({ "sandbox_id": owned.sandbox.upstream_id })).await?;
            Ok(http::empty(204))
        }
        (&Method::POST, ["v2", "sandboxes", id, "connect"] | ["sandboxes", id, "connect" | "resume"]) => {
            let body = body(incoming).await?;
            let timeout = body.get("timeout").map(|_| seconds(&body, "timeout", None)).transpose()?;
            if let Some(secs) = timeout {
                within_lifetime_limit(api, id, secs)?;
            }
            connect(api, caller, id, timeout).await
        }
        (&Method::GET, ["sandboxes", id, "metrics"]) => {
            api.owned(caller, id).await?;
            Err(ApiError::new(501, format!("sandbox {id}: its provider reports no metrics through this API")))
        }
        _ => Err(ApiError::new(404, format!("no route {method} {path} in this E2B-compatible API"))),
    }
}

/// A lifetime beyond the provider's `limits.max_timeout_secs` is refused before anything
/// (even the ownership lookup) goes upstream, by the host's own check.
fn within_lifetime_limit(api: &E2bApi, id: &str, secs: u64) -> Result<(), ApiError> {
    let Some(plugin) = SandboxRef::parse(id).and_then(|s| api.host.registry.get(&s.provider)) else { return Ok(()) };
    crate::calls::answer::check_lifetime(&plugin, Leaf::SetTimeout, secs).map_err(|e| ApiError::from_call(&e))
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the request body is not JSON: {e}"))),
    }
}

/// A whole number of seconds at `field` (or `default` when absent).
fn seconds(body: &Map<String, Value>, field: &str, default: Option<u64>) -> Result<u64, ApiError> {
    match (body.get(field), default) {
        (None | Some(Value::Null), Some(d)) => Ok(d),
        (None | Some(Value::Null), None) => Err(ApiError::bad_request(format!("`{field}` (seconds) is required"))),
        (Some(v), _) => v.as_u64().ok_or_else(|| ApiError::bad_request(format!("`{field}` must be a whole number of seconds, not {v}"))),
    }
}

/// A JSON object of strings, as E2B's `metadata` and `envVars`.
fn string_object(body: &Map<String, Value>, field: &str) -> Result<Map<String, Value>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m.clone()),
        Some(v) => Err(ApiError::bad_request(format!("`{field}` must be an object of strings, not {v}"))),
    }
}

/// Create fields no provider plugin can honour yet: refused, never dropped silently.
fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), ApiError> {
    let set = |f: &str| match body.get(f) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => {
            let disabled = f == "autoResume" && o.get("enabled") == Some(&Value::Bool(false));
            !o.is_empty() && !disabled
        }
        Some(_) => true,
    };
    let unsupported: Vec<&str> =
        ["autoPause", "autoResume", "network", "mcp", "iam", "volumeMounts"].into_iter().filter(|f| set(f)).collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "this E2B-compatible API cannot honour {} on any provider yet; create without {}",
        unsupported.join(", "),
        if unsupported.len() == 1 { "it" } else { "them" }
    )))
}

async fn create(api: &E2bApi, caller: super::auth::Caller, body: Map<String, Value>) -> Result<Reply, ApiError> {
    let template_id = body.get("templateID").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("`templateID` is required"))?;
    let template = resolve_template(&api.settings, template_id)?;
    let key = api.key(caller);
    if !api.may_use(caller, &template.provider) {
        return Err(ApiError::forbidden(format!("key {:?} may not use provider {:?}", key.name, template.provider)));
    }
    if key.templates.as_ref().is_some_and(|allowed| !allowed.iter().any(|t| t == template_id)) {
        return Err(ApiError::forbidden(format!("key {:?} may not use template {template_id:?}", key.name)));
    }
    refuse_unsupported(&body)?;
    let mut metadata = string_object(&body, "metadata")?;
    if let Some(reserved) = metadata.keys().find(|k| k.starts_with(views::RESERVED_PREFIX)) {
        return Err(ApiError::bad_request(format!(
            "metadata key {reserved:?} is reserved: keys starting {:?} are this API's",
            views::RESERVED_PREFIX
        )));
    }
    metadata.insert(views::OWNER_KEY.into(), json!(key.name));
    metadata.insert(views::TEMPLATE_KEY.into(), json!(template_id));
    let mut payload = json!({
        "image": template.image,
        "idle_timeout_secs": seconds(&body, "timeout", Some(DEFAULT_TIMEOUT_SECS))?,
        "env": string_object(&body, "envVars")?,
        "metadata": metadata,
    });
    if let Some(internet) = body.get("allow_internet_access").filter(|v| !v.is_null()) {
        let on = internet.as_bool().ok_or_else(|| ApiError::bad_request("`allow_internet_access` must be true or false"))?;
        payload["network"] = json!(on);
    }
    let quota = api.quotas.of(caller);
    let _one_at_a_time = match key.max_sandboxes {
        Some(max) => {
            let guard = quota.serialise_creates().await;
            let owned = api.owned_rows(caller).await?.len();
            if owned >= max {
                return Err(quota::cap_reached(&key.name, owned, max));
            }
            Some(guard)
        }
        None => None,
    };
    let lifetime = payload["idle_timeout_secs"].as_u64().unwrap_or(DEFAULT_TIMEOUT_SECS);
    let created = api.call(&template.provider, Leaf::Create, payload).await?;
    let upstream_id = created["sandbox_id"].as_str().unwrap_or_default();
    let sandbox = SandboxRef::new(&template.provider, upstream_id);
    ensure_lifetime(api, &sandbox, lifetime).await?;
    let token = api.keys.envd_token(caller, &sandbox.id());
    Ok(http::json(201, &views::sandbox(template_id, &sandbox, &token)))
}

/// E2B's `timeout` is a fixed lifetime; the contract's `idle_timeout_secs` is idle
/// (Daytona's auto-stop; the host keeps E2B's and Morph's end moving while in use). An
/// explicit `set_timeout` right after create fixes the end, as E2B's callers expect. If
/// that fails the sandbox is stopped, so the caller neither gets nor leaks a sandbox that
/// would outlive what they asked for.
async fn ensure_lifetime(api: &E2bApi, sandbox: &SandboxRef, secs: u64) -> Result<(), ApiError> {
    if !api.offers(&sandbox.provider, Capability::SetTimeout) {
        return Ok(());
    }
    let payload = json!({ "sandbox_id": sandbox.upstream_id, "timeout_secs": secs });
    let Err(e) = api.call(&sandbox.provider, Leaf::SetTimeout, payload).await else { return Ok(()) };
    let stop = api.call(&sandbox.provider, Leaf::Stop, json!({ "sandbox_id": sandbox.upstream_id })).await;
    let undone = if stop.is_ok() { "it was stopped" } else { "stopping it failed too; kill it" };
    Err(ApiError { message: format!("setting sandbox {}'s lifetime failed ({undone}): {}", sandbox.id(), e.message), ..e })
}

async fn set_timeout(api: &E2bApi, owned: &Owned, secs: u64) -> Result<(), ApiError> {
    let payload = json!({ "sandbox_id": owned.sandbox.upstream_id, "timeout_secs": secs });
    api.call(&owned.sandbox.provider, Leaf::SetTimeout, payload).await.map(drop)
}

/// Resumes a paused sandbox (201) or re-issues a running one's token (200); a given
/// timeout becomes its new lifetime either way.
async fn connect(api: &E2bApi, caller: super::auth::Caller, id: &str, timeout: Option<u64>) -> Result<Reply, ApiError> {
    let owned = api.owned(caller, id).await?;
    let paused = owned.row["state"] == SandboxState::Paused.as_str();
    if paused {
        let mut payload = json!({ "sandbox_id": owned.sandbox.upstream_id });
        if let Some(secs) = timeout {
            payload["timeout_secs"] = json!(secs);
        }
        api.call(&owned.sandbox.provider, Leaf::Resume, payload).await?;
    } else if let Some(secs) = timeout {
        set_timeout(api, &owned, secs).await?;
    }
    let template = views::template_id(&owned.sandbox, &owned.row);
    let token = api.keys.envd_token(caller, id);
    Ok(http::json(if paused { 201 } else { 200 }, &views::sandbox(&template, &owned.sandbox, &token)))
}

async fn list(api: &E2bApi, caller: super::auth::Caller, query: &[(String, String)]) -> Result<Reply, ApiError> {
    let filter = super::listing::Filter::parse(query)?;
    let rows = api.owned_rows(caller).await?;
    let listed: Vec<Value> = rows.iter().map(|(s, row)| views::listed(s, row)).filter(|v| filter.keeps(v)).collect();
    let (page, next) = filter.page(listed)?;
    let mut reply = http::json(200, &Value::Array(page));
    if let Some(token) = next {
        reply.headers_mut().insert("x-next-token", token.parse().map_err(|_| ApiError::new(500, "next token is not a header value"))?);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn create_fields_no_provider_honours_are_refused_by_name() {
        assert!(refuse_unsupported(&obj(json!({"templateID": "x", "autoPause": false, "autoResume": {"enabled": false}}))).is_ok());
        let e = refuse_unsupported(&obj(json!({"autoPause": true, "volumeMounts": [{"name": "v"}]}))).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("autoPause, volumeMounts"), "{}", e.message);
    }

    #[test]
    fn seconds_are_whole_and_required_unless_defaulted() {
        assert_eq!(seconds(&obj(json!({"timeout": 30})), "timeout", None), Ok(30));
        assert_eq!(seconds(&obj(json!({})), "duration", Some(60)), Ok(60));
        assert_eq!(seconds(&obj(json!({})), "timeout", None).unwrap_err().status, 400);
        assert_eq!(seconds(&obj(json!({"timeout": -1})), "timeout", None).unwrap_err().status, 400);
        assert_eq!(seconds(&obj(json!({"timeout": "5"})), "timeout", None).unwrap_err().status, 400);
    }

    #[test]
    fn bodies_are_json_objects_or_empty() {
        assert!(json_object(b"").unwrap().is_empty());
        assert_eq!(json_object(b"[1]").unwrap_err().status, 400);
        assert_eq!(json_object(b"{").unwrap_err().status, 400);
    }
}
