//! Streaming exec over iii: an exec whose payload carries `stream`, the writer ref of a
//! channel the caller made with `engine::channels::create`, gets the command's output on
//! that channel while it runs. The invocation's own answer stays the normal exec result
//! (errors stay iii errors), so a caller that ignores the channel loses nothing.
//!
//! On the channel, in order:
//! - binary frames `[tag][bytes]`, tag = [`OutputStream::tag`] (1 stdout, 2 stderr), each at
//!   most 64 KiB in all: the SDK's `ChannelWriter::write` itself splits at 64 KiB, which
//!   would leave a piece without its tag, so pieces are cut here first;
//! - one text frame, `{"type":"exit","exit_code","timed_out","truncated"}` or
//!   `{"type":"error","code":"Sxxx","message"}`;
//! - Close.
//!
//! The command never waits for the channel: chunks go through an unbounded queue (bounded
//! in bytes by the exec output budget, `runtime/output.rs`) to a pump task. A reader that
//! went away only ends the pump (the queue is dropped and the collector stops forwarding);
//! a reader that stops reading holds the pump, not the command, and once the command is
//! done the pump gets [`FLUSH_LIMIT`] to finish before the channel is dropped without its
//! end frame (the answer still carries the output).

use crate::contract::codes::{CallError, Code};
use crate::contract::validate;
use crate::runtime::output::OutputChunk;
use crate::{Host, Leaf};
use iii_sdk::channel::{ChannelWriter, StreamChannelRef};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The exec payload field that carries the writer ref.
pub const FIELD: &str = "stream";
/// The engine's channel frame limit (iii-sdk `ChannelWriter::MAX_FRAME_SIZE`).
const MAX_FRAME: usize = 64 * 1024;
/// How long opening the writer end may take.
const OPEN_LIMIT: Duration = Duration::from_secs(10);
/// How long the channel may take the rest of the output once the command is done.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// Runs `leaf` on `provider` as the bridge does: an exec with a `stream` ref streams its
/// output there; anything else (and an exec without one) is [`Host::call`].
pub async fn call(host: &Host, engine: &str, provider: &str, leaf: Leaf, mut payload: Value) -> Result<Value, CallError> {
    if leaf == Leaf::Exec {
        if let Some(channel) = take_ref(&mut payload)? {
            // Validate first: an input the host refuses (unknown provider, bad fields)
            // opens no channel. `Host::call` gives that refusal itself, so the answer
            // and the metrics are those of any other refused call.
            if host.registry.get(provider).is_none() || validate::parse_request(Leaf::Exec, &payload).is_err() {
                return host.call(provider, leaf, &payload).await;
            }
            return exec(host, engine, provider, &payload, &channel).await;
        }
    }
    host.call(provider, leaf, &payload).await
}

/// Takes `stream` out of an exec payload (validation ignores unknown fields, but the
/// plugin has no business seeing the channel's key). Absent or null: no streaming.
pub fn take_ref(payload: &mut Value) -> Result<Option<StreamChannelRef>, CallError> {
    let Some(map) = payload.as_object_mut() else { return Ok(None) };
    let value = match map.remove(FIELD) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let wanted = "a channel writer ref {channel_id, access_key, direction: \"write\"}, the `writer` of engine::channels::create";
    let Value::Object(r) = &value else {
        return Err(CallError::bad_input(format!("exec: field `{FIELD}` must be {wanted}; got {}.", kind(&value))));
    };
    for key in ["channel_id", "access_key", "direction"] {
        match r.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) => {
                let got = kind(other);
                return Err(CallError::bad_input(format!(
                    "exec: field `{FIELD}.{key}` must be a non-empty string, got {got}; `{FIELD}` must be {wanted}."
                )));
            }
            None => return Err(CallError::bad_input(format!("exec: field `{FIELD}` lacks `{key}`; it must be {wanted}."))),
        }
    }
    match r["direction"].as_str() {
        Some("write") => {}
        Some("read") => {
            return Err(CallError::bad_input(format!(
            "exec: field `{FIELD}` is a channel's read end; pass the `writer` ref of engine::channels::create and read from the `reader`."
        )))
        }
        _ => return Err(CallError::bad_input(format!("exec: field `{FIELD}.direction` must be \"write\"."))),
    }
    serde_json::from_value(value).map(Some).map_err(|e| CallError::bad_input(format!("exec: field `{FIELD}`: {e}.")))
}

/// What a JSON value is, for an error message that must not echo an access key.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The exec, its output pumped into the channel while it runs.
async fn exec(host: &Host, engine: &str, provider: &str, payload: &Value, channel: &StreamChannelRef) -> Result<Value, CallError> {
    let writer = open(engine, channel).await?;
    let (tap, chunks) = mpsc::unbounded_channel();
    let (end_tx, end_rx) = oneshot::channel();
    let mut pump = tokio::spawn(pump(writer, chunks, end_rx));
    let result = host.call_streaming(provider, Leaf::Exec, payload, tap).await;
    let _ = end_tx.send(end_frame(&result));
    match tokio::time::timeout(FLUSH_LIMIT, &mut pump).await {
        Ok(Ok(Pumped::Closed { frames })) => tracing::debug!(provider, frames, "exec output streamed"),
        Ok(Ok(Pumped::ReaderGone { frames, error })) => {
            tracing::info!(
                provider,
                frames,
                "the exec's stream channel went away ({error}); the command ran on, its answer carries the output"
            )
        }
        Ok(Err(e)) => tracing::warn!(provider, "the exec's stream pump failed ({e}); the answer carries the output"),
        Err(_) => {
            pump.abort();
            tracing::warn!(
                provider,
                "the exec's stream reader did not take the output within {FLUSH_LIMIT:?} of the command's end; \
                 the channel was dropped without its end frame, the answer carries the output"
            );
        }
    }
    result
}

/// Connects the writer end before the command runs, so a ref the engine does not know
/// is refused at once instead of running a command nobody can watch. The SDK connects
/// lazily; an empty write only connects (it sends no frame).
async fn open(engine: &str, channel: &StreamChannelRef) -> Result<ChannelWriter, CallError> {
    let writer = ChannelWriter::new(engine, channel);
    let refused = |detail: String| {
        // The engine answers an unknown channel id or a wrong key with HTTP 404
        // (engine `workers/worker/ws_handler.rs:29-69`); the SDK reports it as text.
        if detail.contains("404") {
            CallError::bad_input(format!(
                "exec: field `{FIELD}` names a channel the engine does not know (unknown channel_id or access_key, or it expired); \
                 pass the `writer` of a fresh engine::channels::create. Nothing was run."
            ))
        } else {
            CallError::new(
                Code::Unavailable,
                format!("exec: could not open the output channel in `{FIELD}` ({detail}); nothing was run; retry."),
            )
        }
    };
    match tokio::time::timeout(OPEN_LIMIT, writer.write(&[])).await {
        Ok(Ok(())) => Ok(writer),
        Ok(Err(e)) => Err(refused(e.to_string())),
        Err(_) => Err(refused(format!("no answer within {OPEN_LIMIT:?}"))),
    }
}

/// The text frame that ends the stream.
fn end_frame(result: &Result<Value, CallError>) -> String {
    let frame = match result {
        Ok(v) => json!({"type": "exit", "exit_code": v["exit_code"], "timed_out": v["timed_out"], "truncated": v["truncated"]}),
        Err(e) => json!({"type": "error", "code": e.code.as_str(), "message": e.message()}),
    };
    frame.to_string()
}

enum Pumped {
    Closed { frames: usize },
    ReaderGone { frames: usize, error: String },
}

/// Forwards chunks as they come; once `end` arrives (the call is done), forwards what is
/// still queued, sends the end frame and closes.
async fn pump(writer: ChannelWriter, mut chunks: mpsc::UnboundedReceiver<OutputChunk>, mut end: oneshot::Receiver<String>) -> Pumped {
    let mut frames = 0;
    let gone = |frames, error: iii_sdk::Error| Pumped::ReaderGone { frames, error: error.to_string() };
    let end = loop {
        tokio::select! {
            biased;
            Some(chunk) = chunks.recv() => {
                if let Err(e) = write_chunk(&writer, &chunk, &mut frames).await {
                    return gone(frames, e);
                }
            }
            end = &mut end => {
                // The collector may outlive the call by a moment; nothing it sends now is kept.
                chunks.close();
                while let Some(chunk) = chunks.recv().await {
                    if let Err(e) = write_chunk(&writer, &chunk, &mut frames).await {
                        return gone(frames, e);
                    }
                }
                break end.ok();
            }
        }
    };
    if let Some(text) = end {
        if let Err(e) = writer.send_message(&text).await {
            return gone(frames, e);
        }
    }
    match writer.close().await {
        Ok(()) => Pumped::Closed { frames },
        Err(e) => gone(frames, e),
    }
}

/// One chunk as tagged frames of at most [`MAX_FRAME`] bytes.
async fn write_chunk(writer: &ChannelWriter, chunk: &OutputChunk, frames: &mut usize) -> Result<(), iii_sdk::Error> {
    for piece in chunk.bytes.chunks(MAX_FRAME - 1) {
        let mut frame = Vec::with_capacity(piece.len() + 1);
        frame.push(chunk.stream.tag());
        frame.extend_from_slice(piece);
        writer.write(&frame).await?;
        *frames += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(mut payload: Value) -> (Result<Option<StreamChannelRef>, CallError>, Value) {
        let r = take_ref(&mut payload);
        (r, payload)
    }

    #[test]
    fn a_writer_ref_is_taken_out_of_the_payload() {
        let r = json!({"channel_id": "c1", "access_key": "k", "direction": "write"});
        let (got, rest) = taken(json!({"sandbox_id": "s", "cmd": "ls", "stream": r}));
        let got = got.unwrap().unwrap();
        assert_eq!((got.channel_id.as_str(), got.access_key.as_str()), ("c1", "k"));
        assert_eq!(rest, json!({"sandbox_id": "s", "cmd": "ls"}));
    }

    #[test]
    fn no_stream_or_null_means_no_streaming() {
        assert!(taken(json!({"cmd": "ls"})).0.unwrap().is_none());
        let (got, rest) = taken(json!({"cmd": "ls", "stream": null}));
        assert!(got.unwrap().is_none());
        assert_eq!(rest, json!({"cmd": "ls"}));
    }

    #[test]
    fn a_malformed_ref_is_s422_naming_the_field_without_echoing_it() {
        let cases = [
            (json!("c1"), "field `stream` must be a channel writer ref"),
            (json!({"channel_id": "c1", "direction": "write"}), "field `stream` lacks `access_key`"),
            (json!({"channel_id": "c1", "access_key": 7, "direction": "write"}), "field `stream.access_key` must be a non-empty string"),
            (json!({"channel_id": "c1", "access_key": "secret", "direction": "read"}), "field `stream` is a channel's read end"),
            (json!({"channel_id": "c1", "access_key": "secret", "direction": "both"}), "field `stream.direction` must be \"write\""),
        ];
        for (value, want) in cases {
            let e = taken(json!({"cmd": "ls", "stream": value})).0.unwrap_err();
            assert_eq!(e.code, Code::BadInput);
            let msg = e.message();
            assert!(msg.starts_with("[S422] exec: ") && msg.contains(want), "{value}: {msg}");
            assert!(!msg.contains("secret"), "the access key is not echoed: {msg}");
        }
    }

    #[test]
    fn the_end_frame_says_how_the_command_ended_or_failed() {
        let ok = Ok(json!({"stdout": "x", "stderr": "", "exit_code": 3, "timed_out": false, "truncated": true}));
        assert_eq!(
            serde_json::from_str::<Value>(&end_frame(&ok)).unwrap(),
            json!({"type": "exit", "exit_code": 3, "timed_out": false, "truncated": true})
        );
        let err = Err(CallError::new(Code::NotFound, "sandbox gone."));
        assert_eq!(
            serde_json::from_str::<Value>(&end_frame(&err)).unwrap(),
            json!({"type": "error", "code": "S410", "message": "[S410] sandbox gone."})
        );
    }
}
