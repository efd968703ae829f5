//! The writer's part in moving an account: replacing the repo with an imported one,
//! activation (a fresh commit under our key, announced with `#account`, `#identity` and
//! `#sync`), and deactivation. Each runs as one job, so a crash leaves all or nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::apply::blob_refs;
use super::{RepoState, Writer};
use crate::cbor;
use crate::crypto::Keypair;
use crate::firehose::events::{self, Kind};
use crate::repo::MemoryBlocks;
use crate::repo::car::write_car;
use crate::repo::commit::Commit;
use crate::repo::export::LoadedRepo;
use crate::repo::mst::{Mst, Visit};
use crate::store::{Db, StoreError, account, blobs, repo, repo::RepoRoot};
use crate::tid::{Tid, TidClock};

fn now_time() -> (u64, String) {
    let us = crate::clock::unix_micros();
    (
        us,
        crate::syntax::format_datetime_millis((us / 1000) as i64),
    )
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn empty_repo_now(
    conn: &Db,
    did: &str,
    key: Arc<Keypair>,
) -> Result<(RepoState, Vec<u8>), StoreError> {
    let mut clock = TidClock::new((std::process::id() & 0x3ff) as u16);
    super::apply::empty_repo(conn, did, key, &mut clock).map_err(|e| match e {
        super::WriteError::Store(s) => s,
        other => corrupt(other),
    })
}

/// What an import stored.
#[derive(Clone, Debug)]
pub struct Imported {
    pub records: usize,
    pub blocks: usize,
    pub expected_blobs: usize,
    pub rev: String,
}

fn import(conn: &Db, loaded: &LoadedRepo) -> Result<(RepoRoot, Imported), StoreError> {
    let rev = loaded.commit.rev.to_string();
    // The imported repo replaces whatever an earlier (partial) import left.
    repo::clear_repo(conn)?;
    for (c, b) in loaded.blocks.iter() {
        repo::put_block(conn, c, &rev, b)?;
    }
    let mut records = 0;
    let mut expected = BTreeSet::new();
    let mut failure = None;
    Mst::load(loaded.commit.data)
        .walk(&loaded.blocks, &mut |v| {
            if let Visit::Leaf(key, cid) = v {
                let mut step = || -> Result<(), StoreError> {
                    let path = std::str::from_utf8(key).map_err(corrupt)?;
                    let (collection, rkey) = path
                        .split_once('/')
                        .ok_or_else(|| corrupt(format!("record key {path:?} has no '/'")))?;
                    repo::put_record(conn, collection, rkey, cid, &rev)?;
                    let bytes = loaded
                        .blocks
                        .get(cid)
                        .ok_or_else(|| corrupt("missing record"))?;
                    let value = cbor::decode(bytes).map_err(corrupt)?;
                    let mut refs = BTreeSet::new();
                    blob_refs(&value, &mut refs);
                    for b in refs {
                        blobs::add_record_blob(conn, &b.to_string(), path)?;
                        expected.insert(b);
                    }
                    Ok(())
                };
                if let Err(e) = step() {
                    failure = Some(e);
                    return Err(crate::repo::RepoError::InvalidCommit(
                        "import failed".into(),
                    ));
                }
                records += 1;
            }
            Ok(())
        })
        .map_err(|e| failure.take().unwrap_or_else(|| corrupt(e)))?;
    let root = RepoRoot {
        commit_cid: loaded.commit_cid,
        rev: rev.clone(),
        data_cid: loaded.commit.data,
    };
    repo::set_root(conn, &root)?;
    Ok((
        root,
        Imported {
            records,
            blocks: loaded.blocks.len(),
            expected_blobs: expected.len(),
            rev,
        },
    ))
}

/// A fresh commit over the current data, signed by `key`, with a rev above the current one.
/// A fresh commit over `root`'s data, with a rev above `root`'s and above
/// `floor_rev` (and the clock), and the CAR slice a `#sync` event carries.
fn resign(
    conn: &Db,
    did: &str,
    root: &RepoRoot,
    key: &Keypair,
    floor_rev: Option<&str>,
) -> Result<(RepoRoot, Vec<u8>), StoreError> {
    let (now_us, _) = now_time();
    let mut clock = TidClock::new((std::process::id() & 0x3ff) as u16);
    for rev in std::iter::once(root.rev.as_str()).chain(floor_rev) {
        if let Ok(t) = Tid::parse(rev) {
            clock.observe(t);
        }
    }
    let rev = clock.next(now_us);
    let commit = Commit::sign(did, root.data_cid, rev, key);
    let (commit_cid, bytes) = commit.to_block();
    let rev_s = rev.to_string();
    repo::put_block(conn, &commit_cid, &rev_s, &bytes)?;
    let mut slice = MemoryBlocks::new();
    slice.insert(commit_cid, bytes);
    let car = write_car(&[commit_cid], slice.iter().map(|(c, b)| (c, b.as_slice())));
    let new_root = RepoRoot {
        commit_cid,
        rev: rev_s,
        data_cid: root.data_cid,
    };
    repo::set_root(conn, &new_root)?;
    Ok((new_root, car))
}

/// After a restore, once the seq counter is above anything the old server sent: a fresh
/// commit over the restored repo (its rev above the restored one, above `floor_rev`, the
/// head of the database the restore replaced when it was readable, and above the clock) and
/// `#identity` + `#sync`, so relays drop what they hold of the repo (it may include commits
/// the backup never saw) and take this state. Does nothing without an active account.
/// Returns the new root, for the writer's view.
pub fn announce_restored(
    conn: &Db,
    key: &Keypair,
    floor_rev: Option<&str>,
) -> Result<Option<RepoRoot>, StoreError> {
    let Some(acct) = account::get_account(conn)?.filter(|a| a.is_active()) else {
        return Ok(None);
    };
    let Some(root) = repo::get_root(conn)? else {
        return Ok(None);
    };
    let (new_root, car) = resign(conn, &acct.did, &root, key, floor_rev)?;
    let (_, time) = now_time();
    events::append(
        conn,
        Kind::Identity,
        &time,
        events::identity_body(&acct.did, Some(&acct.handle), &time),
    )?;
    events::append(
        conn,
        Kind::Sync,
        &time,
        events::sync_body(&acct.did, car, &new_root.rev, &time),
    )?;
    Ok(Some(new_root))
}

impl Writer {
    /// The account of a move in, deactivated, with an empty repo (an empty MST and a first
    /// commit under `key`, as the reference makes at createAccount), if `invite` is a valid
    /// invite code; in one transaction, announcing nothing until activation. Returns false when
    /// the code is not valid.
    pub async fn create_moving_account(
        &self,
        row: account::Account,
        key: Arc<Keypair>,
        invite: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.exec(move |conn, state| {
            if account::get_account(conn)?.is_some() {
                return Err(StoreError::Conflict(
                    "this server already holds an account".into(),
                ));
            }
            if !account::take_action_token(conn, "invite", &invite, now)? {
                return Ok(false);
            }
            account::create_account(conn, &row)?;
            let (repo, _) = empty_repo_now(conn, &row.did, key)?;
            *state = Some(repo);
            Ok(true)
        })
        .await
    }

    /// Gives a moving account that has no repo yet (made by an older perch) the empty repo
    /// `create_moving_account` makes now; does nothing once there is one.
    pub async fn ensure_repo(&self, did: String, key: Arc<Keypair>) -> Result<(), StoreError> {
        self.exec(move |conn, state| {
            let exists = account::get_account(conn)?.is_some_and(|a| a.did == did);
            if !exists || repo::get_root(conn)?.is_some() {
                return Ok(());
            }
            let (repo, _) = empty_repo_now(conn, &did, key)?;
            *state = Some(repo);
            Ok(())
        })
        .await
    }

    /// Replaces the repo with `loaded` (already verified), for an account that is not active.
    pub async fn import_repo(
        &self,
        did: String,
        key: Arc<Keypair>,
        loaded: LoadedRepo,
    ) -> Result<Imported, StoreError> {
        self.exec(move |conn, state| {
            let acct = account::get_account(conn)?
                .filter(|a| a.did == did)
                .ok_or_else(|| corrupt("no such account"))?;
            if acct.is_active() {
                return Err(StoreError::Conflict(
                    "the account is active; importRepo is for an account being moved here \
                     (deactivated until activateAccount)"
                        .into(),
                ));
            }
            let (root, imported) = import(conn, &loaded)?;
            *state = Some(RepoState {
                did,
                key,
                root,
                tree: None,
            });
            Ok(imported)
        })
        .await
    }

    /// Activates the account: a fresh commit signed by `key`, status active, and the
    /// `#account`, `#identity` and `#sync` events, in one transaction.
    pub async fn activate(&self, did: String, key: Arc<Keypair>) -> Result<(), StoreError> {
        self.exec(move |conn, state| {
            let acct = account::get_account(conn)?
                .filter(|a| a.did == did)
                .ok_or_else(|| corrupt("no such account"))?;
            let root = repo::get_root(conn)?.ok_or_else(|| {
                StoreError::Conflict("no repo yet: import it (importRepo) before activating".into())
            })?;
            // Only the commit block must be ours; the data it points to must all be here.
            repo::get_block(conn, &root.data_cid)?
                .ok_or_else(|| StoreError::Conflict("the repo's MST root is missing".into()))?;
            let (new_root, car) = resign(conn, &did, &root, &key, None)?;
            account::set_status(conn, account::AccountStatus::Active)?;
            let (_, time) = now_time();
            events::append(
                conn,
                Kind::Account,
                &time,
                events::account_body(&did, true, None, &time),
            )?;
            events::append(
                conn,
                Kind::Identity,
                &time,
                events::identity_body(&did, Some(&acct.handle), &time),
            )?;
            events::append(
                conn,
                Kind::Sync,
                &time,
                events::sync_body(&did, car, &new_root.rev, &time),
            )?;
            *state = Some(RepoState {
                did,
                key,
                root: new_root,
                tree: None,
            });
            Ok(())
        })
        .await
    }

    /// With a valid `delete_account` code: removes the account and all it owns, emits
    /// `#account {active: false, status: deleted}` and drops every earlier firehose event. Returns the blob CIDs whose files go, or
    /// None when the code is not valid.
    pub async fn delete_account(
        &self,
        did: String,
        token: String,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.exec(move |conn, state| {
            if !account::take_action_token(conn, "delete_account", &token, now)? {
                return Ok(None);
            }
            let cids = account::delete_everything(conn)?;
            let (_, time) = now_time();
            let seq = events::append(
                conn,
                Kind::Account,
                &time,
                events::account_body(&did, false, Some("deleted"), &time),
            )?;
            // Nothing of the account stays replayable (as the reference); every earlier event
            // was about it, since this server holds one account. The seq counter is not
            // lowered by this (AUTOINCREMENT).
            repo::delete_events_before(conn, seq)?;
            *state = None;
            Ok(Some(cids))
        })
        .await
    }

    /// Deactivates the account and says so on the firehose.
    pub async fn deactivate(&self, did: String) -> Result<(), StoreError> {
        self.exec(move |conn, _| {
            account::set_status(conn, account::AccountStatus::Deactivated)?;
            let (_, time) = now_time();
            events::append(
                conn,
                Kind::Account,
                &time,
                events::account_body(&did, false, Some("deactivated"), &time),
            )?;
            Ok(())
        })
        .await
    }
}
