//! `process.Process/Start` on the wire, where the SDK hides it: the exact streaming
//! content type, `start` first, `keepalive` while a command is quiet, and a command past
//! `connect-timeout-ms` ending the stream with `deadline_exceeded`.

use super::raw::{envelope, envelopes, request};
use super::{key, ALICE};
use provider_sims::e2b::E2bSim;
use sandbox_host::e2b_api::{E2bApi, Settings};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::{json, Value};

async fn start(addr: &str, id: &str, token: &str, script: &str, extra: &[(&str, &str)]) -> (String, Vec<(u8, Value)>) {
    let message = json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", script]}, "stdin": false});
    let mut headers = vec![
        ("E2b-Sandbox-Id", id),
        ("X-Access-Token", token),
        ("Content-Type", "application/connect+json"),
        ("connect-protocol-version", "1"),
    ];
    headers.extend_from_slice(extra);
    let answer = request(addr, "POST", "/process.Process/Start", &headers, &envelope(&message)).await;
    assert_eq!(answer.status, 200);
    (answer.head.clone(), envelopes(&answer.body))
}

fn kinds(events: &[(u8, Value)]) -> Vec<String> {
    let kind = |(flags, m): &(u8, Value)| match flags {
        2 => "end-stream".to_string(),
        _ => m["event"].as_object().and_then(|e| e.keys().next().cloned()).unwrap_or_default(),
    };
    events.iter().map(kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_streams_start_keepalives_data_end_and_honours_the_deadline() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let h = TestHost::start(vec![PluginSetup::new("e2b", sim.policy_toml())], &[("E2B_API_KEY", SECRET)]).await;
    let api = E2bApi::new(h.host.clone(), Settings { keys: vec![key("alice", ALICE)], ..Settings::default() }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(api.serve(listener, stopped));
    let body = br#"{"templateID":"e2b/base"}"#;
    let created = request(&addr, "POST", "/v2/sandboxes", &[("X-API-KEY", ALICE)], body).await.json();
    let (id, token) = (created["sandboxID"].as_str().unwrap(), created["envdAccessToken"].as_str().unwrap());

    let (head, events) = start(&addr, id, token, "sleep 2.5; echo done", &[("Keepalive-Ping-Interval", "1")]).await;
    assert!(head.contains("content-type: application/connect+json\r\n"), "exactly, no parameters: {head}");
    let seen = kinds(&events);
    assert_eq!(seen.first().map(String::as_str), Some("start"), "{seen:?}");
    assert!(seen.iter().filter(|k| *k == "keepalive").count() >= 2, "a quiet command gets keepalives: {seen:?}");
    assert_eq!(&seen[seen.len() - 3..], ["data", "end", "end-stream"], "{seen:?}");
    assert_eq!(events[events.len() - 3].1["event"]["data"]["stdout"], "ZG9uZQo=", "base64 of done\\n");
    assert_eq!(events[events.len() - 1].1, json!({}), "a clean end-stream");

    let (_, events) = start(&addr, id, token, "sleep 20", &[("connect-timeout-ms", "1500")]).await;
    let (flags, last) = events.last().unwrap();
    assert_eq!((*flags, last["error"]["code"].as_str()), (2, Some("deadline_exceeded")), "{events:?}");
    assert!(!kinds(&events).contains(&"end".to_string()), "no end event for a command stopped at its deadline");

    let wrong = request(
        &addr,
        "POST",
        "/process.Process/List",
        &[("E2b-Sandbox-Id", id), ("X-Access-Token", "00"), ("Content-Type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!((wrong.status, wrong.json()["code"].as_str()), (401, Some("unauthenticated")));
    request(&addr, "DELETE", &format!("/sandboxes/{id}"), &[("X-API-KEY", ALICE)], b"").await;
}
