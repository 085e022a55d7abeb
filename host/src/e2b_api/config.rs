//! `[e2b_api]` in the host config, as written, and the [`Settings`] it resolves to.
//!
//! ```toml
//! [e2b_api]
//! listen = "127.0.0.1:3000"
//! default_provider = "morph"           # for bare template names not in the table
//! [e2b_api.templates.base]
//! provider = "morph"
//! image = "snapshot_base"
//! [[e2b_api.keys]]
//! name = "alice"                       # who, in logs and ownership; never the secret
//! env = "E2B_API_KEY_ALICE"            # the variable holding the key
//! providers = ["morph", "daytona"]     # optional; default every provider
//! templates = ["base"]                 # optional; default every template
//! rate_per_minute = 600                # optional
//! max_sandboxes = 10                   # optional
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where the API listens unless told otherwise (E2B's own debug address).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawE2bApi {
    pub listen: Option<SocketAddr>,
    pub default_provider: Option<String>,
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateTarget>,
    #[serde(default)]
    pub keys: Vec<RawApiKey>,
}

/// What an E2B template name stands for.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateTarget {
    pub provider: String,
    pub image: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub name: String,
    pub env: String,
    pub providers: Option<Vec<String>>,
    pub templates: Option<Vec<String>>,
    pub rate_per_minute: Option<u32>,
    pub max_sandboxes: Option<usize>,
}

/// One caller of the API.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Identity in logs and in sandbox ownership; never the secret.
    pub name: String,
    /// What the SDK sends as `X-API-KEY`.
    pub secret: String,
    /// `None`: every loaded provider.
    pub providers: Option<Vec<String>>,
    /// `None`: any template.
    pub templates: Option<Vec<String>>,
    pub rate_per_minute: Option<u32>,
    pub max_sandboxes: Option<usize>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("providers", &self.providers)
            .field("templates", &self.templates)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("max_sandboxes", &self.max_sandboxes)
            .finish()
    }
}

/// The API's resolved settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub default_provider: Option<String>,
    pub templates: BTreeMap<String, TemplateTarget>,
    pub keys: Vec<ApiKey>,
    /// Serve without keys (loopback only; checked where the listener is chosen).
    pub insecure_no_auth: bool,
}

impl Settings {
    /// Reads each key's secret from its variable. A missing or empty one is an error
    /// naming the variable: a key that silently matched nothing would lock its owner out.
    pub fn resolve(raw: &RawE2bApi, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let mut keys = Vec::new();
        for k in &raw.keys {
            if k.name.is_empty() || !k.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                anyhow::bail!("[[e2b_api.keys]] name {:?} must be non-empty a-z, A-Z, 0-9, - or _", k.name);
            }
            if keys.iter().any(|o: &ApiKey| o.name == k.name) {
                anyhow::bail!("[[e2b_api.keys]] name {:?} is used twice; names own sandboxes and must be unique", k.name);
            }
            let secret = lookup(&k.env).filter(|s| !s.is_empty()).ok_or_else(|| {
                anyhow::anyhow!("[[e2b_api.keys]] {:?}: the variable {} holding its key is unset or empty", k.name, k.env)
            })?;
            if keys.iter().any(|o: &ApiKey| o.secret == secret) {
                anyhow::bail!("[[e2b_api.keys]] {:?}: its key is the same as another key's", k.name);
            }
            if k.rate_per_minute == Some(0) {
                anyhow::bail!("[[e2b_api.keys]] {:?}: rate_per_minute = 0 would refuse every call; omit it for no limit", k.name);
            }
            keys.push(ApiKey {
                name: k.name.clone(),
                secret,
                providers: k.providers.clone(),
                templates: k.templates.clone(),
                rate_per_minute: k.rate_per_minute,
                max_sandboxes: k.max_sandboxes,
            });
        }
        Ok(Settings { default_provider: raw.default_provider.clone(), templates: raw.templates.clone(), keys, insecure_no_auth: false })
    }
}

/// Refuses to serve without keys unless explicitly insecure and on loopback, where
/// only this machine's users can reach it.
pub fn check_auth(settings: &Settings, listen: SocketAddr) -> anyhow::Result<()> {
    if settings.insecure_no_auth {
        if !listen.ip().is_loopback() {
            anyhow::bail!("--e2b-api-insecure-no-auth is only allowed on a loopback address, not {listen}");
        }
        return Ok(());
    }
    if settings.keys.is_empty() {
        anyhow::bail!("the E2B API has no keys: add [[e2b_api.keys]] to the host config, or pass --e2b-api-insecure-no-auth on loopback");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawE2bApi {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn keys_come_from_their_variables_and_a_missing_one_is_named() {
        let r = raw("[[keys]]\nname = \"alice\"\nenv = \"KEY_A\"\nmax_sandboxes = 2\n");
        let s = Settings::resolve(&r, |v| (v == "KEY_A").then(|| "sek".to_string())).unwrap();
        assert_eq!((s.keys[0].name.as_str(), s.keys[0].secret.as_str(), s.keys[0].max_sandboxes), ("alice", "sek", Some(2)));
        let err = Settings::resolve(&r, |_| None).unwrap_err().to_string();
        assert!(err.contains("KEY_A") && err.contains("alice"), "{err}");
        assert!(!format!("{:?}", s.keys[0]).contains("sek"), "Debug never shows the secret");
    }

    #[test]
    fn templates_map_names_to_a_provider_and_image_and_unknown_keys_are_refused() {
        let r = raw("default_provider = \"e2b\"\n[templates.base]\nprovider = \"morph\"\nimage = \"snapshot_base\"\n");
        assert_eq!(r.templates["base"], TemplateTarget { provider: "morph".into(), image: "snapshot_base".into() });
        assert!(toml::from_str::<RawE2bApi>("[[keys]]\nname = \"a\"\nenv = \"E\"\nrate = 1\n").is_err());
    }

    #[test]
    fn no_keys_is_refused_unless_insecure_on_loopback() {
        let loopback: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let mut s = Settings::default();
        assert!(check_auth(&s, loopback).is_err());
        s.insecure_no_auth = true;
        assert!(check_auth(&s, loopback).is_ok());
        assert!(check_auth(&s, public).is_err());
    }

    #[test]
    fn two_keys_may_share_neither_a_name_nor_a_secret() {
        let same_name = raw("[[keys]]\nname = \"a\"\nenv = \"X\"\n[[keys]]\nname = \"a\"\nenv = \"Y\"\n");
        assert!(Settings::resolve(&same_name, |v| Some(v.to_string())).is_err());
        let same_secret = raw("[[keys]]\nname = \"a\"\nenv = \"X\"\n[[keys]]\nname = \"b\"\nenv = \"Y\"\n");
        assert!(Settings::resolve(&same_secret, |_| Some("k".into())).is_err());
    }
}
