//! Credential injection: the host, not the plugin, puts secrets on requests.
//!
//! A plugin declares in `describe()` which credentials it needs (name, header, prefix);
//! the operator maps each name to an environment variable in `plugins/<name>.toml`.
//! The host reads the variable at load and sets the header on outgoing requests whose
//! real destination matches the credential's hosts (default: the `api_base` authority).
//! The header is forbidden to the guest, so it can neither set nor spoof it, and the
//! value never crosses into guest memory: no env var, no config key, no import.

use super::allowed_hosts::AllowList;
use http::{HeaderName, HeaderValue};
use std::fmt;

/// A secret value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One resolved credential of a plugin.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    /// Environment variable the value comes from.
    pub env_var: String,
    pub header: HeaderName,
    pub value_prefix: String,
    /// Destinations that receive it, over https.
    pub hosts: AllowList,
    /// Destinations that receive it over plain http: only an operator's `http://` api_base.
    pub plain_http_hosts: AllowList,
    /// `None` when the variable was unset at load: calls then fail with S503.
    pub value: Option<Secret>,
}

impl Credential {
    /// The header value to send, if the secret is present and well-formed.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let secret = self.value.as_ref()?;
        let mut v = HeaderValue::from_str(&format!("{}{}", self.value_prefix, secret.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Sentence for S503 when the value is missing.
    pub fn missing_sentence(&self, plugin: &str) -> String {
        format!(
            "provider `{plugin}` needs credential `{}` but environment variable {} is not set; \
             export it (mapped in plugins/{plugin}.toml under [credentials]) and restart or reload the host.",
            self.name, self.env_var
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let c = Credential {
            name: "api-key".into(),
            env_var: "E2B_API_KEY".into(),
            header: HeaderName::from_static("x-api-key"),
            value_prefix: String::new(),
            hosts: AllowList::default(),
            plain_http_hosts: AllowList::default(),
            value: Some(s),
        };
        assert!(!format!("{c:?}").contains("sk-very-secret"));
        assert!(c.header_value().unwrap().is_sensitive());
    }
}
