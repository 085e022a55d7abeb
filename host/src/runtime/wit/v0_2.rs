//! `iii:sandbox/provider-plugin@0.2.0` (`wit/sandbox.wit`): get, set-timeout,
//! pause/resume, exec output written as it is produced into the host's `exec-output`
//! resource, exec stdin, create sizing/network, and preview headers on exposed ports.

use super::{tidy, Descriptor, PluginFailure};
use crate::contract::shapes::{Capability, ExecOutput, ExposedPort, PluginReply, Request, SandboxInfo, SandboxState};
use crate::policy::CredentialSpec;
use crate::runtime::output::OutputStream;
use crate::runtime::store::StoreState;
use wasmtime::component::Resource;

/// The host side of the `exec-output` resource: a handle only; the bytes go to the
/// call's collector in [`StoreState`], so nothing outlives the call's Store.
pub struct ExecOutputHandle;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider-plugin",
        exports: { default: async },
        imports: { "iii:sandbox/upstream.send": async },
        with: { "iii:sandbox/output.exec-output": super::ExecOutputHandle },
    });
}

use bindings::iii::sandbox::{config, log, output, types, upstream};
pub use bindings::{ProviderPlugin, ProviderPluginPre};

/// The world version this module binds.
pub const WORLD: &str = "iii:sandbox/provider-plugin@0.2.0";

impl From<types::Capability> for Capability {
    fn from(c: types::Capability) -> Self {
        match c {
            types::Capability::Snapshot => Capability::Snapshot,
            types::Capability::Branch => Capability::Branch,
            types::Capability::ExposePort => Capability::ExposePort,
            types::Capability::Fs => Capability::Fs,
            types::Capability::Get => Capability::Get,
            types::Capability::SetTimeout => Capability::SetTimeout,
            types::Capability::Pause => Capability::Pause,
            types::Capability::ExecStdin => Capability::ExecStdin,
            types::Capability::NetworkOff => Capability::NetworkOff,
            types::Capability::Sizing => Capability::Sizing,
        }
    }
}

impl From<types::Descriptor> for Descriptor {
    fn from(d: types::Descriptor) -> Self {
        Descriptor {
            name: d.name,
            version: d.version,
            capabilities: tidy(d.capabilities.into_iter().map(Capability::from).collect()),
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
    let state = match s.state {
        types::SandboxState::Running => SandboxState::Running,
        types::SandboxState::Paused => SandboxState::Paused,
    };
    SandboxInfo { sandbox_id: s.sandbox_id, image: s.image, started_at: s.started_at, state, ends_at: s.ends_at, metadata: s.metadata }
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
                    name: c.name.clone(),
                    cpus: c.cpus,
                    memory_mb: c.memory_mb,
                    network: c.network.unwrap_or(true),
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
                stdin: e.stdin.clone(),
            };
            let sink = Resource::<ExecOutputHandle>::new_borrow(0);
            match p.call_exec(&mut *store, &req, sink).await? {
                Ok(r) => {
                    let (stdout, stderr, truncated) = store.data_mut().output.finish();
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
        Request::Get { sandbox_id } => p.call_get(&mut *store, sandbox_id).await?.map(|s| PluginReply::Got(sandbox(s))),
        Request::SetTimeout { sandbox_id, timeout_secs } => {
            p.call_set_timeout(&mut *store, sandbox_id, *timeout_secs).await?.map(|()| PluginReply::TimeoutSet)
        }
        Request::Pause { sandbox_id } => p.call_pause(&mut *store, sandbox_id).await?.map(|()| PluginReply::Paused),
        Request::Resume { sandbox_id, timeout_secs } => {
            p.call_resume(&mut *store, sandbox_id, *timeout_secs).await?.map(|()| PluginReply::Resumed)
        }
        Request::Snapshot { sandbox_id } => p.call_snapshot(&mut *store, sandbox_id).await?.map(PluginReply::Snapshotted),
        Request::Branch { sandbox_id, count } => p.call_branch(&mut *store, sandbox_id, *count).await?.map(PluginReply::Branched),
        Request::ExposePort { sandbox_id, port } => p
            .call_expose_port(&mut *store, sandbox_id, *port)
            .await?
            .map(|e| PluginReply::Exposed(ExposedPort { url: e.url, headers: e.headers })),
        Request::FsRead { sandbox_id, path } => p.call_fs_read(&mut *store, sandbox_id, path).await?.map(PluginReply::Read),
        Request::FsWrite(w) => p
            .call_fs_write(
                &mut *store,
                &types::FsWriteRequest {
                    sandbox_id: w.sandbox_id.clone(),
                    path: w.path.clone(),
                    bytes: w.bytes.clone(),
                    mode: w.mode,
                    parents: w.parents,
                },
            )
            .await?
            .map(|()| PluginReply::Written),
    };
    Ok(r.map_err(PluginFailure::from))
}

/// Calls `describe()`.
pub async fn describe(plugin: &ProviderPlugin, store: &mut wasmtime::Store<StoreState>) -> wasmtime::Result<Descriptor> {
    Ok(plugin.iii_sandbox_provider().call_describe(store).await?.into())
}

/// Adds the world's imports (`log`, `config`, `output`) to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    ProviderPlugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(linker, |s| s)
}

shared_imports!(types, log, config);

impl upstream::Host for StoreState {
    /// Through the same egress hook as wasi:http (`runtime/whole_body.rs`).
    async fn send(&mut self, req: upstream::Request) -> Result<upstream::Response, upstream::Failure> {
        use crate::runtime::whole_body::{self, WholeFailure, WholeRequest};
        let req = WholeRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req.timeout_ms.map(std::time::Duration::from_millis),
        };
        match whole_body::send(self.egress(), req).await {
            Ok(r) => Ok(upstream::Response { status: r.status, headers: r.headers, body: r.body }),
            Err(WholeFailure::Refused(why)) => Err(upstream::Failure::Refused(why)),
            Err(WholeFailure::TimedOut(why)) => Err(upstream::Failure::TimedOut(why)),
            Err(WholeFailure::Transport(why)) => Err(upstream::Failure::Transport(why)),
        }
    }
}

impl output::Host for StoreState {}

impl output::HostExecOutput for StoreState {
    fn write(&mut self, _sink: Resource<ExecOutputHandle>, channel: output::Channel, bytes: Vec<u8>) -> bool {
        let stream = match channel {
            output::Channel::Stdout => OutputStream::Stdout,
            output::Channel::Stderr => OutputStream::Stderr,
        };
        self.output.write(stream, &bytes)
    }

    /// The handle owns nothing: the collector lives in the Store.
    fn drop(&mut self, _sink: Resource<ExecOutputHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
