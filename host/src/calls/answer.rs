//! Turning a plugin's outcome into the caller's answer: its failure mapped to an S-code
//! with advice, wrong kinds of answers, timestamps, budgets. Shared by every leaf family.

use crate::contract::codes::{CallError, Code};
use crate::contract::shapes::{Leaf, PluginReply, Request};
use crate::plugin::LoadedPlugin;
use crate::policy::plugin_text::{bounded, bounded_debug, MAX_ERROR_MESSAGE_BYTES};
use crate::runtime::invoke;
use crate::runtime::wit::{ErrorKind, PluginFailure};
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

/// S503 when a credential the plugin needs cannot be sent (not granted, unset,
/// invalid): refused before the plugin runs, so no request goes out without it.
pub(crate) fn credential_refusal(plugin: &LoadedPlugin) -> Option<CallError> {
    let why = plugin.policy.egress.credentials.iter().find_map(|c| c.unusable_sentence(&plugin.name))?;
    Some(CallError::new(Code::AuthInvalid, why))
}

/// Wall-clock budget: the plugin's call timeout, stretched to cover an exec's own deadline.
pub(crate) fn wall_budget(plugin: &LoadedPlugin, req: &Request) -> Duration {
    let base = plugin.policy.limits.call_timeout;
    match req {
        Request::Exec(e) => match e.timeout_ms {
            Some(ms) => base.max(Duration::from_millis(ms.saturating_add(crate::policy::defaults::EXEC_GRACE_MS))),
            None => base,
        },
        _ => base,
    }
}

/// The plugin's reply, or its failure mapped to an S-code.
pub(crate) fn answer(plugin: &LoadedPlugin, leaf: Leaf, outcome: invoke::Outcome) -> Result<PluginReply, CallError> {
    match outcome {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(f)) => Err(plugin_error(plugin, leaf, f)),
        Err(host) => Err(host),
    }
}

/// Maps a plugin-reported failure to its S-code, with what to do about it.
pub fn plugin_error(plugin: &LoadedPlugin, leaf: Leaf, f: PluginFailure) -> CallError {
    let name = &*plugin.name;
    let (code, advice) = match f.kind {
        ErrorKind::BadInput => (Code::BadInput, "fix the input; retrying it unchanged will fail again.".to_string()),
        ErrorKind::NotFound => (Code::NotFound, "the sandbox does not exist (stopped or expired); create a new one.".to_string()),
        ErrorKind::RateLimited => (
            Code::RateLimited,
            match f.retry_after_ms {
                Some(ms) => format!("the provider is rate limiting; retry after {ms} ms."),
                None => "the provider is rate limiting; retry later with backoff.".to_string(),
            },
        ),
        ErrorKind::QuotaExhausted => {
            (Code::QuotaExhausted, "the provider account's quota is exhausted; free capacity or raise the plan's limits.".to_string())
        }
        ErrorKind::Unavailable => (Code::Unavailable, "the provider is unavailable; retry later.".to_string()),
        ErrorKind::AuthInvalid => {
            let vars: Vec<&str> = plugin.policy.egress.credentials.iter().filter_map(|c| c.env_var.as_deref()).collect();
            (
                Code::AuthInvalid,
                format!(
                    "the provider rejected the credential; check {}.",
                    if vars.is_empty() { "the plugin's credentials".to_string() } else { vars.join(", ") }
                ),
            )
        }
        ErrorKind::Unsupported => return unsupported(name, leaf),
    };
    let message = f.message.trim().trim_end_matches('.');
    CallError::new(code, format!("provider `{name}` {leaf} failed: {message}; {advice}")).with_retry_after(f.retry_after_ms)
}

pub(crate) fn unsupported(name: &str, leaf: Leaf) -> CallError {
    CallError::new(
        Code::Unsupported,
        format!(
            "provider `{name}` does not support `{leaf}`; check its capabilities (sandbox-host plugins) or use a provider that has it."
        ),
    )
}

/// S404 for a field the caller set that this provider cannot honour.
pub(crate) fn unsupported_field(name: &str, leaf: Leaf, field: &str, capability: &str) -> CallError {
    CallError::new(
        Code::Unsupported,
        format!(
            "provider `{name}` cannot honour `{field}` on `{leaf}` (it lacks the `{capability}` capability); \
             leave the field out or use a provider that has it."
        ),
    )
}

pub(crate) fn mismatch(name: &str, leaf: Leaf, got: &PluginReply) -> CallError {
    // The wrong answer may be megabytes (an exec's output): quote its start only.
    let got = bounded_debug(got, MAX_ERROR_MESSAGE_BYTES);
    CallError::new(
        Code::PluginTrapped,
        format!("plugin `{name}` answered `{leaf}` with the wrong kind of result ({got}); report this to the plugin's author."),
    )
}

pub(crate) fn bad_time(name: &str, leaf: Leaf, id: &str, s: &str) -> CallError {
    let s = bounded(s, 80);
    CallError::new(
        Code::Unavailable,
        format!(
            "provider `{name}` {leaf} returned time {s:?} for sandbox {id:?}, which is not RFC 3339; the upstream answer was unusable."
        ),
    )
}

pub(crate) fn unusable_id(name: &str, leaf: Leaf, id: &str) -> CallError {
    CallError::new(
        Code::Unavailable,
        format!(
            "provider `{name}` {leaf} returned the unusable sandbox id {:?}; the upstream answer was unusable.",
            id.chars().take(80).collect::<String>()
        ),
    )
}

/// S422 unless `secs` is within 1 s … `limits.max_timeout_secs`.
pub(crate) fn check_lifetime(plugin: &LoadedPlugin, leaf: Leaf, secs: u64) -> Result<(), CallError> {
    let max = plugin.policy.limits.max_timeout_secs;
    if secs > max {
        let name = &*plugin.name;
        return Err(CallError::bad_input(format!(
            "{leaf}: `timeout_secs` {secs} exceeds provider `{name}`'s limit of {max} s (limits.max_timeout_secs in plugins/{name}.toml)."
        )));
    }
    Ok(())
}

/// Normalises an RFC 3339 timestamp to UTC with a `Z` suffix.
pub fn rfc3339(s: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `secs` from now, RFC 3339.
pub fn rfc3339_in(secs: u64) -> String {
    let later = Utc::now() + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000).min(i64::MAX / 1000));
    later.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_normalised_to_utc() {
        assert_eq!(super::rfc3339("2025-01-02T03:04:05+02:00").as_deref(), Some("2025-01-02T01:04:05Z"));
        assert_eq!(super::rfc3339("2025-01-02T03:04:05.5Z").as_deref(), Some("2025-01-02T03:04:05.500Z"));
        assert_eq!(super::rfc3339("yesterday"), None);
    }
}
