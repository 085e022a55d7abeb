//! Issue 9 §1 on the real engine: a caller makes a channel with `engine::channels::create`
//! (through the SDK), passes its writer ref as the exec's `stream`, and reads the output
//! from the engine's `/ws/channels/{id}` while the invocation is still running.

use super::recorder::{assert_streamed, spawn_reader, twenty_lines, Ev, FirstFrame, Log, TWENTY_LINES_THEN_MARK};
use super::workers::worker;
use super::*;
use sandbox_host::bridge::iii::iii_sdk::helpers::create_channel;
use sandbox_host::bridge::iii::iii_sdk::protocol::TriggerRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_exec_delivers_output_through_the_engine_before_it_returns() {
    let Some(engine) = RealEngine::start().await else { return };
    let (sim, _host, bridge) = served(&engine, false).await;
    let created = caller::call(&engine, "sandbox::provider::e2b::create", json!({"image": "base"})).await.expect("create");
    let caller = worker(&engine.url(), "stream-caller");
    caller.wait_until_registered(WAIT).await.expect("the caller connects");
    let channel = create_channel(&caller, Some(64)).await.expect("engine::channels::create");
    let reader_ref = serde_json::to_value(&channel.reader_ref).unwrap();
    let log = Log::default();
    let first = FirstFrame::new(sim.root_of(created["sandbox_id"].as_str().unwrap()).unwrap());
    let seen = first.clone();
    let reading = spawn_reader(&engine.url(), &reader_ref, log.clone(), None, move |_| seen.seen());
    let payload = json!({
        "sandbox_id": created["sandbox_id"], "cmd": "sh", "args": ["-c", TWENTY_LINES_THEN_MARK],
        "stream": serde_json::to_value(&channel.writer_ref).unwrap(),
    });
    let mut request = TriggerRequest::new("sandbox::provider::e2b::exec", payload);
    request.timeout_ms = Some(60_000);
    let result = caller.trigger(request).await;
    log.push(Ev::Returned);
    let result = result.unwrap_or_else(|e| panic!("exec through the engine failed: {e}; its log:\n{}", engine.log()));
    tokio::time::timeout(WAIT, reading).await.expect("the channel closes after the exit frame").unwrap();
    assert_eq!((result["stdout"].as_str().unwrap(), result["exit_code"].clone()), (twenty_lines().as_str(), json!(0)));
    assert_streamed(&log.events(), &result);
    first.assert_command_was_running();
    // A ref the engine does not know (its 404 on /ws/channels) is S422 before anything runs.
    let unknown = json!({"channel_id": "no-such-channel", "access_key": "k", "direction": "write"});
    let payload = json!({"sandbox_id": created["sandbox_id"], "cmd": "ls", "stream": unknown});
    let e = caller::call(&engine, "sandbox::provider::e2b::exec", payload).await.expect_err("an unknown channel is refused");
    assert_eq!(e["code"], "S422", "{e}");
    assert!(e["message"].as_str().unwrap().contains("field `stream` names a channel the engine does not know"), "{e}");
    caller.shutdown_async().await;
    bridge.shutdown().await;
}
