//! Port 80 when HTTPS is on: ACME HTTP-01 answers, the health pages (so a box still waiting
//! for its first certificate can say why), and a redirect to HTTPS for everything else. No
//! XRPC travels in the clear.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::app::App;
use crate::xrpc::{self, Body};

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        let mut r = match app.tls.http01_answer(token) {
            Some(answer) => Response::new(xrpc::full(answer)),
            None => {
                let mut r = Response::new(xrpc::full("no such challenge\n"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        };
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return r;
    }
    match path {
        "/livez" => return super::routes::text(StatusCode::OK, "ok\n"),
        "/readyz" => return crate::api::health::readyz(&app).await,
        _ => {}
    }
    // The configured name, never the Host header: no open redirect.
    let target = format!(
        "{}{}",
        app.config.public_url(),
        req.uri().path_and_query().map_or("/", |pq| pq.as_str())
    );
    let mut r = Response::new(xrpc::full(""));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
