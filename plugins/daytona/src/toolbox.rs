//! The toolbox: Daytona's in-sandbox daemon, reached through a proxy with the same
//! bearer key as the API.
//!
//! Where it lives (newest first): `{toolboxProxyUrl}/{sandboxId}/…` with the URL from the
//! Sandbox object (SDK `libs/sdk-typescript/src/Sandbox.ts`), else from
//! `GET /sandbox/{id}/toolbox-proxy-url`, else the API's own proxy
//! `{api-base}/toolbox/{id}/toolbox/…` (`apps/api/src/sandbox/controllers/toolbox.controller.ts`).
//!
//! Routes (daytonaio/daytona `apps/daemon/pkg/toolbox`): `POST process/execute`
//! `{command, cwd?, timeout? (s)}` → `{exitCode, result}` with stdout and stderr combined
//! in `result`, 408 when the timeout passes (`process/execute/{types,execute}.go`; older
//! daemons sent `code`); `GET files/download?path=` → raw bytes; `POST files/upload?path=`
//! multipart field `file` (`fs/{download_file,upload_file}.go`).

use crate::api::{self, Phase};
use crate::shell;
use crate::units::exec_timeout_secs;
use provider_kit::errors::{bad_input, not_found};
use provider_kit::upstream::{encode, multipart_file, Call, Reply};
use provider_kit::wstd::time::Duration;
use provider_kit::{Error, ExecRequest, ExecResult, Output};
use serde::Deserialize;
use serde_json::json;

/// Used when the caller gives no `timeout_ms` (the newest daemon would otherwise wait
/// forever, and the host's upstream timeout would turn that into a 502).
const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 60;
/// Extra time the HTTP call may take beyond the daemon's own deadline.
const HTTP_GRACE_SECS: u64 = 10;

/// One sandbox's toolbox base URL (everything before `/process/…`, `/files/…`).
pub struct Toolbox {
    sandbox_id: String,
    base: String,
}

impl Toolbox {
    /// Looks the sandbox up first, so an unknown id is S410 and a stopped one a clear
    /// caller error before any toolbox call.
    pub async fn resolve(sandbox_id: &str) -> Result<Self, Error> {
        let dto = api::get(sandbox_id).await?;
        match api::phase(dto.state()) {
            Phase::Gone => return Err(not_found(format!("Daytona sandbox {sandbox_id} is {}", dto.state()))),
            Phase::Halted => {
                return Err(bad_input(format!(
                    "Daytona sandbox {sandbox_id} is {} (Daytona stops sandboxes idle past their autoStopInterval); \
                     start it again or create a new one",
                    dto.state()
                )))
            }
            Phase::Failed => {
                return Err(bad_input(format!(
                    "Daytona sandbox {sandbox_id} is in state {}: {}",
                    dto.state(),
                    dto.error_reason.as_deref().unwrap_or("no reason given")
                )))
            }
            Phase::Running | Phase::Coming | Phase::Busy => {}
        }
        let proxy = match dto.toolbox_proxy_url.filter(|u| !u.is_empty()) {
            Some(u) => Some(u),
            None => api::toolbox_proxy_url(sandbox_id).await?,
        };
        let base = match proxy {
            Some(u) => format!("{}/{}", u.trim_end_matches('/'), encode(sandbox_id)),
            None => format!("{}/toolbox/{}/toolbox", api::base(), encode(sandbox_id)),
        };
        Ok(Toolbox { sandbox_id: sandbox_id.to_string(), base })
    }

    fn url(&self, route: &str) -> String {
        format!("{}/{route}", self.base)
    }

    /// Runs `req` through the shell wrapper (see [`shell`]).
    pub async fn exec(&self, req: &ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
        let (result, done) = self.exec_collected(req).await?;
        Ok(output.finished(&result, "", done.exit_code, done.timed_out))
    }

    /// As [`Toolbox::exec`], the whole output kept (for the plugin's own helper commands).
    async fn exec_collected(&self, req: &ExecRequest) -> Result<(String, ExecResult), Error> {
        let command = shell::wrap(&req.cmd, &req.args, &req.env)
            .map_err(|why| bad_input(format!("cannot pass this command to Daytona unchanged: {why}")))?;
        let timeout = req.timeout_ms.map_or(DEFAULT_EXEC_TIMEOUT_SECS, exec_timeout_secs);
        self.execute(&command, req.cwd.as_deref(), timeout).await
    }

    async fn execute(&self, command: &str, cwd: Option<&str>, timeout_secs: u64) -> Result<(String, ExecResult), Error> {
        let mut body = json!({ "command": command, "timeout": timeout_secs });
        if let Some(cwd) = cwd {
            body["cwd"] = json!(cwd);
        }
        let reply = Call::post(self.url("process/execute"))
            .json(&body)
            .timeout(Duration::from_secs(timeout_secs.saturating_add(HTTP_GRACE_SECS)))
            .send()
            .await?;
        if reply.status == 408 {
            // The daemon killed the process tree at the deadline; its output is not returned.
            return Ok((String::new(), ExecResult { exit_code: -1, timed_out: true }));
        }
        if !reply.is_success() {
            return Err(toolbox_error(&reply, "process/execute"));
        }
        let out: ExecuteResponse = reply.json()?;
        // `result` is stdout and stderr interleaved (one buffer in the daemon): it is
        // reported as stdout, and stderr stays empty.
        Ok((out.result, ExecResult { exit_code: out.exit_code, timed_out: false }))
    }

    pub async fn download(&self, path: &str) -> Result<Vec<u8>, Error> {
        let reply = Call::get(format!("{}?path={}", self.url("files/download"), encode(path))).send().await?;
        if !reply.is_success() {
            return Err(toolbox_error(&reply, "files/download"));
        }
        Ok(reply.body)
    }

    pub async fn upload(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file");
        let (content_type, body) = multipart_file("file", name, bytes);
        let reply = Call::post(format!("{}?path={}", self.url("files/upload"), encode(path)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        if !reply.is_success() {
            return Err(toolbox_error(&reply, "files/upload"));
        }
        Ok(())
    }

    /// Applies `mode` after an upload (the upload route has no mode parameter).
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), Error> {
        let mode = mode & 0o7777;
        let req = ExecRequest {
            sandbox_id: self.sandbox_id.clone(),
            cmd: "chmod".into(),
            args: vec![format!("{mode:o}"), path.to_string()],
            env: Vec::new(),
            cwd: None,
            timeout_ms: Some(10_000),
            stdin: None,
        };
        let (result, r) = self.exec_collected(&req).await?;
        if r.timed_out || r.exit_code != 0 {
            return Err(bad_input(format!("the file was written but chmod {mode:o} {path} failed: {}", result.trim())));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct ExecuteResponse {
    #[serde(rename = "exitCode", alias = "code")]
    exit_code: i32,
    #[serde(default)]
    result: String,
}

/// The daemon answers gin errors (`{message}` or plain text); the proxy answers for a
/// sandbox that is not reachable. Both go through the kit's status mapping.
fn toolbox_error(reply: &Reply, route: &str) -> Error {
    let mut e = reply.error();
    e.message = format!("Daytona toolbox {route}: {}", e.message);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_answers_parse_in_old_and_new_forms() {
        let new: ExecuteResponse = serde_json::from_str(r#"{"exitCode":3,"result":"out"}"#).unwrap();
        assert_eq!((new.exit_code, new.result.as_str()), (3, "out"));
        let old: ExecuteResponse = serde_json::from_str(r#"{"code":0,"result":""}"#).unwrap();
        assert_eq!(old.exit_code, 0);
        assert!(serde_json::from_str::<ExecuteResponse>(r#"{"result":"x"}"#).is_err());
    }
}
