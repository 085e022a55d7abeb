//! `iii:sandbox/provider-plugin@0.2.0` (`wit/sandbox.wit`): get, set-timeout,
//! pause/resume, exec output written as it is produced into the host's `exec-output`
//! resource, exec stdin, create sizing/network, and preview headers on exposed ports.

use super::{tidy, Descriptor, PluginFailure};
use crate::contract::shapes::{Capability, ExecOutput, ExposedPort, PluginReply, Request, SandboxInfo, SandboxState};
use crate::policy::CredentialSpec;
use crate::runtime::output::OutputStream;
use crate::runtime::store::StoreState;
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower, Resource};
use wasmtime::Store;

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

/// The provider interface's exports, found once per plugin. bindgen's `instantiate`
/// looks up and type-checks all fifteen on every instantiation; a call uses one, so
/// [`invoke`] fetches only that one; [`check_exports`] runs the full check once, at load.
pub struct Exports {
    describe: ComponentExportIndex,
    create: ComponentExportIndex,
    exec: ComponentExportIndex,
    stop: ComponentExportIndex,
    list_sandboxes: ComponentExportIndex,
    get: ComponentExportIndex,
    set_timeout: ComponentExportIndex,
    pause: ComponentExportIndex,
    resume: ComponentExportIndex,
    snapshot: ComponentExportIndex,
    branch: ComponentExportIndex,
    expose_port: ComponentExportIndex,
    fs_read: ComponentExportIndex,
    fs_write: ComponentExportIndex,
}

impl Exports {
    pub fn new(pre: &ProviderPluginPre<StoreState>) -> wasmtime::Result<Self> {
        const PROVIDER: &str = "iii:sandbox/provider@0.2.0";
        let component = pre.instance_pre().component();
        let provider =
            component.get_export_index(None, PROVIDER).ok_or_else(|| wasmtime::format_err!("no exported instance named `{PROVIDER}`"))?;
        let export = |name: &str| {
            component
                .get_export_index(Some(&provider), name)
                .ok_or_else(|| wasmtime::format_err!("instance export `{PROVIDER}` does not have export `{name}`"))
        };
        Ok(Exports {
            describe: export("describe")?,
            create: export("create")?,
            exec: export("exec")?,
            stop: export("stop")?,
            list_sandboxes: export("list-sandboxes")?,
            get: export("get")?,
            set_timeout: export("set-timeout")?,
            pause: export("pause")?,
            resume: export("resume")?,
            snapshot: export("snapshot")?,
            branch: export("branch")?,
            expose_port: export("expose-port")?,
            fs_read: export("fs-read")?,
            fs_write: export("fs-write")?,
        })
    }
}

/// What every export returns: the plugin's answer or its typed failure.
type Answer<T> = (Result<T, types::Error>,);

/// Calls one export of `instance` (type-checked against `P` and `R` here, for this
/// export only).
async fn call<P, R>(store: &mut Store<StoreState>, instance: &Instance, export: &ComponentExportIndex, params: P) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower + Send + Sync,
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    instance.get_typed_func::<P, R>(&mut *store, export)?.call_async(&mut *store, params).await
}

/// Instantiates `pre` and calls the export for `req`. Outer error: a trap; inner
/// error: the plugin's failure.
pub async fn invoke(
    pre: &ProviderPluginPre<StoreState>,
    exports: &Exports,
    store: &mut Store<StoreState>,
    req: &Request,
    idle_default: u64,
) -> wasmtime::Result<Result<PluginReply, PluginFailure>> {
    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
    let i = &instance;
    let r = match req {
        Request::Create(c) => {
            let req = types::CreateRequest {
                image: c.image.clone(),
                idle_timeout_secs: c.idle_timeout_secs.unwrap_or(idle_default),
                env: c.env.clone(),
                metadata: c.metadata.clone(),
                name: c.name.clone(),
                cpus: c.cpus,
                memory_mb: c.memory_mb,
                network: c.network.unwrap_or(true),
            };
            let (r,): Answer<types::Sandbox> = call(store, i, &exports.create, (&req,)).await?;
            r.map(|s| PluginReply::Created(sandbox(s)))
        }
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
            let (r,): Answer<types::ExecResult> = call(store, i, &exports.exec, (&req, sink)).await?;
            match r {
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
        Request::Stop { sandbox_id } => {
            let (r,): Answer<()> = call(store, i, &exports.stop, (sandbox_id.as_str(),)).await?;
            r.map(|()| PluginReply::Stopped)
        }
        Request::List => {
            let (r,): Answer<Vec<types::Sandbox>> = call(store, i, &exports.list_sandboxes, ()).await?;
            r.map(|l| PluginReply::Listed(l.into_iter().map(sandbox).collect()))
        }
        Request::Get { sandbox_id } => {
            let (r,): Answer<types::Sandbox> = call(store, i, &exports.get, (sandbox_id.as_str(),)).await?;
            r.map(|s| PluginReply::Got(sandbox(s)))
        }
        Request::SetTimeout { sandbox_id, timeout_secs } => {
            let (r,): Answer<()> = call(store, i, &exports.set_timeout, (sandbox_id.as_str(), *timeout_secs)).await?;
            r.map(|()| PluginReply::TimeoutSet)
        }
        Request::Pause { sandbox_id } => {
            let (r,): Answer<()> = call(store, i, &exports.pause, (sandbox_id.as_str(),)).await?;
            r.map(|()| PluginReply::Paused)
        }
        Request::Resume { sandbox_id, timeout_secs } => {
            let (r,): Answer<()> = call(store, i, &exports.resume, (sandbox_id.as_str(), *timeout_secs)).await?;
            r.map(|()| PluginReply::Resumed)
        }
        Request::Snapshot { sandbox_id } => {
            let (r,): Answer<String> = call(store, i, &exports.snapshot, (sandbox_id.as_str(),)).await?;
            r.map(PluginReply::Snapshotted)
        }
        Request::Branch { sandbox_id, count } => {
            let (r,): Answer<Vec<String>> = call(store, i, &exports.branch, (sandbox_id.as_str(), *count)).await?;
            r.map(PluginReply::Branched)
        }
        Request::ExposePort { sandbox_id, port } => {
            let (r,): Answer<types::ExposedPort> = call(store, i, &exports.expose_port, (sandbox_id.as_str(), *port)).await?;
            r.map(|e| PluginReply::Exposed(ExposedPort { url: e.url, headers: e.headers }))
        }
        Request::FsRead { sandbox_id, path } => {
            let (r,): Answer<Vec<u8>> = call(store, i, &exports.fs_read, (sandbox_id.as_str(), path.as_str())).await?;
            r.map(PluginReply::Read)
        }
        Request::FsWrite(w) => {
            let req = types::FsWriteRequest {
                sandbox_id: w.sandbox_id.clone(),
                path: w.path.clone(),
                bytes: w.bytes.clone(),
                mode: w.mode,
                parents: w.parents,
            };
            let (r,): Answer<()> = call(store, i, &exports.fs_write, (&req,)).await?;
            r.map(|()| PluginReply::Written)
        }
    };
    Ok(r.map_err(PluginFailure::from))
}

/// Instantiates `pre` and calls `describe()`.
pub async fn describe(
    pre: &ProviderPluginPre<StoreState>,
    exports: &Exports,
    store: &mut Store<StoreState>,
) -> wasmtime::Result<Descriptor> {
    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
    let (d,): (types::Descriptor,) = call(store, &instance, &exports.describe, ()).await?;
    Ok(d.into())
}

/// Instantiates `pre` and checks every export's type against the world's, naming the
/// first that differs (the types are those [`invoke`] calls them with).
pub async fn check_exports(pre: &ProviderPluginPre<StoreState>, e: &Exports, store: &mut Store<StoreState>) -> wasmtime::Result<()> {
    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
    let (s, i) = (&mut *store, &instance);
    check::<(), (types::Descriptor,)>(s, i, &e.describe, "describe")?;
    check::<(&types::CreateRequest,), Answer<types::Sandbox>>(s, i, &e.create, "create")?;
    check::<(&types::ExecRequest, Resource<ExecOutputHandle>), Answer<types::ExecResult>>(s, i, &e.exec, "exec")?;
    check::<(&str,), Answer<()>>(s, i, &e.stop, "stop")?;
    check::<(), Answer<Vec<types::Sandbox>>>(s, i, &e.list_sandboxes, "list-sandboxes")?;
    check::<(&str,), Answer<types::Sandbox>>(s, i, &e.get, "get")?;
    check::<(&str, u64), Answer<()>>(s, i, &e.set_timeout, "set-timeout")?;
    check::<(&str,), Answer<()>>(s, i, &e.pause, "pause")?;
    check::<(&str, Option<u64>), Answer<()>>(s, i, &e.resume, "resume")?;
    check::<(&str,), Answer<String>>(s, i, &e.snapshot, "snapshot")?;
    check::<(&str, u32), Answer<Vec<String>>>(s, i, &e.branch, "branch")?;
    check::<(&str, u16), Answer<types::ExposedPort>>(s, i, &e.expose_port, "expose-port")?;
    check::<(&str, &str), Answer<Vec<u8>>>(s, i, &e.fs_read, "fs-read")?;
    check::<(&types::FsWriteRequest,), Answer<()>>(s, i, &e.fs_write, "fs-write")
}

fn check<P, R>(store: &mut Store<StoreState>, instance: &Instance, export: &ComponentExportIndex, name: &str) -> wasmtime::Result<()>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    instance.get_typed_func::<P, R>(store, export).map(drop).map_err(|e| e.context(format!("export `{name}`")))
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
