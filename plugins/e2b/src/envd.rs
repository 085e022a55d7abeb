//! `envd`, the daemon inside every E2B sandbox (port 49983): where to reach it and its
//! file routes, `GET /files?path=` (raw bytes) and `POST /files?path=` (multipart field
//! `file`), per e2b-dev/E2B `spec/envd/envd.yaml`. Processes are in [`crate::process`].

use crate::api;
use provider_kit::errors::bad_input;
use provider_kit::upstream::{encode, multipart_file, Call, Reply};
use provider_kit::{config, Error};

pub const ENVD_PORT: u16 = 49983;

/// Where and how to reach one sandbox's envd.
pub struct Target {
    pub sandbox_id: String,
    pub base: String,
    token: Option<String>,
    /// envd before 0.4.0 has no default user: name E2B's `user`, as the SDK does.
    legacy_user: bool,
}

/// The user the SDK names for envd older than 0.4.0 (`envd/versions.py` `ENVD_DEFAULT_USER`).
const LEGACY_USER: &str = "user";

/// True for an envd version (`0.3.9`, `v0.3.9`) older than 0.4.0; an unreadable one is
/// taken as current.
fn needs_named_user(version: Option<&str>) -> bool {
    let Some(v) = version else { return false };
    let parts: Vec<u64> = v.trim_start_matches('v').split(['.', '-', '+']).take(3).map_while(|p| p.parse().ok()).collect();
    parts.len() >= 2 && (parts[0], parts[1]) < (0, 4)
}

impl Target {
    /// Looks the sandbox up (404 → not-found, so S410 comes before any envd call). A
    /// paused sandbox has no envd to reach: E2B's proxy would answer 502 "not found";
    /// the caller is told to resume it instead.
    pub async fn resolve(sandbox_id: &str) -> Result<Self, Error> {
        let detail = api::detail(sandbox_id).await?;
        if detail.is_paused() {
            return Err(bad_input(format!("sandbox {sandbox_id} is paused; resume it before running commands or touching files")));
        }
        let base = match config::get("envd-url").filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{ENVD_PORT}-{sandbox_id}.{}", detail.domain()),
        };
        let legacy_user = needs_named_user(detail.envd_version.as_deref());
        Ok(Target { sandbox_id: sandbox_id.to_string(), base, token: detail.envd_access_token.filter(|t| !t.is_empty()), legacy_user })
    }

    /// `call` with the routing headers and the sandbox's access token.
    pub fn call(&self, call: Call) -> Call {
        let mut call = call.header("e2b-sandbox-id", self.sandbox_id.clone()).header("e2b-sandbox-port", ENVD_PORT.to_string());
        if self.legacy_user {
            // `Authorization: Basic base64("user:")`, as the SDK sends for RPCs.
            call = call.header("authorization", "Basic dXNlcjo=".to_string());
        }
        match &self.token {
            Some(t) => call.header("x-access-token", t.clone()),
            None => call,
        }
    }

    /// `/files?path=…`, with `&username=` where envd needs a named user.
    fn files_url(&self, path: &str) -> String {
        let user = if self.legacy_user { format!("&username={LEGACY_USER}") } else { String::new() };
        format!("{}/files?path={}{user}", self.base, encode(path))
    }
}

pub async fn read_file(target: &Target, path: &str) -> Result<Vec<u8>, Error> {
    let reply = target.call(Call::get(target.files_url(path))).send().await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, "GET /files"));
    }
    Ok(reply.body)
}

pub async fn write_file(target: &Target, path: &str, bytes: &[u8]) -> Result<(), Error> {
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file");
    let (content_type, body) = multipart_file("file", name, bytes);
    let reply = target.call(Call::post(target.files_url(path))).header("content-type", content_type).body(body).send().await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, "POST /files"));
    }
    Ok(())
}

/// envd answers errors as `{code, message}` with an HTTP status; the proxy answers 502
/// for a sandbox that is not running.
pub fn envd_error(reply: &Reply, what: &str) -> Error {
    let mut e = reply.error();
    e.message = format!("envd {what}: {}", e.message);
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn envd_before_0_4_0_needs_the_user_named() {
        for (v, named) in [("0.3.9", true), ("v0.1.1", true), ("0.4.0", false), ("0.5.7", false), ("1.0", false), ("x", false)] {
            assert_eq!(super::needs_named_user(Some(v)), named, "{v}");
        }
        assert!(!super::needs_named_user(None));
    }
}
