//! The E2B-compatible API over raw HTTP: 1 000 generated requests per leaf it serves
//! (create, list, get, stop, set_timeout, pause, resume on the control plane; exec, fs::read,
//! fs::write on envd) plus envd's unary RPCs; snapshot, branch and expose_port have no
//! E2B route. Bodies are raw bytes (`json.rs`), ids and queries are generated too.
//!
//! After each request: an answer arrived (never a dropped connection); no 5xx for bad
//! input (a 501 only for what no provider offers); every error body is E2B's `{code,
//! message}` (control plane and `/files`) or Connect's (envd RPC, streamed ones as the
//! end-of-stream envelope); a request refused as bad (400, 413, 415, Connect
//! `invalid_argument`) sent nothing upstream; the slot books match the simulators; and
//! every [`ALIVE_EVERY`] requests a valid one is still answered.
//!
//! Sandboxes: `live` (created through the API, used only by valid requests) and `dead`
//! (created and killed, so its id and envd token are well formed but every call on it
//! reaches the upstream only to learn it is gone).

use crate::json;
use crate::world::{clip, World};
use crate::{cases, generate, runtime, Tally, ALIVE_EVERY};
use proptest::prelude::*;
use proptest::sample::select;
use sandbox_host::e2b_api::{ApiKey, E2bApi, Settings};
use sandbox_host::Leaf;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CASES: u32 = 1_000;
const KEY: &str = "gen-e2b-api-key-5d1f";

/// The routes a generated request goes to (the leaf it becomes).
#[derive(Debug, Clone, Copy)]
enum Route {
    Create,
    List,
    Get,
    Stop,
    SetTimeout,
    Pause,
    Resume,
    Exec,
    FsRead,
    FsWrite,
    /// envd's unary RPCs (process List/SendSignal, filesystem.*).
    Unary,
}

/// Which sandbox a request names.
#[derive(Debug, Clone)]
enum Target {
    Dead,
    Live,
    Other(String),
}

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    target: Target,
    /// Extra headers (the key or token is added per target unless `auth` is false).
    headers: Vec<(String, String)>,
    auth: bool,
    body: Vec<u8>,
}

fn show(r: &Req) -> String {
    format!(
        "{} {} target {:?} headers {:?} auth {} body {}",
        r.method,
        clip(&r.path),
        r.target,
        r.headers,
        r.auth,
        clip(&String::from_utf8_lossy(&r.body))
    )
}

/// `s` percent-encoded as one path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hostile_id() -> BoxedStrategy<String> {
    prop_oneof![
        select(&["", "x", "e2b_", "_x", "E2B_x", "nope_x", "e2b_..", "e2b_a/b", "morph_gen-x", "e2b_gen-unknown", "e2b__", "e2b_\0"][..])
            .prop_map(String::from),
        json::text(),
        (1usize..20_000).prop_map(|n| format!("e2b_{}", "i".repeat(n))),
    ]
    .boxed()
}

fn target(live_ok: bool) -> BoxedStrategy<Target> {
    let hostile = hostile_id().prop_map(Target::Other);
    if live_ok {
        prop_oneof![6 => Just(Target::Dead), 1 => Just(Target::Live), 3 => hostile].boxed()
    } else {
        prop_oneof![6 => Just(Target::Dead), 3 => hostile].boxed()
    }
}

/// A JSON body for a control-plane route: near-valid shapes, then raw edits.
fn body(template: Value) -> BoxedStrategy<Vec<u8>> {
    let fields: Vec<String> = template.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let t = template.clone();
    let mutated = (prop::collection::vec((select(fields.clone()), json::value()), 0..3), prop::collection::vec(select(fields), 0..2))
        .prop_map(move |(set, removed)| {
            let mut v = t.clone();
            for (k, x) in set {
                v[&k] = x;
            }
            for k in removed {
                v.as_object_mut().unwrap().remove(&k);
            }
            v
        });
    prop_oneof![
        4 => mutated.prop_map(|v| v.to_string().into_bytes()),
        3 => json::raw(Leaf::List, false),
        1 => Just(template.to_string().into_bytes()),
    ]
    .boxed()
}

fn create_body() -> BoxedStrategy<Vec<u8>> {
    let template = prop_oneof![
        3 => Just(json!({"templateID": "img-x", "timeout": 300, "metadata": {"k": "v"}, "envVars": {"A": "1"}})),
        1 => Just(json!({"templateID": "base", "timeout": 60})),
        1 => Just(json!({"templateID": "e2b/base", "allow_internet_access": true, "autoPause": false})),
        1 => Just(json!({"templateID": "morph/img-y", "secure": true, "metadata": {"e2b_api_owner": "x"}})),
    ];
    template.prop_flat_map(body).boxed()
}

fn query() -> BoxedStrategy<String> {
    let key = select(&["metadata", "state", "template", "startedAfter", "order", "limit", "nextToken", "x"][..]);
    let value = prop_oneof![
        select(
            &[
                "running",
                "paused",
                "running,paused",
                "k=v",
                "k%3Dv%26x",
                "2024-01-01T00:00:00Z",
                "asc",
                "desc",
                "0",
                "1",
                "100",
                "-1",
                "99999999999999999999",
                "page-2"
            ][..]
        )
        .prop_map(String::from),
        json::text(),
    ];
    prop::collection::vec((key, value), 0..4)
        .prop_map(|pairs| pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&"))
        .boxed()
}

/// A Connect envelope around `message`, or bytes that are not one.
fn envelope(message: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let framed = {
        let m = message.clone();
        let mut out = vec![0u8];
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(&m);
        out
    };
    prop_oneof![
        6 => Just(framed.clone()),
        1 => Just(message),
        1 => Just(framed.iter().take(3).copied().collect()),
        1 => Just({ let mut f = framed.clone(); f[0] = 1; f }),
        1 => Just({ let mut f = framed; f[1..5].copy_from_slice(&u32::MAX.to_be_bytes()); f }),
    ]
    .boxed()
}

fn start_message() -> BoxedStrategy<Vec<u8>> {
    let process = json!({"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi"], "envs": {"A": "1"}, "cwd": "/"});
    const FIELDS: &[&str] = &["cmd", "args", "envs", "cwd", "user"];
    let mutated =
        (prop::collection::vec((select(FIELDS), json::value()), 0..3), any::<bool>(), json::value()).prop_map(move |(set, pty, tag)| {
            let mut p = process.clone();
            for (k, x) in set {
                p[k] = x;
            }
            let mut m = json!({"process": p, "stdin": false});
            if pty {
                m["pty"] = json!({"size": {"rows": 1, "cols": 1}});
            }
            m["tag"] = tag;
            m.to_string().into_bytes()
        });
    prop_oneof![4 => mutated, 1 => json::raw(Leaf::Exec, false)].prop_flat_map(envelope).boxed()
}

fn unary_path() -> BoxedStrategy<String> {
    select(
        &[
            "/process.Process/List",
            "/process.Process/SendSignal",
            "/process.Process/Connect",
            "/filesystem.Filesystem/Stat",
            "/filesystem.Filesystem/ListDir",
            "/filesystem.Filesystem/MakeDir",
            "/filesystem.Filesystem/Remove",
            "/filesystem.Filesystem/Move",
            "/filesystem.Filesystem/WatchDir",
            "/filesystem.Filesystem/",
        ][..],
    )
    .prop_map(String::from)
    .boxed()
}

fn unary_message() -> BoxedStrategy<Vec<u8>> {
    let template = prop_oneof![
        Just(json!({"path": "/tmp/x"})),
        Just(json!({"source": "/tmp/a", "destination": "/tmp/b"})),
        Just(json!({"process": {"pid": 1}, "signal": "SIGNAL_SIGKILL"})),
        Just(json!({"path": "/tmp", "depth": 1})),
    ];
    template.prop_flat_map(body).boxed()
}

/// Headers and body of an upload.
type Upload = (Vec<(String, String)>, Vec<u8>);

fn file_body() -> BoxedStrategy<Upload> {
    let boundary = prop_oneof![Just("b0undary".to_string()), json::text()];
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| (vec![("content-type".to_string(), "application/octet-stream".to_string())], b)),
        2 => (boundary, json::text(), prop::collection::vec(any::<u8>(), 0..64), any::<bool>()).prop_map(|(bd, name, data, close)| {
            let mut body = format!("--{bd}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").into_bytes();
            body.extend_from_slice(&data);
            if close {
                body.extend_from_slice(format!("\r\n--{bd}--\r\n").as_bytes());
            }
            (vec![("content-type".to_string(), format!("multipart/form-data; boundary={bd}"))], body)
        }),
        1 => Just((vec![("content-encoding".to_string(), "gzip".to_string())], b"x".to_vec())),
    ]
    .boxed()
}

fn req(route: Route) -> BoxedStrategy<Req> {
    let control = |method: &'static str, suffix: &'static str, live_ok: bool, body: BoxedStrategy<Vec<u8>>| {
        (target(live_ok), body, prop::bool::weighted(0.95)).prop_map(move |(target, body, auth)| Req {
            method,
            path: suffix.to_string(),
            target,
            headers: vec![("content-type".into(), "application/json".into())],
            auth,
            body,
        })
    };
    let empty = || Just(Vec::new()).boxed();
    match route {
        Route::Create => (create_body(), prop::bool::weighted(0.95), select(&["/v2/sandboxes", "/sandboxes"][..]))
            .prop_map(|(body, auth, path)| Req {
                method: "POST",
                path: path.into(),
                target: Target::Other(String::new()),
                headers: vec![("content-type".into(), "application/json".into())],
                auth,
                body,
            })
            .boxed(),
        Route::List => (query(), prop::bool::weighted(0.95))
            .prop_map(|(q, auth)| Req {
                method: "GET",
                path: format!("/v2/sandboxes?{q}"),
                target: Target::Other(String::new()),
                headers: vec![],
                auth,
                body: vec![],
            })
            .boxed(),
        Route::Get => control("GET", "", true, empty()).boxed(),
        Route::Stop => control("DELETE", "", false, empty()).boxed(),
        Route::SetTimeout => prop_oneof![
            control("POST", "/timeout", true, body(json!({"timeout": 600}))),
            control("POST", "/refreshes", true, body(json!({"duration": 60}))),
        ]
        .boxed(),
        Route::Pause => control("POST", "/pause", true, empty()).boxed(),
        Route::Resume => control("POST", "/connect", true, body(json!({"timeout": 600}))).boxed(),
        Route::Exec => (
            start_message(),
            prop::option::of(select(&["1000", "0", "-5", "abc", "99999999999999999999", "3600001"][..])),
            prop::bool::weighted(0.95),
        )
            .prop_map(|(body, deadline, auth)| {
                let mut headers = vec![("content-type".to_string(), "application/connect+json".to_string())];
                headers.extend(deadline.map(|d| ("connect-timeout-ms".to_string(), d.to_string())));
                Req { method: "POST", path: "/process.Process/Start".into(), target: Target::Dead, headers, auth, body }
            })
            .boxed(),
        Route::FsRead => (json::text(), prop::bool::weighted(0.95))
            .prop_map(|(p, auth)| Req {
                method: "GET",
                path: format!("/files?path={}&username=user", encode(&p)),
                target: Target::Dead,
                headers: vec![],
                auth,
                body: vec![],
            })
            .boxed(),
        Route::FsWrite => (json::text(), file_body(), prop::bool::weighted(0.95))
            .prop_map(|(p, (headers, body), auth)| Req {
                method: "POST",
                path: format!("/files?path={}", encode(&p)),
                target: Target::Dead,
                headers,
                auth,
                body,
            })
            .boxed(),
        Route::Unary => (unary_path(), unary_message(), prop::bool::weighted(0.95))
            .prop_map(|(path, body, auth)| Req {
                method: "POST",
                path,
                target: Target::Dead,
                headers: vec![("content-type".into(), "application/json".into())],
                auth,
                body,
            })
            .boxed(),
    }
}

struct Api {
    w: World,
    addr: String,
    live: (String, String),
    dead: (String, String),
    _stop: tokio::sync::watch::Sender<bool>,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One request on its own connection; `Err` when no whole answer came back.
async fn send(addr: &str, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Result<Answer, String> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    conn.write_all(body).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), conn.read_to_end(&mut raw)).await;
    read.map_err(|_| "no answer within 60 s".to_string())?.map_err(|e| format!("the connection dropped: {e}"))?;
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("no answer head (dropped connection): {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") { dechunk(rest)? } else { rest.to_vec() };
    Ok(Answer { status, head, body })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").ok_or("a cut chunked body (dropped connection)")?;
        let size =
            std::str::from_utf8(&raw[..line]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok()).ok_or("a bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(line + 2..line + 2 + size).ok_or("a cut chunk (dropped connection)")?);
        raw = raw.get(line + 2 + size + 2..).ok_or("a cut chunk (dropped connection)")?;
    }
}

impl Api {
    async fn control(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let headers = [("x-api-key".to_string(), KEY.to_string()), ("content-type".to_string(), "application/json".to_string())];
        send(&self.addr, method, path, &headers, body).await.unwrap()
    }

    async fn create(&self) -> (String, String) {
        let created = self.control("POST", "/v2/sandboxes", br#"{"templateID":"base","timeout":3600}"#).await;
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        let v: Value = serde_json::from_slice(&created.body).unwrap();
        (v["sandboxID"].as_str().unwrap().to_string(), v["envdAccessToken"].as_str().unwrap().to_string())
    }
}

async fn start() -> Api {
    let w = World::start(|_| {}).await;
    let key =
        ApiKey { name: "gen".into(), secret: KEY.into(), providers: None, templates: None, rate_per_minute: None, max_sandboxes: None };
    let settings = Settings { default_provider: Some("e2b".into()), keys: vec![key], ..Settings::default() };
    let api = E2bApi::new(w.h.host.clone(), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(api.serve(listener, stopped));
    let mut a = Api { w, addr, live: Default::default(), dead: Default::default(), _stop: stop };
    a.live = a.create().await;
    a.dead = a.create().await;
    let killed = a.control("DELETE", &format!("/sandboxes/{}", a.dead.0), b"").await;
    assert_eq!(killed.status, 204);
    a.w.clear();
    a
}

const CONNECT_CODES: &[&str] = &[
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The error a Connect streaming answer ended with, if any (`Err`: not a Connect stream).
fn stream_end(body: &[u8]) -> Result<Option<Value>, String> {
    let mut rest = body;
    let mut last = None;
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(format!("{} trailing bytes after the last envelope", rest.len()));
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let message = rest.get(5..5 + len).ok_or("an envelope cut short")?;
        let v: Value = serde_json::from_slice(message).map_err(|e| format!("an envelope that is not JSON: {e}"))?;
        last = Some((rest[0], v));
        rest = &rest[5 + len..];
    }
    match last {
        Some((0x02, end)) => Ok(end.get("error").cloned()),
        Some((flags, _)) => Err(format!("the stream did not end with an end-stream envelope (flags {flags})")),
        None => Err("an empty stream".into()),
    }
}

/// Checks a Connect error object.
fn connect_error(e: &Value) -> Result<&str, String> {
    let code =
        e["code"].as_str().filter(|c| CONNECT_CODES.contains(c)).ok_or_else(|| format!("not a Connect error: {}", clip(&e.to_string())))?;
    if e["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("a Connect error without a message: {}", clip(&e.to_string())));
    }
    Ok(code)
}

/// What an answer says: its status class and whether it refused the request as bad.
fn judge_answer(route: Route, a: &Answer) -> Result<(bool, String), String> {
    let body_text = || clip(&String::from_utf8_lossy(&a.body));
    let rpc = matches!(route, Route::Exec | Route::Unary) && a.head.contains("application/");
    if matches!(route, Route::Exec) && a.status == 200 && a.head.contains("content-type: application/connect+json") {
        let end = stream_end(&a.body)?;
        return match end {
            None => Ok((false, "stream ok".into())),
            Some(e) => {
                let code = connect_error(&e)?;
                Ok((code == "invalid_argument", format!("stream {code}")))
            }
        };
    }
    // hyper's own refusals of a request head it will not read (a URI over 64 KiB, headers
    // too large) come before any handler, without a body: the HTTP edge's, not the API's.
    if matches!(a.status, 414 | 431) && a.body.is_empty() {
        return Ok((true, format!("{} (hyper)", a.status)));
    }
    if a.status >= 500 && a.status != 501 {
        return Err(format!("HTTP {} for a generated request: {}", a.status, body_text()));
    }
    if a.status < 300 {
        return Ok((false, format!("{}", a.status)));
    }
    let v: Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("HTTP {} with a body that is not JSON ({e}): {}", a.status, body_text()))?;
    if rpc && v["code"].is_string() {
        let code = connect_error(&v)?;
        return Ok((code == "invalid_argument", format!("{} {code}", a.status)));
    }
    if v["code"].as_u64() != Some(u64::from(a.status)) || v["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("HTTP {} without E2B's {{code, message}}: {}", a.status, body_text()));
    }
    if a.status == 501 && !v["message"].as_str().unwrap_or_default().contains("S404") {
        return Err(format!("HTTP 501 that is not an absent capability: {}", body_text()));
    }
    Ok((matches!(a.status, 400 | 413 | 415), format!("{}", a.status)))
}

async fn one(api: &Api, tally: &Tally, route: Route, r: Req, n: u32) -> Result<(), String> {
    let w = &api.w;
    // A failed case (or its shrinking) may have left requests behind.
    w.clear();
    let (id, token) = match &r.target {
        Target::Dead => api.dead.clone(),
        Target::Live => api.live.clone(),
        Target::Other(id) => (id.clone(), "00112233445566778899aabbccddeeff".into()),
    };
    let mut headers = r.headers.clone();
    let envd = matches!(route, Route::Exec | Route::FsRead | Route::FsWrite | Route::Unary);
    let path = if envd {
        headers.push(("e2b-sandbox-id".into(), encode_header(&id)));
        if r.auth {
            headers.push(("x-access-token".into(), token));
        }
        r.path.clone()
    } else {
        if r.auth {
            headers.push(("x-api-key".into(), KEY.into()));
        }
        match route {
            Route::Create | Route::List => r.path.clone(),
            _ => format!("/sandboxes/{}{}", encode(&id), r.path),
        }
    };
    // Header values carry no control characters (hyper refuses those itself, bodiless).
    let headers: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k, v.replace(|c: char| c.is_control(), "_"))).collect();
    let answer = send(&api.addr, r.method, &path, &headers, &r.body).await?;
    let (refused_as_bad, class) = judge_answer(route, &answer)?;
    let sent = w.sent();
    let exempted = refused_as_bad && sent > 0 && exempt(route, &answer);
    tally.add(format!(
        "{class}{}",
        if exempted {
            " (upstream, TODO exempt)"
        } else if sent > 0 {
            " (upstream)"
        } else {
            ""
        }
    ));
    if refused_as_bad && sent > 0 && !exempt(route, &answer) {
        return Err(format!(
            "refused as bad input ({class}) after {sent} upstream request(s): {:?}; answer {}",
            w.sent_routes(),
            clip(&String::from_utf8_lossy(&answer.body))
        ));
    }
    undo(api, route, &r, &answer).await;
    w.clear();
    w.check_books()?;
    if n.is_multiple_of(ALIVE_EVERY) {
        let got = send(&api.addr, "GET", &format!("/sandboxes/{}", api.live.0), &[("x-api-key".into(), KEY.into())], b"").await?;
        if got.status != 200 {
            return Err(format!("a valid get of the live sandbox answered {} {}", got.status, clip(&String::from_utf8_lossy(&got.body))));
        }
        w.clear();
    }
    Ok(())
}

/// A header value can carry only visible ASCII: anything else is sent percent-encoded.
fn encode_header(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        s.to_string()
    } else {
        encode(s)
    }
}

/// Requests refused as bad only after a lookup upstream: none any more (a lifetime past
/// `limits.max_timeout_secs` is refused before the ownership lookup, `control.rs`).
fn exempt(_route: Route, _a: &Answer) -> bool {
    false
}

/// Undoes a successful request's effect: kills what a create started, resumes what a
/// pause paused.
async fn undo(api: &Api, route: Route, r: &Req, a: &Answer) {
    match route {
        Route::Create if a.status == 201 => {
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            let killed = api.control("DELETE", &format!("/sandboxes/{}", v["sandboxID"].as_str().unwrap()), b"").await;
            assert_eq!(killed.status, 204);
        }
        Route::Pause if a.status == 204 && matches!(r.target, Target::Live) => {
            let resumed = api.control("POST", &format!("/sandboxes/{}/connect", api.live.0), b"{}").await;
            assert_eq!(resumed.status, 201, "{}", String::from_utf8_lossy(&resumed.body));
        }
        _ => {}
    }
}

fn run(route: Route, name: &str) {
    let name = name.to_string();
    crate::big_stack(move || {
        let rt = runtime();
        let api = rt.block_on(start());
        let (tally, n) = (Tally::default(), AtomicU32::new(0));
        let started = std::time::Instant::now();
        let what = format!("e2b_api::{name}");
        let ran = generate(&what, cases(CASES), req(route), show, |r| {
            rt.block_on(one(&api, &tally, route, r, n.fetch_add(1, Ordering::Relaxed) + 1))
        });
        tally.print(&what, ran, started);
    });
}

macro_rules! route_tests {
    ($($name:ident => $route:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run($route, stringify!($name));
            }
        )*
    };
}

route_tests! {
    create => Route::Create,
    list => Route::List,
    get => Route::Get,
    stop => Route::Stop,
    set_timeout => Route::SetTimeout,
    pause => Route::Pause,
    resume => Route::Resume,
    exec => Route::Exec,
    fs_read => Route::FsRead,
    fs_write => Route::FsWrite,
    envd_unary => Route::Unary,
}
