//! The event stream of `POST /instance/{id}/exec/sse`, as both official SDKs read it
//! (morph-labs/morph-python-sdk `morphcloud/api.py` `_exec_streaming`, and
//! morph-labs/morph-typescript-sdk `src/api.ts` `_execStreaming`): one event per
//! `data: ` line, a JSON object `{"type": "stdout" | "stderr" | "exit_code", "content": …}`,
//! and `data: [DONE]` at the end. Other lines (blank separators, `event:`, `id:`, `:`
//! comments) carry nothing. The SDKs read `exit_code`'s content with `int(content)` /
//! `parseInt(content)`, so it may be a number or a numeric string; both are accepted.
//! The SDKs skip an event they cannot parse; so does the plugin, after saying why.

use serde_json::Value;

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(String),
    Stderr(String),
    Exit(i64),
    /// `[DONE]`: nothing follows.
    Done,
}

/// The event on `line` (without its line ending): `Ok(None)` for a line that carries no
/// event (or one of an unknown type), `Err` with the reason for a `data:` line that
/// cannot be read.
pub fn parse(line: &[u8]) -> Result<Option<Event>, String> {
    let Some(data) = line.strip_prefix(b"data:") else {
        return Ok(None);
    };
    // SSE allows one optional space after the colon; the SDKs always see one.
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data.trim_ascii() == b"[DONE]" {
        return Ok(Some(Event::Done));
    }
    let event: Value = serde_json::from_slice(data).map_err(|e| format!("an exec/sse event is not JSON ({e})"))?;
    let content = &event["content"];
    let text = || match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(format!("an exec/sse output event has non-text content {other}")),
    };
    match event["type"].as_str() {
        Some("stdout") => text().map(|s| Some(Event::Stdout(s))),
        Some("stderr") => text().map(|s| Some(Event::Stderr(s))),
        Some("exit_code") => {
            let code = match content {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            code.map(|c| Some(Event::Exit(c))).ok_or_else(|| format!("an exec/sse exit_code event has no integer content: {content}"))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_event_shapes_are_read() {
        assert_eq!(parse(br#"data: {"type":"stdout","content":"a\nb"}"#), Ok(Some(Event::Stdout("a\nb".into()))));
        assert_eq!(parse(br#"data: {"type": "stderr", "content": "oops"}"#), Ok(Some(Event::Stderr("oops".into()))));
        assert_eq!(parse(br#"data: {"type":"exit_code","content":3}"#), Ok(Some(Event::Exit(3))));
        assert_eq!(parse(br#"data: {"type":"exit_code","content":"137"}"#), Ok(Some(Event::Exit(137))));
        assert_eq!(parse(br#"data:{"type":"stdout","content":"no space"}"#), Ok(Some(Event::Stdout("no space".into()))));
        assert_eq!(parse(b"data: [DONE]"), Ok(Some(Event::Done)));
        assert_eq!(parse(br#"data: {"type":"stdout"}"#), Ok(Some(Event::Stdout(String::new()))));
    }

    #[test]
    fn lines_without_events_are_skipped_and_bad_ones_explained() {
        for quiet in [&b""[..], b": keep-alive", b"event: message", b"id: 7", br#"data: {"type":"heartbeat"}"#] {
            assert_eq!(parse(quiet), Ok(None), "{}", String::from_utf8_lossy(quiet));
        }
        assert!(parse(b"data: {not json").unwrap_err().contains("not JSON"));
        assert!(parse(br#"data: {"type":"exit_code","content":"x"}"#).unwrap_err().contains("exit_code"));
        assert!(parse(br#"data: {"type":"stdout","content":5}"#).unwrap_err().contains("non-text"));
    }
}
