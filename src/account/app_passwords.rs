//! App passwords: generated, shown once, stored hashed; revoking one ends its sessions.

use rand_core::OsRng;

use super::{AccountError, Accounts};
use crate::auth;
use crate::store::account::{self, AppPassword};

/// A new app password: its row, and the password itself (shown once).
pub struct NewAppPassword {
    pub row: AppPassword,
    pub password: String,
}

impl Accounts<'_> {
    pub async fn create_app_password(
        &self,
        name: &str,
        privileged: bool,
    ) -> Result<NewAppPassword, AccountError> {
        let name = auth::validate_app_password_name(name)
            .map_err(|e| AccountError::Invalid(e.to_string()))?
            .to_owned();
        let password = auth::app_password::generate(&mut OsRng);
        let hash = self.hasher.hash(password.clone()).await?;
        let row = AppPassword {
            name: name.clone(),
            password_hash: hash,
            privileged,
            created_at: crate::clock::datetime_now(),
        };
        let stored = row.clone();
        let inserted = self
            .writer
            .exec(move |c, _| account::insert_app_password(c, &stored))
            .await?;
        if !inserted {
            return Err(AccountError::NameTaken(name));
        }
        Ok(NewAppPassword { row, password })
    }

    pub async fn app_passwords(&self) -> Result<Vec<AppPassword>, AccountError> {
        Ok(self.store.read(account::list_app_passwords).await?)
    }

    /// Deletes the app password and every session made with it; false if there was none.
    pub async fn revoke_app_password(&self, name: &str) -> Result<bool, AccountError> {
        let name = name.to_owned();
        Ok(self
            .writer
            .exec(move |c, _| account::delete_app_password(c, &name))
            .await?)
    }
}
