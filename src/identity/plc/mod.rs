//! did:plc operations: building, signing, encoding, DID derivation, audit-log
//! verification and DID-document rendering.
//!
//! An operation is hashed and signed in its DAG-CBOR form. The unsigned form is the op
//! with the `sig` key absent; `sig` is unpadded base64url of a 64-byte low-S `r‖s`
//! ECDSA-SHA256 signature by a rotation key. The op CID is CIDv1 dag-cbor sha2-256 of
//! the signed op, and the DID is `did:plc:` + the first 24 characters of lower-case
//! base32 of the SHA-256 of the signed genesis op.
//!
//! Reading and producing are held to different standards: ops read from a directory
//! only have to be well formed (the directory once accepted duplicate or empty rotation
//! key lists), while ops this crate builds follow the current rules (1–5 distinct k256
//! or p256 rotation keys, at most 10 verification methods, at most 7500 bytes).
//!
//! Nothing here panics on any input; every failure is a [`PlcError`]. All of it is pure
//! but [`directory`], the one client of the PLC directory (through `net`).

mod audit;
mod build;
pub mod directory;
mod document;
mod op;
mod verify;

pub use audit::{
    AuditEntry, AuditOutcome, audit_log_from_json, replay_audit_log, verify_audit_log,
};
pub use document::{PlcState, document};
pub use op::{Operation, Service, SignedOp, did_for_genesis};
pub use verify::{decode_sig, sign, sign_tombstone, verify_sig};

/// Largest DAG-CBOR encoding of a signed op the directory accepts.
pub const MAX_OP_BYTES: usize = 7500;
/// Most rotation keys an op may list.
pub const MAX_ROTATION_KEYS: usize = 5;
/// Most entries in `verificationMethods` (spec v0.2).
pub const MAX_VERIFICATION_METHODS: usize = 10;
/// How long a higher-authority rotation key may nullify ops after the first of them
/// was accepted, in microseconds (72 hours). The boundary itself is still in time.
pub const RECOVERY_WINDOW_MICROS: i64 = 72 * 60 * 60 * 1_000_000;

/// `verificationMethods` entry holding the atproto repo signing key.
pub const ATPROTO_VERIFICATION_METHOD: &str = "atproto";
/// `services` entry naming the account's PDS.
pub const ATPROTO_PDS_SERVICE: &str = "atproto_pds";
/// The `type` of the `atproto_pds` service.
pub const ATPROTO_PDS_TYPE: &str = "AtprotoPersonalDataServer";

/// Everything that can be wrong with a did:plc operation or audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlcError {
    /// The JSON (or a field in it) does not have the shape of a PLC operation.
    #[error("malformed PLC operation: {0}")]
    Malformed(String),
    /// `type` is none of `plc_operation`, `plc_tombstone`, `create`.
    #[error("unknown PLC operation type {0:?}")]
    UnknownType(String),
    /// `sig` is not strict unpadded base64url (padding, whitespace, wrong alphabet,
    /// non-zero trailing bits).
    #[error("signature is not strict unpadded base64url: {0}")]
    SignatureEncoding(String),
    /// No allowed rotation key verifies the signature (also: wrong length, DER, high-S).
    #[error("signature does not verify against any allowed rotation key")]
    BadSignature,
    /// The signed op encodes to more than [`MAX_OP_BYTES`].
    #[error("operation is {len} bytes of DAG-CBOR, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Rotation keys break the rules for ops we produce.
    #[error("invalid rotation keys: {0}")]
    RotationKeys(String),
    /// A verification method key or name is unacceptable.
    #[error("invalid verification method: {0}")]
    VerificationMethod(String),
    /// `alsoKnownAs` / handle problem.
    #[error("invalid handle: {0}")]
    Handle(String),
    /// Service / PDS endpoint problem.
    #[error("invalid service: {0}")]
    Service(String),
    /// `prev` is not a CID string (or is missing where required).
    #[error("invalid prev: {0}")]
    Prev(String),
    /// The op is not a genesis op (it has a `prev`, or is a tombstone).
    #[error("not a genesis operation")]
    NotGenesis,

    /// An audit log without entries.
    #[error("audit log is empty")]
    EmptyLog,
    /// An audit entry is for a different DID than the one being verified.
    #[error("audit entry is for {found}, expected {expected}")]
    WrongDid { expected: String, found: String },
    /// `createdAt` decreases from one entry to the next.
    #[error("audit log createdAt goes backwards")]
    TimeOrder,
    /// The entry's `cid` is not the CID of its operation.
    #[error("cid {claimed} does not match the operation's CID {computed}")]
    CidMismatch { claimed: String, computed: String },
    /// The genesis op does not hash to the DID.
    #[error("genesis operation derives {computed}, not {expected}")]
    DidMismatch { expected: String, computed: String },
    /// A non-first op has `prev: null` (a second genesis).
    #[error("operation after genesis has no prev")]
    MissingPrev,
    /// A legacy `create` op after the genesis op.
    #[error("legacy create operation after genesis")]
    LateCreate,
    /// `prev` names an earlier op that has been nullified.
    #[error("prev {0} names a nullified operation")]
    PrevNullified(String),
    /// `prev` names no earlier op of this DID.
    #[error("prev {0} names no earlier operation")]
    UnknownPrev(String),
    /// The op builds on a tombstone.
    #[error("operation builds on a tombstone")]
    AfterTombstone,
    /// A nullifying fork is not signed by a key of strictly higher authority than the
    /// one that signed the first op it nullifies (indices into the fork point's keys).
    #[error(
        "nullifying fork signed by rotation key {signer}, which does not outrank key {disputed}"
    )]
    NotHigherAuthority { signer: usize, disputed: usize },
    /// A nullifying fork came more than 72 h after the first op it nullifies.
    #[error("nullifying fork came {elapsed_micros} µs after the op it nullifies (limit 72 h)")]
    RecoveryTooLate { elapsed_micros: i64 },
    /// The log's `nullified` flag disagrees with the replay.
    #[error("log says nullified={logged}, replay says nullified={computed}")]
    NullifiedMismatch { logged: bool, computed: bool },
    /// An error located at one audit-log entry.
    #[error("audit entry {index}: {error}")]
    AtEntry { index: usize, error: Box<PlcError> },
}

impl PlcError {
    /// The underlying error, without the [`PlcError::AtEntry`] location wrapper.
    pub fn root(&self) -> &PlcError {
        match self {
            PlcError::AtEntry { error, .. } => error.root(),
            other => other,
        }
    }

    pub(crate) fn at(self, index: usize) -> PlcError {
        PlcError::AtEntry {
            index,
            error: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests;
