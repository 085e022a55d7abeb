//! The system under test and the invariants checked after every generated call.
//!
//! Three providers, each on its own simulator: `e2b` (the current plugin, every leaf)
//! and `morph` (no `exec_stdin`, no `network_off`, so those inputs are S404) on the main
//! host, and `legacy`: the frozen world-0.1.0 e2b build (no get/set_timeout/pause/resume,
//! so absent leaves are exercised too) on a second host, since it is named `e2b` as
//! well. Every policy allows one image only, so a create of any other image is refused
//! by the host (S100) instead of reaching the upstream. One *resident* sandbox on `e2b`
//! is the target of the few generated calls that run for real; its end is fixed with
//! `set_timeout`, so the host never moves it in the background and the only upstream
//! traffic is the calls' own.
//!
//! The oracle ([`World::expect`]) says, before a call, what the host must do with it: the
//! validation error itself (`validate::parse_request` is the contract's definition of a
//! valid input), a refusal before anything runs (unknown provider, absent leaf, image
//! allowlist, limits, the cap), or "valid" (anything typed may come back, and it may
//! reach the upstream).

use provider_sims::e2b::E2bSim;
use provider_sims::morph::MorphSim;
use provider_sims::Sim;
use sandbox_host::config::HostConfig;
use sandbox_host::contract::shapes::{Capability, Request};
use sandbox_host::contract::validate;
use sandbox_host::{CallError, Code, Leaf};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::{json, Value};

/// An error message longer than this echoes the caller's input instead of naming it.
pub const MAX_MESSAGE: usize = 2048;

pub struct World {
    pub e2b: E2bSim,
    pub morph: MorphSim,
    pub legacy: E2bSim,
    /// e2b and morph.
    pub h: TestHost,
    /// The world-0.1.0 e2b plugin, called `legacy` here.
    pub old: TestHost,
    /// The e2b sandbox valid generated calls may really use.
    pub resident: String,
}

/// The providers generated calls name (besides unknown ones).
pub const PROVIDERS: [&str; 3] = ["e2b", "morph", "legacy"];
/// The one image each provider's policy allows.
pub fn image(provider: &str) -> &'static str {
    if provider == "morph" {
        "snapshot_base"
    } else {
        "base"
    }
}

/// What the host must do with a call, known before it is made.
#[derive(Debug)]
pub enum Expect {
    /// `validate::parse_request`'s error, exactly.
    Invalid(CallError),
    /// Refused before anything runs, with this code.
    Refused(Code, &'static str),
    /// A valid call: any typed answer, and it may reach the upstream.
    Valid,
}

impl Expect {
    pub fn describe(&self) -> String {
        match self {
            Expect::Invalid(e) => format!("invalid ({})", clip(&e.message())),
            Expect::Refused(code, why) => format!("refused with {code} ({why})"),
            Expect::Valid => "valid".into(),
        }
    }

    /// True when the call must leave the upstream untouched.
    pub fn sends_nothing(&self) -> bool {
        !matches!(self, Expect::Valid)
    }
}

impl World {
    pub async fn start(tweak: impl FnOnce(&mut HostConfig)) -> World {
        let (e2b, morph, legacy) =
            (E2bSim::start(0, SECRET).await.unwrap(), MorphSim::start(0, SECRET).await.unwrap(), E2bSim::start(0, SECRET).await.unwrap());
        let allow = |p: &str, policy: String| format!("image_allowlist = [\"{}\"]\n{policy}", image(p));
        let setups =
            vec![PluginSetup::new("e2b", allow("e2b", e2b.policy_toml())), PluginSetup::new("morph", allow("morph", morph.policy_toml()))];
        let keys = [("E2B_API_KEY", SECRET), ("MORPH_API_KEY", SECRET)];
        let h = TestHost::start_with(setups, &keys, tweak).await;
        assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
        let legacy_wasm = sandbox_tests::root().join("tests/fixtures/compat-e2b-v0-1-0.wasm");
        assert!(legacy_wasm.exists(), "{} is missing: run `bash scripts/build-fixtures.sh`", legacy_wasm.display());
        let setup = PluginSetup { name: "e2b".into(), wasm: legacy_wasm, policy: Some(allow("legacy", legacy.policy_toml())) };
        let old = TestHost::start(vec![setup], &keys).await;
        assert!(old.diagnostics.is_empty(), "{:?}", old.diagnostics);
        let resident = h.ok("e2b", Leaf::Create, json!({"image": "base"})).await["sandbox_id"].as_str().unwrap().to_string();
        h.ok("e2b", Leaf::SetTimeout, json!({"sandbox_id": resident, "timeout_secs": 86_400})).await;
        let w = World { e2b, morph, legacy, h, old, resident };
        w.clear();
        w
    }

    fn sims(&self) -> [&Sim; 5] {
        [&self.e2b.api, &self.e2b.envd, &self.morph.api, &self.legacy.api, &self.legacy.envd]
    }

    /// The host serving `provider` and the name it knows it by.
    pub fn host<'a>(&'a self, provider: &'a str) -> (&'a TestHost, &'a str) {
        match provider {
            "legacy" => (&self.old, "e2b"),
            p => (&self.h, p),
        }
    }

    /// `Host::call` on whichever host serves `provider`.
    pub async fn call(&self, provider: &str, leaf: Leaf, payload: &Value) -> Result<Value, CallError> {
        let (h, name) = self.host(provider);
        h.host.call(name, leaf, payload).await
    }

    /// Requests the simulators received since the last [`World::clear`].
    pub fn sent(&self) -> usize {
        self.sims().iter().map(|s| s.requests().len()).sum()
    }

    /// The routes received since the last clear, for a failure message.
    pub fn sent_routes(&self) -> Vec<String> {
        self.sims().iter().flat_map(|s| s.requests()).map(|r| r.route()).collect()
    }

    /// No simulator saw a request off its vendored spec (one the real API would refuse):
    /// a plugin must turn every input the host accepts into a request the provider takes.
    pub fn check_spec(&self) -> Result<(), String> {
        let seen: Vec<String> = self.sims().iter().flat_map(|s| s.take_violations()).collect();
        match seen.first() {
            None => Ok(()),
            Some(first) => Err(format!("{} spec violation(s) upstream, e.g. {}", seen.len(), clip(first))),
        }
    }

    pub fn clear(&self) {
        for s in self.sims() {
            s.clear_requests();
        }
    }

    /// Sandboxes that exist upstream for `provider`, running or paused.
    fn upstream(&self, provider: &str) -> usize {
        match provider {
            "e2b" => self.e2b.state.sandboxes.lock().unwrap().len(),
            "legacy" => self.legacy.state.sandboxes.lock().unwrap().len(),
            _ => self.morph.state.instances.lock().unwrap().len(),
        }
    }

    /// The slot book of each provider counts exactly the sandboxes that exist upstream
    /// (running or paused): nothing leaked, nothing lost, no slot held by a refused call.
    /// (And the upstream saw nothing off its spec: [`World::check_spec`].)
    pub fn check_books(&self) -> Result<(), String> {
        self.check_spec()?;
        for p in PROVIDERS {
            let (h, name) = self.host(p);
            let in_flight = h.host.registry.book(name).in_flight();
            let upstream = self.upstream(p);
            if in_flight != upstream {
                return Err(format!("provider {p}: the slot book's in_flight is {in_flight}, but {upstream} sandboxes exist upstream"));
            }
        }
        if self.h.host.registry.book("e2b").get(&self.resident).is_none() {
            return Err(format!("the resident sandbox {} is no longer in e2b's book", self.resident));
        }
        Ok(())
    }

    /// A valid call still gets its answer.
    pub async fn check_alive(&self) -> Result<(), String> {
        let got = self.h.call("e2b", Leaf::Get, json!({ "sandbox_id": self.resident })).await;
        match got {
            Ok(v) if v["sandbox_id"] == self.resident.as_str() => {}
            other => return Err(format!("a valid get of the resident sandbox answered {}", show(&other))),
        }
        // Stopping an unknown sandbox is a success (stop is idempotent).
        for p in ["morph", "legacy"] {
            if let Err(e) = self.call(p, Leaf::Stop, &json!({"sandbox_id": "gen-alive-probe"})).await {
                return Err(format!("a valid {p} stop answered {}", clip(&e.message())));
            }
        }
        Ok(())
    }

    /// What the host must do with `payload` for `leaf` on `provider`.
    pub fn expect(&self, provider: &str, leaf: Leaf, payload: &Value) -> Expect {
        let (h, provider) = self.host(provider);
        let Some(plugin) = h.host.registry.get(provider) else {
            return Expect::Refused(Code::UnknownProvider, "unknown provider");
        };
        let caps = plugin.capabilities();
        if !leaf.offered_by(caps) {
            return Expect::Refused(Code::Unsupported, "leaf not offered");
        }
        let req = match validate::parse_request(leaf, payload) {
            Ok(r) => r,
            Err(e) => return Expect::Invalid(e),
        };
        let limits = &plugin.policy.limits;
        let cap = plugin.policy.max_concurrent_sandboxes;
        let in_flight = h.host.registry.book(provider).in_flight();
        match &req {
            Request::Create(c) => {
                if plugin.policy.images.check(provider, &c.image).is_err() {
                    return Expect::Refused(Code::ImageNotAllowed, "image allowlist");
                }
                if c.network == Some(false) && !caps.contains(&Capability::NetworkOff) {
                    return Expect::Refused(Code::Unsupported, "network_off");
                }
                if in_flight >= cap {
                    return Expect::Refused(Code::CapReached, "cap");
                }
            }
            Request::Exec(e) => {
                if e.timeout_ms.is_some_and(|t| t > limits.max_exec_timeout_ms) {
                    return Expect::Refused(Code::BadInput, "max_exec_timeout_ms");
                }
                if e.stdin.is_some() && !caps.contains(&Capability::ExecStdin) {
                    return Expect::Refused(Code::Unsupported, "exec_stdin");
                }
            }
            Request::SetTimeout { timeout_secs, .. } | Request::Resume { timeout_secs: Some(timeout_secs), .. }
                if *timeout_secs > limits.max_timeout_secs =>
            {
                return Expect::Refused(Code::BadInput, "max_timeout_secs");
            }
            Request::Branch { count, .. } if in_flight + *count as usize > cap => return Expect::Refused(Code::CapReached, "cap"),
            _ => {}
        }
        Expect::Valid
    }

    /// Checks one answer against what was expected, given how many requests reached the
    /// upstream while it ran and how large the input was.
    pub fn judge(&self, expect: &Expect, result: &Result<Value, CallError>, sent: usize, input_len: usize) -> Result<(), String> {
        if let Err(e) = result {
            typed(e)?;
        }
        if expect.sends_nothing() && sent > 0 {
            return Err(format!("expected {}, yet {sent} request(s) reached the upstream: {:?}", expect.describe(), self.sent_routes()));
        }
        match (expect, result) {
            (Expect::Invalid(want), Err(got)) if got.code == want.code && got.message() == want.message() => Ok(()),
            (Expect::Invalid(want), got) => Err(format!("expected validation's {}, got {}", clip(&want.message()), show(got))),
            (Expect::Refused(code, _), Err(got)) if got.code == *code => Ok(()),
            (Expect::Refused(code, why), got) => Err(format!("expected {code} ({why}), got {}", show(got))),
            (Expect::Valid, Ok(v)) if v.is_object() => Ok(()),
            (Expect::Valid, Ok(v)) => Err(format!("a valid call answered a non-object: {}", clip(&v.to_string()))),
            (Expect::Valid, Err(e)) => plausible_for_valid(e, input_len),
        }
    }

    /// Undoes what a successful generated call changed: stops what it started, resumes
    /// what it paused, so the book and the simulator stay small and the resident usable.
    pub async fn undo(&self, provider: &str, leaf: Leaf, payload: &Value, answer: &Value) {
        match leaf {
            Leaf::Create => self.stop(provider, answer["sandbox_id"].as_str().unwrap_or_default()).await,
            Leaf::Branch => {
                for id in answer["sandbox_ids"].as_array().into_iter().flatten() {
                    self.stop(provider, id.as_str().unwrap_or_default()).await;
                }
            }
            Leaf::Pause => {
                let (h, name) = self.host(provider);
                h.ok(name, Leaf::Resume, json!({ "sandbox_id": payload["sandbox_id"] })).await;
            }
            _ => {}
        }
    }

    async fn stop(&self, provider: &str, id: &str) {
        let (h, name) = self.host(provider);
        h.ok(name, Leaf::Stop, json!({ "sandbox_id": id })).await;
    }
}

/// A failed call is an S-code and one sentence: `[Sxxx] …`, bounded, never a panic's text.
pub fn typed(e: &CallError) -> Result<(), String> {
    let message = e.message();
    let prefix = format!("[{}] ", e.code);
    if !message.starts_with(&prefix) || e.sentence.trim().is_empty() {
        return Err(format!("an untyped error message: {}", clip(&message)));
    }
    if Code::parse(e.code.as_str()) != Some(e.code) {
        return Err(format!("an unknown code {}", e.code));
    }
    for panic_text in ["panicked", "RUST_BACKTRACE", "the host failed while"] {
        if message.contains(panic_text) {
            return Err(format!("a panic reached the caller: {}", clip(&message)));
        }
    }
    if message.len() > MAX_MESSAGE && !echo_exempt(e.code) {
        return Err(format!("a {}-byte error message (it echoes the input): {}", message.len(), clip(&message)));
    }
    Ok(())
}

/// No code is exempt from the bound: S600 and S100 quote the provider name and image
/// cut at 80 characters too.
fn echo_exempt(_code: Code) -> bool {
    false
}

/// An error for a valid input must be one the contract allows for it: not a plugin
/// fault, unless the input was large enough to run a plugin out of memory.
fn plausible_for_valid(e: &CallError, input_len: usize) -> Result<(), String> {
    let fault =
        matches!(e.code, Code::PluginTrapped | Code::PluginTimeout | Code::PluginMemory | Code::EgressDenied | Code::UpstreamBudget);
    if fault && input_len < (1 << 20) {
        return Err(format!("a valid input made the plugin fault: {}", clip(&e.message())));
    }
    if e.code == Code::UnknownProvider {
        return Err(format!("a valid input on a loaded provider answered {}", clip(&e.message())));
    }
    Ok(())
}

pub fn show(r: &Result<Value, CallError>) -> String {
    match r {
        Ok(v) => format!("Ok({})", clip(&v.to_string())),
        Err(e) => format!("Err({})", clip(&e.message())),
    }
}

/// At most 400 characters of `s`.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}
