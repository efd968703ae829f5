//! Changing the account's handle (`updateHandle`, `perch account set-handle`): a valid name,
//! one that points at the account's DID (a DNS TXT record or the well-known file) unless it
//! is this server's own hostname, then the PLC document, then the repo and the firehose.

use super::{AccountError, Accounts};
use crate::identity::plc;
use crate::identity::plc::directory::Directory;
use crate::syntax;

impl Accounts<'_> {
    /// Sets the handle of the account `did`. `Ok(false)` when it already was that handle.
    pub async fn set_handle(&self, did: &str, handle: &str) -> Result<bool, AccountError> {
        syntax::validate_handle(handle).map_err(|e| AccountError::InvalidHandle(e.to_string()))?;
        let handle = syntax::normalize_handle(handle);
        let dev_name = self.config.dev && handle.ends_with(".test");
        if syntax::is_disallowed_tld(&handle) && !dev_name {
            return Err(AccountError::InvalidHandle(
                "Handle TLD is not allowed".into(),
            ));
        }
        let acct = self
            .store
            .read(crate::store::account::get_account)
            .await?
            .filter(|a| a.did == did)
            .ok_or(AccountError::NoSuchAccount)?;
        if acct.handle == handle {
            return Ok(false);
        }
        if handle != self.config.hostname && !dev_name && !self.resolves_to(&handle, did).await {
            return Err(AccountError::Invalid(format!(
                "the handle does not point at this account yet: set a DNS TXT record \
                 _atproto.{handle} = \"did={did}\", or serve {did} at \
                 https://{handle}/.well-known/atproto-did, then try again"
            )));
        }
        if did.starts_with("did:plc:") {
            self.plc_set_handle(did, &handle).await?;
        }
        self.writer
            .set_handle(did.to_owned(), handle.clone())
            .await?;
        tracing::info!("the account's handle is now @{handle}");
        Ok(true)
    }

    async fn resolves_to(&self, handle: &str, did: &str) -> bool {
        use crate::identity::resolve;
        let dns = match self.handles.dns() {
            Some(server) => resolve::dns_did_at(server, handle).await,
            None => Ok(None),
        };
        match dns {
            Ok(Some(d)) => d == did,
            Err(_) => false,
            Ok(None) => resolve::https_did(self.net, handle).await.as_deref() == Some(did),
        }
    }

    async fn plc_set_handle(&self, did: &str, handle: &str) -> Result<(), AccountError> {
        let plc_err = |e: &dyn std::fmt::Display| AccountError::Plc(e.to_string());
        let directory = Directory::new(self.net, &self.config.plc_url).map_err(|e| plc_err(&e))?;
        let (prev, state) = directory.current(did).await.map_err(|e| plc_err(&e))?;
        let op = plc::Operation::update_from(&state, &prev)
            .and_then(|o| o.with_handle(handle))
            .map_err(|e| AccountError::InvalidHandle(e.to_string()))?;
        let rotation = crate::keys::KeyDir::open(&self.config.data_dir)
            .map_err(super::other)?
            .keypair(crate::keys::ROTATION_KEY)
            .map_err(super::other)?
            .ok_or_else(|| {
                AccountError::Invalid(
                    "this server holds no PLC rotation key for the account".into(),
                )
            })?;
        let signed = plc::sign(op, &rotation);
        directory
            .submit(did, &signed)
            .await
            .map_err(|e| plc_err(&e))
    }
}
