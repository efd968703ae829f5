//! Deleting the account (`deleteAccount`, with the password and a one-time code): the
//! code is checked before anything is hashed, and the password check shares the login
//! limiter, so the endpoint is neither a password oracle nor an unthrottled guesser.

use std::net::IpAddr;

use super::codes::Purpose;
use super::{AccountError, Accounts};
use crate::store::account;

impl Accounts<'_> {
    /// Deletes the account; returns the blob CIDs whose files the caller removes.
    pub async fn delete(
        &self,
        ip: IpAddr,
        did: &str,
        password: String,
        code: &str,
    ) -> Result<Vec<String>, AccountError> {
        let acct = self
            .store
            .read(account::get_account)
            .await?
            .filter(|a| a.did == did)
            .ok_or(AccountError::NoSuchAccount)?;
        let code_check = async {
            match self.code_is_valid(Purpose::DeleteAccount, code).await? {
                true => Ok(()),
                false => Err(AccountError::InvalidCode),
            }
        };
        self.check_password(ip, "account deletion", &acct, password, code_check)
            .await?;
        let cids = self
            .writer
            .delete_account(
                acct.did.clone(),
                super::codes::typed(code),
                crate::clock::unix_secs(),
            )
            .await?
            .ok_or(AccountError::InvalidCode)?;
        tracing::warn!("account {} deleted", acct.did);
        Ok(cids)
    }

    /// Deletes the account at the owner's word on the box (`perch account delete`): the same
    /// removal and `#account` event as `deleteAccount`, without password or mailed code.
    pub async fn delete_by_owner(&self) -> Result<Vec<String>, AccountError> {
        let acct = self
            .store
            .read(account::get_account)
            .await?
            .ok_or(AccountError::NoSuchAccount)?;
        let code = self.new_code(Purpose::DeleteAccount).await?;
        let cids = self
            .writer
            .delete_account(acct.did.clone(), code, crate::clock::unix_secs())
            .await?
            .ok_or(AccountError::InvalidCode)?;
        tracing::warn!("account {} deleted by the owner on the box", acct.did);
        Ok(cids)
    }
}
