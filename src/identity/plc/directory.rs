//! The PLC directory, over the guarded outbound client: the one place perch talks to it
//! about did:plc operations (creating the DID, changing its handle, the operations
//! `signPlcOperation` and `submitPlcOperation` deal in). Resolving other DIDs'
//! documents is `identity::resolve`.

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::{PlcState, SignedOp};
use crate::net::Net;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("no PLC directory configured")]
    NotConfigured,
    #[error("{0}")]
    Unreachable(String),
    /// The directory answered, with an error.
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("PLC directory: {0}")]
    Malformed(String),
}

pub struct Directory<'a> {
    net: &'a Net,
    base: String,
}

impl<'a> Directory<'a> {
    /// The directory at `plc_url` (the `plc_url` setting); an empty one is not configured.
    pub fn new(net: &'a Net, plc_url: &str) -> Result<Directory<'a>, DirectoryError> {
        let base = plc_url.trim_end_matches('/');
        if base.is_empty() {
            return Err(DirectoryError::NotConfigured);
        }
        Ok(Directory {
            net,
            base: base.to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, DirectoryError> {
        let (status, bytes) = self
            .net
            .json(method, &url, body)
            .await
            .map_err(|e| DirectoryError::Unreachable(e.to_string()))?;
        if !status.is_success() {
            return Err(DirectoryError::Refused {
                url: self.base.clone(),
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        Ok(bytes.to_vec())
    }

    async fn get_json(&self, path: String) -> Result<Value, DirectoryError> {
        let bytes = self
            .call(Method::GET, format!("{}/{path}", self.base), None)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Malformed(e.to_string()))
    }

    /// Submits a signed operation for `did` (a genesis operation creates it).
    pub async fn submit(&self, did: &str, op: &SignedOp) -> Result<(), DirectoryError> {
        self.call(
            Method::POST,
            format!("{}/{did}", self.base),
            Some(&op.to_json()),
        )
        .await
        .map(|_| ())
    }

    /// The CID of the DID's latest operation (the `prev` of the next one) and the state it
    /// leaves.
    pub async fn current(&self, did: &str) -> Result<(String, PlcState), DirectoryError> {
        let last = self.get_json(format!("{did}/log/last")).await?;
        let data = self.get_json(format!("{did}/data")).await?;
        let prev = SignedOp::from_json(&last)
            .map_err(|e| DirectoryError::Malformed(e.to_string()))?
            .cid_string();
        let state =
            PlcState::from_json(&data).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        Ok((prev, state))
    }
}
