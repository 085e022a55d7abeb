//! Exec on Daytona through a toolbox session: the script carries argv, env, cwd and stdin
//! unchanged; output streams to the caller while the command runs (log polls during a
//! synchronous session exec); the deadline kills the session; every session is deleted.

use super::{create, decoded_script, sent_under, session_execs, DaytonaUpstream, P};
use crate::cases::fresh;
use provider_sims::Fault;
use sandbox_host::runtime::output::OutputStream;
use sandbox_host::{Code, Leaf};
use sandbox_tests::exec_result;
use sandbox_tests::upstream::Upstream;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn exec_argv_and_env_survive_the_session_script_byte_for_byte() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let args = ["a  b", "it's", "\"q\"", "$HOME", "*", "", "x\ny", "-n"];
    let mut argv = vec!["[%s]"];
    argv.extend(args);
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "printf", "args": argv})).await;
    // No trailing newline: the one Daytona's daemon adds went with the script's end marker.
    let expected: String = args.iter().map(|a| format!("[{a}]")).collect();
    let want = json!({"stdout": expected, "stderr": "", "exit_code": 0, "timed_out": false, "success": true, "truncated": false});
    assert_eq!(exec_result(&out), want);

    let env = json!({"TWO_LINES": "one\ntwo\n", "QUOTES": "it's \"x\" $(id)", "EMPTY": ""});
    let script = "printf '%s|%s|%s.' \"$TWO_LINES\" \"$QUOTES\" \"${EMPTY-unset}\"";
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script], "env": env})).await;
    assert_eq!(out["stdout"], "one\ntwo\n|it's \"x\" $(id)|.");

    // What went upstream: one fresh session per exec, a synchronous exec of the script in a
    // subshell, the SDK version that makes the daemon split stdout from stderr, and the
    // session deleted afterwards.
    let exec = session_execs(&up, &id).pop().unwrap();
    let body = exec.json();
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["command", "runAsync"]);
    assert_eq!(body["runAsync"], false);
    let script = decoded_script(body["command"].as_str().unwrap());
    assert!(script.starts_with("export ") && script.contains("\n'sh' '-c' "), "{script}");
    assert_eq!(exec.header("x-daytona-sdk-version"), Some("0.167.0"));
    DaytonaUpstream::assert_authenticated(&exec);
    let created = sent_under(&up, "POST", &format!("/toolbox/{id}/process/session"));
    let deleted = sent_under(&up, "DELETE", &format!("/toolbox/{id}/process/session/"));
    assert_eq!((created.iter().filter(|r| r.path.ends_with("/session")).count(), deleted.len()), (2, 2), "one session per exec");
    assert!(up.0.with(&id, |s| s.sessions.ids()).unwrap().is_empty(), "no session is left behind");

    // A bad env name cannot be exported by any shell: caller error, nothing sent at all.
    up.0.sim.clear_requests();
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true", "env": {"NOT-VALID": "1"}}), Code::BadInput).await;
    assert!(msg.contains("NOT-VALID"), "{msg}");
    assert!(up.0.sim.requests().is_empty());
}

#[tokio::test]
async fn stdout_and_stderr_are_separate_and_a_missing_command_exits_127() {
    let (_up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let both =
        h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "argv": ["sh", "-c", "echo out; echo err >&2; printf tail >&2; exit 4"]})).await;
    assert_eq!((both["stdout"].as_str(), both["stderr"].as_str(), both["exit_code"].as_i64()), (Some("out\n"), Some("err\ntail"), Some(4)));
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "no-such-command-xyz"})).await;
    assert_eq!(out["exit_code"], 127);
    assert!(out["stderr"].as_str().unwrap().contains("no-such-command-xyz"), "{out}");
    assert_eq!(out["stdout"], "");
    let cwd = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "pwd", "cwd": "/no/such/dir"})).await;
    assert_eq!((cwd["exit_code"].as_i64(), cwd["stdout"].as_str()), (Some(1), Some("")), "{cwd}");
}

#[tokio::test]
async fn stdin_reaches_the_command() {
    use base64::Engine as _;
    let (_up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let input: Vec<u8> = b"line one\nit's \"two\"\n\x01\xff".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&input);
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "argv": ["sh", "-c", "wc -c; head -n 1"], "stdin": b64})).await;
    // `wc` consumed all of it, so `head` reads end-of-file.
    assert_eq!(out["stdout"].as_str().unwrap().trim(), input.len().to_string(), "{out}");
    let none = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat", "timeout_ms": 5000})).await;
    assert_eq!((none["stdout"].as_str(), none["timed_out"].as_bool()), (Some(""), Some(false)), "without stdin a command reads EOF");
}

#[tokio::test]
async fn the_deadline_kills_the_session_and_reports_timed_out_with_the_output_so_far() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let started = std::time::Instant::now();
    let cmd = json!({"sandbox_id": id, "argv": ["sh", "-c", "echo before; sleep 20; echo after"], "timeout_ms": 1500});
    let out = h.ok(P, Leaf::Exec, cmd).await;
    let want = json!({"stdout": "before\n", "stderr": "", "exit_code": -1, "timed_out": true, "success": false, "truncated": false});
    assert_eq!(exec_result(&out), want);
    assert!(started.elapsed() < Duration::from_secs(10), "answered at the deadline, not after the command");
    assert_eq!(sent_under(&up, "DELETE", &format!("/toolbox/{id}/process/session/")).len(), 1, "the session (and its command) was ended");
    assert!(up.0.with(&id, |s| s.sessions.ids()).unwrap().is_empty());
    // Other toolbox failures map through the status table.
    up.0.sim.inject(Fault::new("POST", &format!("/toolbox/{id}/process/session/"), 502, "bad gateway"));
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::Unavailable).await;
    assert!(msg.contains("toolbox process/session/") && msg.contains("/exec"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_reaches_a_streaming_caller_while_the_command_still_runs() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let host = h.host.clone();
    // A line every 100 ms for about 1.5 s, the odd ones on stderr.
    let script =
        "i=1; while [ $i -le 15 ]; do if [ $((i % 2)) = 0 ]; then echo out $i; else echo err $i >&2; fi; sleep 0.1; i=$((i+1)); done";
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script]});
    let call = tokio::spawn(async move { host.call_streaming(P, Leaf::Exec, &payload, tx).await });
    let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a chunk arrives").expect("the tap is open");
    // Order, not time: the chunk is here and the call has not answered yet.
    assert!(!call.is_finished(), "the first chunk ({:?}) came only with the answer", String::from_utf8_lossy(&first.bytes));
    let out = call.await.unwrap().unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut chunks = vec![first];
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    for c in &chunks {
        if c.stream == OutputStream::Stdout { &mut stdout } else { &mut stderr }.extend_from_slice(&c.bytes);
    }
    let expect = |odd: bool| -> String {
        (1..=15).filter(|i| (i % 2 == 1) == odd).map(|i| format!("{} {i}\n", if odd { "err" } else { "out" })).collect()
    };
    assert_eq!((out["stdout"].as_str().unwrap(), out["stderr"].as_str().unwrap()), (expect(false).as_str(), expect(true).as_str()));
    assert_eq!(String::from_utf8(stdout).unwrap(), expect(false), "the stdout chunks are the answer's stdout, in order");
    assert_eq!(String::from_utf8(stderr).unwrap(), expect(true), "the stderr chunks are the answer's stderr, in order");
    assert!(chunks.len() > 2, "more than one chunk per stream: {}", chunks.len());
    // It streamed by polling the command's logs while the synchronous exec waited.
    let logs: Vec<_> =
        sent_under(&up, "GET", &format!("/toolbox/{id}/process/session/")).into_iter().filter(|r| r.path.ends_with("/logs")).collect();
    assert!(!logs.is_empty() && logs.len() <= 20, "{} log polls", logs.len());
    assert!(logs.iter().all(|r| r.header("x-daytona-sdk-version") == Some("0.167.0")));
}
