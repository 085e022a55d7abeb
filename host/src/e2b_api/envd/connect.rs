//! Connect RPC with the JSON codec, as the SDK speaks it (connectrpc 0.12): unary
//! calls are a bare JSON body answered 200 `application/json`; server-streaming calls
//! carry one enveloped message (`flags | u32 big-endian length | JSON`) and are
//! answered `application/connect+json` with enveloped messages, then an end-stream
//! envelope (flag 0x02) holding `{}` or `{"error": …}`.

use super::super::errors::ConnectError;
use super::super::http::{self, Reply};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

/// The content type a streaming answer must carry, exactly (the SDK compares bytes).
pub const STREAM_CONTENT_TYPE: &str = "application/connect+json";
const FLAG_COMPRESSED: u8 = 0x01;
const FLAG_END_STREAM: u8 = 0x02;

/// The request message of a streaming call: its single envelope.
pub fn unwrap_envelope(body: &[u8]) -> Result<Value, ConnectError> {
    let bad = |m: &str| ConnectError::new("invalid_argument", format!("the request is not one Connect envelope: {m}"));
    if body.len() < 5 {
        return Err(bad("shorter than the 5-byte prefix"));
    }
    if body[0] & FLAG_COMPRESSED != 0 {
        return Err(ConnectError::new("unimplemented", "compressed Connect messages are not supported; send identity"));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = body.get(5..5 + len).ok_or_else(|| bad("the length prefix runs past the body"))?;
    serde_json::from_slice(message).map_err(|e| bad(&format!("the message is not JSON ({e})")))
}

/// A unary request's message.
pub fn unary_message(body: &[u8]) -> Result<Value, ConnectError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ConnectError::new("invalid_argument", format!("the request message is not JSON: {e}")))
}

pub fn envelope(message: &Value) -> Bytes {
    frame(0, message)
}

/// The last envelope of a stream: success, or the error that ended it.
pub fn end_stream(error: Option<&ConnectError>) -> Bytes {
    let body = match error {
        None => json!({}),
        Some(e) => json!({ "error": e.json() }),
    };
    frame(FLAG_END_STREAM, &body)
}

fn frame(flags: u8, message: &Value) -> Bytes {
    let text = message.to_string();
    let mut b = BytesMut::with_capacity(5 + text.len());
    b.put_u8(flags);
    b.put_u32(text.len() as u32);
    b.put_slice(text.as_bytes());
    b.freeze()
}

pub fn unary_ok(message: &Value) -> Reply {
    http::json(200, message)
}

pub fn unary_error(e: &ConnectError) -> Reply {
    http::json(e.status(), &e.json())
}

/// A streaming call refused before it started: one end-stream envelope carrying the
/// error, as Connect servers answer.
pub fn stream_error(e: &ConnectError) -> Reply {
    http::full(200, STREAM_CONTENT_TYPE, end_stream(Some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_the_end_stream_is_flagged() {
        let m = json!({"process": {"cmd": "/bin/bash"}});
        let framed = envelope(&m);
        assert_eq!(framed[0], 0);
        assert_eq!(unwrap_envelope(&framed).unwrap(), m);
        let end = end_stream(Some(&ConnectError::new("deadline_exceeded", "late")));
        assert_eq!(end[0], FLAG_END_STREAM);
        let body: Value = serde_json::from_slice(&end[5..]).unwrap();
        assert_eq!(body["error"]["code"], "deadline_exceeded");
        assert_eq!(&end_stream(None)[5..], b"{}");
    }

    #[test]
    fn malformed_envelopes_are_invalid_arguments() {
        assert_eq!(unwrap_envelope(b"\0\0").unwrap_err().code, "invalid_argument");
        assert_eq!(unwrap_envelope(b"\0\0\0\0\x09{}").unwrap_err().code, "invalid_argument");
        assert_eq!(unwrap_envelope(b"\x01\0\0\0\x02{}").unwrap_err().code, "unimplemented");
        assert_eq!(unary_message(b"").unwrap(), json!({}));
    }
}
