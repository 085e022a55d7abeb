//! The iii bridge on the mock engine: 1 000 generated inputs per leaf, each one of
//! - an invocation of `sandbox::provider::<p>::<leaf>` (e2b or morph) with a value;
//! - an invocation of the router id `sandbox::<leaf>` with a generated `provider` field
//!   (missing, unknown, not a string, 10 MiB long);
//! - raw request text through the HTTP-trigger adapter `sandbox::provider::e2b::<leaf>::http`,
//!   whose body the bridge parses itself (`bridge/http.rs`): duplicate keys, `\u0000`,
//!   lone surrogates, `1e400`, nesting 10 000 deep, invalid UTF-8 (lossily decoded, as
//!   a text body arrives).
//!
//! Exec inputs carry generated `stream` fields too: hostile values, well-formed refs to
//! channels the engine does not know, and real channels. The expectations are the
//! host's (`World::expect`) after the bridge's own steps (the router's split, the
//! adapter's body parse, the stream ref taken out). Values nested deeper than the
//! engine's and the SDK's JSON parsers accept (serde_json's 128 levels) cannot be a frame
//! of either: those go through the adapter as text.

use crate::json::{self, show_value};
use crate::world::{clip, Expect, World};
use crate::{cases, generate, runtime, Tally, ALIVE_EVERY};
use proptest::prelude::*;
use sandbox_host::bridge::iii::{provider_function_id, router_function_id, Bridge, BridgeOptions};
use sandbox_host::config::HttpTrigger;
use sandbox_host::{CallError, Code, Leaf};
use sandbox_tests::mock_engine::{InvokeError, MockEngine};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CASES: u32 = 1_000;
/// Deeper values are not frames any engine or SDK parser accepts.
const FRAME_DEPTH: usize = 100;
/// Stands for a channel the mock engine really made (made per case).
const REAL_CHANNEL: &str = "@real-channel";

#[derive(Debug, Clone)]
enum Case {
    Provider(String, Value),
    /// The router with this `provider` field (`None`: absent).
    Router(Option<Value>, Value),
    /// Raw body text through the HTTP adapter.
    Http(Vec<u8>),
}

fn show(c: &Case) -> String {
    match c {
        Case::Provider(p, v) => format!("provider function of {p:?}, payload {}", show_value(v)),
        Case::Router(p, v) => format!("router, provider {}, payload {}", p.as_ref().map_or("absent".into(), show_value), show_value(v)),
        Case::Http(b) => format!("http adapter, body {}", clip(&String::from_utf8_lossy(b))),
    }
}

fn stream_field() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => json::value(),
        2 => (json::text(), json::text(), prop::sample::select(&["write", "read", "both", ""][..]))
            .prop_map(|(c, k, d)| json!({"channel_id": c, "access_key": k, "direction": d})),
        2 => Just(json!(REAL_CHANNEL)),
    ]
    .boxed()
}

/// Payloads of `leaf`; an exec's sometimes with a `stream` field.
fn payload(leaf: Leaf) -> BoxedStrategy<Value> {
    let base = json::payload(leaf, true);
    if leaf != Leaf::Exec {
        return base;
    }
    prop_oneof![
        3 => base.clone(),
        1 => (base, stream_field()).prop_map(|(mut v, s)| {
            if let Value::Object(m) = &mut v {
                m.insert("stream".into(), s);
            }
            v
        }),
    ]
    .boxed()
}

fn case(leaf: Leaf, resident: String) -> BoxedStrategy<Case> {
    let provider_field = prop_oneof![
        4 => Just(Some(json!("e2b"))),
        1 => Just(Some(json!("morph"))),
        1 => Just(None),
        2 => json::unknown_provider().prop_map(|p| Some(json!(p))),
        2 => json::value().prop_map(Some),
    ];
    prop_oneof![
        100 => (prop_oneof![4 => Just("e2b".to_string()), 1 => Just("morph".to_string())], payload(leaf)).prop_map(|(p, v)| Case::Provider(p, v)),
        60 => (provider_field, payload(leaf)).prop_map(|(p, v)| Case::Router(p, v)),
        80 => json::raw(leaf, true).prop_map(Case::Http),
        1 => json::resident(leaf, resident).prop_map(|v| Case::Provider("e2b".into(), v)),
    ]
    .boxed()
}

struct Bridged {
    w: World,
    engine: MockEngine,
    _bridge: Arc<Bridge>,
}

fn http_path(leaf: Leaf) -> String {
    format!("gen/{}", leaf.as_str().replace("::", "/"))
}

async fn start() -> Bridged {
    let triggers: Vec<HttpTrigger> = Leaf::ALL
        .iter()
        .map(|l| HttpTrigger { function: provider_function_id("e2b", *l), path: http_path(*l), method: "POST".into() })
        .collect();
    let w = World::start(|c| {
        c.router = true;
        c.http_triggers = triggers;
    })
    .await;
    let engine = MockEngine::start(0).await;
    let bridge = Bridge::connect(w.h.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(Duration::from_secs(15)).await.expect("the worker registers");
    let mut want: Vec<String> = Leaf::ALL.iter().map(|l| router_function_id(*l)).collect();
    for p in ["e2b", "morph"] {
        want.extend(w.h.host.registry.get(p).unwrap().leaves().into_iter().map(|l| provider_function_id(p, l)));
    }
    want.extend(Leaf::ALL.iter().map(|l| format!("{}::http", provider_function_id("e2b", *l))));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !want.iter().all(|id| engine.function(id).is_some()) {
        assert!(tokio::time::Instant::now() < deadline, "registered {:?}, want {want:?}", engine.function_ids());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Bridged { w, engine, _bridge: bridge }
}

/// An iii error as a contract error, if it is one (`code` an S-code, `message` its form).
fn as_call_error(e: &InvokeError) -> Result<CallError, String> {
    let code = Code::parse(&e.code).ok_or_else(|| format!("an iii error without an S-code: {} {}", e.code, clip(&e.message)))?;
    let sentence = e.message.strip_prefix(&format!("[{}] ", e.code)).ok_or_else(|| format!("an untyped message: {}", clip(&e.message)))?;
    Ok(CallError::new(code, sentence))
}

/// What the bridge must answer for `leaf` on `provider` with `payload` (exec: after the
/// stream ref is taken out, which is refused first when malformed).
fn expect(w: &World, provider: &str, leaf: Leaf, payload: &mut Value) -> Expect {
    if provider == "legacy" {
        // The World's second host is not behind this bridge.
        return Expect::Refused(Code::UnknownProvider, "not on this host");
    }
    if leaf == Leaf::Exec {
        match sandbox_host::bridge::iii::stream::take_ref(payload) {
            Err(e) => return Expect::Invalid(e),
            Ok(Some(_)) => {
                let inner = w.expect(provider, leaf, payload);
                // A valid exec whose ref the engine does not know is refused before anything runs.
                return match inner {
                    Expect::Valid if !payload.get(REAL_MARK).is_some_and(|v| v == true) => {
                        Expect::Refused(Code::BadInput, "unknown channel")
                    }
                    other => other,
                };
            }
            Ok(None) => {}
        }
    }
    w.expect(provider, leaf, payload)
}

/// Set (by the case runner, in the copy the oracle sees) when `stream` is a real channel.
const REAL_MARK: &str = "@gen-real-channel";

async fn one(b: &Bridged, tally: &Tally, leaf: Leaf, case: Case, n: u32) -> Result<(), String> {
    let w = &b.w;
    // A failed case (or its shrinking) may have left requests behind.
    w.clear();
    // Too deep for a frame: the same value as text through the adapter.
    let case = match case {
        Case::Provider(_, v) | Case::Router(_, v) if json::depth(&v) > FRAME_DEPTH => Case::Http(v.to_string().into_bytes()),
        other => other,
    };
    let (function, data, provider, mut seen, real) = match case {
        Case::Provider(p, v) => {
            let (v, real) = with_real_channel(&b.engine, v);
            let seen = wire(&v);
            (provider_function_id(&p, leaf), v, p, seen, real)
        }
        Case::Router(p, v) => {
            let (mut data, real) = with_real_channel(&b.engine, v);
            if let (Value::Object(m), Some(p)) = (&mut data, p) {
                m.insert("provider".into(), p);
            }
            match sandbox_host::router::split(&w.h.host, leaf, wire(&data)) {
                Ok((provider, payload)) => (router_function_id(leaf), data, provider, payload, real),
                Err(e) => {
                    router_refusal(w, tally, leaf, &b.engine, data, e).await?;
                    return after(b, n).await;
                }
            }
        }
        Case::Http(body) => return http(b, tally, leaf, body, n).await,
    };
    if real {
        if let Value::Object(m) = &mut seen {
            m.insert(REAL_MARK.into(), json!(true));
        }
    }
    let expected = expect(w, &provider, leaf, &mut seen);
    if let Value::Object(m) = &mut seen {
        m.remove(REAL_MARK);
    }
    let got = b.engine.invoke(&function, data).await;
    let result = match &got {
        Ok(v) => Ok(v.clone()),
        Err(e) => Err(as_call_error(e)?),
    };
    let sent = w.sent();
    tally.add(crate::host_call::outcome(&expected, &result));
    w.judge(&expected, &result, sent, crate::host_call::approx_len(&seen))?;
    if let Ok(answer) = &result {
        w.undo(&provider, leaf, &seen, answer).await;
    }
    json::drop_flat(seen);
    after(b, n).await
}

/// `v` as the worker sees it after the frame's JSON round trip. serde_json (the engine's
/// and the SDK's) reads floats back to the nearest value it computes, not always the one
/// written: `5.357682727977813e149` arrives as `…812e149`. No contract field is a float,
/// but an error quoting one quotes what arrived.
fn wire(v: &Value) -> Value {
    serde_json::from_str(&v.to_string()).expect("a value of frame depth round-trips")
}

/// Replaces the [`REAL_CHANNEL`] marker with a channel the engine made.
fn with_real_channel(engine: &MockEngine, mut v: Value) -> (Value, bool) {
    let real = v.get("stream").is_some_and(|s| s == REAL_CHANNEL);
    if real {
        v["stream"] = engine.create_channel().0;
    }
    (v, real)
}

/// A router call the split itself refuses: that refusal, exactly, and nothing sent.
async fn router_refusal(w: &World, tally: &Tally, leaf: Leaf, engine: &MockEngine, data: Value, want: CallError) -> Result<(), String> {
    let got = engine.invoke(&router_function_id(leaf), data).await;
    tally.add(format!("router-refused→{}", want.code));
    let got = got.err().ok_or("a refused router call answered a result")?;
    let got = as_call_error(&got)?;
    if (got.code, got.message()) != (want.code, want.message()) {
        return Err(format!("the router answered {}, expected {}", clip(&got.message()), clip(&want.message())));
    }
    crate::world::typed(&got)?;
    if w.sent() > 0 {
        return Err(format!("a router refusal sent {:?} upstream", w.sent_routes()));
    }
    Ok(())
}

/// Raw body text through the HTTP-trigger adapter of e2b's `leaf`.
async fn http(b: &Bridged, tally: &Tally, leaf: Leaf, body: Vec<u8>, n: u32) -> Result<(), String> {
    let w = &b.w;
    let text = String::from_utf8_lossy(&body).into_owned();
    let envelope = json!({
        "method": "POST",
        "path": http_path(leaf),
        "headers": {"content-type": "text/plain"},
        "query_params": {},
        "path_params": {},
        "body": text,
    });
    let mut seen = sandbox_host::bridge::http::payload(&envelope);
    let expected = expect(w, "e2b", leaf, &mut seen);
    let function = format!("{}::http", provider_function_id("e2b", leaf));
    let got = b.engine.invoke(&function, envelope).await.map_err(|e| format!("the adapter failed: {} {}", e.code, clip(&e.message)))?;
    let status = got["status_code"].as_u64().ok_or_else(|| format!("no status_code: {}", clip(&got.to_string())))?;
    let result = if status == 200 {
        Ok(got["body"].clone())
    } else {
        let code = got["body"]["code"]
            .as_str()
            .and_then(Code::parse)
            .ok_or_else(|| format!("an HTTP error without an S-code: {}", clip(&got.to_string())))?;
        let message = got["body"]["message"].as_str().unwrap_or_default();
        let sentence = message.strip_prefix(&format!("[{code}] ")).ok_or_else(|| format!("an untyped message: {}", clip(message)))?;
        let e = CallError::new(code, sentence);
        if u64::from(sandbox_host::bridge::http::status(code)) != status {
            return Err(format!("{code} answered HTTP {status}"));
        }
        Err(e)
    };
    if let (Err(_), true) = (&result, expected.sends_nothing() && status >= 500) {
        return Err(format!("bad input answered HTTP {status}: {}", show_result(&result)));
    }
    let sent = w.sent();
    tally.add(format!("http {}", crate::host_call::outcome(&expected, &result)));
    w.judge(&expected, &result, sent, body.len())?;
    if let Ok(answer) = &result {
        w.undo("e2b", leaf, &seen, answer).await;
    }
    json::drop_flat(seen);
    after(b, n).await
}

fn show_result(r: &Result<Value, CallError>) -> String {
    crate::world::show(r)
}

/// The invariants after every case; every [`ALIVE_EVERY`] a valid call through the engine.
async fn after(b: &Bridged, n: u32) -> Result<(), String> {
    b.w.clear();
    b.w.check_books()?;
    if n.is_multiple_of(ALIVE_EVERY) {
        let got = b.engine.invoke(&provider_function_id("e2b", Leaf::Get), json!({ "sandbox_id": b.w.resident })).await;
        if got.as_ref().map(|v| v["sandbox_id"] != b.w.resident.as_str()).unwrap_or(true) {
            return Err(format!("a valid get through the engine answered {got:?}"));
        }
        b.w.clear();
    }
    Ok(())
}

fn run(leaf: Leaf) {
    crate::big_stack(move || {
        let rt = runtime();
        let b = rt.block_on(start());
        let (tally, n) = (Tally::default(), AtomicU32::new(0));
        let started = std::time::Instant::now();
        let what = format!("bridge::{}", leaf.as_str().replace("::", "_"));
        let ran = generate(&what, cases(CASES), case(leaf, b.w.resident.clone()), show, |c| {
            rt.block_on(one(&b, &tally, leaf, c, n.fetch_add(1, Ordering::Relaxed) + 1))
        });
        rt.block_on(async {
            after(&b, ALIVE_EVERY).await.unwrap();
            assert_eq!(b.engine.connections(), 1, "the worker never lost its engine connection");
        });
        tally.print(&what, ran, started);
    });
}

/// Issue 12, validate first everywhere: an exec the host refuses opens no stream
/// channel. Its answer is the refusal itself (here: validation's, and the router's
/// S600), not the engine's 404 for a channel it does not know, and nothing is sent.
#[test]
fn a_refused_exec_is_answered_before_its_stream_channel_is_opened() {
    crate::big_stack(|| {
        runtime().block_on(async {
            let b = start().await;
            let unknown = json!({"channel_id": "no-such-channel", "access_key": "k", "direction": "write"});
            let exec = provider_function_id("e2b", Leaf::Exec);
            let e = b.engine.invoke(&exec, json!({"cmd": "ls", "stream": unknown})).await.unwrap_err();
            assert_eq!(e.code, "S422", "{}", e.message);
            assert!(e.message.contains("missing required field `sandbox_id`"), "validation answers first: {}", e.message);
            let e = b.engine.invoke(&exec, json!({"sandbox_id": "s", "cmd": "echo 'open", "stream": unknown})).await.unwrap_err();
            assert!(e.message.contains("unbalanced quotes"), "validation answers first: {}", e.message);
            let routed = json!({"provider": "nope", "sandbox_id": "s", "cmd": "ls", "stream": unknown});
            let e = b.engine.invoke(&router_function_id(Leaf::Exec), routed).await.unwrap_err();
            assert_eq!(e.code, "S600", "{}", e.message);
            // A valid exec with that ref is still refused for the channel, before it runs.
            let e = b.engine.invoke(&exec, json!({"sandbox_id": b.w.resident, "cmd": "ls", "stream": unknown})).await.unwrap_err();
            assert!(e.message.contains("names a channel the engine does not know"), "{}", e.message);
            assert_eq!(b.w.sent_routes(), Vec::<String>::new());
        })
    });
}

leaf_tests!();
