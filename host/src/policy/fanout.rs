//! Upstream fan-out: how many requests one call may send, and how many of a plugin's
//! requests may be in flight at once across all its calls.
//!
//! Every request a plugin sends carries the operator's credential and costs the
//! upstream account; without a bound one `exec` can launch hundreds (the case of issue
//! 12). Fastly allows 32 backend requests per invocation; we default to the same:
//! `limits.max_upstream_requests_per_call = 32`, and
//! `limits.max_concurrent_upstream_requests = 16` per plugin (no provider leaf needs
//! more than a handful at once: a create, then a few polls).
//!
//! `list` is the one leaf whose request count grows with the account: it follows the
//! upstream's pages (E2B's and Daytona's hold 100 rows), so it has its own budget,
//! `limits.max_upstream_requests_per_list = 128` — 10 000 sandboxes and more. Under the
//! per-call budget a team with 3 200 sandboxes could not be listed, so neither could the
//! cap be reconciled (measured by `sandbox-bench scale`).
//!
//! Beyond either bound the request is refused in the egress hook before any connection
//! is made, and the whole call ends with S704 whatever the plugin then answers: wstd
//! reports the refusal as a transport error that a plugin may swallow, so the refusal
//! is recorded per call (like an egress denial) and read back by the host. Once a call
//! has been refused, every further request of that call is refused as well: the call
//! is failing anyway, and its requests would only spend the credential.
//!
//! An admitted request holds an [`UpstreamSlot`] until its response body has been read
//! to the end or dropped; the slot is returned exactly once, when it drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A plugin's fan-out bounds and its requests in flight (shared by all its calls).
#[derive(Debug)]
pub struct UpstreamFanout {
    pub per_call: u64,
    /// The per-call budget of a `list` (see the module text).
    pub per_list: u64,
    pub concurrent: usize,
    in_flight: Arc<AtomicUsize>,
}

/// Which bound a refused request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutRefusal {
    /// The call already sent `limit` requests.
    PerCall { limit: u64 },
    /// The `list` call already sent `limit` requests.
    PerList { limit: u64 },
    /// The plugin already had `limit` requests in flight.
    Concurrent { limit: usize },
}

impl FanoutRefusal {
    /// The policy key that sets the bound that was hit.
    pub fn key(self) -> &'static str {
        match self {
            FanoutRefusal::PerCall { .. } => "limits.max_upstream_requests_per_call",
            FanoutRefusal::PerList { .. } => "limits.max_upstream_requests_per_list",
            FanoutRefusal::Concurrent { .. } => "limits.max_concurrent_upstream_requests",
        }
    }

    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FanoutRefusal::PerCall { .. } => "per_call",
            FanoutRefusal::PerList { .. } => "per_list",
            FanoutRefusal::Concurrent { .. } => "concurrent",
        }
    }

    /// What happened, for the caller's S704 sentence (after "plugin `x` …").
    pub fn what(self) -> String {
        match self {
            FanoutRefusal::PerCall { limit } => format!("tried to send more than {limit} upstream requests in one call"),
            FanoutRefusal::PerList { limit } => format!("tried to send more than {limit} upstream requests in one list"),
            FanoutRefusal::Concurrent { limit } => {
                format!("tried to have more than {limit} upstream requests in flight at once (across its calls)")
            }
        }
    }
}

/// One admitted request's place among the plugin's requests in flight.
#[derive(Debug)]
pub struct UpstreamSlot(Arc<AtomicUsize>);

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UpstreamFanout {
    pub fn new(per_call: u64, per_list: u64, concurrent: usize) -> Self {
        UpstreamFanout { per_call, per_list, concurrent, in_flight: Arc::default() }
    }

    /// Requests of this plugin in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Admits one more request of a call (a `list` when `listing`) that has sent
    /// `sent_this_call` so far, or says which bound refuses it. Never waits: a plugin
    /// that waits on itself could deadlock.
    pub fn admit(&self, sent_this_call: u64, listing: bool) -> Result<UpstreamSlot, FanoutRefusal> {
        match listing {
            false if sent_this_call >= self.per_call => return Err(FanoutRefusal::PerCall { limit: self.per_call }),
            true if sent_this_call >= self.per_list => return Err(FanoutRefusal::PerList { limit: self.per_list }),
            _ => {}
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = UpstreamSlot(self.in_flight.clone());
        if before >= self.concurrent {
            return Err(FanoutRefusal::Concurrent { limit: self.concurrent });
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_may_send_its_budget_and_not_one_more() {
        let f = UpstreamFanout::new(3, 5, 100);
        for sent in 0..3 {
            drop(f.admit(sent, false).unwrap());
        }
        assert_eq!(f.admit(3, false).unwrap_err(), FanoutRefusal::PerCall { limit: 3 });
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn a_list_follows_pages_up_to_its_own_budget() {
        let f = UpstreamFanout::new(3, 5, 100);
        for sent in 0..5 {
            drop(f.admit(sent, true).unwrap());
        }
        let refused = f.admit(5, true).unwrap_err();
        assert_eq!(refused, FanoutRefusal::PerList { limit: 5 });
        assert_eq!(refused.key(), "limits.max_upstream_requests_per_list");
        assert_eq!(refused.what(), "tried to send more than 5 upstream requests in one list");
    }

    #[test]
    fn requests_in_flight_are_capped_across_calls_and_slots_come_back_once() {
        let f = UpstreamFanout::new(100, 100, 2);
        let (a, b) = (f.admit(0, false).unwrap(), f.admit(0, true).unwrap());
        let refused = f.admit(0, false).unwrap_err();
        assert_eq!(refused, FanoutRefusal::Concurrent { limit: 2 });
        assert_eq!(refused.key(), "limits.max_concurrent_upstream_requests");
        assert_eq!(f.in_flight(), 2, "a refused request holds no slot");
        drop(a);
        let c = f.admit(0, false).unwrap();
        drop((b, c));
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn the_bounds_come_from_the_policy_file_with_fastlys_defaults() {
        use crate::policy::{PluginPolicy, RawPolicy};
        let resolve = |toml: &str| PluginPolicy::resolve("p", &RawPolicy::from_toml(toml).unwrap(), &[], &[], &|_| None).unwrap();
        let f = &resolve("").egress.fanout;
        assert_eq!((f.per_call, f.per_list, f.concurrent), (32, 128, 16));
        let f = &resolve(
            "[limits]\nmax_upstream_requests_per_call = 5\nmax_upstream_requests_per_list = 7\nmax_concurrent_upstream_requests = 2",
        )
        .egress
        .fanout;
        assert_eq!((f.per_call, f.per_list, f.concurrent), (5, 7, 2));
        for key in ["max_concurrent_upstream_requests", "max_upstream_requests_per_list"] {
            let err = RawPolicy::from_toml(&format!("[limits]\n{key} = 0")).unwrap_err();
            assert!(err.contains(&format!("limits.{key} must be at least 1")), "{err}");
        }
    }
}
