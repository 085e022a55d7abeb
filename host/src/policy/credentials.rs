//! Credential injection: the host, not the plugin, puts secrets on requests.
//!
//! A plugin declares in `describe()` which credentials it needs (name, header, prefix);
//! only the operator grants one, by mapping its name to an environment variable under
//! `[credentials]` in `plugins/<name>.toml`. The host never derives a variable from
//! names a plugin controls: a drop-in `aws.wasm` declaring `secret-access-key` must not
//! be handed `AWS_SECRET_ACCESS_KEY`. The value is read and checked at load and set on
//! outgoing requests whose real destination matches the credential's hosts. The header
//! is forbidden to the guest, so it can neither set nor spoof it, and the value never
//! crosses into guest memory: no env var, no config key, no import.

use super::allowed_hosts::AllowList;
use http::{HeaderName, HeaderValue};

/// Where a credential's value stands after load. Anything but `Ready` refuses every
/// call of the plugin with S503 before it runs, so a request never goes out without
/// the credential it needs.
#[derive(Clone)]
pub enum CredentialValue {
    /// The operator mapped no environment variable to it.
    NotGranted,
    /// The mapped variable is unset or empty.
    Unset,
    /// The mapped variable's value cannot be sent as a header value (why).
    Invalid(&'static str),
    /// The header value to send (marked sensitive: `Debug` never shows it), and the
    /// secret alone (without the plugin's prefix), which the host removes from
    /// upstream responses (`redact.rs`).
    Ready(HeaderValue, Box<[u8]>),
}

impl std::fmt::Debug for CredentialValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.status())
    }
}

impl CredentialValue {
    /// Reads `value` (from the operator's variable) with `prefix` into a header value.
    pub fn from_env(prefix: &str, value: Option<String>) -> Self {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return CredentialValue::Unset;
        };
        if value.ends_with(['\n', '\r']) {
            return CredentialValue::Invalid("it ends with a line break (a secret read from a file keeps its newline)");
        }
        match HeaderValue::from_str(&format!("{prefix}{value}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                CredentialValue::Ready(v, value.into_bytes().into_boxed_slice())
            }
            Err(_) => CredentialValue::Invalid("it holds control characters or non-ASCII bytes, which no HTTP header may carry"),
        }
    }

    /// One word for `sandbox-host plugins`.
    pub fn status(&self) -> &'static str {
        match self {
            CredentialValue::NotGranted => "not granted",
            CredentialValue::Unset => "NOT SET",
            CredentialValue::Invalid(_) => "INVALID",
            CredentialValue::Ready(..) => "set",
        }
    }
}

/// One resolved credential of a plugin.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    /// Environment variable the operator mapped it to (`None`: not granted).
    pub env_var: Option<String>,
    pub header: HeaderName,
    /// Destinations that receive it, over https.
    pub hosts: AllowList,
    /// Destinations that receive it over plain http: only an operator's `http://` api_base,
    /// and only when it is among the credential's hosts.
    pub plain_http_hosts: AllowList,
    pub value: CredentialValue,
}

impl Credential {
    /// The header value to send, when the credential is ready.
    pub fn header_value(&self) -> Option<&HeaderValue> {
        match &self.value {
            CredentialValue::Ready(v, _) => Some(v),
            _ => None,
        }
    }

    /// The secret itself, without the prefix, when the credential is ready.
    pub fn secret(&self) -> Option<&[u8]> {
        match &self.value {
            CredentialValue::Ready(_, secret) => Some(secret),
            _ => None,
        }
    }

    /// The S503 sentence when the credential cannot be sent; `None` when it is ready.
    pub fn unusable_sentence(&self, plugin: &str) -> Option<String> {
        let name = &self.name;
        let var = self.env_var.as_deref().unwrap_or_default();
        Some(match &self.value {
            CredentialValue::Ready(..) => return None,
            CredentialValue::NotGranted => format!(
                "provider `{plugin}` needs credential `{name}`, which the operator has not granted; grant it by mapping it to an \
                 environment variable in plugins/{plugin}.toml (`[credentials]` then `{name} = \"VARIABLE\"`) and reload the host. \
                 The host never picks a variable from names a plugin declares."
            ),
            CredentialValue::Unset => format!(
                "provider `{plugin}` needs credential `{name}` but environment variable {var} is not set; \
                 export it (mapped in plugins/{plugin}.toml under [credentials]) and restart or reload the host."
            ),
            CredentialValue::Invalid(why) => format!(
                "provider `{plugin}` needs credential `{name}`, but environment variable {var} cannot be sent as an HTTP header: \
                 {why}; fix its value and restart or reload the host."
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(value: CredentialValue) -> Credential {
        Credential {
            name: "api-key".into(),
            env_var: Some("E2B_API_KEY".into()),
            header: HeaderName::from_static("x-api-key"),
            hosts: AllowList::default(),
            plain_http_hosts: AllowList::default(),
            value,
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = credential(CredentialValue::from_env("Bearer ", Some("sk-very-secret".into())));
        assert!(!format!("{c:?}").contains("sk-very-secret"), "{c:?}");
        assert!(c.header_value().unwrap().is_sensitive());
        assert_eq!(c.header_value().unwrap().as_bytes(), b"Bearer sk-very-secret");
        assert_eq!(c.secret(), Some(b"sk-very-secret".as_slice()), "the secret is kept without its prefix");
        assert_eq!(c.unusable_sentence("e2b"), None);
    }

    #[test]
    fn a_credential_value_with_a_trailing_newline_is_refused_at_load() {
        let c = credential(CredentialValue::from_env("", Some("e2b_demo_key\n".into())));
        assert_eq!(c.value.status(), "INVALID");
        assert!(c.header_value().is_none());
        let why = c.unusable_sentence("e2b").unwrap();
        assert!(why.contains("E2B_API_KEY") && why.contains("line break"), "{why}");
        let c = credential(CredentialValue::from_env("", Some("k\u{7f}ey".into())));
        assert!(c.unusable_sentence("e2b").unwrap().contains("control characters"));
    }

    #[test]
    fn unset_and_ungranted_credentials_say_what_to_do() {
        let unset = credential(CredentialValue::from_env("", Some(String::new())));
        assert!(unset.unusable_sentence("e2b").unwrap().contains("E2B_API_KEY is not set"));
        let ungranted = Credential { env_var: None, value: CredentialValue::NotGranted, ..unset };
        let why = ungranted.unusable_sentence("aws").unwrap();
        assert!(why.contains("not granted") && why.contains("plugins/aws.toml"), "{why}");
    }
}
