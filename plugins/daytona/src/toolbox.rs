//! The toolbox: Daytona's in-sandbox daemon, reached through a proxy with the same
//! bearer key as the API.
//!
//! Where it lives (newest first): `{toolboxProxyUrl}/{sandboxId}/…` with the URL from the
//! Sandbox object (toolbox.json `info.description`), else from
//! `GET /sandbox/{id}/toolbox-proxy-url`, else the API's own proxy
//! `{api-base}/toolbox/{id}/toolbox/…` of servers before either existed.
//!
//! File routes (toolbox.json at d94a1281): `GET files/download?path=` → raw bytes;
//! `POST files/upload-v2?path=` multipart `file` → `UploadedFile` ("Parent directories are
//! created if missing"); daemons before it (v0.190.0 and older) have `POST files/upload`
//! instead, used when upload-v2 answers 404; `POST files/folder?path=&mode=` (mkdir -p);
//! `POST files/permissions?path=&mode=` (octal). Commands run in sessions ([`crate::session`]).

use crate::api::{self, Phase};
use provider_kit::errors::{bad_input, not_found};
use provider_kit::upstream::{encode, multipart_file, Call, Reply};
use provider_kit::Error;

/// One sandbox's toolbox base URL (everything before `/process/…`, `/files/…`).
pub struct Toolbox {
    base: String,
}

impl Toolbox {
    /// Looks the sandbox up first, so an unknown id is S410 and a halted one a clear
    /// caller error before any toolbox call.
    pub async fn resolve(sandbox_id: &str) -> Result<Self, Error> {
        let dto = api::get(sandbox_id).await?;
        match api::phase(dto.state()) {
            Phase::Gone => return Err(not_found(format!("Daytona sandbox {sandbox_id} is {}", dto.state()))),
            Phase::Halting | Phase::Halted => {
                return Err(bad_input(format!(
                    "Daytona sandbox {sandbox_id} is {} (paused, or stopped by Daytona when idle past its autoStopInterval); \
                     resume it or create a new one",
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
        Ok(Toolbox { base })
    }

    pub fn url(&self, route: &str) -> String {
        format!("{}/{route}", self.base)
    }

    pub async fn download(&self, path: &str) -> Result<Vec<u8>, Error> {
        let reply = Call::get(format!("{}?path={}", self.url("files/download"), encode(path))).send().await?;
        if !reply.is_success() {
            return Err(toolbox_error(&reply, "files/download"));
        }
        Ok(reply.body)
    }

    /// Writes `bytes` at `path`. Both upload routes create missing parents themselves
    /// (upload-v2 by spec, the old one through gin's `SaveUploadedFile` since gin 1.9); for
    /// `parents` the old route is preceded by a folder call, for daemons built before that.
    pub async fn upload(&self, path: &str, bytes: &[u8], parents: bool) -> Result<(), Error> {
        let reply = self.post_file("files/upload-v2", path, bytes).await?;
        if reply.status != 404 {
            return ok_or(reply, "files/upload-v2");
        }
        // The sandbox was just found, so a 404 here is the route: an older daemon.
        if parents {
            if let Some(dir) = parent(path) {
                let url = format!("{}?path={}&mode=0755", self.url("files/folder"), encode(dir));
                ok_or(Call::post(url).send().await?, "files/folder")?;
            }
        }
        ok_or(self.post_file("files/upload", path, bytes).await?, "files/upload")
    }

    async fn post_file(&self, route: &str, path: &str, bytes: &[u8]) -> Result<Reply, Error> {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file");
        let (content_type, body) = multipart_file("file", name, bytes);
        Call::post(format!("{}?path={}", self.url(route), encode(path))).header("content-type", content_type).body(body).send().await
    }

    /// Applies `mode` after an upload (the upload routes take no mode).
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), Error> {
        let url = format!("{}?path={}&mode={:04o}", self.url("files/permissions"), encode(path), mode & 0o7777);
        ok_or(Call::post(url).send().await?, "files/permissions")
    }
}

/// The folder part of `path`, when it has one (`a/b.txt` → `a`, `/x` → none).
fn parent(path: &str) -> Option<&str> {
    path.trim_end_matches('/').rsplit_once('/').map(|(dir, _)| dir).filter(|d| !d.is_empty())
}

fn ok_or(reply: Reply, route: &str) -> Result<(), Error> {
    if reply.is_success() {
        Ok(())
    } else {
        Err(toolbox_error(&reply, route))
    }
}

/// The daemon answers `ErrorResponse {statusCode, message, …}` (or plain text); the proxy
/// answers for a sandbox that is not reachable. Both go through the kit's status mapping.
pub fn toolbox_error(reply: &Reply, route: &str) -> Error {
    let mut e = crate::errors::classify(reply);
    e.message = format!("Daytona toolbox {route}: {}", e.message);
    e
}

#[cfg(test)]
mod tests {
    use super::parent;

    #[test]
    fn parent_is_the_folder_before_the_last_slash() {
        assert_eq!(parent("a/b/c.txt"), Some("a/b"));
        assert_eq!(parent("/home/x.txt"), Some("/home"));
        assert_eq!(parent("/x.txt"), None);
        assert_eq!(parent("x.txt"), None);
    }
}
