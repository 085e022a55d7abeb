//! Guest-side kit for sandbox provider plugins (`iii:sandbox/provider-plugin@0.2.0`).
//!
//! A provider implements [`Provider`] — the lifecycle floor is required, optional leaves
//! default to "unsupported" — and calls [`register_provider!`]. The kit owns the WIT
//! bindings, runs each async export on wstd's executor, and provides the upstream HTTP
//! helpers every provider needs ([`upstream`]): timeouts, status → error-kind mapping,
//! `Retry-After`, JSON and multipart bodies. Providers keep only their REST shapes.

#![allow(async_fn_in_trait)]

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "provider-plugin",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "provider_kit::bindings",
    });
}

pub mod errors;
pub mod upstream;

pub use bindings::iii::sandbox::types::{
    Capability, CreateRequest, CredentialSpec, Descriptor, Error, ErrorKind, ExecRequest, ExecResult, ExposedPort, FsWriteRequest, Sandbox,
    SandboxState,
};
pub use bindings::iii::sandbox::{config, log};
pub use wstd;

/// Where a running command's output goes: the host keeps it (bounded per stream) and
/// forwards each chunk at once to a caller that streams. Write chunks as they arrive.
#[derive(Clone, Copy)]
pub struct Output<'a>(&'a bindings::iii::sandbox::output::ExecOutput);

impl<'a> Output<'a> {
    pub fn new(sink: &'a bindings::iii::sandbox::output::ExecOutput) -> Self {
        Output(sink)
    }

    /// Appends to stdout; false once the host's budget for it is spent (later bytes are
    /// only counted, so the plugin may stop copying them).
    pub fn stdout(&self, bytes: &[u8]) -> bool {
        bytes.is_empty() || self.0.write(bindings::iii::sandbox::output::Channel::Stdout, bytes)
    }

    pub fn stderr(&self, bytes: &[u8]) -> bool {
        bytes.is_empty() || self.0.write(bindings::iii::sandbox::output::Channel::Stderr, bytes)
    }

    /// For upstreams that answer only at the end: writes both streams whole.
    pub fn finished(&self, stdout: &str, stderr: &str, exit_code: i32, timed_out: bool) -> ExecResult {
        self.stdout(stdout.as_bytes());
        self.stderr(stderr.as_bytes());
        ExecResult { exit_code, timed_out }
    }
}

/// A running sandbox with no end time or metadata.
pub fn running(sandbox_id: String, image: String, started_at: Option<String>) -> Sandbox {
    Sandbox { sandbox_id, image, started_at, state: SandboxState::Running, ends_at: None, metadata: Vec::new() }
}

/// The provider contract as a plugin author sees it. Every method is a static async fn;
/// the host creates a fresh instance per call, so there is no state to keep.
pub trait Provider {
    fn describe() -> Descriptor;
    async fn create(req: CreateRequest) -> Result<Sandbox, Error>;
    async fn exec(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error>;
    async fn stop(sandbox_id: String) -> Result<(), Error>;
    async fn list() -> Result<Vec<Sandbox>, Error>;

    async fn get(_sandbox_id: String) -> Result<Sandbox, Error> {
        Err(errors::unsupported("get"))
    }
    async fn set_timeout(_sandbox_id: String, _timeout_secs: u64) -> Result<(), Error> {
        Err(errors::unsupported("set_timeout"))
    }
    async fn pause(_sandbox_id: String) -> Result<(), Error> {
        Err(errors::unsupported("pause"))
    }
    async fn resume(_sandbox_id: String, _timeout_secs: Option<u64>) -> Result<(), Error> {
        Err(errors::unsupported("resume"))
    }

    async fn snapshot(_sandbox_id: String) -> Result<String, Error> {
        Err(errors::unsupported("snapshot"))
    }
    async fn branch(_sandbox_id: String, _count: u32) -> Result<Vec<String>, Error> {
        Err(errors::unsupported("branch"))
    }
    async fn expose_port(_sandbox_id: String, _port: u16) -> Result<ExposedPort, Error> {
        Err(errors::unsupported("expose_port"))
    }
    async fn fs_read(_sandbox_id: String, _path: String) -> Result<Vec<u8>, Error> {
        Err(errors::unsupported("fs::read"))
    }
    async fn fs_write(_req: FsWriteRequest) -> Result<(), Error> {
        Err(errors::unsupported("fs::write"))
    }
}

/// A non-secret config value from the plugin's policy file, or `default`.
pub fn config_or(key: &str, default: &str) -> String {
    config::get(key).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Exports `$provider` (a type implementing [`Provider`]) as the component's provider interface.
#[macro_export]
macro_rules! register_provider {
    ($provider:ty) => {
        struct __ProviderExport;

        impl $crate::bindings::exports::iii::sandbox::provider::Guest for __ProviderExport {
            fn describe() -> $crate::Descriptor {
                <$provider as $crate::Provider>::describe()
            }
            fn create(req: $crate::CreateRequest) -> Result<$crate::Sandbox, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::create(req))
            }
            fn exec(
                req: $crate::ExecRequest,
                output: &$crate::bindings::iii::sandbox::output::ExecOutput,
            ) -> Result<$crate::ExecResult, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::exec(req, $crate::Output::new(output)))
            }
            fn stop(sandbox_id: String) -> Result<(), $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::stop(sandbox_id))
            }
            fn list_sandboxes() -> Result<Vec<$crate::Sandbox>, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::list())
            }
            fn get(sandbox_id: String) -> Result<$crate::Sandbox, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::get(sandbox_id))
            }
            fn set_timeout(sandbox_id: String, timeout_secs: u64) -> Result<(), $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::set_timeout(sandbox_id, timeout_secs))
            }
            fn pause(sandbox_id: String) -> Result<(), $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::pause(sandbox_id))
            }
            fn resume(sandbox_id: String, timeout_secs: Option<u64>) -> Result<(), $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::resume(sandbox_id, timeout_secs))
            }
            fn snapshot(sandbox_id: String) -> Result<String, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::snapshot(sandbox_id))
            }
            fn branch(sandbox_id: String, count: u32) -> Result<Vec<String>, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::branch(sandbox_id, count))
            }
            fn expose_port(sandbox_id: String, port: u16) -> Result<$crate::ExposedPort, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::expose_port(sandbox_id, port))
            }
            fn fs_read(sandbox_id: String, path: String) -> Result<Vec<u8>, $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::fs_read(sandbox_id, path))
            }
            fn fs_write(req: $crate::FsWriteRequest) -> Result<(), $crate::Error> {
                $crate::wstd::runtime::block_on(<$provider as $crate::Provider>::fs_write(req))
            }
        }

        $crate::bindings::export_world!(__ProviderExport with_types_in $crate::bindings);
    };
}
