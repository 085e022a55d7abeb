//! Morph Cloud provider plugin: the contract's leaves translated onto Morph's instance
//! API (`cloud.morph.so/api`, `Authorization: Bearer <MORPH_API_KEY>` injected by the
//! host). Morph is snapshot-first: a sandbox is an instance booted from a snapshot, so
//! `image` is a snapshot id and may not be empty.
//!
//! Capabilities: `snapshot`, `branch`, `expose_port`. No `fs`: Morph instances have no
//! file API (files move over SFTP on `ssh.cloud.morph.so`, which a plugin cannot
//! reach), so the fs leaves are not offered at all rather than emulated.
//!
//! Env, cwd and timeout on exec, and env on create, are applied by a shell script the
//! plugin builds (see [`shell`]): Morph's exec body is only `{"command": [..]}`.
//!
//! Config keys (non-secret, `[config]` in `plugins/morph.toml`): `api-base` (default
//! `https://cloud.morph.so/api`), `ready-timeout-secs` (default 90: how long create,
//! branch and snapshot wait for `ready`).

mod api;
mod shell;
mod time;

use provider_kit::errors::{bad_input, unavailable};
use provider_kit::wstd::time::Instant;
use provider_kit::{
    register_provider, Capability, CreateRequest, CredentialSpec, Descriptor, Error, ExecRequest, ExecResult, ExposedPort, Output,
    Provider, Sandbox,
};

pub struct Morph;

impl Provider for Morph {
    fn describe() -> Descriptor {
        Descriptor {
            name: "morph".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Snapshot, Capability::Branch, Capability::ExposePort],
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
        Ok(provider_kit::running(instance.id.clone(), image, instance.started_at()))
    }

    async fn exec(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
        let plan = shell::exec_plan(&req)?;
        let started = Instant::now();
        let out = api::exec(&req.sandbox_id, &plan.script, plan.deadline_ms).await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let done = shell::interpret(
            &plan,
            req.cwd.as_deref(),
            out.exit_code,
            out.stdout.unwrap_or_default(),
            out.stderr.unwrap_or_default(),
            elapsed_ms,
        )?;
        Ok(output.finished(&done.stdout, &done.stderr, done.exit_code, done.timed_out))
    }

    async fn stop(sandbox_id: String) -> Result<(), Error> {
        api::delete(&sandbox_id).await
    }

    async fn list() -> Result<Vec<Sandbox>, Error> {
        let instances = api::list().await?;
        Ok(instances
            .into_iter()
            .filter(api::Instance::is_live)
            .map(|i| provider_kit::running(i.id.clone(), i.snapshot_id().unwrap_or_default(), i.started_at()))
            .collect())
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
