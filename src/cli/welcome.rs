//! `perch welcome`: the page a freshly flashed box shows on the home network until it is
//! set up, so someone who finds `http://perch.local` learns what to put into perch.toml.
//! It answers only addresses on the LAN: the router may already forward port 80 here,
//! and the last first boot's report can name the hostname and handle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::firstboot::{BOOT_FILE, RESULT_FILE};

/// Where the page answers unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "[::]:80";

#[derive(clap::Args, Debug)]
pub struct WelcomeArgs {
    /// The boot partition; its perch-setup.txt is shown on the page
    #[arg(long, value_name = "DIR", default_value = "/boot/firmware")]
    pub boot_dir: PathBuf,
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

async fn serve(listen: SocketAddr, args: WelcomeArgs) -> Result<(), String> {
    let listener = crate::http::bind(listen).await.map_err(|e| e.to_string())?;
    crate::notify::ready("not set up yet: showing the setup page");
    let boot_dir = Arc::new(args.boot_dir);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let boot_dir = boot_dir.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let page = answer(&req, peer, &boot_dir);
                async move { Ok::<_, std::convert::Infallible>(page) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    peer: SocketAddr,
    boot_dir: &std::path::Path,
) -> Response<Full<Bytes>> {
    if !crate::net::is_private(peer.ip()) {
        return reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            "This server is not set up yet.\n".into(),
        );
    }
    if req.uri().path() == "/xrpc/_health" {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"error":"NotConfigured","message":"perch is not set up yet"}"#.into(),
        );
    }
    let report = std::fs::read_to_string(boot_dir.join(RESULT_FILE)).ok();
    reply(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page(report.as_deref()),
    )
}

fn reply(status: StatusCode, kind: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", kind.parse().expect("static header"));
    h.insert("cache-control", "no-store".parse().expect("static header"));
    h.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'"
            .parse()
            .expect("static header"),
    );
    r
}

fn page(report: Option<&str>) -> String {
    let last = report.map_or_else(String::new, |r| {
        format!("<h2>Last setup attempt</h2><pre>{}</pre>", html_escape(r))
    });
    format!(
        "<!doctype html><html><head><meta charset=utf-8>\
         <meta name=viewport content='width=device-width'><title>perch: not set up yet</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
         pre{{background:#eee;padding:1em;white-space:pre-wrap}}</style></head><body>\
         <h1>perch is running, but not set up yet</h1>\
         <p>This box will be your Bluesky Personal Data Server. To set it up:</p><ol>\
         <li>Power it off and put its SD card into a computer.</li>\
         <li>Open the drive called <b>PERCHBOOT</b> and edit <b>{BOOT_FILE}</b>: your \
         server's name (hostname), a password, your email, and Wi-Fi if there is no cable.</li>\
         <li>Point the hostname's DNS A record at your router, and forward TCP ports 80 and \
         443 from the router to this box.</li>\
         <li>Put the card back and power on. perch reads the file once, creates your account \
         and gets a certificate by itself.</li></ol>\
         <p>SSH is off unless you put your public key in <b>ssh_key</b> in the same file; \
         with it you can log in as root and run <code>perch init</code> on the box \
         instead.</p>{last}\
         </body></html>"
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_shows_the_report_escaped() {
        let p = page(Some("perch could not finish: <password> & more"));
        assert!(p.contains("&lt;password&gt; &amp; more"));
        // SSH is off on the image without a key: the page says how to turn it on.
        assert!(p.contains("SSH is off unless you put your public key in <b>ssh_key</b>"));
        assert!(!p.contains("<password>"));
        assert!(page(None).contains(BOOT_FILE));
    }
}
