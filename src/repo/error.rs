use thiserror::Error;

use crate::cbor::DecodeError;
use crate::cid::Cid;

#[derive(Debug, Error)]
pub enum RepoError {
    #[error("block {0} is missing")]
    MissingBlock(Box<Cid>),
    #[error("block {0} is not valid DAG-CBOR: {1}")]
    Decode(Box<Cid>, DecodeError),
    #[error("invalid MST node {0}: {1}")]
    InvalidNode(Box<Cid>, String),
    #[error("invalid MST key: {0}")]
    InvalidKey(String),
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("block store: {0}")]
    Store(String),
}

impl RepoError {
    pub fn missing(cid: Cid) -> Self {
        RepoError::MissingBlock(Box::new(cid))
    }
    pub fn invalid_node(cid: Cid, why: impl Into<String>) -> Self {
        RepoError::InvalidNode(Box::new(cid), why.into())
    }
}
