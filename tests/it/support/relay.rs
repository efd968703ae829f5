//! A relay stand-in on loopback: it answers `getHostStatus` and `getRepoStatus` as the test
//! sets them and records every `requestCrawl`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

#[derive(Default)]
struct State {
    /// `getHostStatus`'s status; `None` answers `HostNotFound`.
    host: Option<String>,
    /// `getRepoStatus`'s rev; `None` answers `RepoNotFound`.
    rev: Option<String>,
    crawls: Vec<(Instant, String)>,
    questions: usize,
}

#[derive(Clone, Default)]
pub struct FakeRelay {
    state: Arc<Mutex<State>>,
}

impl FakeRelay {
    /// Starts it answering `host` and `rev`; its base URL.
    pub async fn start(&self, host: Option<&str>, rev: Option<&str>) -> String {
        self.set(host, rev);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            let path = req.uri().path().to_owned();
                            let query = req.uri().query().unwrap_or("").to_owned();
                            let mut s = state.lock().unwrap();
                            let (status, body) = match path.as_str() {
                                "/xrpc/com.atproto.sync.getHostStatus" => {
                                    s.questions += 1;
                                    let hostname = query.strip_prefix("hostname=").unwrap_or("");
                                    match &s.host {
                                        Some(h) => (
                                            200,
                                            json!({"hostname": hostname, "seq": 3, "status": h}),
                                        ),
                                        None => (
                                            400,
                                            json!({"error": "HostNotFound", "message": "unknown host"}),
                                        ),
                                    }
                                }
                                "/xrpc/com.atproto.sync.getRepoStatus" => match &s.rev {
                                    Some(r) => {
                                        (200, json!({"did": "did:x", "active": true, "rev": r}))
                                    }
                                    None => (
                                        400,
                                        json!({"error": "RepoNotFound", "message": "no repo"}),
                                    ),
                                },
                                "/xrpc/com.atproto.sync.requestCrawl" => {
                                    s.crawls.push((Instant::now(), req.method().to_string()));
                                    (200, json!({}))
                                }
                                _ => (
                                    404,
                                    json!({"error": "NotFound", "message": "no such method"}),
                                ),
                            };
                            let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(
                                body.to_string(),
                            )));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    pub fn set(&self, host: Option<&str>, rev: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        s.host = host.map(str::to_owned);
        s.rev = rev.map(str::to_owned);
    }

    /// When each crawl request came, and its HTTP method.
    pub fn crawls(&self) -> Vec<(Instant, String)> {
        self.state.lock().unwrap().crawls.clone()
    }

    /// `getHostStatus` questions so far.
    pub fn questions(&self) -> usize {
        self.state.lock().unwrap().questions
    }
}
