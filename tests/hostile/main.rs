//! Hostile plugins: one fixture per misbehaviour (`tests/fixtures/<case>/`, built by
//! `bash scripts/build-fixtures.sh`), one test per fixture, each proving the host
//! contains it:
//!
//! (a) the host survives and (b) the caller gets the right S-code, the same code on a
//!     second call (the trapped Store was dropped; the next call starts fresh), within
//!     the budget plus a margin (no stuck task);
//! (c) a neighbour — the real e2b plugin against its simulator, in the same host —
//!     keeps answering correctly *while* the fixture misbehaves (`tokio::join!`);
//! and afterwards both plugins' slot books are back to 0 and the process RSS is back
//!     within [`RSS_MARGIN_MIB`] of the baseline taken before the fixture ran.
//!
//! Every test runs on a current-thread runtime on purpose: the fixture, the neighbour
//! and the simulators share ONE thread, so a neighbour that keeps answering proves the
//! host preempts a hostile guest (epoch yields), not merely that another core was free.
//! The tests hold [`SERIAL`] so RSS readings are not disturbed by each other.
//! Time bounds are generous upper limits that catch a stuck task, never benchmarks.
//! Run with `--nocapture` to see each case's measurements (elapsed, RSS, peak).

use provider_sims::e2b::E2bSim;
use provider_sims::server::Handler;
use provider_sims::{Recorded, Sim};
use sandbox_host::{CallError, Code, Leaf};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{root, PluginSetup, TestHost};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Repeated traps quarantine a plugin (issue 12).
mod quarantine;

/// How far above the baseline the process RSS may stay after a fixture ran.
///
/// Why not ~0: wasmtime's pooling allocator reserves instance/memory slots up front and
/// keeps a used slot's bookkeeping (and, per slot, whatever it does not decommit) for
/// reuse; the engine also keeps compiled code and the per-thread fiber stacks it has
/// used; glibc keeps freed small-block arenas. None of that grows per call. 96 MiB is
/// far below what any leak of a hostile call would show (each memory-bomb call alone
/// touches its full 16 MiB cap, a gigantic answer is 64 MiB+, a leaked Store per call
/// would accumulate), and far above the few MiB of noise measured.
// 112 since world 0.2.0: a lifted `list` row grew from 72 to 128 bytes (state, ends_at,
// metadata), and `list_flood_is_bounded` lifts 300 000 of them before refusing them.
const RSS_MARGIN_MIB: i64 = 112;

/// Extra time over a budget a misbehaving call may take to come back.
const MARGIN: Duration = Duration::from_secs(2);

/// One test at a time: RSS is per process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Credentials of every plugin in the arena (all the same secret, which must never leak).
const ENV: &[(&str, &str)] = &[("E2B_API_KEY", SECRET), ("CREDENTIAL_SNOOP_API_KEY", SECRET), ("EGRESS_SPOOFED_HOST_API_KEY", SECRET)];

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// `tests/fixtures/<name>.wasm`, which must have been built.
fn fixture_wasm(name: &str) -> PathBuf {
    let p = root().join("tests").join("fixtures").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `bash scripts/build-fixtures.sh` first", p.display());
    p
}

/// A host serving e2b (the neighbour, against its simulator) and the fixture `name`.
struct Arena {
    name: &'static str,
    e2b: E2bSim,
    h: TestHost,
}

async fn arena(name: &'static str, policy: &str) -> Arena {
    let e2b = E2bSim::start(0, SECRET).await.unwrap();
    let plugins = vec![
        PluginSetup::new("e2b", e2b.policy_toml()),
        PluginSetup { name: name.into(), wasm: fixture_wasm(name), policy: Some(policy.to_string()) },
    ];
    let h = TestHost::start(plugins, ENV).await;
    assert!(h.diagnostics.is_empty(), "every plugin must load: {:?}", h.diagnostics);
    let names = h.host.registry.names();
    assert!(names.contains(&"e2b".to_string()) && names.contains(&name.to_string()), "{names:?}");
    Arena { name, e2b, h }
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> i64 {
    status_kib("VmRSS:")
}

/// Peak resident set size since the last [`reset_peak`], in KiB.
fn peak_kib() -> i64 {
    status_kib("VmHWM:")
}

fn status_kib(key: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in /proc/self/status"));
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One full lifecycle on the neighbour, checked: create, exec, list, stop.
async fn neighbour_round(h: &TestHost, round: usize) {
    let created = h.ok("e2b", Leaf::Create, json!({"image": "base"})).await;
    let id = created["sandbox_id"].as_str().expect("neighbour sandbox_id").to_string();
    assert_eq!(created["image"], "base", "{created}");
    let word = format!("neighbour-{round}");
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": [word]})).await;
    assert_eq!(out["stdout"], format!("{word}\n"), "{out}");
    assert_eq!(out["exit_code"], 0, "{out}");
    let listed = h.ok("e2b", Leaf::List, json!({})).await;
    assert!(listed["sandboxes"].as_array().unwrap().iter().any(|s| s["sandbox_id"] == id.as_str()), "{listed}");
    assert_eq!(h.ok("e2b", Leaf::Stop, json!({"sandbox_id": id})).await, json!({"sandbox_id": id, "stopped": true}));
}

/// Neighbour rounds until `done` (at least one); returns (rounds, rounds finished while
/// the fixture call was still running).
async fn neighbour(h: &TestHost, done: &AtomicBool) -> (usize, usize) {
    let (mut rounds, mut during) = (0, 0);
    loop {
        neighbour_round(h, rounds).await;
        rounds += 1;
        if done.load(Ordering::SeqCst) {
            return (rounds, during);
        }
        during += 1;
    }
}

/// One hostile call racing the neighbour.
struct Raced {
    result: Result<Value, CallError>,
    elapsed: Duration,
    neighbour_rounds_during: usize,
}

async fn race(a: &Arena, leaf: Leaf, payload: &Value) -> Raced {
    let done = AtomicBool::new(false);
    let hostile = async {
        let started = Instant::now();
        let result = a.h.call(a.name, leaf, payload.clone()).await;
        let elapsed = started.elapsed();
        done.store(true, Ordering::SeqCst);
        (result, elapsed)
    };
    let ((result, elapsed), (_rounds, during)) = tokio::join!(hostile, neighbour(&a.h, &done));
    Raced { result, elapsed, neighbour_rounds_during: during }
}

/// What a case expects of each hostile call.
struct Expect {
    leaf: Leaf,
    payload: Value,
    code: Code,
    /// Fragments the error message must contain.
    says: Vec<String>,
    /// Upper bound on one hostile call's duration (budget + margin).
    within: Duration,
    /// Lower bound (e.g. a wall-clock deadline is not cut short), if any.
    not_before: Option<Duration>,
    /// Require the neighbour to finish whole rounds while the fixture misbehaves (for
    /// cases that last long enough: a CPU/wall budget, a stalled upstream).
    neighbour_during: bool,
}

/// What the harness measured, for the case's own extra checks.
#[allow(dead_code)]
struct Measured {
    errors: Vec<CallError>,
    rss_delta_mib: f64,
    peak_delta_mib: f64,
}

/// The common part of every case: baseline, two hostile calls raced against the
/// neighbour, the same code both times, books at 0, RSS back near the baseline.
async fn contained(a: &Arena, expect: Expect) -> Measured {
    // Warm-up: the neighbour's code paths and one instance of the fixture, so the
    // baseline includes what any first call allocates once.
    neighbour_round(&a.h, 1000).await;
    // (A sane leaf: `list` for the fixture whose `stop` is the hostile one, else `stop`.)
    let _ = match expect.leaf {
        Leaf::Stop => a.h.call(a.name, Leaf::List, json!({})).await,
        _ => a.h.call(a.name, Leaf::Stop, json!({"sandbox_id": "warm-up"})).await,
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let baseline = rss_kib();
    reset_peak();
    let peak_base = peak_kib();

    let mut errors = Vec::new();
    for attempt in 1..=2 {
        let r = race(a, expect.leaf, &expect.payload).await;
        let err = match r.result {
            Ok(v) => {
                panic!("{} {} (call {attempt}) should fail with {}, got {}", a.name, expect.leaf, expect.code, truncated(&v.to_string()))
            }
            Err(e) => e,
        };
        let msg = err.message();
        assert_eq!(err.code, expect.code, "{} call {attempt}: {}", a.name, truncated(&msg));
        assert!(msg.starts_with(&format!("[{}] ", expect.code)), "message form: {}", truncated(&msg));
        for s in &expect.says {
            assert!(msg.contains(s.as_str()), "{} call {attempt}: message should mention {s:?}: {msg}", a.name);
        }
        assert!(r.elapsed <= expect.within, "{} call {attempt} took {:?}, more than {:?}: a stuck task?", a.name, r.elapsed, expect.within);
        if let Some(min) = expect.not_before {
            assert!(r.elapsed >= min, "{} call {attempt} came back after {:?}, before its budget {:?}", a.name, r.elapsed, min);
        }
        if expect.neighbour_during {
            assert!(
                r.neighbour_rounds_during >= 1,
                "{} call {attempt}: the neighbour finished no round while the fixture ran ({:?})",
                a.name,
                r.elapsed
            );
        }
        eprintln!(
            "[{}] call {attempt}: {} after {:?}; neighbour rounds during it: {}",
            a.name, expect.code, r.elapsed, r.neighbour_rounds_during
        );
        if attempt == 2 {
            assert_eq!(errors.first().map(|e: &CallError| e.code), Some(err.code), "same code on the second call");
        }
        errors.push(err);
    }

    // Afterwards: the neighbour still answers, nothing is held, memory is back.
    neighbour_round(&a.h, 2000).await;
    assert_eq!(a.h.host.registry.book("e2b").in_flight(), 0, "neighbour's slot book");
    assert_eq!(a.h.host.registry.book(a.name).in_flight(), 0, "{}'s slot book", a.name);
    assert_eq!(a.e2b.live_count(), 0, "neighbour sandboxes left upstream");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = rss_kib();
    let peak = peak_kib();
    let rss_delta_mib = (after - baseline) as f64 / 1024.0;
    let peak_delta_mib = (peak - peak_base) as f64 / 1024.0;
    eprintln!(
        "[{}] RSS baseline {:.1} MiB, after {:.1} MiB (delta {rss_delta_mib:+.1} MiB); peak during the case {:+.1} MiB over baseline",
        a.name,
        baseline as f64 / 1024.0,
        after as f64 / 1024.0,
        peak_delta_mib
    );
    assert!(
        after - baseline <= RSS_MARGIN_MIB * 1024,
        "{}: RSS grew by {rss_delta_mib:.1} MiB (baseline {baseline} KiB, after {after} KiB), more than {RSS_MARGIN_MIB} MiB",
        a.name
    );
    Measured { errors, rss_delta_mib, peak_delta_mib }
}

fn truncated(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A loopback simulator that answers every request `200 {"ok":true}` and records it.
async fn plain_sim() -> Sim {
    let handler: Handler = Arc::new(|_rec: Recorded| Box::pin(async { provider_sims::server::json(200, &json!({"ok": true})) }));
    Sim::serve(0, handler).await.unwrap()
}

fn sim_port(sim: &Sim) -> u16 {
    sim.addr.port()
}

// ---------------------------------------------------------------------------------------
// CPU and wall clock
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cpu_spin_is_contained() {
    let _serial = SERIAL.lock().await;
    // CPU budget 500 ms, wall clock 30 s: only the epoch CPU meter can stop it in time.
    let a = arena("cpu-spin", "max_concurrent_sandboxes = 1\n[limits]\ncpu_ms = 500\ncall_timeout_ms = 30000\n").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Create,
            payload: json!({"image": "base"}),
            code: Code::PluginTimeout,
            says: vec!["`cpu-spin`".into(), "CPU budget of 500 ms".into(), "create".into()],
            within: Duration::from_millis(500) * 4 + MARGIN,
            not_before: Some(Duration::from_millis(450)),
            neighbour_during: true,
        },
    )
    .await;
    // The interrupted create released its reserved slot: with a cap of 1, the slot is
    // free again (a leaked reservation would answer S400 here).
    let err = a.h.call("cpu-spin", Leaf::Create, json!({"image": "base"})).await.unwrap_err();
    assert_eq!(err.code, Code::PluginTimeout, "{err}");
}

#[tokio::test]
async fn io_yield_loop_is_contained() {
    let _serial = SERIAL.lock().await;
    // The loop waits in host I/O nearly all the time: the 5 s CPU budget never runs out,
    // the 1.5 s wall clock does.
    let a = arena("io-yield-loop", "[limits]\ncall_timeout_ms = 1500\ncpu_ms = 5000\n").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::List,
            payload: json!({}),
            code: Code::PluginTimeout,
            says: vec!["`io-yield-loop`".into(), "wall-clock budget of 1500 ms".into(), "list".into()],
            within: Duration::from_millis(1500) + MARGIN,
            not_before: Some(Duration::from_millis(1450)),
            neighbour_during: true,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Memory, stack, panic
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_bomb_is_contained() {
    let _serial = SERIAL.lock().await;
    let a = arena("memory-bomb", "max_concurrent_sandboxes = 1\n[limits]\nmemory_mib = 16\n").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Create,
            payload: json!({"image": "base"}),
            code: Code::PluginMemory,
            says: vec!["`memory-bomb`".into(), "memory limit of 16 MiB".into(), "create".into(), "limits.memory_mib".into()],
            within: Duration::from_secs(5),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    // Slot released after S702 too (cap 1).
    let err = a.h.call("memory-bomb", Leaf::Create, json!({"image": "base"})).await.unwrap_err();
    assert_eq!(err.code, Code::PluginMemory, "{err}");
}

#[tokio::test]
async fn stack_overflow_is_contained() {
    let _serial = SERIAL.lock().await;
    let a = arena("stack-overflow", "").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Stop,
            payload: json!({"sandbox_id": "sbx-1"}),
            code: Code::PluginTrapped,
            says: vec!["`stack-overflow`".into(), "`stop`".into(), "next call starts a fresh instance".into()],
            within: Duration::from_secs(5),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    // The other leaves of the same plugin still work on a fresh instance.
    assert_eq!(a.h.ok("stack-overflow", Leaf::List, json!({})).await["sandboxes"], json!([]));
}

/// The S700 sentence says what the trap was (`call stack exhausted`), not a wasm
/// backtrace that would bury it (a regression found by this suite, fixed in `classify`).
#[tokio::test]
async fn stack_overflow_is_named_in_the_message() {
    let _serial = SERIAL.lock().await;
    let a = arena("stack-overflow", "").await;
    let msg = a.h.err("stack-overflow", Leaf::Stop, json!({"sandbox_id": "sbx-1"}), Code::PluginTrapped).await;
    assert!(msg.contains("call stack exhausted"), "the trap cause should be named: {msg}");
    assert!(msg.len() < 2000, "and the sentence stay short: {} bytes", msg.len());
}

#[tokio::test]
async fn panic_is_contained() {
    let _serial = SERIAL.lock().await;
    let a = arena("panic", "").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true"}),
            code: Code::PluginTrapped,
            says: vec!["`panic`".into(), "`exec`".into(), "next call starts a fresh instance".into()],
            within: Duration::from_secs(5),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    assert_eq!(a.h.ok("panic", Leaf::List, json!({})).await["sandboxes"], json!([]));
}

/// The panic message (on the guest's stderr, which the host keeps) reaches the caller
/// in the S700 sentence.
#[tokio::test]
async fn panic_text_reaches_the_caller() {
    let _serial = SERIAL.lock().await;
    let a = arena("panic", "").await;
    let msg = a.h.err("panic", Leaf::Exec, json!({"sandbox_id": "sbx-1", "cmd": "true"}), Code::PluginTrapped).await;
    assert!(msg.contains("hostile fixture panicked on purpose while running \"true\""), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Egress
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn egress_to_a_forbidden_host_name_is_contained() {
    let _serial = SERIAL.lock().await;
    // Allowed: the simulator by its IP. Tried: foreign names, and `localhost` on the
    // simulator's own port (same socket, a name that is not on the list).
    let sim = plain_sim().await;
    let policy = format!("api_base = \"{}\"\n[config]\nsim-port = \"{}\"\n", sim.base_url(), sim_port(&sim));
    let a = arena("egress-forbidden-host", &policy).await;
    contained(
        &a,
        Expect {
            leaf: Leaf::List,
            payload: json!({}),
            code: Code::EgressDenied,
            says: vec!["`egress-forbidden-host`".into(), "http://evil.example:80".into(), "list".into(), "allowed_hosts".into()],
            // Denied before any DNS lookup or connect: no timeout is ever waited for.
            within: Duration::from_secs(3),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    assert!(sim.requests().is_empty(), "the simulator must receive nothing: {:?}", sim.requests());
}

#[tokio::test]
async fn egress_to_a_raw_ip_is_contained() {
    let _serial = SERIAL.lock().await;
    let sim = plain_sim().await;
    let policy = format!("api_base = \"{}\"\n[config]\nsim-port = \"{}\"\n", sim.base_url(), sim_port(&sim));
    let a = arena("egress-raw-ip", &policy).await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true"}),
            code: Code::EgressDenied,
            says: vec!["`egress-raw-ip`".into(), "http://169.254.169.254:80".into(), "exec".into()],
            // 10.0.0.1:8080 is unroutable here: had anything tried to connect, the call
            // would sit in the 10 s connect timeout. Coming back fast proves it did not.
            within: Duration::from_secs(3),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    assert!(sim.requests().is_empty(), "no IP spelling of the simulator may reach it: {:?}", sim.requests());
}

#[tokio::test]
async fn egress_with_a_spoofed_host_header_is_contained() {
    let _serial = SERIAL.lock().await;
    let allowed = plain_sim().await;
    let other = plain_sim().await;
    let policy = format!(
        "api_base = \"{}\"\n[credentials]\napi-key = \"EGRESS_SPOOFED_HOST_API_KEY\"\n[config]\nother = \"{}\"\n",
        allowed.base_url(),
        other.base_url()
    );
    let a = arena("egress-spoofed-host", &policy).await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true"}),
            code: Code::EgressDenied,
            says: vec!["`egress-spoofed-host`".into(), format!("http://{}", other.authority()), "exec".into()],
            within: Duration::from_secs(5),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    // The header trick alone, against the allowed simulator: whatever the host does
    // (refuse the header or ignore it), nothing may arrive claiming another host.
    let alone = a.h.call("egress-spoofed-host", Leaf::Exec, json!({"sandbox_id": "s", "cmd": "true", "args": ["host-header"]})).await;
    eprintln!(
        "[egress-spoofed-host] Host header alone: {}",
        match &alone {
            Ok(v) => v["stdout"].as_str().unwrap_or_default().to_string(),
            Err(e) => e.message(),
        }
    );
    if let Err(e) = &alone {
        assert!(e.code != Code::PluginTrapped, "a refused header must not crash the plugin: {e}");
    }
    let text = match &alone {
        Ok(v) => v.to_string(),
        Err(e) => e.message(),
    };
    assert!(!text.contains(SECRET), "the credential leaked: {text}");

    assert!(other.requests().is_empty(), "the forbidden simulator must receive nothing: {:?}", other.requests());
    for r in allowed.requests() {
        assert_eq!(r.header("host"), Some(allowed.authority().as_str()), "the allowed simulator saw another Host: {r:?}");
        assert!(!r.headers.iter().any(|(_, v)| v.contains("evil.example")), "{r:?}");
        // It is the real destination of the credential: it gets it, and only the host's value.
        assert_eq!(r.header("x-api-key"), Some(SECRET), "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn credential_snoop_finds_nothing() {
    let _serial = SERIAL.lock().await;
    let sim = plain_sim().await;
    let policy =
        format!("api_base = \"{}\"\n[credentials]\napi-key = \"CREDENTIAL_SNOOP_API_KEY\"\n[config]\nregion = \"eu\"\n", sim.base_url());
    let a = arena("credential-snoop", &policy).await;
    neighbour_round(&a.h, 0).await;
    let baseline = rss_kib();
    let mut outputs = Vec::new();
    for attempt in 1..=2 {
        let r = race(&a, Leaf::Exec, &json!({"sandbox_id": "sbx-1", "cmd": "true"})).await;
        let text = match &r.result {
            Ok(v) => v.to_string(),
            Err(e) => e.message(),
        };
        assert!(!text.contains(SECRET), "call {attempt}: the secret leaked to the plugin: {text}");
        assert!(!text.contains("conformance-7d1e"), "call {attempt}: part of the secret leaked: {text}");
        assert!(r.elapsed < Duration::from_secs(10), "call {attempt} took {:?}", r.elapsed);
        let v = r.result.unwrap_or_else(|e| panic!("the snoop reports what it found; got {e}"));
        let out = v["stdout"].as_str().unwrap().to_string();
        // The probes really ran (the test is not vacuous)...
        for probe in [
            "args: ",
            "config: \"api-key\" = None",
            "readdir: /: refused",
            "read: /proc/self/environ: refused",
            "tcp: ",
            "http: ",
            "memory: scanned",
        ] {
            assert!(out.contains(probe), "call {attempt}: probe {probe:?} missing from:\n{}", truncated(&out));
        }
        // ...and found only what the WIT promises: no env, no preopens, no sockets.
        assert!(!out.lines().any(|l| l.starts_with("env: ")), "the host gave the plugin environment variables:\n{out}");
        assert!(!out.contains("CONNECTED"), "a raw socket reached the upstream:\n{out}");
        assert!(!out.contains("readdir: /: [") && !out.contains("readdir: .: ["), "a directory was readable:\n{out}");
        eprintln!(
            "[credential-snoop] call {attempt}: {} bytes of findings, e.g. {}",
            out.len(),
            truncated(&out.lines().filter(|l| l.starts_with("memory:") || l.starts_with("http:")).collect::<Vec<_>>().join(" | "))
        );
        outputs.push(out);
    }
    // The secret was live during the call: the host injected it on the allowed request,
    // with the host's value (the guest's own `x-api-key` was refused, not sent).
    let reqs = sim.requests();
    assert!(reqs.iter().any(|r| r.path == "/whoami"), "{reqs:?}");
    for r in &reqs {
        assert_ne!(r.path, "/raw-socket", "a raw socket reached the upstream");
        assert_eq!(r.header("x-api-key"), Some(SECRET), "{r:?}");
    }
    assert_eq!(a.h.host.registry.book("e2b").in_flight(), 0);
    assert_eq!(a.h.host.registry.book("credential-snoop").in_flight(), 0);
    let delta = (rss_kib() - baseline) as f64 / 1024.0;
    eprintln!("[credential-snoop] RSS delta {delta:+.1} MiB");
    assert!(delta <= RSS_MARGIN_MIB as f64, "RSS grew by {delta:.1} MiB");
}

/// Review item 1: with no `[credentials]` grant, a plugin's declared credential name
/// (`api-key` for `credential-snoop` would derive `CREDENTIAL_SNOOP_API_KEY`, which is
/// set here) selects nothing: every call is S503 before the plugin runs, and nothing
/// reaches the upstream, with or without the variable.
#[tokio::test]
async fn a_plugin_cannot_choose_which_secret_it_gets() {
    let _serial = SERIAL.lock().await;
    let sim = plain_sim().await;
    let policy = format!("api_base = \"{}\"\n[config]\nregion = \"eu\"\n", sim.base_url());
    let a = arena("credential-snoop", &policy).await;
    let msg = a.h.err("credential-snoop", Leaf::Exec, json!({"sandbox_id": "sbx-1", "cmd": "true"}), Code::AuthInvalid).await;
    assert!(msg.contains("not granted") && msg.contains("plugins/credential-snoop.toml"), "{msg}");
    assert!(!msg.contains("CREDENTIAL_SNOOP_API_KEY"), "the message must not suggest the derived name: {msg}");
    let cred = &a.h.host.registry.get("credential-snoop").unwrap().policy.egress.credentials[0];
    assert!(cred.env_var.is_none() && cred.header_value().is_none(), "{cred:?}");
    assert!(sim.requests().is_empty(), "nothing may reach the upstream: {:?}", sim.requests());
    // The operator's own grant of the neighbour still works beside it.
    neighbour_round(&a.h, 0).await;
}

/// Review item 15: a `describe()` that never answers (here it sleeps 100 s without CPU)
/// is refused within the host's describe budget, not the 120 s call budget, so it
/// holds neither start-up nor the loading of the plugins beside it.
#[tokio::test]
async fn a_slow_describe_is_refused_within_its_budget() {
    let _serial = SERIAL.lock().await;
    let e2b = E2bSim::start(0, SECRET).await.unwrap();
    let started = Instant::now();
    let plugins = vec![
        PluginSetup::new("e2b", e2b.policy_toml()),
        PluginSetup { name: "slow-describe".into(), wasm: fixture_wasm("slow-describe"), policy: None },
    ];
    let h = TestHost::start(plugins, ENV).await;
    let took = started.elapsed();
    let budget = sandbox_host::runtime::invoke::DESCRIBE_BUDGET;
    assert!(took < budget + MARGIN * 2, "start-up took {took:?}");
    assert_eq!(h.diagnostics.len(), 1, "{:?}", h.diagnostics);
    let d = &h.diagnostics[0];
    assert!(d.file.ends_with("slow-describe.wasm") && d.reason.contains("describe() did not return within"), "{d}");
    assert_eq!(h.host.registry.names(), vec!["e2b".to_string()]);
    neighbour_round(&h, 0).await;
}

// ---------------------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn gigantic_payload_is_contained() {
    let _serial = SERIAL.lock().await;
    // 200 MiB of stdout cannot even be built under the default 64 MiB memory cap.
    let a = arena("gigantic-payload", "").await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["200"]}),
            code: Code::PluginMemory,
            says: vec!["`gigantic-payload`".into(), "memory limit of 64 MiB".into(), "exec".into()],
            within: Duration::from_secs(10),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
}

/// An answer that fits under the memory cap but is far bigger than any caller should
/// get: refused by `limits.max_response_kib` as a plugin fault (S700), not handed over.
#[tokio::test]
async fn gigantic_exec_output_is_cut_to_the_output_budget_and_flagged() {
    let _serial = SERIAL.lock().await;
    let a = arena("gigantic-payload", "[limits]\nmemory_mib = 64\nmax_exec_output_kib = 512\n").await;
    neighbour_round(&a.h, 0).await;
    let baseline = rss_kib();
    let out = a.h.ok("gigantic-payload", Leaf::Exec, json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["40"]})).await;
    assert_eq!(out["truncated"], true, "40 MiB of stdout is over the 512 KiB budget");
    assert_eq!(out["stdout"].as_str().unwrap().len(), 512 * 1024, "exactly the budget is kept");
    assert_eq!(out["success"], true, "cutting the output does not fail the command");
    drop(out);
    let delta = (rss_kib() - baseline) as f64 / 1024.0;
    assert!(delta <= RSS_MARGIN_MIB as f64, "RSS grew by {delta:.1} MiB for one bounded exec answer");
    neighbour_round(&a.h, 1).await;
}

/// A `list` answer of many tiny rows: ~14 MB as the response limit counts it (under the
/// 16 MiB default) and small in guest memory, but the host turns each row into a
/// `SandboxInfo`, a `ListedSandbox`, a slot-book entry and a JSON object. The host's
/// memory for it should stay within the margin (peak and retained).
#[tokio::test]
async fn list_flood_is_bounded() {
    let _serial = SERIAL.lock().await;
    let a = arena("gigantic-payload", "[limits]\nmemory_mib = 64\n[config]\nlist-entries = \"300000\"\n").await;
    neighbour_round(&a.h, 0).await;
    let baseline = rss_kib();
    reset_peak();
    let peak_base = peak_kib();
    let started = Instant::now();
    let r = race(&a, Leaf::List, &json!({})).await;
    let outcome = match &r.result {
        Ok(v) => format!("{} rows", v["sandboxes"].as_array().map_or(0, Vec::len)),
        Err(e) => format!("refused: {}", truncated(&e.message())),
    };
    drop(r);
    let book = a.h.host.registry.book("gigantic-payload").in_flight();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let peak = (peak_kib() - peak_base) as f64 / 1024.0;
    let delta = (rss_kib() - baseline) as f64 / 1024.0;
    neighbour_round(&a.h, 1).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dropped = (rss_kib() - baseline) as f64 / 1024.0;
    eprintln!(
        "[list-flood] {outcome} in {:?}; slot book holds {book}; host peak {peak:+.1} MiB, RSS after {delta:+.1} MiB, after dropping the host {dropped:+.1} MiB",
        started.elapsed()
    );
    assert!(peak <= RSS_MARGIN_MIB as f64, "the host peaked {peak:.1} MiB over baseline for one list answer");
    assert!(delta <= RSS_MARGIN_MIB as f64, "RSS grew by {delta:.1} MiB and stayed (slot book holds {book} entries)");
}

// ---------------------------------------------------------------------------------------
// Slow upstream
// ---------------------------------------------------------------------------------------

/// A raw TCP upstream that answers `200` with a 1 MiB Content-Length, sends 16 bytes of
/// body and then stalls forever (never closing its side), counting connections and
/// those the host closed.
struct StallingUpstream {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    closed_by_host: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn stalling_upstream() -> StallingUpstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed_by_host = Arc::new(AtomicUsize::new(0));
    let (count, closed) = (connections.clone(), closed_by_host.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n{\"sandboxID\":\"x")
                .await;
            let _ = s.flush().await;
            // Stall: keep the socket open and only notice when the host hangs up.
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    StallingUpstream { addr, connections, closed_by_host, _task: task }
}

/// The create reaches its upstream, whose body never ends. The caller gets S701 at the
/// wall; the guest keeps its call budget once more in overtime (the upstream may have
/// started a sandbox: review item 4), holding the slot, then is dropped with its
/// connection and the slot is recounted free (the fixture's list is empty).
#[tokio::test]
async fn slow_body_is_contained() {
    let _serial = SERIAL.lock().await;
    let up = stalling_upstream().await;
    let policy = format!(
        "api_base = \"http://{0}\"\nmax_concurrent_sandboxes = 1\n[config]\ntarget = \"http://{0}/sandboxes\"\n[limits]\ncall_timeout_ms = 1500\n",
        up.addr
    );
    let a = arena("slow-body", &policy).await;
    neighbour_round(&a.h, 1000).await;
    let baseline = rss_kib();
    for attempt in 1..=2 {
        let r = race(&a, Leaf::Create, &json!({"image": "base"})).await;
        let msg = r.result.expect_err("the stalled create must fail").message();
        assert!(
            msg.starts_with("[S701] ") && msg.contains("wall-clock budget of 1500 ms") && msg.contains("`slow-body`"),
            "call {attempt}: {msg}"
        );
        assert!(
            r.elapsed >= Duration::from_millis(1450) && r.elapsed <= Duration::from_millis(1500) + MARGIN,
            "call {attempt} took {:?}",
            r.elapsed
        );
        assert!(r.neighbour_rounds_during >= 1, "call {attempt}: the neighbour finished no round meanwhile");
        // Its slot is held while the host settles what the create may have started.
        a.h.err("slow-body", Leaf::Create, json!({"image": "base"}), Code::CapReached).await;
        assert!(a.h.host.settling.wait(Duration::from_millis(1500) + MARGIN * 3).await, "call {attempt}: settled within its overtime");
        assert_eq!(a.h.host.registry.book("slow-body").in_flight(), 0, "call {attempt}: the recount freed the slot");
        assert_eq!(up.connections.load(Ordering::SeqCst), attempt, "each create reached the upstream once");
        // No stuck task: the dropped Store took its connection with it; the host hung up.
        let deadline = Instant::now() + Duration::from_secs(3);
        while up.closed_by_host.load(Ordering::SeqCst) < attempt && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            up.closed_by_host.load(Ordering::SeqCst),
            attempt,
            "the host must close the stalled upstream connection once the guest is dropped"
        );
    }
    neighbour_round(&a.h, 2000).await;
    assert_eq!(a.h.host.registry.book("e2b").in_flight(), 0, "neighbour's slot book");
    assert_eq!(a.e2b.live_count(), 0, "neighbour sandboxes left upstream");
    let delta = (rss_kib() - baseline) as f64 / 1024.0;
    assert!(delta <= RSS_MARGIN_MIB as f64, "RSS grew by {delta:.1} MiB");
}

// ---------------------------------------------------------------------------------------
// Issue 12: upstream fan-out, log flood, oversized strings, credential echo
// ---------------------------------------------------------------------------------------

/// A loopback simulator that answers every request `200 {"ok":true}` after `delay`.
async fn slow_sim(delay: Duration) -> Sim {
    let handler: Handler = Arc::new(move |_rec: Recorded| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            provider_sims::server::json(200, &json!({"ok": true}))
        })
    });
    Sim::serve(0, handler).await.unwrap()
}

/// One plugin's numbers in `sandbox-host stats`.
fn plugin_stats(a: &Arena) -> Value {
    a.h.host.metrics.json()["plugins"][a.name].clone()
}

/// 500 requests launched at once from one `exec`: the first 16 (the plugin's cap on
/// requests in flight) go out, every other one is refused in the egress hook before a
/// connection, and the call is S704 although the plugin reports success.
#[tokio::test]
async fn upstream_fanout_is_contained() {
    let _serial = SERIAL.lock().await;
    // Answers take 300 ms, so the admitted requests are still in flight when the rest come.
    let sim = slow_sim(Duration::from_millis(300)).await;
    let a = arena("upstream-fanout", &format!("api_base = \"{}\"\n", sim.base_url())).await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["concurrent", "500"]}),
            code: Code::UpstreamBudget,
            says: vec![
                "`upstream-fanout`".into(),
                "more than 16 upstream requests in flight at once".into(),
                "`exec`".into(),
                "limits.max_concurrent_upstream_requests".into(),
                "plugins/upstream-fanout.toml".into(),
            ],
            within: Duration::from_secs(5),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    let reached = sim.requests().len();
    eprintln!("[upstream-fanout] {reached} requests reached the upstream in two calls of 500");
    assert!(reached <= 2 * 16, "at most 16 per call may reach the upstream, {reached} did");
    let stats = plugin_stats(&a);
    assert!(stats["upstream_refused"].as_u64().unwrap() >= 2 * (500 - 16), "{stats}");
    assert_eq!(stats["errors_by_code"]["S704"], 2, "{stats}");
    let plugin = a.h.host.registry.get("upstream-fanout").unwrap();
    assert_eq!(plugin.policy.egress.fanout.in_flight(), 0, "every slot came back");
    // Within the cap, the same fan-out is fine.
    let out = a.h.ok("upstream-fanout", Leaf::Exec, json!({"sandbox_id": "s", "cmd": "true", "args": ["concurrent", "16"]})).await;
    assert_eq!(out["stdout"], "concurrent: 16 of 16 requests answered\n", "{out}");
}

/// 300 requests one after the other from one `exec`: 32 reach the upstream (the
/// per-call budget), the 33rd and every later one are refused, the call is S704; a
/// call that stays within the budget is untouched.
#[tokio::test]
async fn sequential_upstream_requests_beyond_the_call_budget_are_refused() {
    let _serial = SERIAL.lock().await;
    let sim = plain_sim().await;
    let a = arena("upstream-fanout", &format!("api_base = \"{}\"\n", sim.base_url())).await;
    contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["sequential", "300"]}),
            code: Code::UpstreamBudget,
            says: vec![
                "`upstream-fanout` tried to send more than 32 upstream requests in one call during `exec`".into(),
                "268 request(s) were refused before any connection".into(),
                "limits.max_upstream_requests_per_call in plugins/upstream-fanout.toml".into(),
            ],
            within: Duration::from_secs(10),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    assert_eq!(sim.requests().len(), 2 * 32, "exactly the budget reached the upstream, per call");
    let out = a.h.ok("upstream-fanout", Leaf::Exec, json!({"sandbox_id": "s", "cmd": "true", "args": ["sequential", "32"]})).await;
    assert_eq!(out["stdout"], "sequential: 32 of 32 requests answered\n", "{out}");
    // The operator may lower (or raise) it.
    let a = arena("upstream-fanout", &format!("api_base = \"{}\"\n[limits]\nmax_upstream_requests_per_call = 3\n", sim.base_url())).await;
    let msg = a
        .h
        .err("upstream-fanout", Leaf::Exec, json!({"sandbox_id": "s", "cmd": "true", "args": ["sequential", "4"]}), Code::UpstreamBudget)
        .await;
    assert!(msg.contains("more than 3 upstream requests in one call"), "{msg}");
}

/// What the host's log received while a [`LogCapture`] was set.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Captures this thread's log (every test runs on one thread) until the guard drops.
    fn start() -> (LogCapture, impl Drop) {
        use tracing_subscriber::util::SubscriberInitExt;
        let capture = LogCapture::default();
        let writer = capture.clone();
        let guard = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(move || writer.clone())
            .set_default();
        (capture, guard)
    }

    /// The captured lines that mention `needle`.
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// 2 000 `log` lines of 16 KiB in one call: the host's log gets at most the call's
/// budget (1 MiB: 256 lines cut to 4 KiB), the rest is dropped and counted, and one
/// summary line per call says how much; the call itself succeeds.
#[tokio::test]
async fn log_flood_is_contained() {
    let _serial = SERIAL.lock().await;
    let a = arena("log-flood", "").await;
    neighbour_round(&a.h, 0).await;
    let (log, _capture) = LogCapture::start();
    let baseline = rss_kib();
    for attempt in 1..=2u64 {
        log.clear();
        let r = race(&a, Leaf::Exec, &json!({"sandbox_id": "sbx-1", "cmd": "true"})).await;
        let out = r.result.unwrap_or_else(|e| panic!("call {attempt}: a log flood is not an error: {e}"));
        assert_eq!(out["stdout"], "logged 2000 lines of 16 KiB\n");
        assert!(r.elapsed < Duration::from_secs(10), "call {attempt} took {:?}", r.elapsed);
        let lines = log.lines_with("log-flood");
        let flood: Vec<&String> = lines.iter().filter(|l| l.contains("flood flood")).collect();
        let bytes: usize = flood.iter().map(|l| l.len()).sum();
        let summaries: Vec<&String> = lines.iter().filter(|l| l.contains("bytes dropped")).collect();
        eprintln!(
            "[log-flood] call {attempt}: {} lines / {bytes} bytes reached the log in {:?}; {}",
            flood.len(),
            r.elapsed,
            summaries.first().map_or("", |s| s.as_str())
        );
        assert!(flood.len() <= 256, "call {attempt}: {} flood lines reached the log", flood.len());
        assert!(bytes <= (1 << 20) + flood.len() * 200, "call {attempt}: {bytes} bytes of flood reached the log");
        assert!(
            flood.iter().all(|l| l.len() < 4096 + 200 && l.contains("[cut: 16384 bytes in all]")),
            "lines are cut at 4 KiB, the cut marked"
        );
        assert_eq!(summaries.len(), 1, "call {attempt}: one summary line: {summaries:?}");
        let written = flood.len();
        assert!(
            summaries[0].contains(&format!("{} lines / {} bytes dropped", 2000 - written, (2000 - written) * 16384)),
            "{}",
            summaries[0]
        );
        let stats = plugin_stats(&a);
        assert_eq!(stats["log"]["dropped_lines"].as_u64().unwrap() + stats["log"]["lines"].as_u64().unwrap(), 2000 * attempt, "{stats}");
        assert!(stats["log"]["bytes"].as_u64().unwrap() <= attempt << 20, "{stats}");
    }
    drop(_capture);
    assert_eq!(a.h.host.registry.book("log-flood").in_flight(), 0);
    let delta = (rss_kib() - baseline) as f64 / 1024.0;
    assert!(delta <= RSS_MARGIN_MIB as f64, "RSS grew by {delta:.1} MiB");
}

/// The per-plugin log rate holds across calls: with 300 lines banked and no refill to
/// speak of, two calls of 2 000 lines write 300 in all, however big each call's budget.
#[tokio::test]
async fn log_flood_is_rate_limited_across_the_plugins_calls() {
    let _serial = SERIAL.lock().await;
    let policy = "[limits]\nmax_log_lines_per_call = 100000\nmax_log_kib_per_call = 65536\nlog_lines_per_sec = 0.001\nlog_burst = 300\n";
    let a = arena("log-flood", policy).await;
    for _ in 0..2 {
        a.h.ok("log-flood", Leaf::Exec, json!({"sandbox_id": "s", "cmd": "true", "args": ["2000", "1"]})).await;
    }
    let stats = plugin_stats(&a);
    assert_eq!(stats["log"]["lines"], 300, "{stats}");
    assert_eq!(stats["log"]["dropped_lines"], 3700, "{stats}");
}

/// An `error.message` of 24 MiB (issue 12 used 40; 24 keeps the guest's string, its
/// growth and the host's one lifted copy clearly inside the RSS margin whatever ran before
/// in this process): the caller gets the plugin's code (S502) with a 4 KiB start of the
/// message and the cut marked; the host holds the whole message only while it cuts.
#[tokio::test]
async fn oversized_strings_are_contained() {
    let _serial = SERIAL.lock().await;
    let a = arena("oversized-strings", "").await;
    let m = contained(
        &a,
        Expect {
            leaf: Leaf::Exec,
            payload: json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["24"]}),
            code: Code::Unavailable,
            says: vec!["provider `oversized-strings` exec failed: xxxx".into(), "… [cut: 25165824 bytes in all]".into()],
            within: Duration::from_secs(10),
            not_before: None,
            neighbour_during: false,
        },
    )
    .await;
    for e in &m.errors {
        assert!(e.message().len() < 5 * 1024, "the caller got {} bytes", e.message().len());
    }
    // Before the bound the host peaked at 135 MiB for this call (several whole copies).
    eprintln!("[oversized-strings] host peak {:+.1} MiB over baseline", m.peak_delta_mib);
    assert!(m.peak_delta_mib <= RSS_MARGIN_MIB as f64, "the host peaked {:.1} MiB over baseline", m.peak_delta_mib);
}

/// A snapshot id or URL far longer than any real one is a plugin fault (S700) whose
/// sentence quotes only a marked cut of it.
#[tokio::test]
async fn oversized_ids_and_urls_are_refused_with_a_marked_cut() {
    let _serial = SERIAL.lock().await;
    let a = arena("oversized-strings", "[config]\nmib = \"1\"\n").await;
    let msg = a.h.err("oversized-strings", Leaf::Snapshot, json!({"sandbox_id": "s"}), Code::PluginTrapped).await;
    assert!(
        msg.contains("a snapshot id of 1048576 bytes, over the host's bound of 4096 bytes") && msg.contains("[cut: 1048576 bytes in all]"),
        "{msg}"
    );
    assert!(msg.len() < 1024, "{} bytes", msg.len());
    let msg = a.h.err("oversized-strings", Leaf::ExposePort, json!({"sandbox_id": "s", "port": 8080}), Code::PluginTrapped).await;
    assert!(msg.contains("a URL of 1048592 bytes, over the host's bound of 8192 bytes") && msg.contains("https://xxx"), "{msg}");
    assert!(msg.len() < 1024, "{} bytes", msg.len());
}

/// The credential of the echo case: with `/`, `+` and `=`, so its percent-encoding
/// differs from it.
const ECHO_SECRET: &str = "sk-echo/7d1e+5c0b=9a-Qx";

/// Every form of [`ECHO_SECRET`] the echoing upstream sends back.
fn echo_forms() -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let s = ECHO_SECRET.as_bytes();
    vec![
        ECHO_SECRET.to_string(),
        STANDARD.encode(s),
        STANDARD_NO_PAD.encode(s),
        URL_SAFE.encode(s),
        URL_SAFE_NO_PAD.encode(s),
        ECHO_SECRET.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D"),
        // Inside a longer base64 text: what `Basic base64(user:secret)` carries.
        STANDARD.encode(format!("user:{ECHO_SECRET}")),
    ]
}

/// A raw TCP upstream that echoes the `x-api-key` it received back to the plugin in
/// every form of [`echo_forms`]: in response headers, and in a chunked body that splits
/// the raw value across two flushed chunks. `/gzip` labels its answer gzip-encoded (the
/// host cannot search that). Records each request's head.
async fn echoing_upstream() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_string();
                    pending.drain(..end + 4);
                    seen.lock().unwrap().push(head.clone());
                    let key = head.lines().find_map(|l| l.strip_prefix("x-api-key: ")).unwrap_or("none").to_string();
                    let forms: Vec<String> = if key == ECHO_SECRET { echo_forms() } else { vec![key.clone()] };
                    let mut answer = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n");
                    for (i, f) in forms.iter().enumerate() {
                        answer.push_str(&format!("x-echo-{i}: {f}\r\n"));
                    }
                    if head.starts_with("GET /gzip") {
                        answer.push_str("content-encoding: gzip\r\n");
                    }
                    answer.push_str("\r\n");
                    let body = format!("{{\"forms\":{:?},\"key\":\"{key}\"}}", forms);
                    let (first, second) = body.split_at(body.len() - 6);
                    let _ = s.write_all(answer.as_bytes()).await;
                    for chunk in [first, second] {
                        let _ = s.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await;
                        let _ = s.flush().await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    (addr, heads)
}

/// An allowed upstream echoes the credential back in every common encoding, in headers
/// and in a body that splits it across frames: the plugin reads none of it (it reports
/// `saw-secret: no`), sees `*` where it was, and a gzip answer it cannot be shown
/// unsearched is withheld.
#[tokio::test]
async fn credential_echo_is_redacted() {
    let _serial = SERIAL.lock().await;
    let (addr, heads) = echoing_upstream().await;
    let e2b = E2bSim::start(0, SECRET).await.unwrap();
    let policy = format!(
        "api_base = \"http://{addr}\"\n[credentials]\napi-key = \"CREDENTIAL_ECHO_API_KEY\"\n[config]\nprobe = \"{ECHO_SECRET}\"\n"
    );
    let plugins = vec![
        PluginSetup::new("e2b", e2b.policy_toml()),
        PluginSetup { name: "credential-echo".into(), wasm: fixture_wasm("credential-echo"), policy: Some(policy) },
    ];
    let env: Vec<(&str, &str)> = ENV.iter().copied().chain([("CREDENTIAL_ECHO_API_KEY", ECHO_SECRET)]).collect();
    let h = TestHost::start(plugins, &env).await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    let a = Arena { name: "credential-echo", e2b, h };
    for attempt in 1..=2 {
        let r = race(&a, Leaf::Exec, &json!({"sandbox_id": "sbx-1", "cmd": "true", "args": ["/echo", "/gzip"]})).await;
        let out = r.result.unwrap_or_else(|e| panic!("call {attempt}: the echo case reports what it read; got {e}"))["stdout"]
            .as_str()
            .unwrap()
            .to_string();
        eprintln!("[credential-echo] call {attempt}:\n{out}");
        for form in echo_forms() {
            assert!(!out.contains(&form), "call {attempt}: the plugin read the credential as {form:?}:\n{out}");
        }
        assert!(out.ends_with("saw-secret: no\n"), "call {attempt}:\n{out}");
        assert!(out.contains(&format!("header x-echo-0: {}", "*".repeat(ECHO_SECRET.len()))), "masked in place, same length:\n{out}");
        assert!(
            out.contains(&format!("\\\"key\\\":\\\"{}\\\"", "*".repeat(ECHO_SECRET.len())))
                || out.contains(&format!("\"key\":\"{}\"", "*".repeat(ECHO_SECRET.len()))),
            "the split value is masked:\n{out}"
        );
        assert!(out.contains("/gzip: refused"), "a body the host cannot search is withheld:\n{out}");
    }
    // The echo was real: the upstream got the credential (and identity encoding, whatever the plugin asked).
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 4, "{heads:?}");
    for head in &heads {
        assert!(head.contains(&format!("x-api-key: {ECHO_SECRET}")), "{head}");
        let encodings: Vec<&str> = head.lines().filter(|l| l.to_ascii_lowercase().starts_with("accept-encoding:")).collect();
        assert_eq!(encodings, ["accept-encoding: identity"], "{head}");
    }
    let stats = plugin_stats(&a);
    // Per /echo and /gzip: 7 header forms; the /echo body: 7 forms and the key.
    assert!(stats["credential_redactions"].as_u64().unwrap() >= 2 * (7 + 7 + 8), "{stats}");
    neighbour_round(&a.h, 0).await;
}
