//! Daytona provider plugin: the contract's leaves translated onto Daytona's REST API
//! (`app.daytona.io/api`, [`api`], [`lifecycle`], [`fork`]) and each sandbox's toolbox
//! daemon ([`toolbox`], [`session`]), both authenticated with `Authorization: Bearer <key>`
//! injected by the host (the toolbox proxy, e.g. `proxy.app.daytona.io`, takes the same key).
//! Shapes follow Daytona's maintained specs, `daytona/clients` `openapi-specs/api.json` and
//! `openapi-specs/toolbox.json`, and the last public server and daemon (v0.190.0).
//!
//! Config keys (non-secret, from `plugins/daytona.toml`): `api-base` (default
//! `https://app.daytona.io/api`).
//!
//! Contract decisions that are Daytona-specific:
//! - `image` is a Daytona snapshot name or id; empty means the organisation's default.
//! - `idle_timeout_secs` becomes `autoStopInterval` in minutes, rounded up, at least 1;
//!   `cpus` is `cpu` (cores), `memory_mb` is `memory` in whole GiB, rounded up;
//!   `network: false` is `networkBlockAll: true`.
//! - `list` reports live sandboxes (started, or about to be: creating, starting,
//!   snapshotting, …) and paused ones; a sandbox Daytona auto-stopped at its idle timeout
//!   holds no compute and is left out, so it frees its concurrency slot, as an E2B sandbox
//!   does. `pause`, `resume` and `set_timeout`: see [`lifecycle`].
//! - `exec` runs in a toolbox session and streams its output as it is produced
//!   ([`session`]), byte for byte except NUL bytes, which Daytona's daemon drops.
//! - `exec` `stdin` is passed inside the command script ([`shell`]).
//! - `snapshot` names a new Daytona snapshot; pass it as `image` to `create` to boot copies.
//! - `branch` forks (VM-class sandboxes only, [`fork`]); `expose_port` answers the preview
//!   URL with its `x-daytona-preview-token` header.

mod api;
mod errors;
mod fork;
mod lifecycle;
mod logs;
mod session;
mod shell;
mod toolbox;
mod units;

use api::Phase;
use provider_kit::errors::{bad_input, unavailable};
use provider_kit::{
    log, register_provider, Capability, CreateRequest, CredentialSpec, Descriptor, Error, ExecRequest, ExecResult, ExposedPort,
    FsWriteRequest, Output, Provider, Sandbox, SandboxState,
};
use toolbox::Toolbox;

/// How long `create` waits for `started` (the SDK's default create timeout is 60 s).
const START_WAIT_SECS: u64 = 60;
/// How long `snapshot` waits for the sandbox to leave `snapshotting`.
const SNAPSHOT_WAIT_SECS: u64 = 60;

pub struct Daytona;

impl Provider for Daytona {
    fn describe() -> Descriptor {
        // The API and the toolbox proxy take the key; the host honours exact credential
        // hosts only, so they are named rather than `*.daytona.io` (sandbox previews live
        // under that suffix and must never see the key).
        let hosts = vec!["app.daytona.io".to_string(), "proxy.app.daytona.io".to_string()];
        Descriptor {
            name: "daytona".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                Capability::Snapshot,
                Capability::Branch,
                Capability::ExposePort,
                Capability::Fs,
                Capability::Get,
                Capability::SetTimeout,
                Capability::Pause,
                Capability::ExecStdin,
                Capability::NetworkOff,
                Capability::Sizing,
            ],
            default_egress_hosts: hosts.clone(),
            credentials: vec![CredentialSpec {
                name: "api-key".into(),
                header: "authorization".into(),
                value_prefix: "Bearer ".into(),
                // The API and the toolbox proxy (proxy.app.daytona.io) take the same key.
                hosts,
            }],
        }
    }

    async fn create(req: CreateRequest) -> Result<Sandbox, Error> {
        let body = api::create_body(&req, units::whole_minutes(req.idle_timeout_secs))?;
        let created = api::create(&body).await?;
        let id = created.id.clone();
        // Daytona may answer before the sandbox runs (`creating`, `pulling_snapshot`, …);
        // like the SDK, wait for `started` so the first exec finds a toolbox.
        let dto = api::settle(created, |p| *p == Phase::Coming, START_WAIT_SECS).await?;
        match api::phase(dto.state()) {
            Phase::Running | Phase::Busy => {}
            _ => {
                let why = match &dto.error_reason {
                    Some(r) if !r.is_empty() => format!("it is {}: {r}", dto.state()),
                    _ => format!("it is still {} after {} s", dto.state(), START_WAIT_SECS),
                };
                // Do not leave a half-made sandbox behind: the host releases its slot.
                let cleanup = match api::delete(&id).await {
                    Ok(()) => "it was deleted".to_string(),
                    Err(e) => {
                        log::log(log::Level::Warn, &format!("deleting unstarted sandbox {id} failed: {}", e.message));
                        format!("deleting it failed ({}); it may still exist upstream", e.message.trim())
                    }
                };
                return Err(unavailable(format!("Daytona sandbox {id} did not start ({why}); {cleanup}")));
            }
        }
        let mut sandbox = dto.into_sandbox(SandboxState::Running);
        if !req.image.is_empty() {
            // Report the caller's name for the image, not Daytona's resolved ref.
            sandbox.image = req.image;
        }
        Ok(sandbox)
    }

    async fn exec(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
        // Built first: input no shell can carry is refused before anything is sent.
        let marker = session::marker();
        let command = shell::session_command(&shell::Command {
            cmd: &req.cmd,
            args: &req.args,
            env: &req.env,
            cwd: req.cwd.as_deref(),
            stdin: req.stdin.as_deref(),
            marker: &marker,
        })
        .map_err(|why| bad_input(format!("cannot pass this command to Daytona unchanged: {why}")))?;
        let tb = Toolbox::resolve(&req.sandbox_id).await?;
        session::run(&tb, &command, &marker, req.timeout_ms, output).await
    }

    async fn stop(sandbox_id: String) -> Result<(), Error> {
        api::delete(&sandbox_id).await
    }

    async fn list() -> Result<Vec<Sandbox>, Error> {
        let rows = api::list_all().await?;
        Ok(rows.into_iter().filter_map(|s| lifecycle::listed_state(&s).map(|state| s.into_sandbox(state))).collect())
    }

    async fn get(sandbox_id: String) -> Result<Sandbox, Error> {
        lifecycle::get(&sandbox_id).await
    }

    async fn set_timeout(sandbox_id: String, timeout_secs: u64) -> Result<(), Error> {
        lifecycle::set_timeout(&sandbox_id, timeout_secs).await
    }

    async fn pause(sandbox_id: String) -> Result<(), Error> {
        lifecycle::pause(&sandbox_id).await
    }

    async fn resume(sandbox_id: String, timeout_secs: Option<u64>) -> Result<(), Error> {
        lifecycle::resume(&sandbox_id, timeout_secs).await
    }

    async fn snapshot(sandbox_id: String) -> Result<String, Error> {
        let name = snapshot_name(&sandbox_id);
        let dto = api::snapshot(&sandbox_id, &name).await?;
        // The sandbox goes `snapshotting` and back to `started` once the image is taken.
        let dto = api::settle(dto, |p| *p == Phase::Busy, SNAPSHOT_WAIT_SECS).await?;
        match api::phase(dto.state()) {
            Phase::Failed => Err(unavailable(format!(
                "Daytona could not snapshot sandbox {sandbox_id}: {}",
                dto.error_reason.as_deref().unwrap_or(dto.state())
            ))),
            Phase::Busy => {
                log::log(log::Level::Warn, &format!("snapshot {name} of {sandbox_id} still in progress after {} s", SNAPSHOT_WAIT_SECS));
                Ok(name)
            }
            _ => Ok(name),
        }
    }

    async fn branch(sandbox_id: String, count: u32) -> Result<Vec<String>, Error> {
        fork::branch(&sandbox_id, count).await
    }

    async fn expose_port(sandbox_id: String, port: u16) -> Result<ExposedPort, Error> {
        let (url, headers) = api::preview(&sandbox_id, port).await?;
        Ok(ExposedPort { url, headers })
    }

    async fn fs_read(sandbox_id: String, path: String) -> Result<Vec<u8>, Error> {
        Toolbox::resolve(&sandbox_id).await?.download(&path).await
    }

    async fn fs_write(req: FsWriteRequest) -> Result<(), Error> {
        let tb = Toolbox::resolve(&req.sandbox_id).await?;
        tb.upload(&req.path, &req.bytes, req.parents).await?;
        if let Some(mode) = req.mode {
            tb.chmod(&req.path, mode).await?;
        }
        Ok(())
    }
}

/// A fresh snapshot name: lower-case letters, digits and dashes only (the API checks
/// names with `IsSafeDisplayString`), unique per call.
fn snapshot_name(sandbox_id: &str) -> String {
    let mut rnd = [0u8; 6];
    provider_kit::wstd::rand::get_random_bytes(&mut rnd);
    let prefix: String = sandbox_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_ascii_lowercase();
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    format!("iii-{prefix}-{suffix}")
}

register_provider!(Daytona);
