//! What ACME leaves on disk, under `data_dir/acme/` (0700, files 0600): the account
//! credentials per CA directory, and the certificate with its key in one file, so a power cut
//! can never pair a new certificate with an old key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct AccountFile {
    directory: String,
    credentials: serde_json::Value,
}

/// A stored certificate: chain (leaf first) and key, PEM, for one hostname from one CA.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCert {
    pub directory: String,
    pub hostname: String,
    pub chain_pem: String,
    pub key_pem: String,
}

pub struct AcmeStore {
    dir: PathBuf,
}

impl AcmeStore {
    pub fn new(data_dir: &Path) -> AcmeStore {
        AcmeStore {
            dir: data_dir.join("acme"),
        }
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// Where the certificate for `hostname` lives.
    pub fn cert_path(&self, hostname: &str) -> PathBuf {
        self.dir.join(format!("cert-{hostname}.json"))
    }

    /// The stored account credentials (as JSON) if they are for `directory`.
    pub fn account(&self, directory: &str) -> std::io::Result<Option<serde_json::Value>> {
        let Some(bytes) = read_optional(&self.account_path())? else {
            return Ok(None);
        };
        let file: AccountFile = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::other(format!("account.json: {e}")))?;
        Ok((file.directory == directory).then_some(file.credentials))
    }

    pub fn save_account(
        &self,
        directory: &str,
        credentials: serde_json::Value,
    ) -> std::io::Result<()> {
        crate::fsutil::private_dir(&self.dir)?;
        let file = AccountFile {
            directory: directory.to_owned(),
            credentials,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        crate::fsutil::write_private(&self.account_path(), &bytes)
    }

    /// The stored certificate for `hostname` from `directory`, if any.
    pub fn cert(&self, hostname: &str, directory: &str) -> std::io::Result<Option<StoredCert>> {
        let Some(bytes) = read_optional(&self.cert_path(hostname))? else {
            return Ok(None);
        };
        let c: StoredCert = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::other(format!("stored certificate: {e}")))?;
        Ok((c.hostname == hostname && c.directory == directory).then_some(c))
    }

    pub fn save_cert(&self, cert: &StoredCert) -> std::io::Result<()> {
        crate::fsutil::private_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(cert).map_err(std::io::Error::other)?;
        crate::fsutil::write_private(&self.cert_path(&cert.hostname), &bytes)
    }
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keys_by_directory_and_hostname() {
        let d = tempfile::tempdir().unwrap();
        let s = AcmeStore::new(d.path());
        assert!(s.account("https://ca/dir").unwrap().is_none());
        s.save_account("https://ca/dir", serde_json::json!({"id": "x"}))
            .unwrap();
        assert_eq!(
            s.account("https://ca/dir").unwrap(),
            Some(serde_json::json!({"id": "x"}))
        );
        assert!(s.account("https://other/dir").unwrap().is_none());
        let c = StoredCert {
            directory: "https://ca/dir".into(),
            hostname: "pds.test".into(),
            chain_pem: "c".into(),
            key_pem: "k".into(),
        };
        s.save_cert(&c).unwrap();
        assert_eq!(
            s.cert("pds.test", "https://ca/dir")
                .unwrap()
                .unwrap()
                .key_pem,
            "k"
        );
        assert!(s.cert("pds.test", "https://other/dir").unwrap().is_none());
        assert!(s.cert("other.test", "https://ca/dir").unwrap().is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("acme"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
