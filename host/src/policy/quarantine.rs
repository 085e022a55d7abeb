//! Quarantine: Envoy's outlier ejection, for a plugin. A plugin whose calls trap
//! `limits.quarantine_after_traps` times within `limits.quarantine_window_secs` is
//! quarantined for `limits.quarantine_secs`: its calls fail fast in `Host::call` — before
//! validation, before an instance is made — with S502 naming the plugin, the traps and
//! when it is retried (`retry_after_ms` carries the rest of the cool-down). After the
//! cool-down one call is let through (half-open): if the plugin runs without trapping
//! the quarantine ends, if it traps again it is quarantined again for the whole cool-down;
//! a call that never reached the plugin (S422, S404, a refused credential) decides nothing
//! and the next call is the probe. While the probe runs, the other calls fail fast.
//!
//! What counts as a trap: S700 from a call that ran the plugin — a wasm trap (its panic,
//! `unreachable`, a stack overflow) or an answer out of contract (wrong shape, over
//! `limits.max_response_kib`). Those say the plugin's own code is broken. S701 and S702 do
//! not count: S701 is also the wall clock, which a slow upstream runs out as well as a
//! plugin does, and S702 (like S701's CPU meter) is a per-call budget that already stops
//! the call and discards its instance, often for one caller's large request — neither says
//! the plugin fails everyone. An S700 the host raises for its own panic (no plugin run)
//! does not count either.
//!
//! The state belongs to one loaded version: a hot reload (a new version, or the same one
//! with a new policy) starts closed. Default: after 5 traps in 60 s, for 30 s;
//! `quarantine_after_traps = 0` (or `quarantine_secs = 0`) turns it off. The trade-off: a
//! caller who can make a plugin trap at will can have it quarantined for everyone — the
//! price of not running a plugin that traps on every call; turn it off where that matters.

use crate::contract::codes::{CallError, Code};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A plugin's quarantine settings (resolved from `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Traps within `window` that quarantine the plugin; 0 = never.
    pub after_traps: u32,
    pub window: Duration,
    /// How long its calls fail fast before one is let through; 0 = never quarantined.
    pub cool_down: Duration,
}

impl QuarantinePolicy {
    pub fn enabled(&self) -> bool {
        self.after_traps > 0 && !self.cool_down.is_zero()
    }

    /// "after 5 traps in 60 s, for 30 s" or "off".
    pub fn describe(&self) -> String {
        if !self.enabled() {
            return "off".into();
        }
        format!("after {} traps in {} s, for {} s", self.after_traps, secs(self.window), secs(self.cool_down))
    }
}

/// How a call ended, as far as the quarantine is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// S700 from a call that ran the plugin; the sentence says what happened.
    Trapped(&'a str),
    /// The plugin ran and did not trap (whatever the answer).
    Ran,
    /// The call never reached the plugin.
    NotRun,
}

impl<'a> Outcome<'a> {
    /// From a call's result and whether it ran the plugin (`Some(stats)`).
    pub fn of<T>(result: &'a Result<T, CallError>, ran: bool) -> Self {
        match result {
            _ if !ran => Outcome::NotRun,
            Err(e) if e.code == Code::PluginTrapped => Outcome::Trapped(&e.sentence),
            _ => Outcome::Ran,
        }
    }
}

/// A change of state, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Quarantined (first time, or again after a failed probe); the reason, one sentence.
    Opened(String),
    /// A probe ran without trapping: calls flow again.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the recent traps happened (closed phase), oldest first.
    traps: VecDeque<Instant>,
    /// Traps that opened the quarantine (the count in the refusal sentence).
    tripped_by: usize,
    /// Opened again by a probe that trapped.
    reopened: bool,
    /// The last trap's sentence, bounded.
    last_trap: String,
    /// Times it was quarantined (re-opened after a failed probe included).
    quarantines: u64,
}

/// One plugin version's quarantine state.
#[derive(Debug)]
pub struct Quarantine {
    plugin: String,
    policy: QuarantinePolicy,
    state: Mutex<State>,
}

/// What `sandbox-host plugins` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// "off", "closed", "open" (failing fast) or "half-open" (the next call, or the one
    /// running, decides).
    pub state: &'static str,
    pub traps_in_window: usize,
    pub quarantines: u64,
    /// While open: how long until a call is let through.
    pub retry_in: Option<Duration>,
    pub last_trap: Option<String>,
}

/// A call admitted by [`Quarantine::admit`]; give it the call's [`Outcome`] with
/// [`Ticket::finish`]. Dropped unfinished (the caller went away), a probe lets the next
/// call probe instead.
#[must_use]
pub struct Ticket<'a> {
    quarantine: &'a Quarantine,
    probe: bool,
    finished: bool,
}

impl Ticket<'_> {
    /// Records how the call ended; returns the change of state, if any.
    pub fn finish(self, outcome: Outcome<'_>) -> Option<Change> {
        self.finish_at(outcome, Instant::now())
    }

    fn finish_at(mut self, outcome: Outcome<'_>, now: Instant) -> Option<Change> {
        self.finished = true;
        self.quarantine.finish_at(self.probe, outcome, now)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            self.quarantine.finish_at(true, Outcome::NotRun, Instant::now());
        }
    }
}

/// Longest stretch of the last trap's sentence quoted in a refusal.
const REASON_CHARS: usize = 300;

impl Quarantine {
    pub fn new(plugin: &str, policy: QuarantinePolicy) -> Self {
        let state = State {
            phase: Phase::Closed,
            traps: VecDeque::new(),
            tripped_by: 0,
            reopened: false,
            last_trap: String::new(),
            quarantines: 0,
        };
        Quarantine { plugin: plugin.to_string(), policy, state: Mutex::new(state) }
    }

    pub fn policy(&self) -> QuarantinePolicy {
        self.policy
    }

    /// Lets a call through, or refuses it at once with S502 while quarantined.
    pub fn admit(&self) -> Result<Ticket<'_>, CallError> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<Ticket<'_>, CallError> {
        let ticket = |probe| Ticket { quarantine: self, probe, finished: false };
        if !self.policy.enabled() {
            return Ok(ticket(false));
        }
        let mut st = self.lock();
        match st.phase {
            Phase::Closed => Ok(ticket(false)),
            Phase::Open { until } if now < until => Err(self.refusal(&st, Some(until - now))),
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                st.phase = Phase::HalfOpen { probing: true };
                Ok(ticket(true))
            }
            Phase::HalfOpen { probing: true } => Err(self.refusal(&st, None)),
        }
    }

    fn finish_at(&self, probe: bool, outcome: Outcome<'_>, now: Instant) -> Option<Change> {
        if !self.policy.enabled() {
            return None;
        }
        let mut st = self.lock();
        match outcome {
            Outcome::Trapped(sentence) => {
                st.last_trap = bounded(sentence);
                if probe {
                    st.reopened = true;
                    return Some(self.open(&mut st, now));
                }
                if st.phase != Phase::Closed {
                    // Admitted before the quarantine began: it changes nothing.
                    return None;
                }
                st.traps.push_back(now);
                while st.traps.front().is_some_and(|t| now.duration_since(*t) > self.policy.window) {
                    st.traps.pop_front();
                }
                if st.traps.len() >= self.policy.after_traps as usize {
                    st.tripped_by = st.traps.len();
                    st.reopened = false;
                    return Some(self.open(&mut st, now));
                }
                None
            }
            Outcome::Ran if probe => {
                st.phase = Phase::Closed;
                st.traps.clear();
                tracing::info!(plugin = %self.plugin, "quarantine over: a call ran without trapping");
                Some(Change::Closed)
            }
            Outcome::Ran => None,
            Outcome::NotRun => {
                if probe && st.phase == (Phase::HalfOpen { probing: true }) {
                    st.phase = Phase::HalfOpen { probing: false };
                }
                None
            }
        }
    }

    fn open(&self, st: &mut State, now: Instant) -> Change {
        st.phase = Phase::Open { until: now + self.policy.cool_down };
        st.traps.clear();
        st.quarantines += 1;
        let reason = self.reason(st);
        tracing::warn!(plugin = %self.plugin, "quarantined for {} s: {reason}", secs(self.policy.cool_down));
        Change::Opened(reason)
    }

    /// "it trapped 5 times within 60 s (last: …)", or after a failed probe "it trapped again
    /// when retried after 30 s of quarantine (last: …)".
    fn reason(&self, st: &State) -> String {
        let what = if st.reopened {
            format!("it trapped again when retried after {} s of quarantine", secs(self.policy.cool_down))
        } else {
            format!("it trapped {} times within {} s", st.tripped_by, secs(self.policy.window))
        };
        format!("{what} (last: {})", st.last_trap)
    }

    fn refusal(&self, st: &State, retry_in: Option<Duration>) -> CallError {
        let name = &self.plugin;
        let when = match retry_in {
            Some(d) => format!("its calls fail fast until it is retried in {:.1} s", d.as_secs_f64()),
            None => "one call is retrying it now and the others fail fast until that one succeeds".to_string(),
        };
        let ms = retry_in.map_or(1000, |d| (d.as_millis() as u64).max(1));
        CallError::new(
            Code::Unavailable,
            format!(
                "provider `{name}` is quarantined: {}; {when}. Fix or reload the plugin (a new version starts afresh), \
                 or tune limits.quarantine_* in plugins/{name}.toml.",
                self.reason(st)
            ),
        )
        .with_retry_after(Some(ms))
    }

    /// The state now, for `sandbox-host plugins`.
    pub fn view(&self) -> View {
        self.view_at(Instant::now())
    }

    fn view_at(&self, now: Instant) -> View {
        let st = self.lock();
        let in_window = st.traps.iter().filter(|t| now.duration_since(**t) <= self.policy.window).count();
        let (state, retry_in) = match st.phase {
            _ if !self.policy.enabled() => ("off", None),
            Phase::Closed => ("closed", None),
            Phase::Open { until } if now < until => ("open", Some(until - now)),
            Phase::Open { .. } | Phase::HalfOpen { .. } => ("half-open", None),
        };
        let last_trap = (!st.last_trap.is_empty()).then(|| st.last_trap.clone());
        View { state, traps_in_window: in_window, quarantines: st.quarantines, retry_in, last_trap }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

fn bounded(s: &str) -> String {
    match s.char_indices().nth(REASON_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(after: u32, window: u64, cool: u64) -> Quarantine {
        Quarantine::new(
            "p",
            QuarantinePolicy { after_traps: after, window: Duration::from_secs(window), cool_down: Duration::from_secs(cool) },
        )
    }

    fn trap(q: &Quarantine, now: Instant) -> Option<Change> {
        let t = q.admit_at(now).expect("admitted");
        let probe = t.probe;
        std::mem::forget(t);
        q.finish_at(probe, Outcome::Trapped("plugin `p` crashed during `exec` (unreachable)"), now)
    }

    #[test]
    fn traps_within_the_window_open_it_and_calls_fail_fast_naming_plugin_traps_and_retry() {
        let q = q(3, 10, 30);
        let t0 = Instant::now();
        assert_eq!(trap(&q, t0), None);
        assert_eq!(trap(&q, t0 + Duration::from_secs(5)), None);
        // The first trap falls out of the window: two in the last 10 s, still closed.
        assert_eq!(trap(&q, t0 + Duration::from_secs(12)), None);
        assert_eq!(q.view_at(t0 + Duration::from_secs(12)).state, "closed");
        let opened = trap(&q, t0 + Duration::from_secs(13)).expect("the third trap within 10 s opens it");
        assert!(
            matches!(&opened, Change::Opened(r) if r.starts_with("it trapped 3 times within 10 s (last: plugin `p` crashed")),
            "{opened:?}"
        );
        let e = q.admit_at(t0 + Duration::from_secs(14)).err().expect("fails fast");
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.sentence.starts_with("provider `p` is quarantined: it trapped 3 times within 10 s (last: "), "{e}");
        assert!(e.sentence.contains("retried in 29.0 s"), "{e}");
        assert_eq!(e.retry_after_ms, Some(29_000));
        let v = q.view_at(t0 + Duration::from_secs(14));
        assert_eq!((v.state, v.quarantines, v.retry_in), ("open", 1, Some(Duration::from_secs(29))));
    }

    #[test]
    fn after_the_cool_down_one_probe_decides_and_the_rest_fail_fast_meanwhile() {
        let q = q(1, 60, 5);
        let t0 = Instant::now();
        assert!(matches!(trap(&q, t0), Some(Change::Opened(_))));
        let later = t0 + Duration::from_secs(6);
        let probe = q.admit_at(later).expect("the cool-down is over: one call goes through");
        let e = q.admit_at(later).err().expect("the others fail fast while it runs");
        assert!(e.sentence.contains("one call is retrying it now"), "{e}");
        // It traps: quarantined again for the whole cool-down.
        let reopened = probe.finish_at(Outcome::Trapped("boom"), later);
        assert_eq!(reopened, Some(Change::Opened("it trapped again when retried after 5 s of quarantine (last: boom)".into())));
        let e = q.admit_at(later + Duration::from_secs(1)).err().expect("the whole cool-down again");
        assert!(e.sentence.contains("it trapped again when retried") && e.sentence.contains("retried in 4.0 s"), "{e}");
        assert_eq!(q.view_at(later).quarantines, 2);
        // The next probe runs cleanly: closed, calls flow.
        let later = later + Duration::from_secs(6);
        let probe = q.admit_at(later).unwrap();
        assert_eq!(probe.finish_at(Outcome::Ran, later), Some(Change::Closed));
        assert!(q.admit_at(later).is_ok());
        assert_eq!(q.view_at(later).state, "closed");
    }

    #[test]
    fn a_probe_that_never_reached_the_plugin_or_was_dropped_lets_the_next_call_probe() {
        let q = q(1, 60, 1);
        let t0 = Instant::now();
        trap(&q, t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(q.admit_at(later).unwrap().finish(Outcome::NotRun), None);
        drop(q.admit_at(later).expect("still half-open: the next call probes"));
        let probe = q.admit_at(later).expect("a dropped probe frees the slot too");
        assert_eq!(q.view_at(later).state, "half-open");
        assert_eq!(probe.finish(Outcome::Ran), Some(Change::Closed));
    }

    #[test]
    fn off_never_refuses_and_calls_admitted_before_it_opened_change_nothing() {
        let off = q(0, 60, 30);
        for _ in 0..10 {
            assert_eq!(trap(&off, Instant::now()), None);
        }
        assert!(off.admit().is_ok());
        assert_eq!(off.view().state, "off");
        assert_eq!(q(5, 60, 0).policy().describe(), "off");
        let q = q(1, 60, 30);
        let t0 = Instant::now();
        let early = q.admit_at(t0).unwrap();
        assert!(trap(&q, t0).is_some());
        assert_eq!(early.finish(Outcome::Trapped("late")), None, "in flight when it opened");
        assert_eq!(q.view().quarantines, 1);
        assert_eq!(q.policy().describe(), "after 1 traps in 60 s, for 30 s");
    }

    #[test]
    fn only_plugin_traps_count() {
        let trapped: Result<(), CallError> = Err(CallError::new(Code::PluginTrapped, "crashed"));
        let cpu: Result<(), CallError> = Err(CallError::new(Code::PluginTimeout, "cpu"));
        assert_eq!(Outcome::of(&trapped, true), Outcome::Trapped("crashed"));
        assert_eq!(Outcome::of(&trapped, false), Outcome::NotRun, "the host's own panic");
        assert_eq!(Outcome::of(&cpu, true), Outcome::Ran);
        assert_eq!(Outcome::of(&Ok::<(), CallError>(()), true), Outcome::Ran);
    }
}
