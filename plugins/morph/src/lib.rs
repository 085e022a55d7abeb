//! Morph Cloud provider plugin: the contract's leaves translated onto Morph's instance
//! API (`cloud.morph.so/api`, `Authorization: Bearer <MORPH_API_KEY>` injected by the
//! host). Morph is snapshot-first: a sandbox is an instance booted from a snapshot, so
//! `image` is a snapshot id and may not be empty.
//!
//! Capabilities: `snapshot`, `branch`, `expose_port`, `get`, `set_timeout` (`POST
//! /instance/{id}/ttl`), `pause` (`POST /instance/{id}/pause` and `/resume`) and `fs`.
//! Morph instances have no file API, so `fs` moves base64 through exec, capped at 1 MiB
//! per file (see [`files`]). Not offered: `exec_stdin` (Morph's exec body has no input),
//! `network_off` (no Morph call has a network switch) and `sizing` (`POST /instance`
//! boots a snapshot at the snapshot's own size; `POST /snapshot/{id}/boot` takes `vcpus`
//! and `memory`, but the plugin does not boot that way).
//!
//! Env, cwd and timeout on exec, and env on create, are applied by a shell script the
//! plugin builds (see [`shell`]): Morph's exec body is only `{"command": [..]}`. Exec
//! output streams from `POST /instance/{id}/exec/sse` as it is printed (see [`exec`]).
//!
//! Config keys (non-secret, `[config]` in `plugins/morph.toml`): `api-base` (default
//! `https://cloud.morph.so/api`), `ready-timeout-secs` (default 90: how long create,
//! branch, snapshot, pause and resume wait for the state they asked for).

mod api;
mod exec;
mod files;
mod shell;
mod sse;
mod time;

use provider_kit::errors::{bad_input, unavailable};
use provider_kit::{
    register_provider, Capability, CreateRequest, CredentialSpec, Descriptor, Error, ExecRequest, ExecResult, ExposedPort, FsWriteRequest,
    Output, Provider, Sandbox,
};

pub struct Morph;

impl Provider for Morph {
    fn describe() -> Descriptor {
        Descriptor {
            name: "morph".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                Capability::Snapshot,
                Capability::Branch,
                Capability::ExposePort,
                Capability::Fs,
                Capability::Get,
                Capability::SetTimeout,
                Capability::Pause,
            ],
            default_egress_hosts: vec!["cloud.morph.so".into()],
            credentials: vec![CredentialSpec {
                name: "api-key".into(),
                header: "authorization".into(),
                value_prefix: "Bearer ".into(),
                hosts: vec!["cloud.morph.so".into()],
            }],
        }
    }

    async fn create(req: CreateRequest) -> Result<Sandbox, Error> {
        if req.image.trim().is_empty() {
            return Err(bad_input("Morph is snapshot-first: `image` must name the snapshot to boot (e.g. \"snapshot_abc123\")"));
        }
        // Checked before the instance exists, so a bad name costs no VM.
        let env_script = if req.env.is_empty() { None } else { Some(shell::env_file_script(&req.env)?) };
        let instance = api::start(&req).await?;
        if let Some(script) = env_script {
            if let Err(e) = store_env(&instance.id, &script).await {
                return Err(api::delete_all(vec![instance.id.clone()], e).await);
            }
        }
        let image = instance.snapshot_id().unwrap_or_else(|| req.image.clone());
        // With its TTL's absolute end, which the host keeps moving while the VM is used.
        Ok(Sandbox { image, ..instance.to_sandbox() })
    }

    async fn exec(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
        exec::run(req, output).await
    }

    async fn stop(sandbox_id: String) -> Result<(), Error> {
        api::delete(&sandbox_id).await
    }

    async fn list() -> Result<Vec<Sandbox>, Error> {
        let instances = api::list().await?;
        Ok(instances.iter().filter(|i| i.is_listed()).map(api::Instance::to_sandbox).collect())
    }

    async fn get(sandbox_id: String) -> Result<Sandbox, Error> {
        let instance = api::get(&sandbox_id).await?;
        if instance.status() == "error" {
            return Err(unavailable(format!("instance {sandbox_id} is in status \"error\" and will not run again; stop it")));
        }
        Ok(instance.to_sandbox())
    }

    async fn set_timeout(sandbox_id: String, timeout_secs: u64) -> Result<(), Error> {
        api::set_ttl(&sandbox_id, timeout_secs).await
    }

    async fn pause(sandbox_id: String) -> Result<(), Error> {
        api::pause(&sandbox_id).await
    }

    /// Morph restarts the TTL clock on resume by itself (the SDK's TTL test sees the
    /// expiry move later), so `None` leaves it at that; a lifetime is set after the resume.
    async fn resume(sandbox_id: String, timeout_secs: Option<u64>) -> Result<(), Error> {
        api::resume(&sandbox_id).await?;
        match timeout_secs {
            Some(secs) => api::set_ttl(&sandbox_id, secs).await,
            None => Ok(()),
        }
    }

    async fn snapshot(sandbox_id: String) -> Result<String, Error> {
        api::snapshot(&sandbox_id).await
    }

    async fn branch(sandbox_id: String, count: u32) -> Result<Vec<String>, Error> {
        api::branch(&sandbox_id, count).await
    }

    async fn expose_port(sandbox_id: String, port: u16) -> Result<ExposedPort, Error> {
        Ok(ExposedPort { url: api::expose(&sandbox_id, port).await?, headers: vec![] })
    }

    async fn fs_read(sandbox_id: String, path: String) -> Result<Vec<u8>, Error> {
        files::read(&sandbox_id, &path).await
    }

    async fn fs_write(req: FsWriteRequest) -> Result<(), Error> {
        let mut raw = [0u8; 8];
        provider_kit::wstd::rand::get_random_bytes(&mut raw);
        let tag: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        files::write(&req, &tag).await
    }
}

/// Writes create-time env to the instance's env file (one exec).
async fn store_env(id: &str, script: &str) -> Result<(), Error> {
    let out = api::exec(id, script, 30_000).await?;
    if out.exit_code != Some(0) {
        return Err(unavailable(format!(
            "instance {id} booted but storing its environment failed (exit {:?}): {}",
            out.exit_code,
            out.stderr.unwrap_or_default().trim()
        )));
    }
    Ok(())
}

register_provider!(Morph);
