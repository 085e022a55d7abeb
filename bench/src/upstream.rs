//! The upstream every path talks to: a loopback HTTP/1.1 server (keep-alive) answering
//! any request with the same small E2B-shaped JSON, so the measured differences are the
//! paths', not the upstream's.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;

/// `GET /v2/sandboxes` as E2B answers it, two running sandboxes.
pub const LIST_BODY: &str = include_str!("list_body.json");

/// Answers every request with [`LIST_BODY`].
pub async fn start() -> SocketAddr {
    serve(|_uri| async {
        Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from_static(LIST_BODY.as_bytes()))).unwrap()
    })
    .await
}

/// A loopback keep-alive HTTP/1.1 server answering each request with `answer(uri)`.
pub async fn serve<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(hyper::Uri) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // A backlog above the most connections any section opens at once (1 000 calls in
    // flight): a full accept queue drops a handshake's last packet, and the client's
    // retransmit a second later would be measured as the path's time.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let reply = answer(req.uri().clone());
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

/// The raw floor: one pooled loopback GET with hyper, body read, nothing parsed.
pub struct RawFloor {
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Empty<Bytes>>,
    url: hyper::Uri,
}

impl RawFloor {
    pub fn new(addr: SocketAddr) -> RawFloor {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        RawFloor { client, url: format!("http://{addr}/v2/sandboxes").parse().unwrap() }
    }

    pub async fn get(&self) {
        use http_body_util::BodyExt;
        let r = self.client.get(self.url.clone()).await.unwrap();
        let _ = r.into_body().collect().await.unwrap();
    }
}
