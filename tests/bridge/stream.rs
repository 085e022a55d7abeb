//! Issue 9 §1: an exec with a `stream` writer ref streams its output over an engine
//! channel while the command runs; the invocation still answers the normal exec result.

use super::recorder::{assert_streamed, spawn_reader, stream_of, twenty_lines, Ev, FirstFrame, Log, TWENTY_LINES_THEN_MARK};
use super::*;

async fn sandbox(w: &World) -> String {
    let created = w.engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    created["sandbox_id"].as_str().unwrap().to_string()
}

/// Invokes `function` with `payload` and logs its return in `log`.
async fn invoke_logged(
    engine: &MockEngine,
    log: &Log,
    function: &str,
    payload: Value,
) -> Result<Value, sandbox_tests::mock_engine::InvokeError> {
    let result = engine.invoke(function, payload).await;
    log.push(Ev::Returned);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_exec_delivers_output_before_it_returns_and_the_answer_is_unchanged() {
    let w = world(|_| {}).await;
    let id = sandbox(&w).await;
    let (writer, reader) = w.engine.create_channel();
    let log = Log::default();
    let first = FirstFrame::new(w.sim.root_of(&id).unwrap());
    let seen = first.clone();
    let reading = spawn_reader(&w.engine.url(), &reader, log.clone(), None, move |_| seen.seen());
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", TWENTY_LINES_THEN_MARK], "stream": writer});
    let result = invoke_logged(&w.engine, &log, "sandbox::provider::e2b::exec", payload).await.unwrap();
    tokio::time::timeout(WAIT, reading).await.expect("the channel closes after the exit frame").unwrap();
    assert_eq!((result["stdout"].as_str().unwrap(), result["exit_code"].clone()), (twenty_lines().as_str(), json!(0)));
    assert_streamed(&log.events(), &result);
    first.assert_command_was_running();
    // The plugin never saw the channel: its key is not in what the host sent upstream.
    let key = writer["access_key"].as_str().unwrap();
    assert!(w.sim.envd.requests().iter().all(|r| !String::from_utf8_lossy(&r.body).contains(key)), "the stream ref is stripped");
}

/// The router's `sandbox::exec` streams the same way (the provider field is stripped
/// first), and stderr frames carry tag 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_exec_streams_and_tags_stderr() {
    let w = world(|_| {}).await;
    let id = sandbox(&w).await;
    let (writer, reader) = w.engine.create_channel();
    let log = Log::default();
    let reading = spawn_reader(&w.engine.url(), &reader, log.clone(), None, |_| {});
    let script = "echo out; echo err >&2; exit 3";
    let payload = json!({"provider": "e2b", "sandbox_id": id, "cmd": "sh", "args": ["-c", script], "stream": writer});
    let result = invoke_logged(&w.engine, &log, "sandbox::exec", payload).await.unwrap();
    tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    let events = log.events();
    assert_eq!((stream_of(&events, 1), stream_of(&events, 2)), (b"out\n".to_vec(), b"err\n".to_vec()));
    assert_eq!(result["exit_code"], 3);
    let exit = events.iter().find_map(|e| if let Ev::Text(v) = e { Some(v.clone()) } else { None });
    assert_eq!(exit, Some(json!({"type": "exit", "exit_code": 3, "timed_out": false, "truncated": false})));
}

/// A reader that goes away after the first frame does not stop the command: the answer
/// carries every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_does_not_stop_the_command() {
    let w = world(|_| {}).await;
    let id = sandbox(&w).await;
    let (writer, reader) = w.engine.create_channel();
    let log = Log::default();
    let reading = spawn_reader(&w.engine.url(), &reader, log.clone(), Some(1), |_| {});
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", TWENTY_LINES_THEN_MARK], "stream": writer});
    let result = w.engine.invoke("sandbox::provider::e2b::exec", payload).await.unwrap();
    reading.await.unwrap();
    assert_eq!(result["stdout"], twenty_lines());
    assert_eq!((result["exit_code"].clone(), result["timed_out"].clone()), (json!(0), json!(false)));
}

/// A failed exec ends the stream with an error frame; the invocation fails with the
/// same S-code as an iii error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exec_ends_the_stream_with_an_error_frame() {
    let w = world(|_| {}).await;
    let (writer, reader) = w.engine.create_channel();
    let log = Log::default();
    let reading = spawn_reader(&w.engine.url(), &reader, log.clone(), None, |_| {});
    let e =
        w.engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": "gone", "cmd": "ls", "stream": writer})).await.unwrap_err();
    assert_eq!(e.code, "S410");
    tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    assert_eq!(log.events(), vec![Ev::Text(json!({"type": "error", "code": "S410", "message": e.message})), Ev::Closed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stream_value_is_s422_naming_the_field_and_nothing_runs() {
    let w = world(|_| {}).await;
    let id = sandbox(&w).await;
    let before = w.sim.envd.requests().len();
    let e = w.engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": id, "cmd": "ls", "stream": "chan"})).await.unwrap_err();
    assert_eq!(e.code, "S422");
    assert!(e.message.starts_with("[S422] exec: field `stream` must be a channel writer ref"), "{}", e.message);
    let (_, reader) = w.engine.create_channel();
    let e = w.engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": id, "cmd": "ls", "stream": reader})).await.unwrap_err();
    assert!(e.message.contains("field `stream` is a channel's read end"), "{}", e.message);
    // Well formed, but no such channel on the engine: refused before the command runs.
    let unknown = json!({"channel_id": "nope", "access_key": "k", "direction": "write"});
    let e = w.engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": id, "cmd": "ls", "stream": unknown})).await.unwrap_err();
    assert_eq!(e.code, "S422");
    assert!(e.message.contains("field `stream` names a channel the engine does not know"), "{}", e.message);
    assert_eq!(w.sim.envd.requests().len(), before, "no command was sent to the sandbox");
}

/// The causal form: the command waits until the reader has seen its first line, so it
/// finishes only if that line was streamed while it ran (not at its end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_waits_for_its_reader_finishes() {
    let w = world(|_| {}).await;
    let id = sandbox(&w).await;
    let gate = w.sim.root_of(&id).unwrap().join("gate");
    let (writer, reader) = w.engine.create_channel();
    let log = Log::default();
    let reading = spawn_reader(&w.engine.url(), &reader, log.clone(), None, move |_| {
        let _ = std::fs::write(&gate, b"");
    });
    let script = "echo ready; while [ ! -e gate ]; do sleep 0.05; done; echo done";
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script], "timeout_ms": 10000, "stream": writer});
    let result = invoke_logged(&w.engine, &log, "sandbox::provider::e2b::exec", payload).await.unwrap();
    tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    assert_eq!(
        (result["stdout"].clone(), result["timed_out"].clone()),
        (json!("ready\ndone\n"), json!(false)),
        "the command finishes only if its first line reached the reader while it ran: {result}"
    );
    assert_eq!(log.events().first(), Some(&Ev::Frame(1, b"ready\n".to_vec())));
}
