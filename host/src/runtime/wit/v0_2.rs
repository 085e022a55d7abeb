//! `iii:sandbox/provider-plugin@0.2.0` (`wit/sandbox.wit`): get, set-timeout,
//! pause/resume, exec output written as it is produced into the host's `exec-output`
//! resource, exec stdin, create sizing/network, and preview headers on exposed ports.

use super::{tidy, Descriptor, PluginFailure};
use crate::contract::shapes::{Capability, ExecOutput, ExposedPort, PluginReply, Request, SandboxInfo, SandboxState};
use crate::policy::CredentialSpec;
use crate::runtime::output::OutputStream;
use crate::runtime::store::StoreState;
use wasmtime::component::{ComponentExportIndex, Instance, Resource, TypedFunc};
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

/// What every export returns: the plugin's answer or its typed failure.
type Answer<T> = (Result<T, types::Error>,);

/// The provider interface's exports, each one's name and type said once. bindgen's
/// `instantiate` looks up and type-checks all fifteen on every instantiation; a call uses
/// one, so [`invoke`] fetches (and checks) only that one, by an index found at load, and
/// [`check_exports`] checks them all once, at load.
macro_rules! provider_exports {
    ($($field:ident $name:literal: $params:ty => $results:ty;)*) => {
        pub struct Exports {
            $($field: ComponentExportIndex,)*
        }

        impl Exports {
            pub fn new(pre: &ProviderPluginPre<StoreState>) -> wasmtime::Result<Self> {
                const PROVIDER: &str = "iii:sandbox/provider@0.2.0";
                let component = pre.instance_pre().component();
                let provider = component
                    .get_export_index(None, PROVIDER)
                    .ok_or_else(|| wasmtime::format_err!("no exported instance named `{PROVIDER}`"))?;
                let export = |name: &str| {
                    component
                        .get_export_index(Some(&provider), name)
                        .ok_or_else(|| wasmtime::format_err!("instance export `{PROVIDER}` does not have export `{name}`"))
                };
                Ok(Exports { $($field: export($name)?,)* })
            }

            $(
                /// This export of `instance`, type-checked against the world's type (`'a` is
                /// its borrowed parameters' lifetime, unused by those without any).
                #[allow(clippy::extra_unused_lifetimes)]
                fn $field<'a>(&self, store: &mut Store<StoreState>, instance: &Instance) -> wasmtime::Result<TypedFunc<$params, $results>> {
                    instance.get_typed_func(store, &self.$field).map_err(|e| e.context(concat!("export `", $name, "`")))
                }
            )*

            /// Every export's type, in the world's order; the first that differs is named.
            fn check_all(&self, store: &mut Store<StoreState>, instance: &Instance) -> wasmtime::Result<()> {
                $(self.$field(&mut *store, instance)?;)*
                Ok(())
            }
        }
    };
}

provider_exports! {
    describe "describe": () => (types::Descriptor,);
    create "create": (&'a types::CreateRequest,) => Answer<types::Sandbox>;
    exec "exec": (&'a types::ExecRequest, Resource<ExecOutputHandle>) => Answer<types::ExecResult>;
    stop "stop": (&'a str,) => Answer<()>;
    list_sandboxes "list-sandboxes": () => Answer<Vec<types::Sandbox>>;
    get "get": (&'a str,) => Answer<types::Sandbox>;
    set_timeout "set-timeout": (&'a str, u64) => Answer<()>;
    pause "pause": (&'a str,) => Answer<()>;
    resume "resume": (&'a str, Option<u64>) => Answer<()>;
    snapshot "snapshot": (&'a str,) => Answer<String>;
    branch "branch": (&'a str, u32) => Answer<Vec<String>>;
    expose_port "expose-port": (&'a str, u16) => Answer<types::ExposedPort>;
    fs_read "fs-read": (&'a str, &'a str) => Answer<Vec<u8>>;
    fs_write "fs-write": (&'a types::FsWriteRequest,) => Answer<()>;
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
            let (r,) = exports.create(store, i)?.call_async(&mut *store, (&req,)).await?;
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
            let (r,) = exports.exec(store, i)?.call_async(&mut *store, (&req, sink)).await?;
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
            let (r,) = exports.stop(store, i)?.call_async(&mut *store, (sandbox_id.as_str(),)).await?;
            r.map(|()| PluginReply::Stopped)
        }
        Request::List => {
            let (r,) = exports.list_sandboxes(store, i)?.call_async(&mut *store, ()).await?;
            r.map(|l| PluginReply::Listed(l.into_iter().map(sandbox).collect()))
        }
        Request::Get { sandbox_id } => {
            let (r,) = exports.get(store, i)?.call_async(&mut *store, (sandbox_id.as_str(),)).await?;
            r.map(|s| PluginReply::Got(sandbox(s)))
        }
        Request::SetTimeout { sandbox_id, timeout_secs } => {
            let (r,) = exports.set_timeout(store, i)?.call_async(&mut *store, (sandbox_id.as_str(), *timeout_secs)).await?;
            r.map(|()| PluginReply::TimeoutSet)
        }
        Request::Pause { sandbox_id } => {
            let (r,) = exports.pause(store, i)?.call_async(&mut *store, (sandbox_id.as_str(),)).await?;
            r.map(|()| PluginReply::Paused)
        }
        Request::Resume { sandbox_id, timeout_secs } => {
            let (r,) = exports.resume(store, i)?.call_async(&mut *store, (sandbox_id.as_str(), *timeout_secs)).await?;
            r.map(|()| PluginReply::Resumed)
        }
        Request::Snapshot { sandbox_id } => {
            let (r,) = exports.snapshot(store, i)?.call_async(&mut *store, (sandbox_id.as_str(),)).await?;
            r.map(PluginReply::Snapshotted)
        }
        Request::Branch { sandbox_id, count } => {
            let (r,) = exports.branch(store, i)?.call_async(&mut *store, (sandbox_id.as_str(), *count)).await?;
            r.map(PluginReply::Branched)
        }
        Request::ExposePort { sandbox_id, port } => {
            let (r,) = exports.expose_port(store, i)?.call_async(&mut *store, (sandbox_id.as_str(), *port)).await?;
            r.map(|e| PluginReply::Exposed(ExposedPort { url: e.url, headers: e.headers }))
        }
        Request::FsRead { sandbox_id, path } => {
            let (r,) = exports.fs_read(store, i)?.call_async(&mut *store, (sandbox_id.as_str(), path.as_str())).await?;
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
            let (r,) = exports.fs_write(store, i)?.call_async(&mut *store, (&req,)).await?;
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
    let (d,) = exports.describe(store, &instance)?.call_async(&mut *store, ()).await?;
    Ok(d.into())
}

/// Instantiates `pre` and checks every export's type against the world's, naming the
/// first that differs.
pub async fn check_exports(pre: &ProviderPluginPre<StoreState>, exports: &Exports, store: &mut Store<StoreState>) -> wasmtime::Result<()> {
    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
    exports.check_all(store, &instance)
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
