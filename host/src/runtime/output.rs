//! An exec's output on its way from the plugin to the caller: kept up to a per-stream
//! budget (`limits.max_exec_output_kib`), the rest counted and flagged `truncated`, and
//! each kept chunk forwarded at once to a caller that streams. Host memory per call is
//! bounded by the budget whatever the command prints.

use tokio::sync::mpsc::UnboundedSender;

/// Which of a command's output streams a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    /// The one-byte tag a streamed frame starts with (1 = stdout, 2 = stderr), as the
    /// engine's channel conventions suggest.
    pub fn tag(self) -> u8 {
        match self {
            OutputStream::Stdout => 1,
            OutputStream::Stderr => 2,
        }
    }
}

/// A piece of output, as the plugin wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub bytes: Vec<u8>,
}

/// Where a streaming caller wants chunks. The bytes it can receive are bounded by the
/// budget, so an unbounded queue holds at most that much.
pub type OutputTap = UnboundedSender<OutputChunk>;

/// One stream's kept bytes and what was cut.
#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    cut: u64,
}

/// The output of one exec call.
#[derive(Debug)]
pub struct OutputCollector {
    budget: usize,
    stdout: Kept,
    stderr: Kept,
    tap: Option<OutputTap>,
}

impl OutputCollector {
    pub fn new(budget_bytes: usize, tap: Option<OutputTap>) -> Self {
        OutputCollector { budget: budget_bytes, stdout: Kept::default(), stderr: Kept::default(), tap }
    }

    /// Appends `bytes` to `stream`; false once bytes of it have been cut. (Not merely
    /// when it is exactly full: a plugin that stops copying then would hide a cut.)
    pub fn write(&mut self, stream: OutputStream, bytes: &[u8]) -> bool {
        let budget = self.budget;
        let kept = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let room = budget.saturating_sub(kept.bytes.len());
        let take = bytes.len().min(room);
        kept.bytes.extend_from_slice(&bytes[..take]);
        kept.cut += (bytes.len() - take) as u64;
        if take > 0 {
            if let Some(tap) = &self.tap {
                // A caller that stopped listening does not stop the command.
                if tap.send(OutputChunk { stream, bytes: bytes[..take].to_vec() }).is_err() {
                    self.tap = None;
                }
            }
        }
        kept.cut == 0
    }

    /// Bytes cut beyond the budget, both streams.
    pub fn cut_bytes(&self) -> u64 {
        self.stdout.cut + self.stderr.cut
    }

    /// The kept output as text (invalid UTF-8 replaced, a character split at the cut
    /// dropped) and whether anything was cut.
    pub fn finish(&mut self) -> (String, String, bool) {
        let truncated = self.cut_bytes() > 0;
        let text = |k: &mut Kept| {
            let bytes = std::mem::take(&mut k.bytes);
            let mut s = String::from_utf8_lossy(&bytes).into_owned();
            if k.cut > 0 && s.ends_with(char::REPLACEMENT_CHARACTER) && std::str::from_utf8(&bytes).is_err() {
                s.pop();
            }
            s
        };
        (text(&mut self.stdout), text(&mut self.stderr), truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_beyond_the_budget_is_cut_counted_and_flagged() {
        let mut c = OutputCollector::new(8, None);
        assert!(c.write(OutputStream::Stdout, b"hello"));
        assert!(!c.write(OutputStream::Stdout, b" world"), "the budget is spent");
        assert!(c.write(OutputStream::Stderr, b"err"), "each stream has its own budget");
        assert_eq!(c.cut_bytes(), 3);
        assert_eq!(c.finish(), ("hello wo".into(), "err".into(), true));
    }

    #[test]
    fn exactly_full_is_not_cut_until_a_byte_more_comes() {
        let mut c = OutputCollector::new(4, None);
        assert!(c.write(OutputStream::Stdout, b"abcd"), "full, nothing cut: keep sending");
        assert!(!c.write(OutputStream::Stdout, b"e"));
        assert_eq!(c.finish(), ("abcd".into(), String::new(), true));
        let mut c = OutputCollector::new(4, None);
        c.write(OutputStream::Stdout, b"abcd");
        assert_eq!(c.finish(), ("abcd".into(), String::new(), false));
    }

    #[test]
    fn a_streaming_caller_gets_exactly_the_kept_bytes_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut c = OutputCollector::new(4, Some(tx));
        c.write(OutputStream::Stdout, b"ab");
        c.write(OutputStream::Stderr, b"x");
        c.write(OutputStream::Stdout, b"cdef");
        let got: Vec<OutputChunk> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                OutputChunk { stream: OutputStream::Stdout, bytes: b"ab".to_vec() },
                OutputChunk { stream: OutputStream::Stderr, bytes: b"x".to_vec() },
                OutputChunk { stream: OutputStream::Stdout, bytes: b"cd".to_vec() },
            ]
        );
    }

    #[test]
    fn a_character_split_at_the_cut_is_dropped_not_mangled() {
        let mut c = OutputCollector::new(4, None);
        c.write(OutputStream::Stdout, "abcé".as_bytes());
        assert_eq!(c.finish().0, "abc");
    }

    #[test]
    fn a_caller_that_went_away_does_not_stop_collection() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let mut c = OutputCollector::new(16, Some(tx));
        assert!(c.write(OutputStream::Stdout, b"still kept"));
        assert_eq!(c.finish().0, "still kept");
    }
}
