//! Replaying a DID's audit log (`GET /<did>/log/audit`) the way the directory applied
//! it, and checking that the log agrees with the result.

use serde_json::Value;

use super::op::{SignedOp, did_for_genesis, get_str, malformed};
use super::verify::verify_sig;
use super::{PlcError, PlcState, RECOVERY_WINDOW_MICROS};
use crate::cid::{self, Cid};
use crate::syntax::parse_datetime_micros;

/// One entry of an audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The DID the entry claims to belong to.
    pub did: String,
    pub operation: SignedOp,
    /// The CID the directory computed for `operation`.
    pub cid: String,
    /// Whether the directory considers the op nullified by a later recovery fork.
    pub nullified: bool,
    /// When the directory accepted the op (µs since the Unix epoch).
    pub created_at_micros: i64,
}

impl AuditEntry {
    /// Parses `{did, operation, cid, nullified, createdAt}`. The operation is parsed
    /// strictly ([`SignedOp::from_json`]); other unknown fields of the entry are ignored.
    pub fn from_json(v: &Value) -> Result<AuditEntry, PlcError> {
        let obj = v
            .as_object()
            .ok_or_else(|| malformed("audit entry must be a JSON object"))?;
        let operation = SignedOp::from_json(
            obj.get("operation")
                .ok_or_else(|| malformed("audit entry has no operation"))?,
        )?;
        let nullified = obj
            .get("nullified")
            .and_then(Value::as_bool)
            .ok_or_else(|| malformed("audit entry nullified must be a boolean"))?;
        let created_at = get_str(obj, "createdAt")?;
        let created_at_micros =
            parse_datetime_micros(created_at).map_err(|e| malformed(format!("createdAt: {e}")))?;
        Ok(AuditEntry {
            did: get_str(obj, "did")?.to_owned(),
            operation,
            cid: get_str(obj, "cid")?.to_owned(),
            nullified,
            created_at_micros,
        })
    }
}

/// Parses a whole audit log (a JSON array of entries).
pub fn audit_log_from_json(v: &Value) -> Result<Vec<AuditEntry>, PlcError> {
    let items = v
        .as_array()
        .ok_or_else(|| malformed("audit log must be a JSON array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| AuditEntry::from_json(item).map_err(|e| e.at(i)))
        .collect()
}

/// What a successful replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditOutcome {
    /// CID of the latest op that is not nullified (the `prev` for the next update).
    pub head_cid: String,
    /// The DID's current data; `None` when the head is a tombstone.
    pub state: Option<PlcState>,
    /// Per entry: whether the replay nullified it (agrees with the log on success).
    pub nullified: Vec<bool>,
}

/// Verifies an audit log for `did`; see [`replay_audit_log`].
pub fn verify_audit_log(did: &str, entries: &[AuditEntry]) -> Result<(), PlcError> {
    replay_audit_log(did, entries).map(|_| ())
}

/// Replays the log in order, applying the directory's rules to every entry:
///
/// - the entry is for `did`, `createdAt` never decreases, the op is within the size
///   limit and its CID is the entry's `cid`;
/// - the first op is a genesis op (`prev` null) that hashes to `did` and is signed by
///   one of its own rotation keys;
/// - every later op's `prev` names an earlier op that is still active (not nullified),
///   which must not be a tombstone, and the op is signed by one of that op's rotation
///   keys;
/// - an op whose `prev` is not the head forks history and nullifies the active ops
///   after its `prev`: it must be signed by a key of strictly higher authority (lower
///   index) than the key that signed the first op it nullifies, and must come at most
///   72 h after that op's `createdAt`;
/// - finally, each entry's `nullified` flag must match the replay.
///
/// Errors come wrapped in [`PlcError::AtEntry`]; [`PlcError::root`] unwraps them.
pub fn replay_audit_log(did: &str, entries: &[AuditEntry]) -> Result<AuditOutcome, PlcError> {
    if entries.is_empty() {
        return Err(PlcError::EmptyLog);
    }
    let mut replay = Replay {
        cids: Vec::with_capacity(entries.len()),
        signers: Vec::with_capacity(entries.len()),
        nullified: vec![false; entries.len()],
        chain: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let previous = index.checked_sub(1).and_then(|i| entries.get(i));
        replay
            .apply(did, entries, entry, previous)
            .map_err(|e| e.at(index))?;
    }
    for (index, (entry, computed)) in entries.iter().zip(&replay.nullified).enumerate() {
        if entry.nullified != *computed {
            return Err(PlcError::NullifiedMismatch {
                logged: entry.nullified,
                computed: *computed,
            }
            .at(index));
        }
    }
    let head = replay
        .chain
        .last()
        .and_then(|&i| entries.get(i))
        .ok_or(PlcError::EmptyLog)?;
    Ok(AuditOutcome {
        head_cid: head.operation.cid_string(),
        state: PlcState::from_op(&head.operation),
        nullified: replay.nullified,
    })
}

struct Replay {
    /// CID of every entry applied so far, by entry index.
    cids: Vec<Cid>,
    /// Index of the rotation key (of the op it built on) that signed each entry.
    signers: Vec<usize>,
    nullified: Vec<bool>,
    /// Entry indices of the active history, genesis first.
    chain: Vec<usize>,
}

impl Replay {
    fn apply(
        &mut self,
        did: &str,
        entries: &[AuditEntry],
        entry: &AuditEntry,
        previous: Option<&AuditEntry>,
    ) -> Result<(), PlcError> {
        if entry.did != did {
            return Err(PlcError::WrongDid {
                expected: did.to_owned(),
                found: entry.did.clone(),
            });
        }
        if previous.is_some_and(|p| entry.created_at_micros < p.created_at_micros) {
            return Err(PlcError::TimeOrder);
        }
        let op = &entry.operation;
        op.check_size()?;
        let computed = op.cid();
        let claimed = cid::parse(&entry.cid).map_err(|e| malformed(format!("cid: {e}")))?;
        if claimed != computed {
            return Err(PlcError::CidMismatch {
                claimed: entry.cid.clone(),
                computed: computed.to_string(),
            });
        }

        let index = self.cids.len();
        let signer = if self.chain.is_empty() {
            self.apply_genesis(did, op)?
        } else {
            self.apply_update(entries, entry)?
        };
        self.cids.push(computed);
        self.signers.push(signer);
        self.chain.push(index);
        Ok(())
    }

    fn apply_genesis(&self, did: &str, op: &SignedOp) -> Result<usize, PlcError> {
        let computed = did_for_genesis(op)?;
        if computed != did {
            return Err(PlcError::DidMismatch {
                expected: did.to_owned(),
                computed,
            });
        }
        let state = PlcState::from_op(op).ok_or(PlcError::NotGenesis)?;
        verify_sig(op, &state.rotation_keys)
    }

    fn apply_update(
        &mut self,
        entries: &[AuditEntry],
        entry: &AuditEntry,
    ) -> Result<usize, PlcError> {
        let op = &entry.operation;
        if matches!(op, SignedOp::LegacyCreate { .. }) {
            return Err(PlcError::LateCreate);
        }
        let prev_str = op.prev().ok_or(PlcError::MissingPrev)?;
        let prev = cid::parse(prev_str).map_err(|e| PlcError::Prev(e.to_string()))?;
        let Some(pos) = self
            .chain
            .iter()
            .position(|&i| self.cids.get(i) == Some(&prev))
        else {
            return Err(if self.cids.contains(&prev) {
                PlcError::PrevNullified(prev_str.to_owned())
            } else {
                PlcError::UnknownPrev(prev_str.to_owned())
            });
        };
        let base = self
            .chain
            .get(pos)
            .and_then(|&i| entries.get(i))
            .ok_or(PlcError::UnknownPrev(prev_str.to_owned()))?;
        let keys = PlcState::from_op(&base.operation)
            .ok_or(PlcError::AfterTombstone)?
            .rotation_keys;
        let signer = verify_sig(op, &keys)?;

        // Forking from before the head nullifies everything after the fork point.
        if let Some(&first) = self.chain.get(pos + 1) {
            let disputed = self.signers.get(first).copied().unwrap_or(0);
            if signer >= disputed {
                return Err(PlcError::NotHigherAuthority { signer, disputed });
            }
            let first_at = entries.get(first).map_or(i64::MIN, |e| e.created_at_micros);
            let elapsed_micros = entry.created_at_micros.saturating_sub(first_at);
            if elapsed_micros > RECOVERY_WINDOW_MICROS {
                return Err(PlcError::RecoveryTooLate { elapsed_micros });
            }
            for i in self.chain.drain(pos + 1..) {
                if let Some(flag) = self.nullified.get_mut(i) {
                    *flag = true;
                }
            }
        }
        Ok(signer)
    }
}
