//! `sandbox-host call` (issue 12): it reconciled (`GET /v2/sandboxes`) before the host
//! refused a create, so `call e2b create '{"image":"not-allowed"}'` answered S100 after
//! a request upstream; the contract says a refused input sends nothing. The built binary
//! runs against the World's simulators and plugins directory, its input on stdin
//! (generated text may hold NUL bytes, which no argument can).

use crate::json;
use crate::world::{clip, Expect, World};
use crate::{cases, generate, runtime, Tally};
use proptest::prelude::*;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::SECRET;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Generated inputs per leaf (each is a process start).
const CASES: u32 = 12;

fn sandbox_host() -> std::path::PathBuf {
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    bin
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

async fn call(w: &World, provider: &str, leaf: Leaf, input: &[u8]) -> Run {
    let mut child = tokio::process::Command::new(sandbox_host())
        .args(["--plugins-dir"])
        .arg(w.h.dir.path())
        .args(["call", provider, leaf.as_str(), "-"])
        .env("E2B_API_KEY", SECRET)
        .env("MORPH_API_KEY", SECRET)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "warn")
        .env("SANDBOX_CACHE_DIR", sandbox_tests::root().join("target/test-plugin-cache-bin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output()).await.expect("the command ends").unwrap();
    feed.await.unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The S-code `call` printed (its first `[Sxxx]` line on stderr), if any.
fn printed_code(stderr: &str) -> Option<Code> {
    stderr.lines().find_map(|l| l.strip_prefix('[').and_then(|r| r.get(..4)).and_then(Code::parse))
}

/// One generated `call`: its exit status is its S-code's class, it never panics, and
/// an input the host refuses sends nothing upstream.
async fn one(w: &World, tally: &Tally, provider: &str, leaf: Leaf, input: Vec<u8>) -> Result<(), String> {
    w.clear();
    let text = String::from_utf8_lossy(&input).into_owned();
    // `call` validates before it starts a host (so before the provider is looked up).
    let expect = match serde_json::from_str::<Value>(&text) {
        Ok(v) => match sandbox_host::contract::validate::parse_request(leaf, &v) {
            Err(e) => Expect::Invalid(e),
            Ok(_) => w.expect(provider, leaf, &v),
        },
        Err(_) => Expect::Refused(Code::BadInput, "not JSON"),
    };
    let run = call(w, provider, leaf, text.as_bytes()).await;
    let sent = w.sent();
    let shown = || format!("status {}, stderr {}, stdout {}", run.status, clip(&run.stderr), clip(&run.stdout));
    for panic_text in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        if run.stderr.contains(panic_text) {
            return Err(format!("a panic: {}", shown()));
        }
    }
    let code = printed_code(&run.stderr);
    match code {
        Some(c) if i32::from(c.exit_status()) == run.status => {}
        None if run.status == 0 && serde_json::from_str::<Value>(&run.stdout).is_ok_and(|v| v.is_object()) => {}
        _ => return Err(format!("the exit status is not the printed code's class: {}", shown())),
    }
    tally.add(format!("{}→{}", expect.describe().split(' ').next().unwrap_or_default(), code.map_or("ok".to_string(), |c| c.to_string())));
    if expect.sends_nothing() && sent > 0 {
        return Err(format!("expected {}, yet {:?} reached the upstream: {}", expect.describe(), w.sent_routes(), shown()));
    }
    match (&expect, code) {
        (Expect::Invalid(e), Some(c)) if c == e.code && run.stderr.contains(&e.message()) => Ok(()),
        (Expect::Invalid(e), _) => Err(format!("expected validation's {}: {}", clip(&e.message()), shown())),
        (Expect::Refused(want, why), got) if got != Some(*want) => Err(format!("expected {want} ({why}): {}", shown())),
        _ => Ok(()),
    }
}

/// The regression itself, and its neighbours: every create the host refuses is answered
/// without a request upstream; a valid one still reconciles first, then creates.
#[test]
fn call_refuses_bad_creates_before_anything_reaches_the_upstream() {
    crate::big_stack(|| {
        let rt = runtime();
        rt.block_on(async {
            let w = World::start(|_| {}).await;
            let host_tag = sandbox_host::calls::create::CREATED_BY;
            let refused: [(&str, Value, Code); 6] = [
                ("e2b", json!({"image": 7}), Code::BadInput),
                ("e2b", json!({"image": "not-allowed"}), Code::ImageNotAllowed),
                ("e2b", json!({"image": "base", "metadata": {host_tag: "elsewhere"}}), Code::BadInput),
                ("morph", json!({"image": "snapshot_base", "network": false}), Code::Unsupported),
                ("nope", json!({"image": "base"}), Code::UnknownProvider),
                ("e2b", json!("not an object"), Code::BadInput),
            ];
            for (provider, input, code) in refused {
                let run = call(&w, provider, Leaf::Create, input.to_string().as_bytes()).await;
                assert_eq!(printed_code(&run.stderr), Some(code), "{provider} {input}: {}", run.stderr);
                assert_eq!(run.status, i32::from(code.exit_status()), "{provider} {input}: {}", run.stderr);
                assert_eq!(w.sent_routes(), Vec::<String>::new(), "{provider} create {input} ({code}) sends nothing upstream");
            }
            let run = call(&w, "e2b", Leaf::Create, b"{\"image\":").await;
            assert_eq!((printed_code(&run.stderr), w.sent()), (Some(Code::BadInput), 0), "{}", run.stderr);

            let run = call(&w, "e2b", Leaf::Create, br#"{"image":"base"}"#).await;
            assert_eq!(run.status, 0, "{}", run.stderr);
            let routes = w.sent_routes();
            assert_eq!(
                routes[..2],
                ["GET /v2/sandboxes", "POST /v2/sandboxes"],
                "a valid create counts what runs, then creates: {routes:?}"
            );
            let id = serde_json::from_str::<Value>(&run.stdout).unwrap()["sandbox_id"].as_str().unwrap().to_string();
            let stop = call(&w, "e2b", Leaf::Stop, json!({ "sandbox_id": id }).to_string().as_bytes()).await;
            assert_eq!(stop.status, 0, "{}", stop.stderr);
        });
    });
}

/// Generated inputs, as JSON values and as raw text, for every leaf.
#[test]
fn call_answers_generated_inputs_with_their_codes() {
    crate::big_stack(|| {
        let rt = runtime();
        let w = rt.block_on(World::start(|_| {}));
        let tally = Tally::default();
        let started = std::time::Instant::now();
        let mut total = 0;
        for leaf in Leaf::ALL {
            let provider = prop_oneof![6 => Just("e2b".to_string()), 2 => Just("morph".to_string()), 1 => json::unknown_provider()];
            let input = prop_oneof![
                2 => json::payload(leaf, false).prop_map(|v| v.to_string().into_bytes()),
                1 => json::raw(leaf, false),
            ];
            let what = format!("cli::{}", leaf.as_str().replace("::", "_"));
            // A provider name with a NUL or over the OS's argument limit cannot be an argument.
            let strategy = (provider.prop_filter("an argument", |p| !p.contains('\0') && p.len() < 100_000), input);
            total += generate(
                &what,
                cases(CASES),
                strategy,
                |(p, i)| format!("provider {}, input {}", clip(&format!("{p:?}")), clip(&String::from_utf8_lossy(i))),
                |(p, i)| rt.block_on(one(&w, &tally, &p, leaf, i)),
            );
        }
        tally.print("cli", total, started);
    });
}
