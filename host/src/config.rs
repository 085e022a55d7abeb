//! Host-wide settings: defaults in one place, raw (flags / optional `sandbox-host.toml`)
//! resolved into [`HostConfig`] once.

use serde::Deserialize;
use std::path::PathBuf;

/// `sandbox-host.toml` as written (every key optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostConfig {
    pub plugins_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// Provider used by the router when a call names none.
    pub default_provider: Option<String>,
    /// The `sandbox::<leaf>` router on iii (off unless enabled): `router = true` or
    /// `[router] enabled = true`.
    pub router: Option<RawRouter>,
    #[serde(default)]
    pub http_triggers: Vec<HttpTrigger>,
    /// The E2B-compatible API (`e2b-api`, `serve --e2b-api`).
    pub e2b_api: Option<crate::e2b_api::config::RawE2bApi>,
}

/// `router = <bool>`, or a `[router]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawRouter {
    Enabled(bool),
    Table(RouterTable),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterTable {
    /// Register the bare `sandbox::<leaf>` ids no other worker owns (default false).
    pub enabled: Option<bool>,
}

impl RawRouter {
    pub fn enabled(&self) -> bool {
        match self {
            RawRouter::Enabled(on) => *on,
            RawRouter::Table(t) => t.enabled.unwrap_or(false),
        }
    }
}

/// Binds a function id to an iii `http` trigger.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// e.g. `sandbox::create` or `sandbox::provider::e2b::exec`.
    pub function: String,
    /// e.g. `sandbox/create`.
    pub path: String,
    /// `POST` by default.
    #[serde(default = "default_method")]
    pub method: String,
}

fn default_method() -> String {
    "POST".into()
}

impl HttpTrigger {
    /// The route as the engine keys it: method upper-cased, path without its leading `/`
    /// (engine `workers/rest_api/api_core.rs:625-637`), so `/a` and `a` are one route.
    pub fn route(&self) -> (String, String) {
        let path = if self.path == "/" { "/" } else { self.path.trim_start_matches('/') };
        (self.method.to_ascii_uppercase(), path.to_string())
    }
}

/// Refuses two bindings of one route (same method and path): the engine would keep one
/// of them. Several routes may bind one function; they share its adapter.
pub fn check_http_triggers(triggers: &[HttpTrigger]) -> Result<(), String> {
    for (i, t) in triggers.iter().enumerate() {
        if let Some((j, first)) = triggers[..i].iter().enumerate().find(|(_, f)| f.route() == t.route()) {
            let (method, path) = t.route();
            return Err(format!(
                "http_triggers #{} ({} {} -> {}) and #{} ({} {} -> {}) bind the same route {method} {path}; keep one of them",
                j + 1,
                first.method,
                first.path,
                first.function,
                i + 1,
                t.method,
                t.path,
                t.function
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub plugins_dir: PathBuf,
    /// `None` disables the precompiled cache.
    pub cache_dir: Option<PathBuf>,
    pub default_provider: Option<String>,
    /// Serve the bare `sandbox::<leaf>` router ids on iii (opt-in: the engine's own
    /// sandbox daemon registers some of them too).
    pub router: bool,
    pub http_triggers: Vec<HttpTrigger>,
    /// Record per-plugin metrics (on by default; benches measure the cost).
    pub metrics: bool,
    /// `[e2b_api]` as written; resolved (key variables read) when the API starts.
    pub e2b_api: crate::e2b_api::config::RawE2bApi,
    /// Load only these providers (`serve --providers e2b,morph`, to split providers
    /// across hosts); `None` loads every plugin in the folder.
    pub providers: Option<std::collections::BTreeSet<String>>,
}

impl HostConfig {
    /// Defaults: router off; the precompiled cache in the user's cache folder
    /// ([`crate::runtime::cache::default_dir`]), never under `plugins_dir`: whoever may
    /// drop a plugin must not be able to plant native code.
    pub fn new(plugins_dir: PathBuf) -> Self {
        let cache_dir = crate::runtime::cache::default_dir(|name| std::env::var_os(name));
        HostConfig {
            cache_dir,
            plugins_dir,
            default_provider: None,
            router: false,
            http_triggers: Vec::new(),
            metrics: true,
            e2b_api: Default::default(),
            providers: None,
        }
    }

    /// Whether provider `name` is to be loaded (see `providers`).
    pub fn serves(&self, name: &str) -> bool {
        self.providers.as_ref().is_none_or(|p| p.contains(name))
    }

    pub fn from_raw(raw: RawHostConfig) -> Self {
        let mut c = HostConfig::new(raw.plugins_dir.unwrap_or_else(|| PathBuf::from("plugins")));
        if let Some(dir) = raw.cache_dir {
            c.cache_dir = Some(dir);
        }
        c.default_provider = raw.default_provider;
        c.router = raw.router.is_some_and(|r| r.enabled());
        c.http_triggers = raw.http_triggers;
        c.e2b_api = raw.e2b_api.unwrap_or_default();
        c
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let raw: RawHostConfig = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        check_http_triggers(&raw.http_triggers).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Self::from_raw(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router_of(text: &str) -> Result<bool, String> {
        toml::from_str::<RawHostConfig>(text).map(|raw| HostConfig::from_raw(raw).router).map_err(|e| e.to_string())
    }

    #[test]
    fn the_router_is_off_unless_enabled_either_way() {
        assert_eq!(router_of(""), Ok(false));
        assert_eq!(router_of("router = true"), Ok(true));
        assert_eq!(router_of("router = false"), Ok(false));
        assert_eq!(router_of("[router]\nenabled = true"), Ok(true));
        assert_eq!(router_of("[router]"), Ok(false));
        assert!(router_of("[router]\nenable = true").is_err(), "a misspelt key is refused, not ignored");
    }
}
