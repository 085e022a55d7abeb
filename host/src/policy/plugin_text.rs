//! Bounds on plugin-supplied text that reaches a caller or the host's log: error
//! messages, log lines, stderr tails, snapshot ids, URLs, destinations it tried.
//!
//! A plugin controls these strings, and only its memory cap bounds them: a 40 MiB
//! `error.message` would otherwise be copied into the caller's answer, the JSON and the
//! log. Each kind gets a bound here, in one list; longer text is cut on a character
//! boundary and the cut is marked with the original size, so a reader knows it was
//! cut and by how much (`… [cut: 41943040 bytes in all]`).

use std::borrow::Cow;

/// An error message the plugin returns (`error.message`): enough for any real
/// provider's explanation (they run to a few hundred bytes), small beside an answer.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

/// One `log` line (the log is line-oriented; longer lines are almost always dumps).
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;

/// A snapshot id: ids are tokens, real ones are tens of bytes.
pub const MAX_SNAPSHOT_ID_BYTES: usize = 4 * 1024;

/// An `expose_port` URL: 8 KiB is the request-line limit of common HTTP servers, so a
/// longer URL could not be used anyway.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// A destination or allowlist entry quoted in an egress message or log line.
pub const MAX_DESTINATION_BYTES: usize = 512;

/// `text` whole when it fits in `max` bytes, else its first `max` bytes (on a char
/// boundary) followed by the cut marker.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("{}{}", &text[..floor_char_boundary(text, max)], cut_marker(text.len())))
}

/// As [`bounded`], for a string the host owns: the original allocation is released at
/// once when it is cut, so a huge message is not held any longer than it takes to cut it.
pub fn bounded_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let cut = bounded(&text, max).into_owned();
    drop(text);
    cut
}

/// `value`'s `Debug` form, bounded as [`bounded`] does, without ever holding more than
/// `max` bytes of it (a plugin's wrong answer may be megabytes).
pub fn bounded_debug(value: &impl std::fmt::Debug, max: usize) -> String {
    use std::fmt::Write as _;
    let mut w = CappedWriter { kept: String::new(), max, total: 0 };
    let _ = write!(w, "{value:?}");
    if w.total > max {
        w.kept.push_str(&cut_marker(w.total));
    }
    w.kept
}

/// Keeps the first `max` bytes written to it (on a char boundary) and counts the rest.
struct CappedWriter {
    kept: String,
    max: usize,
    total: usize,
}

impl std::fmt::Write for CappedWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.total += s.len();
        let room = self.max.saturating_sub(self.kept.len());
        if room > 0 {
            self.kept.push_str(&s[..floor_char_boundary(s, room)]);
        }
        Ok(())
    }
}

/// The marker appended to cut text.
pub fn cut_marker(total_bytes: usize) -> String {
    format!("… [cut: {total_bytes} bytes in all]")
}

/// The largest char boundary at or below `max`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert!(matches!(bounded("sandbox gone", 64), Cow::Borrowed("sandbox gone")));
        assert_eq!(bounded_owned("exact".into(), 5), "exact");
    }

    #[test]
    fn long_text_is_cut_and_the_cut_says_how_big_it_was() {
        let huge = "x".repeat(40 << 20);
        let cut = bounded_owned(huge, MAX_ERROR_MESSAGE_BYTES);
        assert_eq!(cut, format!("{}… [cut: 41943040 bytes in all]", "x".repeat(MAX_ERROR_MESSAGE_BYTES)));
        assert!(cut.capacity() < 64 * 1024, "the 40 MiB allocation is not kept: capacity {}", cut.capacity());
    }

    #[test]
    fn a_debug_form_is_bounded_as_it_is_written() {
        let big = vec![7u8; 1 << 20];
        let s = bounded_debug(&big, 100);
        assert!(s.starts_with("[7, 7, ") && s.ends_with(&cut_marker(3 * (1 << 20))), "{s}");
        assert_eq!(bounded_debug(&"ok", 100), "\"ok\"");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let s = "é".repeat(10); // 2 bytes each
        assert_eq!(bounded(&s, 5), format!("éé{}", cut_marker(20)));
    }
}
