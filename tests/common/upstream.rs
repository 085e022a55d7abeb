#![allow(async_fn_in_trait)]
//! What a provider's mock upstream supplies so the shared conformance cases can run
//! against it. A new provider implements [`Upstream`] for its simulator and adds one
//! `conformance_suite!` line; the cases themselves never mention a provider.

use provider_sims::{Recorded, Sim};
use sandbox_host::Leaf;

/// The fake credential every suite uses; the suites assert it never leaks.
pub const SECRET: &str = "sk-conformance-7d1e5c0b9a";

/// `Authorization: Bearer SECRET`, as Morph, Daytona and Vercel take their key.
pub fn assert_bearer(req: &Recorded) {
    let expected = format!("Bearer {SECRET}");
    assert_eq!(req.header("authorization"), Some(expected.as_str()), "{} must carry the injected bearer token", req.route());
}

pub trait Upstream: Sized + Send + Sync + 'static {
    /// Plugin name, e.g. `e2b`.
    const PROVIDER: &'static str;
    /// An image/template/snapshot the mock accepts.
    const IMAGE: &'static str;
    /// Environment variable the policy maps the credential from.
    const KEY_ENV: &'static str;

    /// Starts the mock accepting [`SECRET`].
    async fn start() -> Self;

    /// The component under test: `plugins/<PROVIDER>.wasm` unless a suite runs an older
    /// build (e.g. the 0.1.0 e2b built from `tests/fixtures/compat-e2b-v0-1-0`).
    fn wasm() -> std::path::PathBuf {
        crate::plugin_wasm(Self::PROVIDER)
    }

    /// Every simulator this mock runs (control plane first). Requests and faults go here.
    fn sims(&self) -> Vec<&Sim>;

    /// The control-plane simulator (faults for create/stop/list are injected here).
    fn api(&self) -> &Sim {
        self.sims()[0]
    }

    /// Policy TOML pointing the plugin at the mock (api_base, allowed_hosts, [config]);
    /// the suite appends its own top-level keys before it.
    fn policy(&self) -> String;

    /// Checks that `req` carries the credential exactly as the provider expects
    /// (e.g. `x-api-key: SECRET` or `authorization: Bearer SECRET`).
    fn assert_authenticated(req: &Recorded);

    /// True for requests that must carry the credential (control plane), false for those
    /// that must not (e.g. E2B's in-sandbox envd).
    fn needs_credential(req: &Recorded) -> bool;

    /// Method and path prefix of the upstream call that implements `leaf` for `sandbox_id`
    /// (for injecting a failure into exactly that call).
    fn route(leaf: Leaf, sandbox_id: &str) -> (&'static str, String);

    /// Live (running) sandboxes upstream.
    fn live(&self) -> usize;

    /// Creates a sandbox upstream without going through the host; returns its id.
    async fn create_out_of_band(&self) -> String;

    /// A directory that exists in every sandbox, for the exec `cwd` case.
    fn existing_dir() -> &'static str {
        "/"
    }

    /// A path inside the sandbox that fs::write may create.
    fn writable_path() -> &'static str {
        "conformance/data.bin"
    }

    /// All requests received by every simulator.
    fn requests(&self) -> Vec<Recorded> {
        self.sims().iter().flat_map(|s| s.requests()).collect()
    }

    fn clear(&self) {
        for s in self.sims() {
            s.clear_requests();
        }
    }
}
