//! Secrets on disk under `data_dir/keys/` (directory 0700, files 0600,
//! written to a temp file, fsynced and renamed so a crash never leaves a
//! half-written key): the repo signing key, the PLC rotation key and the
//! session-token secret.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use crate::crypto::{KeyType, Keypair};

pub const REPO_KEY: &str = "repo-signing.k256";
pub const ROTATION_KEY: &str = "plc-rotation.k256";
pub const JWT_SECRET: &str = "session-secret";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("key file {0} is not valid: {1}")]
    Bad(PathBuf, String),
}

pub struct KeyDir {
    dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyDir {
    pub fn open(data_dir: &Path) -> Result<KeyDir, KeyError> {
        let dir = data_dir.join("keys");
        fs::create_dir_all(&dir).map_err(|e| KeyError::Io(dir.clone(), e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| KeyError::Io(dir.clone(), e))?;
        Ok(KeyDir { dir })
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        let p = self.dir.join(name);
        match fs::read_to_string(&p) {
            Ok(s) => unhex(&s)
                .map(Some)
                .ok_or_else(|| KeyError::Bad(p, "expected hex".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Io(p, e)),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
        let p = self.dir.join(name);
        crate::fsutil::write_private(&p, hex(bytes).as_bytes()).map_err(|e| KeyError::Io(p, e))
    }

    /// A k256 key stored under `name`, if present.
    pub fn keypair(&self, name: &str) -> Result<Option<Keypair>, KeyError> {
        self.read(name)?
            .map(|b| {
                Keypair::from_secret_bytes(KeyType::K256, &b)
                    .map_err(|e| KeyError::Bad(self.dir.join(name), e.to_string()))
            })
            .transpose()
    }

    /// The k256 key under `name`, generating and storing it if missing.
    pub fn keypair_or_create(&self, name: &str) -> Result<Keypair, KeyError> {
        if let Some(k) = self.keypair(name)? {
            return Ok(k);
        }
        let k = Keypair::generate(KeyType::K256, &mut OsRng);
        self.write(name, &k.secret_bytes())?;
        Ok(k)
    }

    /// The 32-byte session-token secret, generated on first use.
    pub fn jwt_secret(&self) -> Result<[u8; 32], KeyError> {
        if let Some(b) = self.read(JWT_SECRET)? {
            return b
                .try_into()
                .map_err(|_| KeyError::Bad(self.dir.join(JWT_SECRET), "expected 32 bytes".into()));
        }
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        self.write(JWT_SECRET, &s)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_with_private_modes() {
        let d = tempfile::tempdir().unwrap();
        let kd = KeyDir::open(d.path()).unwrap();
        assert!(kd.keypair(REPO_KEY).unwrap().is_none());
        let k = kd.keypair_or_create(REPO_KEY).unwrap();
        let again = KeyDir::open(d.path())
            .unwrap()
            .keypair(REPO_KEY)
            .unwrap()
            .unwrap();
        assert_eq!(k.did_key(), again.did_key());
        let s1 = kd.jwt_secret().unwrap();
        assert_eq!(s1, kd.jwt_secret().unwrap());
        let mode = fs::metadata(d.path().join("keys").join(REPO_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(d.path().join("keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        fs::write(d.path().join("keys").join(ROTATION_KEY), "zz").unwrap();
        assert!(kd.keypair(ROTATION_KEY).is_err());
    }
}
