//! `perch welcome`: the page a freshly flashed box shows on the home network until it is
//! set up. It offers the boot file's settings as a form; with the one-time setup code from
//! the card (or the console) it writes `perch.toml` onto the boot partition, as the owner
//! would have, and asks systemd to apply it (`perch-setup.path` watches for the request
//! file and runs `perch firstboot`, then stops this page and starts perch). Its progress
//! page follows the box until perch itself answers on the same address.
//!
//! It answers only addresses on the LAN (the router may already forward port 80 here), and
//! setting up needs the code, so a neighbour on the same Wi-Fi cannot claim the box.

mod pages;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::firstboot::form::{self, SetupAnswers};
use crate::firstboot::setup_code::{self, SetupCode};
use crate::firstboot::{BOOT_FILE, RESULT_FILE};

/// Where the page answers unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "[::]:80";
/// The file whose appearance asks systemd to apply the boot file (`perch-setup.path`).
pub const APPLY_REQUEST: &str = "apply";
/// The form is a few short fields and two small text areas.
const FORM_LIMIT: usize = 16 * 1024;
/// Wrong setup codes allowed per minute, from everyone together.
const WRONG_CODES_PER_MINUTE: u32 = 5;

const SCRIPT: &str = include_str!("progress.js");

#[derive(clap::Args, Debug)]
pub struct WelcomeArgs {
    /// The boot partition: its perch-setup.txt gets the setup code, its perch.toml the
    /// settings from the page
    #[arg(long, value_name = "DIR", default_value = "/boot/firmware")]
    pub boot_dir: PathBuf,
    /// Where the request to apply the settings is left for systemd (perch-setup.path)
    #[arg(long, value_name = "DIR", default_value = "/run/perch-welcome")]
    pub run_dir: PathBuf,
}

/// `--listen` is the global flag (a second `listen` argument here would clash with it).
pub fn main(args: WelcomeArgs, global: &super::GlobalArgs) -> ExitCode {
    let listen = global.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perch: --listen {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perch: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(listen, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perch: welcome page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where setting up from the page stands.
enum Stage {
    /// Nothing submitted yet (or the last try failed and the form is up again).
    Waiting,
    /// The boot file is written and first boot asked to apply it; `before` is the report
    /// first boot had left, so a new one means it has finished.
    Applying { hostname: String, before: String },
    /// First boot applied it; systemd is about to stop this page and start perch.
    Applied { hostname: String },
}

struct Welcome {
    boot_dir: PathBuf,
    run_dir: PathBuf,
    code: SetupCode,
    stage: Mutex<Stage>,
    /// The last failed try's report, shown with the form.
    failure: Mutex<Option<String>>,
    wrong: Mutex<(Instant, u32)>,
}

async fn serve(listen: SocketAddr, args: WelcomeArgs) -> Result<(), String> {
    let w = Arc::new(Welcome {
        boot_dir: args.boot_dir,
        run_dir: args.run_dir,
        code: SetupCode::generate(),
        stage: Mutex::new(Stage::Waiting),
        failure: Mutex::new(None),
        wrong: Mutex::new((Instant::now(), 0)),
    });
    // The code is on the card before the page answers: whoever sees the page can set up.
    w.publish_code();
    let listener = crate::http::bind(listen).await.map_err(|e| e.to_string())?;
    crate::notify::ready("not set up yet: showing the setup page");
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let w = w.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let w = w.clone();
                async move { Ok::<_, Infallible>(w.answer(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

impl Welcome {
    /// Puts the code where only someone holding the box can read it: the card, after what
    /// first boot reported, and the console (this unit's output goes there too).
    fn publish_code(&self) {
        let file = self.boot_dir.join(RESULT_FILE);
        let report = std::fs::read_to_string(&file).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_private(
            &file,
            setup_code::with_code(&report, &self.code).as_bytes(),
        ) {
            eprintln!(
                "perch: cannot write the setup code to {}: {e}",
                file.display()
            );
        }
        println!(
            "perch is not set up yet. Open http://perch.local on your network; setup code: {}",
            self.code.display()
        );
    }

    /// First boot's last report, without the code.
    fn report(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.boot_dir.join(RESULT_FILE)).ok()?;
        let shown = setup_code::without_code(&text).trim();
        (!shown.is_empty()).then(|| shown.to_owned())
    }

    async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if !crate::net::is_private(peer.ip()) {
            return text(StatusCode::FORBIDDEN, "This server is not set up yet.\n");
        }
        let path = req.uri().path().to_owned();
        match (req.method().clone(), path.as_str()) {
            (_, "/xrpc/_health") => json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"NotConfigured","message":"perch is not set up yet"}"#.into(),
            ),
            (Method::GET, "/readyz") => self.status(),
            (Method::GET, "/setup.js") => asset(SCRIPT, "text/javascript; charset=utf-8"),
            (Method::GET, "/oauth/style.css") => {
                asset(crate::web::pages::STYLE, "text/css; charset=utf-8")
            }
            (Method::GET, "/progress") => match self.hostname() {
                Some(h) => page(StatusCode::OK, pages::progress(&h)),
                None => see_other("/"),
            },
            (Method::POST, "/setup") => self.setup(req).await,
            (Method::GET | Method::HEAD, _) => {
                if self.hostname().is_some() {
                    return see_other("/progress");
                }
                let failure = self.failure.lock().expect("lock").clone();
                let report = failure.or_else(|| self.report());
                page(
                    StatusCode::OK,
                    pages::setup(&SetupAnswers::default(), None, report.as_deref()),
                )
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n"),
        }
    }

    /// The hostname being set up, once the form has been accepted.
    fn hostname(&self) -> Option<String> {
        match &*self.stage.lock().expect("lock") {
            Stage::Waiting => None,
            Stage::Applying { hostname, .. } | Stage::Applied { hostname } => {
                Some(hostname.clone())
            }
        }
    }

    /// `/readyz` while this page runs: where setting up stands, for the progress page.
    fn status(&self) -> Response<Full<Bytes>> {
        // The card is read (and the code written back) outside the lock: FAT is slow.
        let applying = matches!(*self.stage.lock().expect("lock"), Stage::Applying { .. });
        let seen = applying.then(|| {
            let report = self.report().unwrap_or_default();
            (report, self.boot_dir.join(BOOT_FILE).exists())
        });
        let mut stage = self.stage.lock().expect("lock");
        if let (Stage::Applying { hostname, before }, Some((now, file_left))) = (&*stage, seen)
            && now != *before
        {
            // First boot has written a new report: it has finished. It leaves the boot file
            // in place only when it could not apply it.
            if !file_left {
                *stage = Stage::Applied {
                    hostname: hostname.clone(),
                };
            } else {
                *stage = Stage::Waiting;
                drop(stage);
                *self.failure.lock().expect("lock") = Some(now.clone());
                // Its report replaced the card's copy of the code; the next try needs it.
                self.publish_code();
                return json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"ready": false, "setup": "failed", "reason": now})
                        .to_string(),
                );
            }
        }
        let (setup, reason) = match &*stage {
            Stage::Waiting => ("waiting", "perch is not set up yet"),
            Stage::Applying { .. } => ("applying", "creating the account"),
            Stage::Applied { .. } => ("applied", "set up; perch is starting"),
        };
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "setup": setup, "reason": reason}).to_string(),
        )
    }

    async fn setup(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if !same_origin(&req) {
            return page(
                StatusCode::FORBIDDEN,
                pages::message("Refused", "The form was sent from another site."),
            );
        }
        let fields = match read_form(req).await {
            Ok(f) => f,
            Err(e) => return page(StatusCode::BAD_REQUEST, pages::message("Refused", &e)),
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let typed = SetupAnswers {
            hostname: field("hostname"),
            handle: field("handle"),
            password: field("password"),
            password_again: field("password_again"),
            email: field("email"),
            ssh_keys: field("ssh_key"),
            more: field("more"),
        };
        let retry =
            |status: StatusCode, why: &str| page(status, pages::setup(&typed, Some(why), None));
        if !self.take_try() {
            return retry(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong setup codes: wait a minute, then try again.",
            );
        }
        if !self.code.matches(&field("code")) {
            self.count_wrong();
            return retry(
                StatusCode::FORBIDDEN,
                "That is not the setup code. It is in perch-setup.txt on the card's boot \
                 partition and on the box's screen; a new one is made each time the box starts.",
            );
        }
        if self.hostname().is_some() {
            return see_other("/progress");
        }
        let now = crate::syntax::format_datetime_millis(crate::clock::unix_millis());
        let text = match form::boot_file(&typed, &now) {
            Ok(t) => t,
            Err(why) => return retry(StatusCode::BAD_REQUEST, &why),
        };
        let hostname = crate::firstboot::answers::hostname(&typed.hostname).unwrap_or_default();
        let before = self.report().unwrap_or_default();
        let written = crate::fsutil::write_private(&self.boot_dir.join(BOOT_FILE), text.as_bytes())
            .and_then(|()| std::fs::create_dir_all(&self.run_dir))
            .and_then(|()| std::fs::write(self.run_dir.join(APPLY_REQUEST), now.as_bytes()));
        if let Err(e) = written {
            return retry(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("The settings could not be saved on the card: {e}"),
            );
        }
        println!("perch: settings for {hostname} saved from the setup page; applying them");
        *self.failure.lock().expect("lock") = None;
        *self.stage.lock().expect("lock") = Stage::Applying { hostname, before };
        see_other("/progress")
    }

    /// Whether another code may be tried now.
    fn take_try(&self) -> bool {
        let mut w = self.wrong.lock().expect("lock");
        if w.0.elapsed() > Duration::from_secs(60) {
            *w = (Instant::now(), 0);
        }
        w.1 < WRONG_CODES_PER_MINUTE
    }

    fn count_wrong(&self) {
        self.wrong.lock().expect("lock").1 += 1;
    }
}

/// A browser sends Origin with a form POST; it must be this page's own address.
fn same_origin(req: &Request<Incoming>) -> bool {
    let get = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin_ok = match (get("origin"), get("host")) {
        (None, _) => true,
        (Some(o), Some(host)) => o == format!("http://{host}"),
        (Some(_), None) => false,
    };
    origin_ok && get("sec-fetch-site").is_none_or(|s| s == "same-origin")
}

async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, String> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        return Err("The form must be sent as application/x-www-form-urlencoded.".into());
    }
    let body = Limited::new(req.into_body(), FORM_LIMIT);
    let bytes = match tokio::time::timeout(Duration::from_secs(20), body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Err("The form is too large.".into()),
        Err(_) => return Err("The form took too long to arrive.".into()),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| "The form is not UTF-8.".to_owned())?;
    crate::syntax::form::decode_form(text).ok_or_else(|| "The form is malformed.".into())
}

fn response(status: StatusCode, kind: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

fn page(status: StatusCode, markup: maud::Markup) -> Response<Full<Bytes>> {
    response(
        status,
        "text/html; charset=utf-8",
        Bytes::from(markup.into_string()),
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "application/json", Bytes::from(body))
}

fn asset(body: &'static str, kind: &'static str) -> Response<Full<Bytes>> {
    response(StatusCode::OK, kind, Bytes::from_static(body.as_bytes()))
}

fn see_other(location: &'static str) -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    r
}
