//! envd, the in-sandbox daemon the SDK talks to for commands and files, served for
//! every provider: requests name their sandbox in `E2b-Sandbox-Id` and carry its
//! `X-Access-Token`, and each becomes `Host::call`s on that sandbox's provider.
//!
//! - [`process`]: `process.Process/*` (Start streams exec output as it is produced).
//! - [`files`]: `GET`/`POST /files` on the fs leaves (multipart and octet-stream).
//! - [`filesystem`]: `filesystem.Filesystem/*`, as shell commands run through exec.
//! - [`connect`]: Connect framing; [`multipart`]: `multipart/form-data` bodies.

pub mod connect;
pub mod files;
pub mod filesystem;
pub mod multipart;
pub mod process;

use super::auth::Caller;
use super::errors::{ApiError, ConnectError};
use super::http::{self, Reply};
use super::ids::SandboxRef;
use super::E2bApi;
use hyper::body::Incoming;
use hyper::{Method, Request};
use std::sync::Arc;

/// The sandbox an envd request is about, its token checked.
pub struct Target {
    pub caller: Caller,
    /// The id as the SDK knows it.
    pub id: String,
    pub sandbox: SandboxRef,
}

pub async fn handle(api: &Arc<E2bApi>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if path == "/health" && req.headers().get("e2b-sandbox-id").is_none() {
        return http::empty(204);
    }
    let rpc = path.strip_prefix('/').filter(|p| p.starts_with("process.") || p.starts_with("filesystem.")).map(str::to_string);
    let target = match target(api, &req) {
        Ok(t) => t,
        Err(e) => {
            return match &rpc {
                Some(_) if is_streaming(&req) => connect::stream_error(&e.to_connect()),
                Some(_) => connect::unary_error(&e.to_connect()),
                None => http::api_error(&e),
            }
        }
    };
    match (req.method(), path.as_str(), rpc) {
        (&Method::GET, "/health", _) => health(api, &target).await,
        (&Method::GET, "/files", _) => files::read(api, &target, &req).await,
        (&Method::POST, "/files", _) => files::write(api, &target, req).await,
        (&Method::POST, _, Some(rpc)) => rpc_call(api, target, &rpc, req).await,
        (method, path, _) => http::api_error(&ApiError::new(404, format!("no envd route {method} {path} here"))),
    }
}

fn is_streaming(req: &Request<Incoming>) -> bool {
    http::header(req, "content-type").is_some_and(|c| c.starts_with(connect::STREAM_CONTENT_TYPE))
}

/// Checks the token against the sandbox it names; the caller is whoever it was issued to.
fn target(api: &E2bApi, req: &Request<Incoming>) -> Result<Target, ApiError> {
    let id = http::header(req, "e2b-sandbox-id").ok_or_else(|| {
        ApiError::bad_request("the E2b-Sandbox-Id header is missing: point E2B_SANDBOX_URL at this API and use the E2B SDK")
    })?;
    let caller = api
        .keys
        .envd_caller(id, http::header(req, "x-access-token"))
        .ok_or_else(|| ApiError::new(401, format!("the X-Access-Token is not sandbox {id}'s envdAccessToken")))?;
    api.quotas.of(caller).admit()?;
    let sandbox = SandboxRef::parse(id).ok_or_else(|| ApiError::sandbox_not_found(id))?;
    Ok(Target { caller, id: id.to_string(), sandbox })
}

/// 204 while the sandbox runs; 502 "was not found" otherwise, which the SDK reads as
/// not running.
async fn health(api: &E2bApi, t: &Target) -> Reply {
    match api.owned(t.caller, &t.id).await {
        Ok(owned) if owned.row["state"] == "running" => http::empty(204),
        Ok(_) => http::api_error(&ApiError::new(502, format!("The sandbox {} was not found: it is paused", t.id))),
        Err(e) if e.status == 404 => http::api_error(&ApiError::new(502, format!("The sandbox {} was not found", t.id))),
        Err(e) => http::api_error(&e),
    }
}

/// Unary bodies are small; a streaming request carries one message.
const RPC_BODY_LIMIT: usize = 4 << 20;

async fn rpc_call(api: &Arc<E2bApi>, target: Target, rpc: &str, req: Request<Incoming>) -> Reply {
    let streaming = is_streaming(&req);
    let options = process::StartOptions::from_headers(req.headers());
    let body = match http::read_body(req.into_body(), RPC_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return if streaming { connect::stream_error(&e.to_connect()) } else { connect::unary_error(&e.to_connect()) },
    };
    let (service, method) = rpc.split_once('/').unwrap_or((rpc, ""));
    if streaming {
        let message = match connect::unwrap_envelope(&body) {
            Ok(m) => m,
            Err(e) => return connect::stream_error(&e),
        };
        return match (service, method) {
            ("process.Process", "Start") => process::start(api, target, message, options).await,
            _ => connect::stream_error(&unimplemented(&target, rpc)),
        };
    }
    let message = match connect::unary_message(&body) {
        Ok(m) => m,
        Err(e) => return connect::unary_error(&e),
    };
    let answer = match (service, method) {
        ("process.Process", "List") => process::list(api, &target),
        ("process.Process", "SendSignal") => process::send_signal(api, &target, &message),
        ("filesystem.Filesystem", m) if filesystem::serves(m) => filesystem::call(api, &target, m, &message).await,
        _ => Err(unimplemented(&target, rpc)),
    };
    match answer {
        Ok(v) => connect::unary_ok(&v),
        Err(e) => connect::unary_error(&e),
    }
}

/// What a provider behind this API cannot do, named.
fn unimplemented(t: &Target, rpc: &str) -> ConnectError {
    ConnectError::new(
        "unimplemented",
        format!("{rpc} is not available for sandbox {} on provider {:?} through this E2B-compatible API", t.id, t.sandbox.provider),
    )
}
