//! Reading a session command's output, and writing it to the caller exactly once.
//!
//! The daemon labels every line of the command's stdout with `\x01\x01\x01` and of its
//! stderr with `\x02\x02\x02` in one log file, ending each line (an unterminated last one
//! included) with `\n` (v0.190.0 `apps/daemon/pkg/session/execute.go`). Clients that send
//! `X-Daytona-SDK-Version` ≥ 0.167.0 get it split server-side: the logs route answers JSON
//! `{output, stdout, stderr}` and a finished sync exec `{cmdId, exitCode, output, stdout,
//! stderr}` (`SessionCommandLogsResponse`, `SessionExecuteResponse` in toolbox.json). Older
//! daemons answer the log as text; it is split here the same way ([`demux`]).
//!
//! The log only grows, so each poll's stream is the previous one plus new bytes; the
//! [`Cursor`] writes only those. Mid-run it stops at the last newline: the daemon writes
//! whole lines, and a JSON snapshot cut inside a multi-byte character would carry a
//! replacement character where the final answer has the real one. It also removes the
//! script's end-marker lines ([`crate::shell`]), which carry the newline the daemon adds
//! to an unterminated last line.

use serde::Deserialize;

pub const STDOUT_PREFIX: &[u8] = &[1, 1, 1];
pub const STDERR_PREFIX: &[u8] = &[2, 2, 2];
/// The SDK version sent so the daemon splits the streams (the first version it does for).
pub const SPLIT_OUTPUT_SDK_VERSION: &str = "0.167.0";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Deserialize)]
struct LogsJson {
    stdout: String,
    stderr: String,
}

/// A `GET …/command/{id}/logs` body: the split JSON, or the raw log of an older daemon.
pub fn parse_logs(content_type: Option<&str>, body: &[u8]) -> Streams {
    if content_type.is_some_and(|t| t.starts_with("application/json")) {
        if let Ok(j) = serde_json::from_slice::<LogsJson>(body) {
            return Streams { stdout: j.stdout.into_bytes(), stderr: j.stderr.into_bytes() };
        }
    }
    demux(body)
}

/// A finished sync `POST …/exec` (`SessionExecuteResponse`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecAnswer {
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

impl ExecAnswer {
    pub fn streams(&self) -> Streams {
        match (&self.stdout, &self.stderr) {
            (None, None) => demux(self.output.as_deref().unwrap_or_default().as_bytes()),
            (out, err) => {
                Streams { stdout: out.clone().unwrap_or_default().into_bytes(), stderr: err.clone().unwrap_or_default().into_bytes() }
            }
        }
    }
}

/// Splits a labelled log into its streams; a log without labels (a combined-output
/// daemon) is all stdout.
pub fn demux(log: &[u8]) -> Streams {
    let marker_at = |i: usize| [STDOUT_PREFIX, STDERR_PREFIX].into_iter().find(|p| log[i..].starts_with(p));
    if !(0..log.len()).any(|i| marker_at(i).is_some()) {
        return Streams { stdout: log.to_vec(), stderr: Vec::new() };
    }
    let mut s = Streams::default();
    let mut current: Option<&mut Vec<u8>> = None;
    let mut i = 0;
    while i < log.len() {
        match marker_at(i) {
            Some(p) => {
                current = Some(if p == STDOUT_PREFIX { &mut s.stdout } else { &mut s.stderr });
                i += p.len();
            }
            None => {
                // Bytes before the first label belong to no stream (the daemon writes none).
                if let Some(buf) = current.as_deref_mut() {
                    buf.push(log[i]);
                }
                i += 1;
            }
        }
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// How much of each stream the caller has been given.
#[derive(Debug)]
pub struct Cursor {
    stdout: usize,
    stderr: usize,
    /// The end marker with its newline; removed wherever it appears.
    marker: Vec<u8>,
}

impl Cursor {
    pub fn new(marker: &str) -> Self {
        Cursor { stdout: 0, stderr: 0, marker: format!("{marker}\n").into_bytes() }
    }

    /// Writes the complete lines that are new in `s` (a snapshot of a running command).
    pub fn advance(&mut self, s: &Streams, write: &mut impl FnMut(Channel, &[u8])) {
        self.step(Channel::Stdout, &s.stdout, false, write);
        self.step(Channel::Stderr, &s.stderr, false, write);
    }

    /// Writes everything not written yet (the command's final output). Returns false when
    /// `s` is shorter than what was already written (it cannot be the same log).
    pub fn finish(&mut self, s: &Streams, write: &mut impl FnMut(Channel, &[u8])) -> bool {
        let out = self.step(Channel::Stdout, &s.stdout, true, write);
        let err = self.step(Channel::Stderr, &s.stderr, true, write);
        out && err
    }

    fn step(&mut self, ch: Channel, buf: &[u8], all: bool, write: &mut impl FnMut(Channel, &[u8])) -> bool {
        let sent = match ch {
            Channel::Stdout => self.stdout,
            Channel::Stderr => self.stderr,
        };
        let Some(new) = buf.get(sent..) else { return false };
        let take = if all { new.len() } else { new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) };
        let chunk = without(&new[..take], &self.marker);
        if !chunk.is_empty() {
            write(ch, &chunk);
        }
        match ch {
            Channel::Stdout => self.stdout += take,
            Channel::Stderr => self.stderr += take,
        }
        true
    }
}

/// `bytes` with every occurrence of `marker` removed.
fn without(bytes: &[u8], marker: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if !marker.is_empty() && bytes[i..].starts_with(marker) {
            i += marker.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(parts: &[(Channel, &str)]) -> Vec<u8> {
        let mut log = Vec::new();
        for (ch, line) in parts {
            log.extend_from_slice(if *ch == Channel::Stdout { STDOUT_PREFIX } else { STDERR_PREFIX });
            log.extend_from_slice(line.as_bytes());
        }
        log
    }

    #[test]
    fn demux_splits_labelled_lines_and_keeps_unlabelled_logs_whole() {
        let log = labelled(&[(Channel::Stdout, "a\n"), (Channel::Stderr, "oops\n"), (Channel::Stdout, "b\n")]);
        assert_eq!(demux(&log), Streams { stdout: b"a\nb\n".to_vec(), stderr: b"oops\n".to_vec() });
        assert_eq!(demux(b"plain\n"), Streams { stdout: b"plain\n".to_vec(), stderr: vec![] });
        assert_eq!(demux(b""), Streams::default());
    }

    #[test]
    fn the_daemons_labels_as_the_simulator_writes_them_read_back() {
        use provider_sims::daytona::{Labeller, Stream};
        // One labeller per stream, as the daemon runs one per pipe.
        let (mut out, mut err, mut log) = (Labeller::default(), Labeller::default(), Vec::new());
        out.feed(Stream::Stdout, b"one\ntw", &mut log);
        err.feed(Stream::Stderr, b"err\n", &mut log);
        out.feed(Stream::Stdout, b"o\nlast", &mut log);
        out.finish(Stream::Stdout, &mut log);
        assert_eq!(demux(&log), Streams { stdout: b"one\ntwo\nlast\n".to_vec(), stderr: b"err\n".to_vec() });
    }

    #[test]
    fn logs_parse_as_json_only_when_the_daemon_says_so() {
        let json = br#"{"output":"x","stdout":"out\n","stderr":"err\n"}"#;
        assert_eq!(
            parse_logs(Some("application/json; charset=utf-8"), json),
            Streams { stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec() }
        );
        assert_eq!(parse_logs(Some("text/plain"), json).stdout, json.to_vec(), "a command may print JSON");
        let answer: ExecAnswer = serde_json::from_str(r#"{"cmdId":"c","exitCode":3,"output":"\u0001\u0001\u0001hi\n"}"#).unwrap();
        assert_eq!((answer.exit_code, answer.streams().stdout), (Some(3), b"hi\n".to_vec()));
    }

    #[test]
    fn the_cursor_writes_each_byte_once_and_whole_lines_mid_run() {
        let mut got: Vec<(Channel, Vec<u8>)> = Vec::new();
        let mut write = |ch: Channel, b: &[u8]| got.push((ch, b.to_vec()));
        let mut c = Cursor::new("M1");
        c.advance(&Streams { stdout: b"a\nb".to_vec(), stderr: vec![] }, &mut write);
        c.advance(&Streams { stdout: b"a\nb".to_vec(), stderr: b"e\n".to_vec() }, &mut write);
        c.advance(&Streams { stdout: b"a\nbc\nd".to_vec(), stderr: b"e\n".to_vec() }, &mut write);
        assert!(c.finish(&Streams { stdout: b"a\nbc\ndM1\n".to_vec(), stderr: b"e\nM1\n".to_vec() }, &mut write));
        let shorter = Streams { stdout: b"a".to_vec(), stderr: vec![] };
        assert!(!c.finish(&shorter, &mut write));
        let of = |want: Channel| -> Vec<u8> { got.iter().filter(|(ch, _)| *ch == want).flat_map(|(_, b)| b.clone()).collect() };
        assert_eq!(of(Channel::Stdout), b"a\nbc\nd", "the marker took the newline the daemon added");
        assert_eq!(of(Channel::Stderr), b"e\n");
        assert_eq!(got[0], (Channel::Stdout, b"a\n".to_vec()), "the unterminated `b` waited for its newline");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn marker_lines_are_removed_wherever_a_combined_log_puts_them() {
        let mut got = Vec::new();
        let mut c = Cursor::new("M1");
        c.advance(&Streams { stdout: b"out\nM1\nerr\n".to_vec(), stderr: vec![] }, &mut |_, b: &[u8]| got.extend_from_slice(b));
        c.finish(&Streams { stdout: b"out\nM1\nerr\nlastM1\n".to_vec(), stderr: vec![] }, &mut |_, b: &[u8]| got.extend_from_slice(b));
        assert_eq!(got, b"out\nerr\nlast");
    }
}
