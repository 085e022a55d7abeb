//! Exec on E2B as envd streams it: output reaches a streaming caller while the command
//! still runs, the host's output budget cuts it exactly, and stdin goes through envd's
//! `SendInput` / `CloseStdin` once the process has started.

use super::E2bUpstream;
use crate::cases::fresh;
use base64::Engine as _;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::Upstream;
use sandbox_tests::{exec_result, TestHost};
use serde_json::json;
use std::time::Duration;

async fn create(h: &TestHost) -> String {
    h.ok("e2b", Leaf::Create, json!({"image": "base"})).await["sandbox_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_reaches_a_streaming_caller_while_the_command_still_runs() {
    let (_up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let host = h.host.clone();
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.1; done"]});
    let call = tokio::spawn(async move { host.call_streaming("e2b", Leaf::Exec, &payload, tx).await });
    let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a chunk arrives").expect("the tap is open");
    // Order, not time: the chunk is here and the call has not answered yet.
    assert!(!call.is_finished(), "the first chunk ({:?}) came only with the answer", String::from_utf8_lossy(&first.bytes));
    let out = call.await.unwrap().unwrap();
    let expected: String = (1..=10).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        exec_result(&out),
        json!({"stdout": expected, "stderr": "", "exit_code": 0, "timed_out": false, "success": true, "truncated": false})
    );
    assert!(first.bytes.len() < expected.len(), "the first chunk is a part, not all of it: {:?}", first.bytes);
    let mut streamed = first.bytes;
    while let Ok(chunk) = rx.try_recv() {
        streamed.extend(chunk.bytes);
    }
    assert_eq!(String::from_utf8(streamed).unwrap(), expected, "the chunks are the answer's stdout, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_of_output_over_a_64_kib_budget_is_cut_to_exactly_64_kib() {
    let (_up, h) = fresh::<E2bUpstream>("[limits]\nmax_exec_output_kib = 64").await;
    let id = create(&h).await;
    let out =
        h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "head -c 1048576 /dev/zero | tr '\\0' a"]})).await;
    let stdout = out["stdout"].as_str().unwrap();
    assert_eq!(stdout.len(), 65_536);
    assert!(stdout.bytes().all(|b| b == b'a'));
    assert_eq!(
        (out["truncated"].as_bool(), out["success"].as_bool(), out["exit_code"].as_i64()),
        (Some(true), Some(true), Some(0)),
        "{}",
        out["stderr"]
    );
    // Exactly 64 KiB first (the budget filled at a chunk boundary, nothing cut yet), one
    // more byte later in its own chunk: that byte is still counted as cut.
    let exact = "head -c 65536 /dev/zero | tr '\\0' a; sleep 0.3; printf b";
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", exact]})).await;
    assert_eq!((out["stdout"].as_str().unwrap().len(), out["truncated"].as_bool()), (65_536, Some(true)), "{}", out["stderr"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_sent_after_the_start_event_and_closed() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h).await;
    let input = "line one\nline two\n";
    let stdin = base64::engine::general_purpose::STANDARD.encode(input);
    let out =
        h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "echo first; cat; echo last"], "stdin": stdin})).await;
    assert_eq!(out["stdout"], format!("first\n{input}last\n"), "{out}");
    let envd = up.0.envd.requests();
    let start = envd.iter().find(|r| r.path == "/process.Process/Start").unwrap();
    let start_msg: serde_json::Value = serde_json::from_slice(&start.body[5..]).unwrap();
    assert_eq!(start_msg["stdin"], true, "{start_msg}");
    let routes: Vec<_> = envd.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(routes, ["/process.Process/Start", "/process.Process/SendInput", "/process.Process/CloseStdin"]);
    let send = envd[1].json();
    assert_eq!(send["input"]["stdin"], stdin, "{send}");
    assert!(send["process"]["pid"].as_u64().is_some_and(|p| p > 0), "{send}");
    assert_eq!(envd[2].json()["process"], send["process"]);
    up.clear();
    // Without stdin the process reads EOF at once (envd's own default is an open pipe).
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat"})).await;
    assert_eq!((out["stdout"].as_str(), out["exit_code"].as_i64()), (Some(""), Some(0)));
    let start = up.0.envd.requests().into_iter().find(|r| r.path == "/process.Process/Start").unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&start.body[5..]).unwrap()["stdin"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_inside_a_frame_is_unavailable_not_a_partial_answer() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h).await;
    // A start event, then half of a data envelope.
    let mut body = vec![0u8, 0, 0, 0, 29];
    body.extend_from_slice(br#"{"event":{"start":{"pid":7}}}"#);
    body.extend_from_slice(&[0, 0, 0, 0, 40, b'{']);
    up.0.envd.inject(provider_sims::Fault::new("POST", "/process.Process/Start", 200, &String::from_utf8(body).unwrap()));
    let e = h.err("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::Unavailable).await;
    assert!(e.contains("cut inside a frame"), "{e}");
}
