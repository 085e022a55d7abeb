//! Each simulator refuses a request that does not match its provider's vendored spec,
//! with the spec's words, and records it; a well-formed lifecycle leaves no violation.

use provider_sims::daytona::DaytonaSim;
use provider_sims::e2b::E2bSim;
use provider_sims::morph::MorphSim;
use provider_sims::Sim;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-spec-test";

/// One HTTP/1.1 request on its own connection: (status, body).
async fn send(sim: &Sim, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut conn = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n", sim.addr, body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

async fn send_json(sim: &Sim, method: &str, target: &str, auth: (&str, &str), body: Value) -> (u16, Value) {
    let (status, body) = if body.is_null() {
        send(sim, method, target, &[auth], b"").await
    } else {
        send(sim, method, target, &[auth, ("content-type", "application/json")], &serde_json::to_vec(&body).unwrap()).await
    };
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Every string in `v`, the provider's error message among them.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

fn assert_refused(sim: &Sim, answer: &Value, words: &str) {
    assert!(strings(answer).iter().any(|s| s.contains(words)), "the answer carries the spec's words `{words}`: {answer}");
    let violations = sim.take_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains(words), "{violations:?}");
}

#[tokio::test]
async fn e2b_refuses_a_create_the_spec_does_not_allow_and_answers_by_the_spec() {
    let sim = E2bSim::start(0, KEY).await.unwrap();
    let auth = ("x-api-key", KEY);
    let (status, answer) = send_json(&sim.api, "POST", "/sandboxes", auth, json!({ "timeout": 30 })).await;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], 400, "E2B's Error shape: {answer}");
    assert_refused(&sim.api, &answer, "POST /sandboxes: body.templateID is required by NewSandbox (sim/specs/e2b/openapi.yml:764)");
    let (status, answer) = send_json(&sim.api, "POST", "/v2/sandboxes", auth, json!({ "templateId": "base" })).await;
    assert_eq!(status, 400);
    assert_refused(&sim.api, &answer, "POST /v2/sandboxes (checked as POST /sandboxes): body.templateID is required by NewSandbox");
    let (status, answer) = send_json(&sim.api, "POST", "/sandboxes", auth, json!({ "templateID": "base", "timeout": -1 })).await;
    assert_eq!(status, 400);
    assert_refused(&sim.api, &answer, "body.timeout = -1 is below the minimum 0");
    let (status, answer) = send_json(&sim.api, "GET", "/v2/sandboxes?state=running,gone", auth, Value::Null).await;
    assert_eq!(status, 400);
    assert_refused(&sim.api, &answer, "query.state[1] = \"gone\" is not one of [\"running\", \"paused\"]");

    // A well-formed lifecycle, control plane and envd, leaves no violation.
    let (status, created) = send_json(&sim.api, "POST", "/v2/sandboxes", auth, json!({ "templateID": "nope" })).await;
    assert_eq!(status, 404, "an unknown template (documented for v2 by SDK 2.63): {created}");
    let (status, plain) = send_json(&sim.api, "POST", "/sandboxes", auth, json!({ "templateID": "base" })).await;
    assert_eq!(status, 201, "{plain}");
    assert!(plain.get("envdAccessToken").is_none(), "not nullable: left out when not secure: {plain}");
    let (status, detail) =
        send_json(&sim.api, "GET", &format!("/sandboxes/{}", plain["sandboxID"].as_str().unwrap()), auth, Value::Null).await;
    assert_eq!(status, 200, "{detail}");
    let (status, created) = send_json(&sim.api, "POST", "/v2/sandboxes", auth, json!({ "templateID": "base" })).await;
    assert!(status == 201 && created["envdAccessToken"].is_string(), "v2 sandboxes are always secure: {created}");
    let (status, created) = send_json(&sim.api, "POST", "/sandboxes", auth, json!({ "templateID": "base", "secure": true })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["sandboxID"].as_str().unwrap().to_string();
    let token = created["envdAccessToken"].as_str().unwrap().to_string();
    for (method, path, body) in [
        ("GET", format!("/sandboxes/{id}"), Value::Null),
        ("GET", "/v2/sandboxes?state=running&limit=10".to_string(), Value::Null),
        ("POST", format!("/sandboxes/{id}/timeout"), json!({ "timeout": 60 })),
        ("POST", format!("/sandboxes/{id}/snapshots"), json!({})),
        ("POST", format!("/sandboxes/{id}/fork"), json!({ "count": 1 })),
        ("POST", format!("/sandboxes/{id}/pause"), Value::Null),
        ("POST", format!("/sandboxes/{id}/connect"), json!({ "timeout": 60 })),
    ] {
        let (status, answer) = send_json(&sim.api, method, &path, auth, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    let envd = [("e2b-sandbox-id", id.as_str()), ("e2b-sandbox-port", "49983"), ("x-access-token", token.as_str())];
    let part = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n";
    let upload = [envd[0], envd[1], envd[2], ("content-type", "multipart/form-data; boundary=b")];
    let (status, answer) = send(&sim.envd, "POST", "/files?path=a.txt", &upload, part).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let (status, answer) = send(&sim.envd, "GET", "/files?path=a.txt", &envd, b"").await;
    assert_eq!((status, answer.as_slice()), (200, &b"hello"[..]));
    let (status, _) = send_json(&sim.api, "DELETE", &format!("/sandboxes/{id}"), auth, Value::Null).await;
    assert_eq!(status, 204);
    assert_eq!(sim.api.violations(), Vec::<String>::new());
    assert_eq!(sim.envd.violations(), Vec::<String>::new());

    // envd: an upload needs a body (spec/envd/envd.yaml `requestBodies/File`, required).
    let (status, answer) = send(&sim.envd, "POST", "/files?path=b.txt", &envd, b"").await;
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_refused(&sim.envd, &answer, "POST /files: a request body is required (sim/specs/e2b/envd/envd.yaml:");
}

#[tokio::test]
async fn morph_refuses_what_its_openapi_document_does_not_allow() {
    let sim = MorphSim::start(0, KEY).await.unwrap();
    let bearer = format!("Bearer {KEY}");
    let auth = ("authorization", bearer.as_str());
    let (status, answer) = send_json(&sim.api, "POST", "/api/instance", auth, json!({})).await;
    assert_eq!(status, 422, "FastAPI's validation status: {answer}");
    assert!(answer["detail"][0]["msg"].is_string(), "HTTPValidationError: {answer}");
    assert_refused(&sim.api, &answer, "POST /instance: query parameter `snapshot_id` is required (sim/specs/morph/morph-3.1.0.json#/paths/~1instance/post/parameters/0/required)");

    let null_body = [auth, ("content-type", "application/json")];
    let (status, _) = send(&sim.api, "POST", "/api/instance?snapshot_id=snapshot_base", &null_body, b"null").await;
    assert_eq!(status, 200, "the spec's body is anyOf [StartInstanceRequest, null]");
    let (status, started) =
        send_json(&sim.api, "POST", "/api/instance?snapshot_id=snapshot_base", auth, json!({ "ttl_seconds": 600 })).await;
    assert_eq!(status, 200, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (status, answer) = send_json(&sim.api, "POST", &format!("/api/instance/{id}/exec"), auth, json!({ "command": "echo hi" })).await;
    assert_eq!(status, 422);
    assert_refused(&sim.api, &answer, "body.command must be array, not string \"echo hi\" (ExecRequest, sim/specs/morph/morph-3.1.0.json#/components/schemas/ExecRequest/properties/command/type)");
    let (status, answer) =
        send_json(&sim.api, "POST", &format!("/api/instance/{id}/ttl"), auth, json!({ "ttl_seconds": 60, "ttl_action": "hibernate" }))
            .await;
    assert_eq!(status, 422);
    assert_refused(&sim.api, &answer, "body.ttl_action = \"hibernate\" is not one of [\"stop\", \"pause\"]");
    let (status, answer) =
        send_json(&sim.api, "POST", &format!("/api/instance/{id}/http"), auth, json!({ "name": "Web!", "port": 8080 })).await;
    assert_eq!(status, 422);
    assert_refused(&sim.api, &answer, "body.name = \"Web!\" does not match pattern ^[a-z0-9]([a-z0-9-_]*[a-z0-9])?$");

    for (method, path, body) in [
        ("GET", format!("/api/instance/{id}"), Value::Null),
        ("GET", "/api/instance".to_string(), Value::Null),
        ("POST", format!("/api/instance/{id}/exec"), json!({ "command": ["echo", "hi"] })),
        ("POST", format!("/api/instance/{id}/ttl"), json!({ "ttl_seconds": 60, "ttl_action": "pause" })),
        // Exempted: the SDK's `set_ttl(None)` (spec::exempt).
        ("POST", format!("/api/instance/{id}/ttl"), json!({ "ttl_seconds": null })),
        ("POST", format!("/api/instance/{id}/http"), json!({ "name": "web_1", "port": 8080 })),
        ("POST", format!("/api/instance/{id}/snapshot"), json!({ "metadata": { "k": "v" } })),
        ("POST", format!("/api/instance/{id}/branch?count=1"), Value::Null),
        ("POST", format!("/api/instance/{id}/pause"), Value::Null),
        ("POST", format!("/api/instance/{id}/resume"), Value::Null),
        ("DELETE", format!("/api/instance/{id}"), Value::Null),
    ] {
        let (status, answer) = send_json(&sim.api, method, &path, auth, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    assert_eq!(sim.api.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn daytona_refuses_what_api_json_and_toolbox_json_do_not_allow() {
    let sim = DaytonaSim::start(0, KEY).await.unwrap();
    let bearer = format!("Bearer {KEY}");
    let auth = ("authorization", bearer.as_str());
    let (status, created) = send_json(&sim.sim, "POST", "/api/sandbox", auth, json!({ "labels": { "a": "b" } })).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let (status, answer) = send_json(&sim.sim, "POST", &format!("/api/sandbox/{id}/snapshot"), auth, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["statusCode"], 400, "NestJS's error shape: {answer}");
    assert_refused(
        &sim.sim,
        &answer,
        "POST /sandbox/{sandboxIdOrName}/snapshot: body.name is required by CreateSandboxSnapshot (sim/specs/daytona/api.json:",
    );
    let (status, answer) = send_json(&sim.sim, "POST", &format!("/api/sandbox/{id}/autostop/soon"), auth, Value::Null).await;
    assert_eq!(status, 400);
    assert_refused(&sim.sim, &answer, "path.interval must be number, not string \"soon\"");
    let (status, answer) = send_json(&sim.sim, "POST", &format!("/toolbox/{id}/process/session"), auth, json!({ "id": "s1" })).await;
    assert_eq!(status, 400);
    assert_eq!(answer["source"], "DAYTONA_DAEMON", "the daemon's ErrorResponse: {answer}");
    assert_refused(
        &sim.sim,
        &answer,
        "POST /process/session: body.sessionId is required by CreateSessionRequest (sim/specs/daytona/toolbox.json:",
    );
    let (status, answer) = send_json(&sim.sim, "POST", &format!("/toolbox/{id}/files/folder?path=d"), auth, Value::Null).await;
    assert_eq!(status, 400);
    assert_refused(&sim.sim, &answer, "query parameter `mode` is required");

    for (method, path, body) in [
        ("GET", format!("/api/sandbox/{id}"), Value::Null),
        ("GET", "/api/sandbox?limit=10".to_string(), Value::Null),
        ("GET", format!("/api/sandbox/{id}/toolbox-proxy-url"), Value::Null),
        ("GET", format!("/api/sandbox/{id}/ports/3000/preview-url"), Value::Null),
        ("PUT", format!("/api/sandbox/{id}/labels"), json!({ "labels": { "x": "y" } })),
        ("POST", format!("/toolbox/{id}/process/session"), json!({ "sessionId": "s1" })),
        ("POST", format!("/toolbox/{id}/process/session/s1/exec"), json!({ "command": "echo hi" })),
        ("GET", format!("/toolbox/{id}/process/session/s1"), Value::Null),
        ("DELETE", format!("/toolbox/{id}/process/session/s1"), Value::Null),
        ("POST", format!("/toolbox/{id}/files/folder?path=d&mode=755"), Value::Null),
        ("POST", format!("/api/sandbox/{id}/snapshot"), json!({ "name": "snap-1" })),
        ("GET", format!("/api/sandbox/{id}"), Value::Null),
        ("POST", format!("/api/sandbox/{id}/stop"), Value::Null),
        ("DELETE", format!("/api/sandbox/{id}"), Value::Null),
    ] {
        let (status, answer) = send_json(&sim.sim, method, &path, auth, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    assert_eq!(sim.sim.violations(), Vec::<String>::new());
}
