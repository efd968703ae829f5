//! perch inside the test process, as `perch serve` boots it (App::open, a
//! connection limiter from the config, the plain-HTTP front door), for the
//! tests that reach into the running `App`.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use perch::account::DidMethod;
use perch::app::App;
use perch::config::Config;

use super::client::Client;

/// The account `start` creates.
pub const HANDLE: &str = "alice.test";
pub const PASSWORD: &str = "correct horse";

/// A server on 127.0.0.1; its client speaks as the account when there is
/// one. The server lives as long as the test's runtime.
pub struct InProcess {
    pub app: Arc<App>,
    client: Client,
    _dir: Option<tempfile::TempDir>,
}

impl Deref for InProcess {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for InProcess {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// What `boot` starts from.
pub struct Boot<'a> {
    /// The data dir; a fresh temporary one when `None`.
    pub data: Option<&'a Path>,
    /// The account to create and sign in as; none (an empty box) when `None`.
    pub account: Option<DidMethod>,
}

impl InProcess {
    /// A dev config on a temporary data dir, with a did:web account, signed in.
    pub async fn start() -> InProcess {
        Self::start_with(|_| {}).await
    }

    /// As `start`, with the config changed first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> InProcess {
        let boot = Boot {
            data: None,
            account: Some(DidMethod::Web),
        };
        Self::boot(boot, tweak).await
    }

    pub async fn boot(boot: Boot<'_>, tweak: impl FnOnce(&mut Config)) -> InProcess {
        let dir = match boot.data {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap()),
        };
        let data = boot.data.unwrap_or_else(|| dir.as_ref().unwrap().path());
        let mut config = Config::dev(data);
        tweak(&mut config);
        let mut s = Self::serve(config).await;
        s._dir = dir;
        if let Some(method) = boot.account {
            s.app
                .accounts()
                .create(HANDLE, PASSWORD, None, method)
                .await
                .unwrap();
            s.client.sign_in(HANDLE, PASSWORD).await;
        }
        s
    }

    /// A server over `config` as it is (but on a free port): a restart over
    /// the same data dir when the config comes from another server.
    pub async fn serve(mut config: Config) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config.listen = listener.local_addr().unwrap();
        let app = App::open(config).await.unwrap();
        let limiter = perch::http::ConnLimiter::new(
            app.config.max_connections as usize,
            app.config.max_connections_per_ip as usize,
        );
        tokio::spawn(perch::http::serve(
            Arc::clone(&app),
            listener,
            perch::http::Role::Plain,
            limiter,
            std::future::pending(),
        ));
        InProcess {
            client: Client::one_shot(app.config.listen),
            app,
            _dir: None,
        }
    }
}
