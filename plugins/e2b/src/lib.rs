//! E2B provider plugin: the contract's leaves translated onto E2B's control-plane REST
//! API (`api.e2b.app`: [`api`], [`lifecycle`]) and the in-sandbox `envd` daemon
//! (processes over Connect RPC, streamed: [`process`], [`connect`]; files over HTTP:
//! [`envd`]). The API key is injected by the host on control-plane requests only; envd
//! calls carry the sandbox's own `X-Access-Token` (sandboxes are created `secure`).
//!
//! Every optional leaf E2B has is offered: snapshot (a template, `POST …/snapshots`), branch (`fork`), expose_port, fs,
//! get, set_timeout, pause/resume, exec stdin and network off. Sizing is not: E2B's
//! `NewSandbox` has no CPU or memory fields (they come from the template).
//!
//! Config keys (non-secret, from `[config]` in `plugins/e2b.toml`):
//! `api-base` (default `https://api.e2b.app`), `domain` (default `e2b.app`, used when
//! the API reports none), `envd-url` (send every envd call to this base instead of
//! `https://49983-{id}.{domain}`; routing then relies on the `E2b-Sandbox-Id` /
//! `E2b-Sandbox-Port` headers, as E2B's own shared `sandbox.{domain}` host does).

mod api;
mod connect;
mod envd;
mod lifecycle;
mod process;

use provider_kit::errors::bad_input;
use provider_kit::{
    register_provider, Capability, CreateRequest, CredentialSpec, Descriptor, Error, ExecRequest, ExecResult, ExposedPort, FsWriteRequest,
    Output, Provider, Sandbox,
};

pub struct E2b;

impl Provider for E2b {
    fn describe() -> Descriptor {
        Descriptor {
            name: "e2b".into(),
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
            ],
            default_egress_hosts: vec!["api.e2b.app".into(), "*.e2b.app".into()],
            credentials: vec![CredentialSpec {
                name: "api-key".into(),
                header: "x-api-key".into(),
                value_prefix: String::new(),
                hosts: vec!["api.e2b.app".into()],
            }],
        }
    }

    async fn create(req: CreateRequest) -> Result<Sandbox, Error> {
        if req.image.is_empty() {
            return Err(bad_input("E2B needs a template id or alias in `image` (e.g. \"base\")"));
        }
        let created = api::create(&req).await?;
        // E2B's create answer has no times; its detail has the start and the absolute
        // end the host needs to keep an idle lifetime moving.
        match api::detail(&created.sandbox_id).await {
            Ok(detail) => Ok(Sandbox { image: req.image, ..detail.into_sandbox() }),
            Err(_) => Ok(provider_kit::running(created.sandbox_id, req.image, None)),
        }
    }

    async fn exec(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
        let target = envd::Target::resolve(&req.sandbox_id).await?;
        process::run(&target, &req, output).await
    }

    async fn stop(sandbox_id: String) -> Result<(), Error> {
        api::kill(&sandbox_id).await
    }

    async fn list() -> Result<Vec<Sandbox>, Error> {
        api::list().await
    }

    async fn get(sandbox_id: String) -> Result<Sandbox, Error> {
        Ok(api::detail(&sandbox_id).await?.into_sandbox())
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
        lifecycle::snapshot(&sandbox_id).await
    }

    async fn branch(sandbox_id: String, count: u32) -> Result<Vec<String>, Error> {
        lifecycle::fork(&sandbox_id, count).await
    }

    async fn expose_port(sandbox_id: String, port: u16) -> Result<ExposedPort, Error> {
        let detail = api::detail(&sandbox_id).await?;
        Ok(ExposedPort { url: format!("https://{port}-{sandbox_id}.{}", detail.domain()), headers: vec![] })
    }

    async fn fs_read(sandbox_id: String, path: String) -> Result<Vec<u8>, Error> {
        let target = envd::Target::resolve(&sandbox_id).await?;
        envd::read_file(&target, &path).await
    }

    async fn fs_write(req: FsWriteRequest) -> Result<(), Error> {
        let target = envd::Target::resolve(&req.sandbox_id).await?;
        envd::write_file(&target, &req.path, &req.bytes).await?;
        if let Some(mode) = req.mode {
            process::chmod(&target, &req.path, mode).await?;
        }
        Ok(())
    }
}

register_provider!(E2b);
