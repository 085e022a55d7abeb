//! The upstream every path talks to: a loopback HTTP/1.1 server (keep-alive) answering
//! any request with the same small E2B-shaped JSON, so the measured differences are the
//! paths', not the upstream's.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// `GET /v2/sandboxes` as E2B answers it, two running sandboxes.
pub const LIST_BODY: &str = include_str!("list_body.json");

pub async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(LIST_BODY.as_bytes())))
                            .unwrap(),
                    )
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
