//! A `perch serve --dev` process on a temporary data directory, signed in
//! as its development account: the hostile-input and hardening tests talk
//! to it through the `Client` it derefs to.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use super::client::Client;
use super::process::{Launch, Process};

pub struct Perch {
    pub process: Process,
    pub dir: tempfile::TempDir,
    client: Client,
}

impl Deref for Perch {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Perch {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Perch {
    /// `perch serve --dev` with the development account, signed in.
    pub async fn start() -> Perch {
        Self::start_with(&[]).await
    }

    /// As `start`, with extra environment.
    pub async fn start_with(env: &[(&str, &str)]) -> Perch {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch::default()
            .envs(env)
            .log(&dir.path().join("perch.log"));
        let data = dir.path().join("data");
        // Waiting blocks; the test's own servers (DNS, did:web) keep running meanwhile.
        let process = tokio::task::spawn_blocking(move || launch.start(&data))
            .await
            .unwrap();
        let acct = process.dev_account().expect("the dev account line");
        let mut client = Client::new(process.addr);
        client.sign_in(&acct.handle, &acct.password).await;
        assert_eq!(client.did, acct.did);
        Perch {
            process,
            dir,
            client,
        }
    }

    /// The server process's id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("perch.sqlite")
    }

    /// The one-time code for `purpose` (e.g. `delete-account`) that `perch account codes`
    /// shows for this server's data dir.
    pub fn code(&self, purpose: &str) -> Option<String> {
        let data = self.data_dir();
        let out = super::process::perch(&[
            "account",
            "codes",
            "--dev",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", super::process::text(&out));
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(purpose))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// A digest of the tables that hold repository or account state (see
    /// `db::digest`): equal digests mean nothing was written.
    pub fn db_digest(&self) -> String {
        super::db::digest(&self.db_path())
    }
}
