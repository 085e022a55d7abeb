//! {{name}}: a sandbox provider plugin for `sandbox-host`, on the guest kit (`provider-kit`).
//!
//! Each leaf translates one contract call into {{name}}'s HTTP API and back; the host does
//! the rest (validation, caps, idempotent stop, reconciliation, credentials, egress,
//! budgets: see wit/README.md). A leaf not written yet answers `unsupported` (S404 to the
//! caller) naming what is missing — never a made-up success.
//!
//! An upstream call with the kit (the host injects the credential; the plugin never
//! sees it):
//!
//! ```ignore
//! let reply = Call::post(format!("{}/sandboxes", api_base())).json(&body).send().await?.ok()?;
//! let created: serde_json::Value = reply.json()?;
//! ```
//!
//! Map upstream failures with `provider_kit::errors::from_status` (404 → not-found, which
//! stop counts as success; 401/403 → auth-invalid; 429 → rate-limited; …).

use provider_kit::errors::error;
use provider_kit::{
    register_provider, CreateRequest, CredentialSpec, Descriptor, Error, ErrorKind, ExecRequest, ExecResult, Output, Provider, Sandbox,
};

/// The upstream's host: the default egress allowlist and where the credential goes.
const API_HOST: &str = "api.{{name}}.example";

/// `api_base` from the policy file (`[config] api-base`), else the real upstream.
pub fn api_base() -> String {
    provider_kit::config_or("api-base", &format!("https://{API_HOST}"))
}

/// The answer of a leaf whose upstream call is not written yet.
fn not_implemented(leaf: &str) -> Error {
    error(ErrorKind::Unsupported, format!("{{name}}: `{leaf}` is not implemented yet (src/lib.rs); its upstream at {} is not called", api_base()))
}

pub struct {{type}};

impl Provider for {{type}} {
    fn describe() -> Descriptor {
        Descriptor {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // Add each optional leaf as you write it (Capability::Get, Capability::Fs, …):
            // the host registers exactly these and never calls the others.
            capabilities: vec![],
            default_egress_hosts: vec![API_HOST.into()],
            // The operator grants it in {{name}}.toml: [credentials] api-key = "{{env}}".
            credentials: vec![CredentialSpec {
                name: "api-key".into(),
                header: "authorization".into(),
                value_prefix: "Bearer ".into(),
                hosts: vec![API_HOST.into()],
            }],
        }
    }

    async fn create(_req: CreateRequest) -> Result<Sandbox, Error> {
        Err(not_implemented("create"))
    }

    /// Write the command's output into `output` as it arrives (`output.stdout(..)`), or
    /// at once with `output.finished(stdout, stderr, exit_code, timed_out)`.
    async fn exec(_req: ExecRequest, _output: Output<'_>) -> Result<ExecResult, Error> {
        Err(not_implemented("exec"))
    }

    /// Upstream 404/409 should be `not-found`: the host counts both as success.
    async fn stop(_sandbox_id: String) -> Result<(), Error> {
        Err(not_implemented("stop"))
    }

    async fn list() -> Result<Vec<Sandbox>, Error> {
        Err(not_implemented("list"))
    }
}

register_provider!({{type}});
