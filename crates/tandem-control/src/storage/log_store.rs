//! The Raft log, vote and committed pointer of one member, in its directory.
//!
//! Files:
//! * `raft-log.bin`: append-only CRC-framed `LogRecord`s (append, truncate, purge),
//!   replayed on open; a torn last record is cut off, a corrupt one refuses the start.
//!   On open the replayed log is rewritten compactly when it held truncate or purge records.
//! * `vote.bin`, `committed.bin`: one record each, replaced atomically (tmp, fsync, rename,
//!   fsync directory).
//!
//! Contract honoured (openraft `RaftLogStorage`): the vote is on disk before `save_vote`
//! returns; appended entries are readable when `append` returns and on disk (fsync) before
//! the flush callback is called; every write is serialized by one mutex, so a vote and an
//! append are never reordered; truncate and purge never leave a hole.
//!
//! The I/O is synchronous under the mutex: control-plane writes are a few small records per
//! failover, so blocking a runtime thread for one fsync is cheaper than the hand-off.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::frame::{self, Decoded};
use crate::state::NodeId;
use crate::types::{Entry, TypeConfig};

const LOG_FILE: &str = "raft-log.bin";
const VOTE_FILE: &str = "vote.bin";
const COMMITTED_FILE: &str = "committed.bin";

/// One change to the log, as appended to `raft-log.bin`.
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    Append(Entry),
    /// Entries from this index on are removed (a conflicting suffix).
    Truncate {
        since_index: u64,
    },
    /// Entries up to and including this id are removed (covered by a snapshot).
    Purge {
        upto: LogId<NodeId>,
    },
}

/// The member's Raft log storage; clones share the same files and memory.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    directory: PathBuf,
    log_file: File,
    /// Present entries by index; consecutive, starting after `last_purged`.
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

impl LogStore {
    /// Opens (or creates) the log storage in `directory` and replays it.
    pub fn open(directory: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(directory)?;
        let log_path = directory.join(LOG_FILE);
        let (entries, last_purged, needs_rewrite) = replay(&log_path)?;
        let vote = frame::read_file(&directory.join(VOTE_FILE))?;
        // `committed.bin` holds an `Option<LogId>`: a missing file and `None` mean the same.
        let committed = frame::read_file::<Option<LogId<NodeId>>>(&directory.join(COMMITTED_FILE))?.flatten();
        if needs_rewrite {
            rewrite_log(directory, &entries, &last_purged)?;
        }
        let log_file = OpenOptions::new().create(true).append(true).open(&log_path)?;
        let inner = LogInner { directory: directory.to_path_buf(), log_file, entries, last_purged, vote, committed };
        inner.check_consecutive();
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().expect("log store mutex poisoned by a panic")
    }
}

type Replayed = (BTreeMap<u64, Entry>, Option<LogId<NodeId>>, bool);

/// Reads `raft-log.bin` into memory; cuts off a torn tail; refuses corruption.
fn replay(log_path: &Path) -> io::Result<Replayed> {
    let bytes = match fs::read(log_path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let mut entries = BTreeMap::new();
    let mut last_purged = None;
    let mut offset = 0;
    let mut needs_rewrite = false;
    while offset < bytes.len() {
        let decoded = frame::decode_at::<LogRecord>(&bytes, offset)
            .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", log_path.display())))?;
        let Decoded::Record(record, next) = decoded else {
            tracing::warn!(path = %log_path.display(), offset, "cutting off a torn last record (crash during append)");
            needs_rewrite = true;
            break;
        };
        offset = next;
        match record {
            LogRecord::Append(entry) => {
                entries.insert(entry.log_id.index, entry);
            }
            LogRecord::Truncate { since_index } => {
                entries.split_off(&since_index);
                needs_rewrite = true;
            }
            LogRecord::Purge { upto } => {
                entries = entries.split_off(&(upto.index + 1));
                last_purged = Some(upto);
                needs_rewrite = true;
            }
        }
    }
    Ok((entries, last_purged, needs_rewrite))
}

/// Writes the replayed log as a fresh file (purge marker, then entries) and swaps it in.
fn rewrite_log(
    directory: &Path,
    entries: &BTreeMap<u64, Entry>,
    last_purged: &Option<LogId<NodeId>>,
) -> io::Result<()> {
    let temporary = directory.join("raft-log.tmp");
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
        if let Some(upto) = last_purged {
            file.write_all(&frame::encode(&LogRecord::Purge { upto: *upto })?)?;
        }
        for entry in entries.values() {
            file.write_all(&frame::encode(&LogRecord::Append(entry.clone()))?)?;
        }
        file.sync_all()?;
    }
    fs::rename(&temporary, directory.join(LOG_FILE))?;
    frame::sync_directory(directory)
}

impl LogInner {
    fn check_consecutive(&self) {
        let mut expected = self.last_purged.map(|id| id.index + 1);
        for index in self.entries.keys() {
            if let Some(expected) = expected {
                assert_eq!(*index, expected, "hole in the raft log before index {index}");
            }
            expected = Some(index + 1);
        }
    }

    fn append_records(&mut self, records: &[LogRecord]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            bytes.extend_from_slice(&frame::encode(record)?);
        }
        self.log_file.write_all(&bytes)?;
        self.log_file.sync_data()
    }
}

fn write_error(error: io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&error).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last_log_id = inner.entries.values().next_back().map(|entry| entry.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let path = inner.directory.join(VOTE_FILE);
        frame::write_file_atomically(&path, vote).map_err(|error| StorageIOError::write_vote(&error))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let path = inner.directory.join(COMMITTED_FILE);
        frame::write_file_atomically(&path, &committed).map_err(write_error)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let (Some(first), Some((last_index, _))) = (entries.first(), inner.entries.last_key_value()) {
            assert_eq!(first.log_id.index, last_index + 1, "append would leave a hole in the raft log");
        }
        let records: Vec<LogRecord> = entries.iter().cloned().map(LogRecord::Append).collect();
        let result = inner.append_records(&records);
        if result.is_ok() {
            for entry in entries {
                inner.entries.insert(entry.log_id.index, entry);
            }
        }
        let error_for_caller = result.as_ref().err().map(|error| io::Error::new(error.kind(), error.to_string()));
        callback.log_io_completed(result);
        match error_for_caller {
            Some(error) => Err(write_error(error)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.append_records(&[LogRecord::Truncate { since_index: log_id.index }]).map_err(write_error)?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.append_records(&[LogRecord::Purge { upto: log_id }]).map_err(write_error)?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    #[tokio::test]
    async fn replay_applies_truncate_and_purge_and_cuts_a_torn_tail() {
        let directory = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for index in 1..=5 {
            bytes.extend(frame::encode(&LogRecord::Append(entry(1, index))).unwrap());
        }
        bytes.extend(frame::encode(&LogRecord::Truncate { since_index: 4 }).unwrap());
        bytes.extend(frame::encode(&LogRecord::Append(entry(2, 4))).unwrap());
        bytes.extend(frame::encode(&LogRecord::Purge { upto: entry(1, 2).log_id }).unwrap());
        let torn = frame::encode(&LogRecord::Append(entry(2, 5))).unwrap();
        bytes.extend(&torn[..torn.len() - 1]);
        fs::write(directory.path().join(LOG_FILE), &bytes).unwrap();

        for _reopen in 0..2 {
            let mut store = LogStore::open(directory.path()).unwrap();
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(entry(1, 2).log_id));
            assert_eq!(state.last_log_id, Some(entry(2, 4).log_id));
            let entries = store.try_get_log_entries(0..10).await.unwrap();
            let ids: Vec<_> = entries.iter().map(|entry| entry.log_id).collect();
            assert_eq!(ids, vec![entry(1, 3).log_id, entry(2, 4).log_id]);
        }
    }

    #[tokio::test]
    async fn vote_survives_reopen_and_corruption_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(7, 2);
        LogStore::open(directory.path()).unwrap().save_vote(&vote).await.unwrap();
        assert_eq!(LogStore::open(directory.path()).unwrap().read_vote().await.unwrap(), Some(vote));

        let mut record = frame::encode(&LogRecord::Append(entry(1, 1))).unwrap();
        let last = record.len() - 1;
        record[last] ^= 0xff;
        record.extend(frame::encode(&LogRecord::Append(entry(1, 2))).unwrap());
        fs::write(directory.path().join(LOG_FILE), &record).unwrap();
        let error = LogStore::open(directory.path()).err().expect("a corrupt record refuses the start");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
