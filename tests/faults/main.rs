//! Upstream fault matrix (issue 12): every provider plugin against a scripted raw-TCP
//! upstream (`upstream.rs`, not `sim/`) that fails in one way per row — refused,
//! closed or reset before the headers, cut mid-body, headers slower than the first-byte
//! timeout, a body that stalls or trickles, a chunked body cut before its end, 5xx HTML,
//! malformed or wrongly shaped JSON, redirects, 401/403/402, 429 with `Retry-After` as
//! seconds and as an HTTP date.
//!
//! Each row asserts the S-code, the time it took (as a bound: at most the configured
//! timeout plus [`MARGIN_MS`]; at least the timeout when a timeout must have fired), the
//! retry hint where there is one, that no slot leaked (sandboxes, calls in flight,
//! upstream requests in flight), and that a redirect's target received nothing. The
//! matrix is printed as a Markdown table (`--nocapture`; always before a failure).
//!
//! `list` is the leaf driven for every fault: one GET on every provider. A failed
//! upstream list is not an error for the caller (docs/contract.md, "List reconciles"):
//! the answer is the host's book with `reconciled: false` and `reconcile_error`
//! `[Sxxx] …`, so that code (and the `retry after N ms` of its sentence) is the row's;
//! a host fault (S70x) is the call's error. A few `create` rows check the slot book
//! after a failed create, and the structured `retry_after_ms` of a call error.

mod upstream;

use sandbox_host::{CallError, Code, Leaf};
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use upstream::{refused_port, Decoy, Script, Scripted};

const SECRET: &str = "sk-faults-3b9e1d7c55";

/// The limits every policy sets (short, so the suite is fast).
const CONNECT_MS: u64 = 1_000;
const FIRST_BYTE_MS: u64 = 1_000;
const BETWEEN_BYTES_MS: u64 = 1_000;
const CALL_MS: u64 = 3_000;
/// What an answer may take beyond the timeout that bounds it (a shared 2-core machine).
const MARGIN_MS: u64 = 1_500;
/// How much earlier than its timeout a row that waits for one may end (timer granularity).
const SLACK_MS: u64 = 100;

/// One provider plugin and what its list answers look like.
struct Provider {
    name: &'static str,
    key_env: &'static str,
    image: &'static str,
    /// The path of its upstream list (checked against what the upstream saw).
    list_path: &'static str,
    /// A valid empty list, padded with whitespace so a trickle of it takes a while.
    empty_list: &'static str,
    /// Valid JSON that is the wrong shape for this provider's list.
    wrong_shape: &'static str,
}

const PROVIDERS: [Provider; 3] = [
    Provider {
        name: "e2b",
        key_env: "E2B_API_KEY",
        image: "base",
        list_path: "/v2/sandboxes",
        empty_list: "[          ]",
        // `GET /v2/sandboxes` answers an array of ListedSandbox.
        wrong_shape: r#"{"unexpected": true}"#,
    },
    Provider {
        name: "morph",
        key_env: "MORPH_API_KEY",
        image: "snapshot_base",
        list_path: "/instance",
        empty_list: r#"{ "data" : [ ] }"#,
        // `GET /instance` answers `{data: [Instance]}`: an array is the wrong shape.
        wrong_shape: r#"[{"unexpected": true}]"#,
    },
    Provider {
        name: "daytona",
        key_env: "DAYTONA_API_KEY",
        image: "daytona-small",
        list_path: "/sandbox",
        empty_list: r#"{ "items" : [ ] }"#,
        // `GET /sandbox` answers an array or `{items, …}`: an object without `items` is neither.
        wrong_shape: r#"{"unexpected": true}"#,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refused,
    ClosedBeforeHeaders,
    ResetBeforeHeaders,
    ResetMidBody,
    SlowHeaders,
    TrickledHeaders,
    NotHttp,
    StalledBody,
    TrickleWithinBudget,
    TricklePastWall,
    TruncatedChunked,
    Html502,
    MalformedJson,
    WrongShape,
    Redirect302,
    Redirect307,
    Status401,
    Status403,
    Status403Suspended,
    Status402,
    RetryAfterSeconds,
    RetryAfterDate,
    TooManyWithoutHint,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Refused => "connection refused",
            Fault::ClosedBeforeHeaders => "closed before headers",
            Fault::ResetBeforeHeaders => "reset (RST) before headers",
            Fault::ResetMidBody => "cut mid-body (Content-Length 100, 10 sent)",
            Fault::SlowHeaders => "headers after 2.5 s (first byte 1 s)",
            Fault::TrickledHeaders => "headers 1 byte / 100 ms (first byte 1 s)",
            Fault::NotHttp => "not HTTP (an SSH banner)",
            Fault::StalledBody => "body stalls 2.5 s (between bytes 1 s)",
            Fault::TrickleWithinBudget => "valid body, 1 byte / 100 ms, ~1.5 s (wall 3 s)",
            Fault::TricklePastWall => "valid body, 1 byte / 100 ms, ~6 s (wall 3 s)",
            Fault::TruncatedChunked => "chunked body cut before `0\\r\\n\\r\\n`",
            Fault::Html502 => "502 text/html",
            Fault::MalformedJson => "200 `{not json`",
            Fault::WrongShape => "200 JSON of the wrong shape",
            Fault::Redirect302 => "302 to another loopback port",
            Fault::Redirect307 => "307 to another loopback port",
            Fault::Status401 => "401",
            Fault::Status403 => "403 Forbidden",
            Fault::Status403Suspended => "403 organization suspended",
            Fault::Status402 => "402",
            Fault::RetryAfterSeconds => "429 Retry-After: 2",
            Fault::RetryAfterDate => "429 Retry-After: HTTP-date +3 s",
            Fault::TooManyWithoutHint => "429 without Retry-After",
        }
    }
}

/// What a row must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The call succeeds (a list reconciled with the upstream).
    Ok,
    Code(Code),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Ok => f.write_str("ok"),
            Expect::Code(c) => write!(f, "{c}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Hint {
    /// No retry hint.
    None,
    /// A hint within these bounds (ms).
    Within(u64, u64),
}

/// A row's expectation: outcome, time bounds (ms) and retry hint.
struct Expectation {
    outcome: Expect,
    min_ms: u64,
    max_ms: u64,
    hint: Hint,
}

fn expectation(p: &Provider, fault: Fault) -> Expectation {
    let code = |c| Expect::Code(c);
    let fast = |outcome| Expectation { outcome, min_ms: 0, max_ms: CALL_MS + MARGIN_MS, hint: Hint::None };
    match fault {
        Fault::Refused => Expectation { max_ms: CONNECT_MS + MARGIN_MS, ..fast(code(Code::Unavailable)) },
        Fault::ClosedBeforeHeaders
        | Fault::ResetBeforeHeaders
        | Fault::ResetMidBody
        | Fault::NotHttp
        | Fault::TruncatedChunked
        | Fault::Html502
        | Fault::MalformedJson
        | Fault::WrongShape
        | Fault::Redirect302
        | Fault::Redirect307 => fast(code(Code::Unavailable)),
        // The first-byte timeout bounds the whole head, not only its first byte.
        Fault::SlowHeaders | Fault::TrickledHeaders => Expectation {
            outcome: code(Code::Unavailable),
            min_ms: FIRST_BYTE_MS - SLACK_MS,
            max_ms: FIRST_BYTE_MS + MARGIN_MS,
            hint: Hint::None,
        },
        Fault::StalledBody => Expectation {
            outcome: code(Code::Unavailable),
            min_ms: BETWEEN_BYTES_MS - SLACK_MS,
            max_ms: BETWEEN_BYTES_MS + MARGIN_MS,
            hint: Hint::None,
        },
        // Slow but alive: no between-bytes gap reaches its timeout, the wall is not reached.
        Fault::TrickleWithinBudget => Expectation { min_ms: 1_000, ..fast(Expect::Ok) },
        // The wall clock ends it: S701, not a hang.
        Fault::TricklePastWall => {
            Expectation { outcome: code(Code::PluginTimeout), min_ms: CALL_MS - SLACK_MS, max_ms: CALL_MS + MARGIN_MS, hint: Hint::None }
        }
        Fault::Status401 | Fault::Status403 => fast(code(Code::AuthInvalid)),
        // Daytona answers a suspended organisation with 403: quota, not the credential
        // (plugins/daytona/src/errors.rs); to the others a 403 is the credential.
        Fault::Status403Suspended if p.name == "daytona" => fast(code(Code::QuotaExhausted)),
        Fault::Status403Suspended => fast(code(Code::AuthInvalid)),
        Fault::Status402 => fast(code(Code::QuotaExhausted)),
        Fault::RetryAfterSeconds => Expectation { hint: Hint::Within(2_000, 2_000), ..fast(code(Code::RateLimited)) },
        // The date has whole seconds: 3 s ahead, truncated, less the time to get there.
        Fault::RetryAfterDate => Expectation { hint: Hint::Within(1_000, 3_000), ..fast(code(Code::RateLimited)) },
        Fault::TooManyWithoutHint => fast(code(Code::RateLimited)),
    }
}

/// The bytes the upstream plays for `fault` (built just before the row runs: the
/// HTTP date is relative to now).
fn script(p: &Provider, fault: Fault, decoy: &Decoy) -> Script {
    let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";
    let redirect =
        |status| Script::status(status, "text/plain", "moved").with_header("Location", &format!("http://{}{}", decoy.addr, p.list_path));
    match fault {
        // Never played: that row's host points at a port nothing listens on.
        Fault::Refused => Script::Close,
        Fault::ClosedBeforeHeaders => Script::Close,
        Fault::ResetBeforeHeaders => Script::Reset,
        Fault::ResetMidBody => Script::ShortBody { declared: 100, sent: b"[{\"sandbox".to_vec() },
        Fault::SlowHeaders => Script::Delay { delay: Duration::from_millis(2_500), then: Box::new(Script::json(p.empty_list)) },
        Fault::TrickledHeaders => Script::TrickleHead { every: Duration::from_millis(100), body: p.empty_list.as_bytes().to_vec() },
        Fault::NotHttp => Script::Raw(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\n".to_vec()),
        Fault::StalledBody => Script::Stall { declared: 100, sent: b"[{\"sandbox".to_vec(), silence: Duration::from_millis(2_500) },
        Fault::TrickleWithinBudget => Script::Trickle { every: Duration::from_millis(100), body: p.empty_list.as_bytes().to_vec() },
        Fault::TricklePastWall => {
            let padded = format!("{}{}", " ".repeat(60 - p.empty_list.len()), p.empty_list);
            Script::Trickle { every: Duration::from_millis(100), body: padded.into_bytes() }
        }
        Fault::TruncatedChunked => Script::TruncatedChunked { chunks: vec![b"[{\"sandboxID\":".to_vec(), b"\"sbx-1\",".to_vec()] },
        Fault::Html502 => Script::status(502, "text/html", html),
        Fault::MalformedJson => Script::json("{not json"),
        Fault::WrongShape => Script::json(p.wrong_shape),
        Fault::Redirect302 => redirect(302),
        Fault::Redirect307 => redirect(307),
        Fault::Status401 => Script::status(401, "application/json", r#"{"code":401,"message":"Invalid API key"}"#),
        Fault::Status403 => Script::status(403, "application/json", r#"{"code":403,"message":"Forbidden"}"#),
        Fault::Status403Suspended => {
            Script::status(403, "application/json", r#"{"statusCode":403,"message":"Organization is suspended: payment required"}"#)
        }
        Fault::Status402 => Script::status(402, "application/json", r#"{"code":402,"message":"Payment required: out of credits"}"#),
        Fault::RetryAfterSeconds => too_many().with_header("Retry-After", "2"),
        Fault::RetryAfterDate => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(3);
            too_many().with_header("Retry-After", &at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        }
        Fault::TooManyWithoutHint => too_many(),
    }
}

fn too_many() -> Script {
    Script::status(429, "application/json", r#"{"code":429,"message":"Rate limit exceeded"}"#)
}

/// Every fault, for `list`.
const LIST_ROWS: [Fault; 23] = [
    Fault::Refused,
    Fault::ClosedBeforeHeaders,
    Fault::ResetBeforeHeaders,
    Fault::ResetMidBody,
    Fault::SlowHeaders,
    Fault::TrickledHeaders,
    Fault::NotHttp,
    Fault::StalledBody,
    Fault::TrickleWithinBudget,
    Fault::TricklePastWall,
    Fault::TruncatedChunked,
    Fault::Html502,
    Fault::MalformedJson,
    Fault::WrongShape,
    Fault::Redirect302,
    Fault::Redirect307,
    Fault::Status401,
    Fault::Status403,
    Fault::Status403Suspended,
    Fault::Status402,
    Fault::RetryAfterSeconds,
    Fault::RetryAfterDate,
    Fault::TooManyWithoutHint,
];

/// Faults a create meets on its first request; each must release the slot it reserved.
/// (A create the wall clock ends is abandoned and keeps its slot by design: not here.)
const CREATE_ROWS: [Fault; 8] = [
    Fault::Refused,
    Fault::ResetBeforeHeaders,
    Fault::ResetMidBody,
    Fault::SlowHeaders,
    Fault::Html502,
    Fault::Status402,
    Fault::RetryAfterSeconds,
    Fault::RetryAfterDate,
];

/// One row as it came out.
struct Outcome {
    provider: &'static str,
    leaf: Leaf,
    fault: Fault,
    expected: Expectation,
    got: Result<Expect, String>,
    elapsed_ms: u64,
    hint: Option<u64>,
    requests: usize,
    problems: Vec<String>,
}

/// A host serving `p` with its `api_base` at `port`.
async fn host_for(p: &Provider, port: u16, decoy: &Decoy) -> TestHost {
    let base = format!("http://127.0.0.1:{port}");
    let mut policy = format!(
        "api_base = \"{base}\"\nallowed_hosts = [\"127.0.0.1:{port}\", \"{decoy}\"]\n[credentials]\napi-key = \"{}\"\n",
        p.key_env,
        decoy = decoy.addr
    );
    if p.name == "e2b" {
        policy.push_str(&format!("[config]\nenvd-url = \"{base}\"\n"));
    }
    policy.push_str(&format!(
        "[limits]\ncall_timeout_ms = {CALL_MS}\nconnect_timeout_ms = {CONNECT_MS}\nfirst_byte_timeout_ms = {FIRST_BYTE_MS}\n\
         between_bytes_timeout_ms = {BETWEEN_BYTES_MS}\n"
    ));
    let h = TestHost::start(vec![PluginSetup::new(p.name, policy)], &[(p.key_env, SECRET)]).await;
    assert!(h.diagnostics.is_empty(), "{}: {:?}", p.name, h.diagnostics);
    h
}

/// What the caller saw: the code (a list's `reconcile_error`, or the call's error) and
/// the retry hint (the error's `retry_after_ms`, or the `retry after N ms` of a list's sentence).
fn observed(leaf: Leaf, result: &Result<Value, CallError>) -> (Result<Expect, String>, Option<u64>) {
    match result {
        Err(e) => (Ok(Expect::Code(e.code)), e.retry_after_ms),
        Ok(v) if leaf == Leaf::List && v["reconciled"] == json!(true) => (Ok(Expect::Ok), None),
        Ok(v) if leaf == Leaf::List => {
            let why = v["reconcile_error"].as_str().unwrap_or_default();
            let code = why.strip_prefix('[').and_then(|r| r.get(..4)).and_then(Code::parse);
            let hint = why.split("retry after ").nth(1).and_then(|r| r.split(" ms").next()).and_then(|n| n.parse().ok());
            match code {
                Some(c) => (Ok(Expect::Code(c)), hint),
                None => (Err(format!("unreconciled without a code: {v}")), None),
            }
        }
        Ok(_) => (Ok(Expect::Ok), None),
    }
}

async fn run_row(p: &Provider, h: &TestHost, up: &Scripted, decoy: &Decoy, leaf: Leaf, fault: Fault) -> Outcome {
    let expected = expectation(p, fault);
    up.play(script(p, fault, decoy));
    let plugin = h.host.registry.get(p.name).expect("plugin loaded");
    let book = h.host.registry.book(p.name);
    let before = book.in_flight();
    let decoy_before = decoy.connections();
    let payload = if leaf == Leaf::Create { json!({"image": p.image}) } else { json!({}) };
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), h.call(p.name, leaf, payload)).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let mut problems = Vec::new();
    let (got, hint) = match &result {
        Ok(r) => observed(leaf, r),
        Err(_) => (Err("hung (no answer in 30 s)".into()), None),
    };
    if describe(&result).contains(SECRET) {
        problems.push("the answer contains the credential".into());
    }
    match &got {
        Ok(g) if *g == expected.outcome => {}
        Ok(g) => problems.push(format!("expected {}, got {g}: {}", expected.outcome, describe(&result))),
        Err(e) => problems.push(e.clone()),
    }
    if elapsed_ms < expected.min_ms || elapsed_ms > expected.max_ms {
        problems.push(format!("took {elapsed_ms} ms, outside {}..={} ms", expected.min_ms, expected.max_ms));
    }
    match (expected.hint, hint) {
        (Hint::None, None) => {}
        (Hint::Within(lo, hi), Some(ms)) if (lo..=hi).contains(&ms) => {}
        (want, got) => problems.push(format!("retry hint {got:?}, expected {want:?}")),
    }
    // No slot of any kind outlives the call. (The plugin's calls in flight and upstream
    // requests in flight are released as the call returns; give a dropped body a moment.)
    let mut settled = false;
    for _ in 0..50 {
        if book.in_flight() == before && plugin.admission.in_flight() == 0 && plugin.policy.egress.fanout.in_flight() == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !settled {
        problems.push(format!(
            "slots leaked: sandboxes {} (was {before}), calls in flight {}, upstream requests in flight {}",
            book.in_flight(),
            plugin.admission.in_flight(),
            plugin.policy.egress.fanout.in_flight()
        ));
    }
    if decoy.connections() != decoy_before {
        problems.push(format!("the redirect target received {} connection(s)", decoy.connections() - decoy_before));
    }
    // Nothing here ever creates a sandbox: a list answered from the book shows none.
    if let (Leaf::List, Ok(Ok(v))) = (leaf, &result) {
        if v["in_flight"] != json!(before) || v["sandboxes"] != json!([]) {
            problems.push(format!("the list counts a phantom: {v}"));
        }
    }
    let seen = up.seen();
    if fault != Fault::Refused {
        if seen.is_empty() {
            problems.push("the scripted upstream saw no request".into());
        }
        if leaf == Leaf::List && !seen.iter().any(|s| s.method == "GET" && s.target.starts_with(p.list_path)) {
            problems.push(format!("no GET {} among {seen:?}", p.list_path));
        }
    }
    Outcome { provider: p.name, leaf, fault, expected, got, elapsed_ms, hint, requests: seen.len(), problems }
}

fn describe(result: &Result<Result<Value, CallError>, tokio::time::error::Elapsed>) -> String {
    match result {
        Ok(Ok(v)) => v.to_string(),
        Ok(Err(e)) => e.message(),
        Err(_) => "no answer".into(),
    }
}

/// Every row of one provider: list faults, create faults, then a list answered from
/// the book that must count no phantom.
async fn provider_matrix(p: &'static Provider) -> Vec<Outcome> {
    let up = Scripted::start().await;
    let decoy = Decoy::start().await;
    let h = host_for(p, up.port(), &decoy).await;
    // "Connection refused": a host of its own, pointed at a port nothing listens on.
    let nowhere = host_for(p, refused_port(), &decoy).await;
    // The decoy counts what reaches it (so "received nothing" below means something).
    drop(tokio::net::TcpStream::connect(decoy.addr).await.expect("the decoy listens"));
    for _ in 0..100 {
        if decoy.connections() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(decoy.connections(), 1, "the decoy counts connections");
    let mut out = Vec::new();
    let rows = LIST_ROWS.iter().map(|f| (Leaf::List, *f)).chain(CREATE_ROWS.iter().map(|f| (Leaf::Create, *f)));
    for (leaf, fault) in rows {
        let host = if fault == Fault::Refused { &nowhere } else { &h };
        out.push(run_row(p, host, &up, &decoy, leaf, fault).await);
    }
    // After the failed creates, a list the upstream cannot answer comes from the book:
    // it must count no sandbox and no slot (checked in `run_row`).
    out.push(run_row(p, &h, &up, &decoy, Leaf::List, Fault::Html502).await);
    out
}

fn table(rows: &[Outcome]) -> String {
    let mut t = String::from(
        "| provider | leaf | upstream fault | expected | got | elapsed ms | bound ms | retry hint ms | upstream requests | result |\n\
         |---|---|---|---|---|--:|---|--:|--:|---|\n",
    );
    for r in rows {
        let got = match &r.got {
            Ok(g) => g.to_string(),
            Err(e) => format!("error: {e}"),
        };
        let hint = r.hint.map_or("—".to_string(), |h| h.to_string());
        let verdict = if r.problems.is_empty() { "pass".to_string() } else { format!("FAIL: {}", r.problems.join("; ")) };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {got} | {} | {}..={} | {hint} | {} | {verdict} |",
            r.provider,
            r.leaf,
            r.fault.label(),
            r.expected.outcome,
            r.elapsed_ms,
            r.expected.min_ms,
            r.expected.max_ms,
            r.requests
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fault_matrix() {
    let started = Instant::now();
    let [e2b, morph, daytona] = &PROVIDERS;
    let (a, b, c) = tokio::join!(provider_matrix(e2b), provider_matrix(morph), provider_matrix(daytona));
    let rows: Vec<Outcome> = a.into_iter().chain(b).chain(c).collect();
    println!("\nUpstream fault matrix ({} rows, {} ms):\n\n{}", rows.len(), started.elapsed().as_millis(), table(&rows));
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| format!("{} {} {:?}: {}", r.provider, r.leaf, r.fault, r.problems.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{} of {} rows failed:\n{}", failed.len(), rows.len(), failed.join("\n"));
}
