//! Upstream HTTP for providers: one request in, one fully-read [`Reply`] out, every
//! failure already an [`Error`] of the right kind. Credentials are not set here: the
//! host injects them on the way out.
//!
//! Three ways out, one egress policy (the host applies the same rules to each):
//! - [`Call::send`]: the host's whole-body `upstream` import, one call per request (the
//!   cheapest). It blocks this plugin's executor until the answer is in, so other tasks
//!   of the same call wait meanwhile;
//! - [`Call::send_concurrent`]: plain `wasi:http` through wstd, for a request other tasks
//!   must run beside (a long exec while its logs are polled, fan-out);
//! - [`Call::open`]: plain `wasi:http`, the body read as it arrives (streams).

use crate::errors::{self, from_status, unavailable};
use crate::Error;
use serde::de::DeserializeOwned;
use wstd::http::{Body, Client, HeaderMap, Method, Request};
use wstd::time::Duration;

/// Largest upstream body a plugin reads into memory.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// A fully read upstream answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `METHOD /path` for messages.
    pub what: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON `T`; an unparsable body is `unavailable` (S502).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| unavailable(format!("{} answered a body that is not the expected JSON ({e}): {}", self.what, snippet(&self.body))))
    }

    /// `Ok(self)` for 2xx, otherwise the mapped error with the upstream's own message.
    pub fn ok(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        Err(self.error())
    }

    /// This answer as an error (for statuses a caller decided are failures).
    pub fn error(&self) -> Error {
        from_status(&self.what, self.status, &error_detail(&self.body), self.retry_after_ms())
    }

    /// `Retry-After` in milliseconds: delta-seconds, or an HTTP date (see [`fn@retry_after_ms`]).
    pub fn retry_after_ms(&self) -> Option<u64> {
        let v = self.headers.get("retry-after")?.to_str().ok()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        retry_after_ms(v, now.as_millis() as u64)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3) in milliseconds from `now_unix_ms`: either
/// delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, also the
/// obsolete RFC 850 and asctime forms every recipient must accept), as the time left
/// until then (0 once it has passed). Anything else is no hint.
pub fn retry_after_ms(value: &str, now_unix_ms: u64) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: a huge value saturates rather than being dropped.
        return Some(v.parse::<u64>().unwrap_or(u64::MAX).saturating_mul(1000));
    }
    let at = http_date_unix_secs(v)?;
    Some(at.saturating_mul(1000).saturating_sub(now_unix_ms))
}

/// Seconds since the Unix epoch of an HTTP date (RFC 9110 §5.6.7): IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`, asctime
/// `Sun Nov  6 08:49:37 1994`.
pub fn http_date_unix_secs(s: &str) -> Option<u64> {
    const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekday = |w: &str| w.get(..3).is_some_and(|w| WEEKDAYS.iter().any(|d| w.eq_ignore_ascii_case(d)));
    let (day, month, year, time) = match s.trim().split_once(',') {
        Some((wd, rest)) => {
            if !weekday(wd) {
                return None;
            }
            match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [d, m, y, t, "GMT"] => (d, m, year_of(y)?, t),
                [dmy, t, "GMT"] => match dmy.split('-').collect::<Vec<_>>()[..] {
                    [d, m, y] => (d, m, year_of(y)?, t),
                    _ => return None,
                },
                _ => return None,
            }
        }
        None => match s.split_whitespace().collect::<Vec<_>>()[..] {
            [wd, m, d, t, y] if weekday(wd) => (d, m, year_of(y)?, t),
            _ => return None,
        },
    };
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let month = MONTHS.iter().position(|m| month.eq_ignore_ascii_case(m))? as u64 + 1;
    let day: u64 = digits(day, 1, 2)?;
    let [h, m, sec] = match time.split(':').collect::<Vec<_>>()[..] {
        [h, m, s] => [digits(h, 2, 2)?, digits(m, 2, 2)?, digits(s, 2, 2)?],
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
    if year < 1970 || day == 0 || day > month_days || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + sec)
}

/// A year of 4 digits, or of 2 (RFC 850): 70–99 are 19xx, the rest 20xx.
fn year_of(y: &str) -> Option<u64> {
    match y.len() {
        4 => digits(y, 4, 4),
        2 => digits(y, 2, 2).map(|y| if y >= 70 { 1900 + y } else { 2000 + y }),
        _ => None,
    }
}

/// `s` as a number of `min..=max` ASCII digits.
fn digits(s: &str, min: usize, max: usize) -> Option<u64> {
    ((min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Howard Hinnant's `days_from_civil`, shifted so March is the first month.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The human message inside a provider's error body: `message`, `detail` (FastAPI,
/// string or list), `error`, else the raw text.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "detail", "error"] {
            match v.get(key) {
                Some(serde_json::Value::String(s)) => return s.clone(),
                Some(other @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => return snippet(other.to_string().as_bytes()),
                _ => {}
            }
        }
    }
    snippet(body)
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]).replace(['\n', '\r'], " ");
    if body.len() > 300 {
        format!("{s}…")
    } else {
        s
    }
}

/// One outgoing request.
pub struct Call {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Call { method, url: url.into(), headers: Vec::new(), body: Vec::new(), timeout: None }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Call::new(Method::GET, url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Call::new(Method::POST, url)
    }
    pub fn delete(url: impl Into<String>) -> Self {
        Call::new(Method::DELETE, url)
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn json(self, value: &serde_json::Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    /// Upper bound on waiting for the first byte and between bytes (the host clamps it further).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Sends through the host's `upstream` import and returns the whole answer. Refusals,
    /// transport failures and timeouts are `unavailable` (a refusal's S-code is the host's).
    pub async fn send(self) -> Result<Reply, Error> {
        use crate::bindings::iii::sandbox::upstream;
        let what = self.what();
        let req = upstream::Request {
            method: self.method.as_str().to_string(),
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
        };
        let answer = upstream::send(&req).map_err(|f| {
            let why = match f {
                upstream::Failure::Refused(w) => format!("refused: {w}"),
                upstream::Failure::TimedOut(w) => format!("timed out: {w}"),
                upstream::Failure::Transport(w) => w,
            };
            unavailable(format!("{what} failed before an answer arrived ({why})"))
        })?;
        if answer.body.len() > MAX_BODY_BYTES {
            return Err(unavailable(format!("{what} answered a body larger than {MAX_BODY_BYTES} bytes")));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in answer.headers {
            if let (Ok(k), Ok(v)) = (wstd::http::HeaderName::from_bytes(k.as_bytes()), wstd::http::HeaderValue::from_str(&v)) {
                headers.append(k, v);
            }
        }
        Ok(Reply { status: answer.status, headers, body: answer.body, what })
    }

    /// As [`Call::send`], through plain `wasi:http`: other tasks of this call keep running
    /// while it waits.
    pub async fn send_concurrent(self) -> Result<Reply, Error> {
        let (what, response) = self.respond().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = response.into_body();
        if body.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(unavailable(format!("{what} answered a body larger than {MAX_BODY_BYTES} bytes")));
        }
        let bytes = body.contents().await.map_err(|e| unavailable(format!("{what}: reading the answer failed ({e:#})")))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(unavailable(format!("{what} answered a body larger than {MAX_BODY_BYTES} bytes")));
        }
        Ok(Reply { status, headers, body: bytes.to_vec(), what })
    }

    /// Sends and returns as soon as the status and headers arrive; the body is read
    /// piece by piece as the upstream produces it (SSE, Connect server streams, logs).
    pub async fn open(self) -> Result<Streamed, Error> {
        let (what, response) = self.respond().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok(Streamed { status, headers, what, body: response.into_body().into_boxed_body(), read: 0 })
    }

    /// `METHOD /path` for messages (no query: it may carry ids or tokens).
    fn what(&self) -> String {
        let path = self.url.split_once("://").map(|(_, rest)| rest).and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        format!("{} {}", self.method, path)
    }

    async fn respond(self) -> Result<(String, wstd::http::Response<Body>), Error> {
        let what = self.what();
        let mut builder = Request::builder().method(self.method).uri(&self.url);
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        // An empty body must send no frame at all: wstd writes even a zero-length chunk,
        // and if the server has already answered (and hyper dropped the body), that write
        // fails as "connection reset" and loses a perfectly good answer.
        let body =
            if self.body.is_empty() { Body::from_http_body(http_body_util::Empty::<bytes::Bytes>::new()) } else { Body::from(self.body) };
        let request = builder.body(body).map_err(|e| errors::bad_input(format!("{what}: cannot build the request ({e})")))?;
        let mut client = Client::new();
        if let Some(t) = self.timeout {
            client.set_first_byte_timeout(t);
            client.set_between_bytes_timeout(t);
        }
        let response = client.send(request).await.map_err(|e| unavailable(format!("{what} failed before an answer arrived ({e:#})")))?;
        Ok((what, response))
    }
}

/// An upstream answer whose body is still arriving (see [`Call::open`]).
pub struct Streamed {
    pub status: u16,
    pub headers: HeaderMap,
    /// `METHOD /path` for messages.
    pub what: String,
    body: http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, wstd::http::Error>,
    read: usize,
}

impl Streamed {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The next piece of the body as it arrived; `None` at its end. A transport failure
    /// or the host's between-bytes timeout is `unavailable`.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        use http_body_util::BodyExt as _;
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(unavailable(format!("{}: reading the answer failed ({e:#})", self.what))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.read += data.len();
                        if !data.is_empty() {
                            return Ok(Some(data.to_vec()));
                        }
                    }
                }
            }
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> usize {
        self.read
    }

    /// The rest of the body read whole (e.g. an error answer), at most [`MAX_BODY_BYTES`].
    pub async fn into_reply(mut self) -> Result<Reply, Error> {
        let mut body = Vec::new();
        while let Some(c) = self.chunk().await? {
            body.extend_from_slice(&c);
            if body.len() > MAX_BODY_BYTES {
                return Err(unavailable(format!("{} answered a body larger than {MAX_BODY_BYTES} bytes", self.what)));
            }
        }
        Ok(Reply { status: self.status, headers: self.headers, body, what: self.what })
    }
}

/// Splits a byte stream into lines as chunks arrive (SSE, NDJSON); keeps at most
/// `max_line` bytes of an unterminated line so a hostile upstream cannot grow it.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Feeds `chunk`; returns every complete line (without `\n` / `\r\n`).
    pub fn feed(&mut self, chunk: &[u8], max_line: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.pending);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                out.push(line);
            } else if self.pending.len() < max_line {
                self.pending.push(b);
            }
        }
        out
    }

    /// What is left after the stream ended (a last line without a newline).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Percent-encodes a query or path component (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `multipart/form-data` body with one file part; returns (content type, body).
pub fn multipart_file(field: &str, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    // A boundary that cannot occur in the payload: extend it until it does not.
    let mut boundary = String::from("----iii-sandbox-boundary-7f3a9c");
    while bytes.windows(boundary.len()).any(|w| w == boundary.as_bytes()) {
        boundary.push('x');
    }
    let filename = filename.replace(['"', '\r', '\n'], "_");
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_bounded() {
        let mut l = Lines::default();
        assert!(l.feed(b"data: a", 64).is_empty());
        assert_eq!(l.feed(b"b\r\n\ndata: c\n", 64), vec![b"data: ab".to_vec(), Vec::new(), b"data: c".to_vec()]);
        assert_eq!(l.feed(&[b'x'; 100], 8), Vec::<Vec<u8>>::new());
        assert_eq!(l.finish(), Some(b"xxxxxxxx".to_vec()));
    }

    #[test]
    fn encode_keeps_unreserved_only() {
        assert_eq!(encode("/home/user/a b.txt"), "%2Fhome%2Fuser%2Fa%20b.txt");
    }

    #[test]
    fn error_detail_reads_common_shapes() {
        assert_eq!(error_detail(br#"{"code":401,"message":"bad key"}"#), "bad key");
        assert_eq!(error_detail(br#"{"detail":"Not found"}"#), "Not found");
        assert_eq!(error_detail(b"plain"), "plain");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        // 1994-11-06T08:49:37Z, RFC 9110's example, in its three forms.
        let at = 784_111_777;
        for form in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(http_date_unix_secs(form), Some(at), "{form}");
        }
        assert_eq!(http_date_unix_secs("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date_unix_secs("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
        let now = (at - 3) * 1000 + 250;
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(2_750), "the time left until the date");
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:49:30 GMT", now), Some(0), "a date that has passed: retry now");
        assert_eq!(retry_after_ms(" 2 ", now), Some(2_000));
        assert_eq!(retry_after_ms("99999999999999999999999", now), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "06 Nov 1994 08:49:37 GMT",
            "Sü, 06 Nov 1994 08:49:37 GMT",
            "Sü Nov  6 08:49:37 1994",
        ] {
            assert_eq!(retry_after_ms(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn multipart_boundary_avoids_the_payload() {
        let (ct, body) = multipart_file("file", "a.txt", b"----iii-sandbox-boundary-7f3a9c");
        assert!(ct.ends_with("7f3a9cx"));
        assert!(body.ends_with(b"7f3a9cx--\r\n"));
    }
}
