//! The HTTP/1.1 edge: one listener, keep-alive, chunked request bodies (hyper), answers
//! whole or streamed from a channel, request bodies read within a size limit, and
//! form-style query strings.

use super::errors::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
pub type Reply = Response<Body>;

pub fn full(status: u16, content_type: &str, bytes: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(bytes.into()).boxed_unsync());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json(status: u16, v: &Value) -> Reply {
    full(status, "application/json", v.to_string())
}

pub fn empty(status: u16) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NO_CONTENT);
    r
}

/// E2B's error body, `{code, message}`, with the retry headers the SDK reads.
pub fn api_error(e: &ApiError) -> Reply {
    let mut r = json(e.status, &serde_json::json!({ "code": e.status, "message": e.message }));
    if let Some(after) = e.retry_after {
        let secs = after.as_millis().div_ceil(1000).max(1);
        r.headers_mut().insert("retry-after", secs.to_string().parse().expect("digits are a header value"));
    }
    if e.final_answer {
        r.headers_mut().insert("should-retry", hyper::header::HeaderValue::from_static("false"));
    }
    r
}

/// A response body fed from a channel, chunk by chunk, as it is produced; it ends when
/// every sender is gone.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

pub fn streamed(content_type: &'static str, rx: mpsc::Receiver<Bytes>) -> Reply {
    let mut r = Response::new(ChannelBody(rx).boxed_unsync());
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

/// The whole request body, refused with 413 beyond `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::new(413, format!("the request body is larger than the {limit} bytes this endpoint takes")))
        }
        Err(e) => Err(ApiError::bad_request(format!("the request body could not be read: {e}"))),
    }
}

/// A query string's pairs, decoded as a form (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

pub fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept as written.
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header's value as text, if present and printable.
pub fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Resolves once `stop` is true; never if its sender is gone without saying so.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves connections from `listener` with `handler` until `stop` turns true. Open
/// connections finish the request they are on.
pub async fn serve(listener: tokio::net::TcpListener, mut stop: tokio::sync::watch::Receiver<bool>, handler: Handler) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    tracing::warn!("e2b api: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            // A client that never finishes its request head would hold a connection at
            // no cost to itself: it gets HEADER_READ_TIMEOUT, then the connection closes.
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("e2b api: connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_httpx_encodes_them() {
        let q = query_pairs(Some("path=%2Ftmp%2Fa+b.txt&username=user&metadata=k%3Dv%26x%3Dy&bad=%zz&end=%4"));
        assert_eq!(query_value(&q, "path"), Some("/tmp/a b.txt"));
        assert_eq!(query_value(&q, "metadata"), Some("k=v&x=y"));
        assert_eq!(query_value(&q, "bad"), Some("%zz"));
        assert_eq!(query_value(&q, "end"), Some("%4"));
        assert_eq!(query_value(&q, "missing"), None);
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn an_api_error_carries_code_message_and_its_retry_headers() {
        let mut e = ApiError::new(429, "slow");
        e.retry_after = Some(std::time::Duration::from_millis(1200));
        let r = api_error(&e.no_retry());
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["should-retry"], "false");
    }
}
