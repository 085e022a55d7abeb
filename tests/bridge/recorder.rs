//! A streaming exec's reader, as a caller would write it with the SDK's `ChannelReader`,
//! recording what arrives in one ordered log beside the caller's own "the invocation
//! returned": the order of the two is what proves output arrived while the command ran,
//! without any timing threshold. Shared by the mock-engine and real-engine suites.

use sandbox_host::bridge::iii::iii_sdk::channel::{ChannelReader, StreamChannelRef};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The prescribed command, then a marker file in the sandbox's directory once it is done:
/// the reader looks for the marker when its first frame arrives. Frames that are only
/// sent at the command's end still reach the reader before the invocation returns, so
/// that order alone does not show streaming; the marker does.
pub const TWENTY_LINES_THEN_MARK: &str = "for i in $(seq 1 20); do echo line $i; sleep 0.1; done; touch finished";

pub fn twenty_lines() -> String {
    (1..=20).map(|i| format!("line {i}\n")).collect()
}

/// Whether the command was still running when the first frame arrived: `marker` (the
/// `finished` file in the sandbox's directory) did not exist yet.
#[derive(Clone)]
pub struct FirstFrame {
    marker: PathBuf,
    running: Arc<OnceLock<bool>>,
}

impl FirstFrame {
    pub fn new(sandbox_root: PathBuf) -> Self {
        FirstFrame { marker: sandbox_root.join("finished"), running: Arc::default() }
    }

    /// For `spawn_reader`'s `on_frame`.
    pub fn seen(&self) {
        self.running.get_or_init(|| !self.marker.exists());
    }

    pub fn assert_command_was_running(&self) {
        assert_eq!(self.running.get(), Some(&true), "the first output frame must reach the reader while the command still runs");
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    /// A binary frame: its tag byte and the rest.
    Frame(u8, Vec<u8>),
    /// A text frame, parsed.
    Text(Value),
    /// The reader saw the channel close.
    Closed,
    /// The caller's invocation returned.
    Returned,
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Ev>>>);

impl Log {
    pub fn push(&self, e: Ev) {
        self.0.lock().unwrap().push(e);
    }

    pub fn events(&self) -> Vec<Ev> {
        self.0.lock().unwrap().clone()
    }
}

/// Reads the channel `reader_ref` on the engine at `url` into `log` until it closes (or
/// until `frames_wanted` binary frames arrived, when given: a reader that goes away).
/// `on_frame` runs after each binary frame is logged.
pub fn spawn_reader(
    url: &str,
    reader_ref: &Value,
    log: Log,
    frames_wanted: Option<usize>,
    on_frame: impl Fn(&[u8]) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let r: StreamChannelRef = serde_json::from_value(reader_ref.clone()).expect("a reader ref");
    let reader = ChannelReader::new(url, &r);
    tokio::spawn(async move {
        let texts = log.clone();
        reader.on_message(move |t| texts.push(Ev::Text(serde_json::from_str(&t).unwrap_or(Value::String(t))))).await;
        let mut frames = 0;
        loop {
            match reader.next_binary().await {
                Ok(Some(frame)) => {
                    let (tag, rest) = frame.split_first().map(|(t, r)| (*t, r.to_vec())).unwrap_or((0, Vec::new()));
                    log.push(Ev::Frame(tag, rest.clone()));
                    on_frame(&rest);
                    frames += 1;
                    if frames_wanted == Some(frames) {
                        let _ = reader.close().await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("reading the stream channel failed: {e}"),
            }
        }
        log.push(Ev::Closed);
    })
}

/// The bytes of every frame tagged `tag`, in order.
pub fn stream_of(events: &[Ev], tag: u8) -> Vec<u8> {
    events.iter().filter_map(|e| if let Ev::Frame(t, b) = e { (*t == tag).then_some(b.clone()) } else { None }).flatten().collect()
}

/// What a streamed exec must show: output frames that began before the invocation
/// returned and add up to the answer's stdout and stderr, then one `exit` frame that
/// agrees with the answer, then Close.
pub fn assert_streamed(events: &[Ev], result: &Value) {
    let first_frame = events.iter().position(|e| matches!(e, Ev::Frame(..))).unwrap_or_else(|| panic!("no output frame: {events:?}"));
    let returned = events.iter().position(|e| *e == Ev::Returned).expect("the invocation's return is logged");
    assert!(
        first_frame < returned,
        "the first output frame must reach the reader before the invocation returns (frame #{first_frame}, return #{returned}): {events:?}"
    );
    let stdout = stream_of(events, 1);
    assert_eq!(String::from_utf8_lossy(&stdout), result["stdout"].as_str().unwrap(), "stdout frames = the answer's stdout");
    assert_eq!(String::from_utf8_lossy(&stream_of(events, 2)), result["stderr"].as_str().unwrap(), "stderr frames = the answer's stderr");
    if let Some(Ev::Frame(_, first)) = events.get(first_frame) {
        assert_ne!(first, &stdout, "the output arrived in pieces as the command printed it, not in one piece at the end");
    }
    let texts: Vec<&Value> = events.iter().filter_map(|e| if let Ev::Text(v) = e { Some(v) } else { None }).collect();
    let want =
        json!({"type": "exit", "exit_code": result["exit_code"], "timed_out": result["timed_out"], "truncated": result["truncated"]});
    assert_eq!(texts, vec![&want], "one exit frame that agrees with the answer");
    let last_frame = events.iter().rposition(|e| matches!(e, Ev::Frame(..))).unwrap();
    let exit_at = events.iter().position(|e| matches!(e, Ev::Text(_))).unwrap();
    assert!(last_frame < exit_at, "the exit frame comes after every output frame: {events:?}");
    assert!(events.contains(&Ev::Closed), "the channel is closed after the exit frame: {events:?}");
}
