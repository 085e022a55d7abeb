//! Credential echo: the host removes its credentials from every upstream response
//! before the plugin can read it.
//!
//! The host injects a credential on the way out so the plugin never holds it; an
//! allowed upstream that echoes request headers back (debug endpoints, some error
//! pages) would hand it over all the same. So every response header, trailer and body
//! byte a plugin reads passes a [`Redactor`] first. It looks for each secret's exact
//! value and its common encodings — upper/lower case, base64 (standard and URL-safe,
//! with and without padding, and the part of it that survives inside a longer base64
//! text such as `Basic base64(user:secret)`), percent-encoding (reserved bytes only, or
//! every byte, either hex case) — and overwrites each occurrence with as many `*`: the
//! length is kept, so `content-length` stays true and JSON stays well-formed. Each
//! occurrence counts as one redaction (metrics).
//!
//! Bodies stream. A secret split across frames is still found: the end of a frame that
//! could begin a secret (it is a proper prefix of one of the encodings) is held back and
//! searched again with the next frame; everything before it is passed on at once, so a
//! streamed answer (an exec's output) reaches the plugin as it arrives, not one frame late.
//!
//! Not covered: an upstream that transforms the echo otherwise (compression is
//! prevented instead: see `egress.rs`), or a plugin that gets parts of it from several
//! responses (byte ranges).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// What replaces each byte of a found secret.
const MASK: u8 = b'*';

/// Shortest base64 fragment searched for inside longer base64 text: shorter fragments
/// (a short secret) would also match unrelated text; 16 characters are 96 bits.
const MIN_EMBEDDED_BASE64: usize = 16;

/// The byte strings to remove from upstream responses: every credential's secret and
/// its encodings. Built once per plugin at load.
#[derive(Default)]
pub struct Redactor {
    /// Longest first, so the longest encoding at a position is the one masked.
    needles: Vec<Vec<u8>>,
    /// Which two-byte prefixes start some needle (indexed `first << 8 | second`).
    prefixes: Vec<bool>,
    longest: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the needles: they are the secrets.
        write!(f, "Redactor({} patterns)", self.needles.len())
    }
}

impl Redactor {
    /// A redactor for `secrets` (the credentials' values, without their prefix).
    pub fn for_secrets<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut needles: Vec<Vec<u8>> = secrets.into_iter().filter(|s| !s.is_empty()).flat_map(encodings).collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let mut prefixes = vec![false; 1 << 16];
        for n in &needles {
            match n.as_slice() {
                [only] => (0..=255u16).for_each(|second| prefixes[usize::from(*only) << 8 | usize::from(second)] = true),
                [first, second, ..] => prefixes[usize::from(*first) << 8 | usize::from(*second)] = true,
                [] => {}
            }
        }
        let longest = needles.first().map_or(0, Vec::len);
        Redactor { needles, prefixes, longest }
    }

    /// True when there is nothing to look for (the plugin has no ready credential).
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Masks every occurrence in `buf`; returns how many there were.
    pub fn redact(&self, buf: &mut [u8]) -> u64 {
        self.redact_starting_before(buf, buf.len())
    }

    /// Masks the occurrences that start before `stop` (they may end after it). Held-back
    /// bytes are searched only once the next frame is there, so the longest encoding
    /// at a position always wins, never a shorter one that is already complete.
    fn redact_starting_before(&self, buf: &mut [u8], stop: usize) -> u64 {
        let mut found = 0;
        let mut i = 0;
        while i < stop {
            let candidate = match buf.get(i + 1) {
                Some(second) => self.prefixes[usize::from(buf[i]) << 8 | usize::from(*second)],
                None => true,
            };
            let hit = if candidate { self.needles.iter().find(|n| buf[i..].starts_with(n)).map(Vec::len) } else { None };
            match hit {
                Some(len) => {
                    buf[i..i + len].fill(MASK);
                    found += 1;
                    i += len;
                }
                None => i += 1,
            }
        }
        found
    }

    /// Where the part of `buf` that may still begin a secret starts (`buf.len()` when none
    /// does): only the last `longest - 1` bytes can, and only where they are a proper
    /// prefix of some encoding. A match starting earlier lies wholly inside `buf`.
    fn hold_from(&self, buf: &[u8]) -> usize {
        let tail = buf.len().saturating_sub(self.longest.saturating_sub(1));
        (tail..buf.len()).find(|&p| self.needles.iter().any(|n| n.len() > buf.len() - p && n.starts_with(&buf[p..]))).unwrap_or(buf.len())
    }

    /// Masks the secrets in header values and drops headers whose name holds one;
    /// returns how many were found.
    pub fn redact_headers(&self, headers: &mut HeaderMap) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut found = 0;
        let named: Vec<_> = headers.keys().filter(|n| self.redact(&mut n.as_str().as_bytes().to_vec()) > 0).cloned().collect();
        for name in named {
            found += headers.get_all(&name).iter().count() as u64;
            headers.remove(&name);
        }
        for value in headers.values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            let n = self.redact(&mut bytes);
            if n > 0 {
                // `*` is a visible ASCII byte: the masked value is as valid as the original.
                let mut masked = HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""));
                masked.set_sensitive(true);
                *value = masked;
                found += n;
            }
        }
        found
    }

    /// `body` with the secrets masked as it streams; each occurrence adds 1 to `found`.
    pub fn body(self: &Arc<Self>, body: WasiBody, found: Arc<AtomicU64>) -> RedactedBody {
        RedactedBody { inner: body, redactor: self.clone(), held: Vec::new(), trailers: None, ended: false, found }
    }
}

/// The secret and every encoding of it the redactor looks for.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![secret.to_vec(), secret.to_ascii_lowercase(), secret.to_ascii_uppercase()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret).into_bytes());
    }
    // Inside longer base64 text the secret starts at one of three alignments; the
    // characters that depend on its bytes alone are the same wherever it sits.
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for shift in 1..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(secret);
            let encoded = engine.encode(&shifted).into_bytes();
            let (start, end) = ((8 * shift).div_ceil(6), 8 * (shift + secret.len()) / 6);
            if end >= start + MIN_EMBEDDED_BASE64 {
                out.push(encoded[start..end].to_vec());
            }
        }
        let encoded = engine.encode(secret).into_bytes();
        let end = 8 * secret.len() / 6;
        if end >= MIN_EMBEDDED_BASE64 {
            out.push(encoded[..end].to_vec());
        }
    }
    for upper in [true, false] {
        out.push(percent_encoded(secret, upper, |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
        out.push(percent_encoded(secret, upper, |_| false));
    }
    out
}

fn percent_encoded(secret: &[u8], upper: bool, keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() * 3);
    for &b in secret {
        if keep(b) {
            out.push(b);
        } else if upper {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    out
}

/// True when the body's bytes are the representation itself, so a search can see a
/// secret in it (no `content-encoding`, or `identity`).
pub fn can_inspect(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_ENCODING).iter().all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

/// An upstream body with the secrets masked (see the module doc for the held-back tail).
pub struct RedactedBody {
    inner: WasiBody,
    redactor: Arc<Redactor>,
    /// The tail of what was searched, not yet passed on: it may begin a secret.
    held: Vec<u8>,
    /// Trailers that arrived while bytes were held back: passed on after them.
    trailers: Option<HeaderMap>,
    ended: bool,
    found: Arc<AtomicU64>,
}

impl http_body::Body for RedactedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                if !this.held.is_empty() {
                    let mut rest = std::mem::take(&mut this.held);
                    this.found.fetch_add(this.redactor.redact(&mut rest), Ordering::Relaxed);
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(rest)))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(http_body::Frame::trailers(t))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    this.ended = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => match frame.into_trailers() {
                    Ok(mut trailers) => {
                        this.found.fetch_add(this.redactor.redact_headers(&mut trailers), Ordering::Relaxed);
                        // Trailers end the body: the held bytes go first.
                        this.trailers = Some(trailers);
                        this.ended = true;
                        continue;
                    }
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
            };
            let mut buf = std::mem::take(&mut this.held);
            buf.extend_from_slice(&data);
            let stop = this.redactor.hold_from(&buf);
            this.found.fetch_add(this.redactor.redact_starting_before(&mut buf, stop), Ordering::Relaxed);
            this.held = buf.split_off(stop);
            if !buf.is_empty() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(buf)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Masking keeps the length: what is held back is still to come.
        let inner = if self.ended { http_body::SizeHint::with_exact(0) } else { self.inner.size_hint() };
        let held = self.held.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const SECRET: &str = "sk-live/7d1e+5c0b=9a_ZZ";

    fn redactor() -> Arc<Redactor> {
        Arc::new(Redactor::for_secrets([SECRET.as_bytes()]))
    }

    fn redacted(text: &str) -> (String, u64) {
        let mut buf = text.as_bytes().to_vec();
        let n = redactor().redact(&mut buf);
        (String::from_utf8(buf).unwrap(), n)
    }

    #[test]
    fn the_exact_secret_is_masked_to_the_same_length() {
        let (out, n) = redacted(&format!(r#"{{"x-api-key":"{SECRET}","ok":true}}"#));
        assert_eq!(out, format!(r#"{{"x-api-key":"{}","ok":true}}"#, "*".repeat(SECRET.len())));
        assert_eq!(n, 1);
    }

    #[test]
    fn every_common_encoding_is_masked() {
        let s = SECRET.as_bytes();
        let basic = STANDARD.encode(format!("user:{SECRET}"));
        let forms = [
            STANDARD.encode(s),
            STANDARD_NO_PAD.encode(s),
            URL_SAFE.encode(s),
            URL_SAFE_NO_PAD.encode(s),
            "sk-live%2F7d1e%2B5c0b%3D9a_ZZ".to_string(),
            "sk-live%2f7d1e%2b5c0b%3d9a_ZZ".to_string(),
            SECRET.bytes().map(|b| format!("%{b:02X}")).collect(),
            SECRET.to_ascii_uppercase(),
        ];
        for form in forms.iter().chain([&basic]) {
            let (out, n) = redacted(&format!("echo: {form} end"));
            assert!(n >= 1, "{form} was not found");
            for leaked in forms.iter().chain([&SECRET.to_string()]) {
                assert!(!out.contains(leaked.as_str()), "{form} left {leaked} in {out}");
            }
            if form == &basic {
                // What remains decodes to no more than a few bytes around the secret.
                assert!(out.starts_with("echo: dXNlcjp") && out.contains("*****"), "{out}");
            }
        }
    }

    #[test]
    fn text_without_the_secret_is_untouched() {
        let text = "sk-live/ is a prefix, 7d1e+5c0b is a middle, nothing else";
        assert_eq!(redacted(text), (text.to_string(), 0));
        assert!(Redactor::for_secrets([]).is_empty());
    }

    #[test]
    fn headers_are_masked_and_a_header_named_after_the_secret_is_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-echo-x-api-key", HeaderValue::from_str(SECRET).unwrap());
        h.insert("x-echo-auth", HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(SECRET))).unwrap());
        h.insert(http::HeaderName::from_bytes(b"x-sk-live").unwrap(), HeaderValue::from_static("1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let r = Redactor::for_secrets([b"sk-live".as_slice(), SECRET.as_bytes()]);
        assert_eq!(r.redact_headers(&mut h), 3);
        assert_eq!(h["x-echo-x-api-key"].as_bytes(), "*".repeat(SECRET.len()).as_bytes());
        assert!(h["x-echo-auth"].to_str().unwrap().starts_with("Basic ****"));
        assert!(h.get("x-sk-live").is_none());
        assert_eq!(h["content-type"], "application/json");
    }

    /// A body whose frames are `parts`, as an upstream that flushes between them sends it.
    fn framed(parts: Vec<Vec<u8>>) -> WasiBody {
        let frames = parts.into_iter().map(|p| Ok::<_, HttpError>(http_body::Frame::data(Bytes::from(p))));
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_secret_split_across_frames_is_still_masked() {
        let text = format!(r#"{{"echo":"{SECRET}","b64":"{}"}}"#, STANDARD.encode(SECRET));
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            // Two frames at every split point, and one frame per byte.
            for parts in [vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()], bytes.iter().map(|b| vec![*b]).collect()] {
                let found = Arc::new(AtomicU64::new(0));
                let body = redactor().body(framed(parts), found.clone());
                let out = body.collect().await.unwrap().to_bytes();
                assert_eq!(out.len(), bytes.len(), "the length is kept");
                let out = String::from_utf8(out.to_vec()).unwrap();
                assert!(!out.contains(SECRET) && !out.contains(&STANDARD.encode(SECRET)), "split at {cut}: {out}");
                assert_eq!(found.load(Ordering::Relaxed), 2, "split at {cut}: {out}");
            }
        }
    }

    /// The exec-streaming regression: each frame of ordinary output used to wait for the
    /// next one (its last `longest - 1` bytes were held back whatever they were).
    #[tokio::test]
    async fn a_frame_that_cannot_begin_a_secret_is_passed_on_whole_at_once() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<http_body::Frame<Bytes>, HttpError>>();
        let frames = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let found = Arc::new(AtomicU64::new(0));
        let mut body = redactor().body(http_body_util::StreamBody::new(frames).boxed_unsync(), found);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"line 1\n")))).unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"line 1\n", "passed on before any further frame exists");
        // A frame ending in what could begin the secret holds only that part back.
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"key sk-li")))).unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"key ");
        drop(tx);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"sk-li", "released at the end: it never became a secret");
    }

    #[test]
    fn only_an_unencoded_body_can_be_inspected() {
        let mut h = HeaderMap::new();
        assert!(can_inspect(&h));
        h.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(can_inspect(&h));
        h.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!can_inspect(&h));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        assert!(!format!("{:?}", redactor()).contains("sk-live"));
    }
}
