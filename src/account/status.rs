//! Deactivating and activating the account (`deactivateAccount`, `activateAccount`, the
//! owner's page): activation only once the DID document names this server and its key.

use std::sync::Arc;

use super::{AccountError, Accounts};
use crate::store::account::{self, AccountStatus};

impl Accounts<'_> {
    /// Whether the DID document names this server and its signing key (`validDid`).
    pub async fn did_points_here(&self, did: &str) -> Result<(), String> {
        let c = self.config;
        if did == crate::identity::web_did(&c.hostname, c.listen.port(), c.dev) {
            // This server's own did:web: the document is the one perch serves itself, made
            // from its own URL and key. Fetching it would go out and back in, which a box at
            // home behind NAT often cannot do (no hairpin NAT).
            return Ok(());
        }
        let doc = crate::identity::resolve::did_document(self.net, &c.plc_url, did)
            .await
            .map_err(|e| e.to_string())?;
        let endpoint = crate::identity::resolve::service_endpoint(&doc, "atproto_pds");
        let ours = c.public_url();
        if endpoint.as_deref().map(|e| e.trim_end_matches('/')) != Some(ours.as_str()) {
            return Err(format!(
                "the DID document names PDS {} and not this server ({ours})",
                endpoint.unwrap_or_else(|| "none".into())
            ));
        }
        if crate::identity::resolve::signing_key(&doc) != Some(self.repo_key.did_key()) {
            return Err("the DID document's #atproto key is not this server's signing key".into());
        }
        Ok(())
    }

    /// Activates the account (a fresh commit under this server's key, announced), once its
    /// DID document points here. `Ok(false)` when it already was active.
    pub async fn activate(&self) -> Result<bool, AccountError> {
        let acct = self
            .store
            .read(account::get_account)
            .await?
            .ok_or(AccountError::NoSuchAccount)?;
        if acct.is_active() {
            return Ok(false);
        }
        if acct.status == AccountStatus::Takendown {
            return Err(AccountError::Invalid("the account is taken down".into()));
        }
        self.did_points_here(&acct.did)
            .await
            .map_err(|e| AccountError::Invalid(format!("cannot activate yet: {e}")))?;
        self.writer
            .activate(acct.did.clone(), Arc::clone(self.repo_key))
            .await?;
        tracing::info!("account {} activated", acct.did);
        Ok(true)
    }

    /// Deactivates the account: others no longer get its repo, and the firehose says so.
    /// `Ok(false)` when it already was deactivated.
    pub async fn deactivate(&self) -> Result<bool, AccountError> {
        let acct = self
            .store
            .read(account::get_account)
            .await?
            .ok_or(AccountError::NoSuchAccount)?;
        if acct.status == AccountStatus::Deactivated {
            return Ok(false);
        }
        self.writer.deactivate(acct.did.clone()).await?;
        tracing::warn!("account {} deactivated", acct.did);
        Ok(true)
    }
}
