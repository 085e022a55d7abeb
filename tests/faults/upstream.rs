//! A scripted upstream on raw TCP: every connection reads one request (head, then the
//! body by `Content-Length` or chunked framing) and plays the current [`Script`], byte
//! for byte, then closes. Nothing here is HTTP-library code, so a fault is exactly the
//! bytes written (or not written) on the wire; `sim/` is not used.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream does with the next request it reads.
#[derive(Debug, Clone)]
pub enum Script {
    /// Closes the connection (FIN) before writing anything.
    Close,
    /// Resets the connection (RST, `SO_LINGER` 0) before writing anything.
    Reset,
    /// A complete answer with `Content-Length` and `Connection: close`.
    Answer { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Headers declaring `declared` body bytes, then `sent` (fewer), then close.
    ShortBody { declared: usize, sent: Vec<u8> },
    /// As `ShortBody`, but the connection stays open and silent for `silence` before it closes.
    Stall { declared: usize, sent: Vec<u8>, silence: Duration },
    /// Waits `delay` before playing `then` (headers slower than the first-byte timeout).
    Delay { delay: Duration, then: Box<Script> },
    /// A valid 200 answer whose body is written one byte every `every`.
    Trickle { every: Duration, body: Vec<u8> },
    /// A valid 200 answer whose head (status line and headers) is written one byte every `every`.
    TrickleHead { every: Duration, body: Vec<u8> },
    /// These bytes, whatever they are, then close.
    Raw(Vec<u8>),
    /// `Transfer-Encoding: chunked` with these chunks, then close without the final `0\r\n\r\n`.
    TruncatedChunked { chunks: Vec<Vec<u8>> },
}

impl Script {
    /// A 200 answer with a JSON (or any) body.
    pub fn json(body: &str) -> Script {
        Script::status(200, "application/json", body)
    }

    /// An answer with `status`, a content type and a body.
    pub fn status(status: u16, content_type: &str, body: &str) -> Script {
        Script::Answer { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.as_bytes().to_vec() }
    }

    /// Adds a header to an [`Script::Answer`].
    pub fn with_header(mut self, name: &str, value: &str) -> Script {
        if let Script::Answer { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

/// One request as read off the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
}

/// The scripted upstream: one listener, one current script shared by its connections.
pub struct Scripted {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the scripted upstream");
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::Close));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (s, r) = (script.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (script, seen) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, script, seen).await;
                });
            }
        });
        Scripted { addr, script, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Plays `script` for every request from now on; forgets the requests seen so far.
    pub fn play(&self, script: Script) {
        *self.script.lock().unwrap() = script;
        self.seen.lock().unwrap().clear();
    }

    /// Requests read since the last [`Scripted::play`].
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, script: Arc<Mutex<Script>>, seen: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let Some(request) = read_request(&mut conn).await? else { return Ok(()) };
    seen.lock().unwrap().push(request);
    let script = script.lock().unwrap().clone();
    play(conn, script).await
}

async fn play(mut conn: TcpStream, script: Script) -> std::io::Result<()> {
    let mut script = script;
    loop {
        match script {
            Script::Delay { delay, then } => {
                tokio::time::sleep(delay).await;
                script = *then;
            }
            Script::Close => {
                conn.shutdown().await?;
                return Ok(());
            }
            Script::Reset => {
                conn.set_zero_linger()?;
                drop(conn);
                return Ok(());
            }
            Script::Answer { status, headers, body } => {
                let mut out = head(status, &headers, Some(body.len()));
                out.extend_from_slice(&body);
                conn.write_all(&out).await?;
                conn.shutdown().await?;
                return Ok(());
            }
            Script::ShortBody { declared, sent } => {
                conn.write_all(&head(200, &json_type(), Some(declared))).await?;
                conn.write_all(&sent).await?;
                conn.shutdown().await?;
                return Ok(());
            }
            Script::Stall { declared, sent, silence } => {
                conn.write_all(&head(200, &json_type(), Some(declared))).await?;
                conn.write_all(&sent).await?;
                conn.flush().await?;
                tokio::time::sleep(silence).await;
                return Ok(());
            }
            Script::Trickle { every, body } => {
                conn.write_all(&head(200, &json_type(), Some(body.len()))).await?;
                for b in body {
                    conn.write_all(&[b]).await?;
                    conn.flush().await?;
                    tokio::time::sleep(every).await;
                }
                conn.shutdown().await?;
                return Ok(());
            }
            Script::TrickleHead { every, body } => {
                for b in head(200, &json_type(), Some(body.len())) {
                    conn.write_all(&[b]).await?;
                    conn.flush().await?;
                    tokio::time::sleep(every).await;
                }
                conn.write_all(&body).await?;
                conn.shutdown().await?;
                return Ok(());
            }
            Script::Raw(bytes) => {
                conn.write_all(&bytes).await?;
                conn.shutdown().await?;
                return Ok(());
            }
            Script::TruncatedChunked { chunks } => {
                let mut headers = json_type();
                headers.push(("Transfer-Encoding".into(), "chunked".into()));
                let mut out = head(200, &headers, None);
                for c in chunks {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(&c);
                    out.extend_from_slice(b"\r\n");
                }
                conn.write_all(&out).await?;
                conn.shutdown().await?;
                return Ok(());
            }
        }
    }
}

fn json_type() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/json".into())]
}

fn head(status: u16, headers: &[(String, String)], length: Option<usize>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
    if let Some(n) = length {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

/// Reads one request: its head, then its body (by `Content-Length`, or chunked), so the
/// answer is never written over unread bytes (closing then would send a reset).
async fn read_request<S: AsyncRead + Unpin>(conn: &mut S) -> std::io::Result<Option<Seen>> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(conn, &mut buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut rest = buf[end..].to_vec();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let seen = Seen { method: first.next().unwrap_or_default().into(), target: first.next().unwrap_or_default().into() };
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < n {
            if !fill(conn, &mut rest).await? {
                break;
            }
        }
    } else if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        // Enough for the bodies the plugins send: read until the last chunk's terminator.
        while find(&rest, b"0\r\n\r\n").is_none() {
            if !fill(conn, &mut rest).await? {
                break;
            }
        }
    }
    Ok(Some(seen))
}

async fn fill<S: AsyncRead + Unpin>(conn: &mut S, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A second listener that must never be reached (a redirect's target): counts connections.
pub struct Decoy {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Decoy {
    pub async fn start() -> Decoy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the decoy");
        let addr = listener.local_addr().unwrap();
        let connections: Arc<AtomicUsize> = Arc::default();
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                // Answer as an upstream would, so a followed redirect would look like success.
                tokio::spawn(play(conn, Script::json("[]")));
            }
        });
        Decoy { addr, connections, task }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_with_a_body_is_read_whole() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let w = tokio::spawn(async move {
            a.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel").await.unwrap();
            a.write_all(b"lo").await.unwrap();
            a
        });
        let seen = read_request(&mut b).await.unwrap().unwrap();
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/x"));
        drop(w.await);
    }
}
