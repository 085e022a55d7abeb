//! The S-codes of the caller contract and the one error type every call returns.
//!
//! Host faults (S70x) and caller/upstream errors are different variants of [`Code`];
//! nothing is ever told apart by matching on message text. `Code::as_str` is the stable
//! label used for iii error codes and metric labels.

use std::fmt;

/// Every error code a caller can receive (see docs/contract.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// S100: image not in the provider's allowlist.
    ImageNotAllowed,
    /// S400: the provider's concurrency cap is reached.
    CapReached,
    /// S404: the provider does not support this leaf.
    Unsupported,
    /// S410: the sandbox (or file) does not exist upstream.
    NotFound,
    /// S422: the caller's input is invalid; never retry.
    BadInput,
    /// S500: rate limited, upstream or by the host.
    RateLimited,
    /// S501: upstream quota exhausted.
    QuotaExhausted,
    /// S502: provider unavailable.
    Unavailable,
    /// S503: credential invalid or missing.
    AuthInvalid,
    /// S600: no such provider is loaded.
    UnknownProvider,
    /// S700: the plugin trapped.
    PluginTrapped,
    /// S701: the plugin exceeded its CPU or wall-clock budget.
    PluginTimeout,
    /// S702: the plugin exceeded its memory limit.
    PluginMemory,
    /// S703: the plugin tried to reach a host outside its egress allowlist.
    EgressDenied,
    /// S704: the plugin exceeded its upstream request budget: more requests in one call
    /// than `limits.max_upstream_requests_per_call` (`…_per_list` for a `list`, which
    /// follows pages), or more in flight at once (across
    /// its calls) than `limits.max_concurrent_upstream_requests`. A plugin fault (exit
    /// status 5): the plugin, not the caller or the upstream, fanned out.
    UpstreamBudget,
}

impl Code {
    /// All codes, in table order.
    pub const ALL: [Code; 15] = [
        Code::ImageNotAllowed,
        Code::CapReached,
        Code::Unsupported,
        Code::NotFound,
        Code::BadInput,
        Code::RateLimited,
        Code::QuotaExhausted,
        Code::Unavailable,
        Code::AuthInvalid,
        Code::UnknownProvider,
        Code::PluginTrapped,
        Code::PluginTimeout,
        Code::PluginMemory,
        Code::EgressDenied,
        Code::UpstreamBudget,
    ];

    /// The wire form, e.g. `"S422"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ImageNotAllowed => "S100",
            Code::CapReached => "S400",
            Code::Unsupported => "S404",
            Code::NotFound => "S410",
            Code::BadInput => "S422",
            Code::RateLimited => "S500",
            Code::QuotaExhausted => "S501",
            Code::Unavailable => "S502",
            Code::AuthInvalid => "S503",
            Code::UnknownProvider => "S600",
            Code::PluginTrapped => "S700",
            Code::PluginTimeout => "S701",
            Code::PluginMemory => "S702",
            Code::EgressDenied => "S703",
            Code::UpstreamBudget => "S704",
        }
    }

    /// Parses the wire form back (used by clients and tests).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Exit status of `sandbox-host call` for this code: one meaning per status.
    /// 2 = caller error, 3 = policy refusal, 4 = upstream error, 5 = plugin fault.
    pub fn exit_status(self) -> u8 {
        match self {
            Code::BadInput | Code::Unsupported | Code::UnknownProvider | Code::NotFound => 2,
            Code::ImageNotAllowed | Code::CapReached => 3,
            Code::RateLimited | Code::QuotaExhausted | Code::Unavailable | Code::AuthInvalid => 4,
            Code::PluginTrapped | Code::PluginTimeout | Code::PluginMemory | Code::EgressDenied | Code::UpstreamBudget => 5,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed contract call: a code and a sentence saying what failed and what to do.
/// `Display` gives the contract's message form, `[Sxxx] sentence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: Code,
    pub sentence: String,
    /// Retry hint for S500, when known.
    pub retry_after_ms: Option<u64>,
}

impl CallError {
    pub fn new(code: Code, sentence: impl Into<String>) -> Self {
        CallError { code, sentence: sentence.into(), retry_after_ms: None }
    }

    pub fn with_retry_after(mut self, ms: Option<u64>) -> Self {
        self.retry_after_ms = ms;
        self
    }

    pub fn bad_input(sentence: impl Into<String>) -> Self {
        CallError::new(Code::BadInput, sentence)
    }

    /// The contract's message: `[Sxxx] sentence`.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.sentence)
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("S999"), None);
    }

    #[test]
    fn an_exceeded_upstream_budget_is_a_plugin_fault() {
        assert_eq!(Code::UpstreamBudget.as_str(), "S704");
        assert_eq!(Code::UpstreamBudget.exit_status(), Code::PluginTrapped.exit_status());
    }

    #[test]
    fn message_is_bracketed_code_then_sentence() {
        let e = CallError::new(Code::CapReached, "provider `e2b` is at its cap of 2 sandboxes.");
        assert_eq!(e.message(), "[S400] provider `e2b` is at its cap of 2 sandboxes.");
    }
}
