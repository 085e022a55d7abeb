//! `iii:sandbox/provider-plugin@0.1.0`, frozen in `wit/since_v0.1.0/`: the nine leaves
//! of the first contract. Its exec returns the whole output at the end; the host feeds
//! it through the same output collector as a 0.2.0 plugin's chunks, so truncation and
//! streaming callers behave the same (one chunk per stream, at the end).

use super::{tidy, Descriptor, ErrorKind, PluginFailure};
use crate::contract::shapes::{Capability, ExecOutput, ExposedPort, PluginReply, Request, SandboxInfo};
use crate::policy::CredentialSpec;
use crate::runtime::output::OutputStream;
use crate::runtime::store::StoreState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "provider-plugin",
        exports: { default: async },
    });
}

use bindings::iii::sandbox::{config, log, types};
pub use bindings::{ProviderPlugin, ProviderPluginPre};

/// The world version this module binds.
pub const WORLD: &str = "iii:sandbox/provider-plugin@0.1.0";

/// The capabilities 0.1.0 has words for.
pub fn knows(cap: Capability) -> bool {
    matches!(cap, Capability::Snapshot | Capability::Branch | Capability::ExposePort | Capability::Fs)
}

impl From<types::Descriptor> for Descriptor {
    fn from(d: types::Descriptor) -> Self {
        let capabilities = d
            .capabilities
            .into_iter()
            .map(|c| match c {
                types::Capability::Snapshot => Capability::Snapshot,
                types::Capability::Branch => Capability::Branch,
                types::Capability::ExposePort => Capability::ExposePort,
                types::Capability::Fs => Capability::Fs,
            })
            .collect();
        Descriptor {
            name: d.name,
            version: d.version,
            capabilities: tidy(capabilities),
            default_egress_hosts: d.default_egress_hosts,
            credentials: d
                .credentials
                .into_iter()
                .map(|c| CredentialSpec { name: c.name, header: c.header, value_prefix: c.value_prefix, hosts: c.hosts })
                .collect(),
        }
    }
}

fn sandbox(s: types::Sandbox) -> SandboxInfo {
    SandboxInfo::running(s.sandbox_id, s.image, s.started_at)
}

/// Calls the export for `req`. Outer error: a trap; inner error: the plugin's failure.
pub async fn invoke(
    plugin: &ProviderPlugin,
    store: &mut wasmtime::Store<StoreState>,
    req: &Request,
    idle_default: u64,
) -> wasmtime::Result<Result<PluginReply, PluginFailure>> {
    let p = plugin.iii_sandbox_provider();
    let r = match req {
        Request::Create(c) => p
            .call_create(
                &mut *store,
                &types::CreateRequest {
                    image: c.image.clone(),
                    idle_timeout_secs: c.idle_timeout_secs.unwrap_or(idle_default),
                    env: c.env.clone(),
                    metadata: c.metadata.clone(),
                },
            )
            .await?
            .map(|s| PluginReply::Created(sandbox(s))),
        Request::Exec(e) => {
            let started = std::time::Instant::now();
            let req = types::ExecRequest {
                sandbox_id: e.sandbox_id.clone(),
                cmd: e.cmd.clone(),
                args: e.args.clone(),
                env: e.env.clone(),
                cwd: e.cwd.clone(),
                timeout_ms: e.timeout_ms,
            };
            match p.call_exec(&mut *store, &req).await? {
                Ok(r) => {
                    let out = &mut store.data_mut().output;
                    out.write(OutputStream::Stdout, r.stdout.as_bytes());
                    out.write(OutputStream::Stderr, r.stderr.as_bytes());
                    let (stdout, stderr, truncated) = out.finish();
                    let duration_ms = started.elapsed().as_millis() as u64;
                    Ok(PluginReply::Executed(ExecOutput {
                        stdout,
                        stderr,
                        exit_code: r.exit_code,
                        timed_out: r.timed_out,
                        truncated,
                        duration_ms,
                    }))
                }
                Err(e) => Err(e),
            }
        }
        Request::Stop { sandbox_id } => p.call_stop(&mut *store, sandbox_id).await?.map(|()| PluginReply::Stopped),
        Request::List => p.call_list_sandboxes(&mut *store).await?.map(|l| PluginReply::Listed(l.into_iter().map(sandbox).collect())),
        Request::Snapshot { sandbox_id } => p.call_snapshot(&mut *store, sandbox_id).await?.map(PluginReply::Snapshotted),
        Request::Branch { sandbox_id, count } => p.call_branch(&mut *store, sandbox_id, *count).await?.map(PluginReply::Branched),
        Request::ExposePort { sandbox_id, port } => p
            .call_expose_port(&mut *store, sandbox_id, *port)
            .await?
            .map(|url| PluginReply::Exposed(ExposedPort { url, headers: Vec::new() })),
        Request::FsRead { sandbox_id, path } => p.call_fs_read(&mut *store, sandbox_id, path).await?.map(PluginReply::Read),
        Request::FsWrite(w) => p
            .call_fs_write(
                &mut *store,
                &types::FsWriteRequest { sandbox_id: w.sandbox_id.clone(), path: w.path.clone(), bytes: w.bytes.clone(), mode: w.mode },
            )
            .await?
            .map(|()| PluginReply::Written),
        // Gated by capability before any call: 0.1.0 has no words for these.
        Request::Get { .. } | Request::SetTimeout { .. } | Request::Pause { .. } | Request::Resume { .. } => {
            return Ok(Err(PluginFailure {
                kind: ErrorKind::Unsupported,
                message: format!("{WORLD} has no `{}` leaf", req.leaf()),
                upstream_status: None,
                retry_after_ms: None,
            }))
        }
    };
    Ok(r.map_err(PluginFailure::from))
}

/// Calls `describe()`.
pub async fn describe(plugin: &ProviderPlugin, store: &mut wasmtime::Store<StoreState>) -> wasmtime::Result<Descriptor> {
    Ok(plugin.iii_sandbox_provider().call_describe(store).await?.into())
}

/// Adds the world's imports (`log`, `config`) to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    ProviderPlugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(linker, |s| s)
}

shared_imports!(types, log, config);
