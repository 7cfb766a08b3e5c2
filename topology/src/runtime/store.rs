//! A partition's state store in the runtime: RocksDB, with the writes of the rounds not yet
//! in it (waiting for their round, in flight while it is committed, landing once it is
//! durable) read before it.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_processors::store::{Entry, RowVisitor, Write};
use switchboard_processors::{Store, StoreError};

use crate::metrics::count_thread_cpu;
use crate::state_store::{Checkpoint, RocksStore};

/// The engine's store in the runtime: reads come from RocksDB; writes wait in `pending` until
/// their round sends them, in `inflight` until the round is durable, then go to RocksDB with
/// the checkpoint in one atomic write, on a thread of its own while the next round begins
/// (`landing`).
pub struct PartitionStore {
    rocks: Arc<RocksStore>,
    pending: Vec<Write>,
    /// Rows for RocksDB alone ([`Store::write_local`]: the dedup window's index), never sent
    /// to the changelog, committed with the round's other writes.
    pending_local: LocalWrites,
    /// The writes of the round being committed: the next batch, processed meanwhile, reads
    /// them as the state it follows.
    inflight: InFlight,
    /// The writes of the last durable round while they go into RocksDB, read before it.
    landing: Option<Landing>,
}

/// A durable round's writes on their way into RocksDB.
struct Landing {
    writes: Arc<InFlight>,
    done: std::thread::JoinHandle<Result<(), StoreError>>,
}

impl PartitionStore {
    pub(super) fn new(rocks: RocksStore) -> PartitionStore {
        PartitionStore {
            rocks: Arc::new(rocks),
            pending: Vec::new(),
            pending_local: LocalWrites::new(),
            inflight: InFlight::default(),
            landing: None,
        }
    }

    /// Write what waits for RocksDB alone now, outside a round: rows derived from rows RocksDB
    /// already holds (the dedup window's index rebuilt after a restore from the changelog).
    pub(super) fn settle_local(&mut self) -> Result<(), StoreError> {
        self.land()?;
        let writes: Vec<Write> = self.pending_local.drain().collect();
        self.rocks.write_rows(&writes)
    }

    /// Take the writes waiting for this round: they are in flight until the round is durable
    /// (the next batch reads them meanwhile), and are what the round sends to the changelog.
    pub(super) fn take_round(&mut self) -> &InFlight {
        self.inflight = InFlight::new(
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.pending_local),
        );
        &self.inflight
    }

    /// Start writing the round in flight, now durable in Kafka, to RocksDB with `checkpoint`
    /// (after the round before it has landed: rounds reach RocksDB in order, each in one
    /// atomic write). Until it has landed, reads find its rows in memory first. The thread's
    /// CPU time goes to `cpu`.
    pub(super) fn start_landing(
        &mut self,
        checkpoint: Checkpoint,
        cpu: prometheus::Counter,
    ) -> Result<(), StoreError> {
        self.land()?;
        let writes = Arc::new(std::mem::take(&mut self.inflight));
        let (rocks, shared) = (Arc::clone(&self.rocks), Arc::clone(&writes));
        let done = std::thread::Builder::new()
            .name("switchboard-land".into())
            .spawn(move || {
                count_thread_cpu(Some(&cpu), || {
                    rocks.commit_with_local(&shared.writes, &shared.local, &checkpoint)
                })
            })
            .map_err(|e| StoreError::Io(format!("cannot start a thread: {e}")))?;
        self.landing = Some(Landing { writes, done });
        Ok(())
    }

    /// Wait until the last durable round is in RocksDB.
    pub(super) fn land(&mut self) -> Result<(), StoreError> {
        match self.landing.take() {
            None => Ok(()),
            Some(l) => l
                .done
                .join()
                .map_err(|_| StoreError::Io("the RocksDB write panicked".into()))?,
        }
    }

    /// The state's size in bytes, as RocksDB estimates it.
    pub(super) fn size_bytes(&self) -> u64 {
        self.rocks.size_bytes()
    }
}

impl Drop for PartitionStore {
    /// A store closed (its partition revoked, or the engine stopping) first lets its last
    /// round land: the partition's RocksDB is then closed, and may be opened again.
    fn drop(&mut self) {
        if let Err(e) = self.land() {
            tracing::error!(error = %e, "writing the last round to RocksDB failed; a restore reads it from the changelog");
        }
    }
}

/// Writes for the local store alone, by key (the latest write of a key wins).
type LocalWrites = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A round's writes while it is committed, and an index to read them by key without a scan
/// (a batch may read several keys per new conversation: its customer's rows), built by the
/// first read.
#[derive(Default)]
pub(super) struct InFlight {
    pub(super) writes: Vec<Write>,
    /// The round's writes for RocksDB alone.
    pub(super) local: LocalWrites,
    /// Hash of a key → the position of the latest write whose key has that hash.
    index: std::sync::OnceLock<HashMap<u64, usize>>,
}

impl InFlight {
    fn new(writes: Vec<Write>, local: LocalWrites) -> InFlight {
        InFlight {
            writes,
            local,
            index: std::sync::OnceLock::new(),
        }
    }

    fn hash(key: &[u8]) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
    }

    /// The latest write of `key`, if the round has one.
    fn get(&self, key: &[u8]) -> Option<&Write> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.writes.len());
            for (i, (k, _)) in self.writes.iter().enumerate() {
                index.insert(Self::hash(k), i);
            }
            index
        });
        let i = *index.get(&Self::hash(key))?;
        match self.writes.get(i) {
            Some(w) if w.0 == key => Some(w),
            // Another key with the same hash wrote later: look for this one.
            _ => self.writes.iter().rev().find(|(k, _)| k == key),
        }
    }
}

impl Store for PartitionStore {
    fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.rocks.entries()
    }

    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
        self.pending.extend_from_slice(batch);
        Ok(())
    }

    fn write_local(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.pending_local.extend(batch);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // A write waiting for its batch to be durable is newer than RocksDB. A key is written
        // either locally or for the changelog, never both, so their order does not matter.
        let landing = self.landing.as_ref().map(|l| &*l.writes);
        let pending = self.pending.iter().rev().find(|(k, _)| k == key);
        if let Some((_, v)) = pending
            .or_else(|| self.inflight.get(key))
            .or_else(|| landing.and_then(|l| l.get(key)))
        {
            return Ok(v.clone());
        }
        match self
            .pending_local
            .get(key)
            .or_else(|| self.inflight.local.get(key))
            .or_else(|| landing.and_then(|l| l.local.get(key)))
        {
            Some(v) => Ok(v.clone()),
            None => self.rocks.get(key),
        }
    }

    fn entries_except(&self, tags: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.rocks.entries_except(tags)
    }

    fn scan_tag(&self, tag: u8, f: &mut RowVisitor) -> Result<(), StoreError> {
        self.rocks.scan_tag(tag, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{InFlight, PartitionStore};
    use crate::state_store::{Checkpoint, RocksStore};
    use switchboard_processors::Store;

    /// Issue 12 (overlapped rounds): while a round's state changes are in flight, the next
    /// batch, processed meanwhile, reads them (an archived conversation named again), newest
    /// first: this round's pending writes, then the round in flight, then RocksDB. Once the
    /// round is durable they are read from RocksDB. Rows for RocksDB alone (the dedup window's
    /// index, R-TIME-1) are read the same way and committed with the round.
    #[test]
    fn writes_in_flight_are_read_before_rocksdb() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut rocks = RocksStore::open(dir.path()).expect("store opens");
        let old = (b"Akey".to_vec(), Some(b"old".to_vec()));
        rocks
            .commit(std::slice::from_ref(&old), &Checkpoint::default())
            .expect("commit");
        let mut store = PartitionStore::new(rocks);
        store.inflight = InFlight::new(
            vec![
                (b"Akey".to_vec(), Some(b"old in flight".to_vec())),
                (b"Bkey".to_vec(), Some(b"other".to_vec())),
                (b"Akey".to_vec(), Some(b"in flight".to_vec())),
            ],
            [(b"Dkey".to_vec(), Some(b"local".to_vec()))]
                .into_iter()
                .collect(),
        );
        let read = |s: &PartitionStore| s.get(b"Akey").expect("read");
        assert_eq!(read(&store), Some(b"in flight".to_vec()));
        store.write(&[(b"Akey".to_vec(), None)]).expect("write");
        assert_eq!(read(&store), None, "a deletion pending now wins");
        store.pending.clear();
        assert_eq!(store.get(b"Bkey").expect("read"), Some(b"other".to_vec()));
        assert_eq!(store.get(b"Ckey").expect("read"), None);
        assert_eq!(store.get(b"Dkey").expect("read"), Some(b"local".to_vec()));
        store
            .write_local(vec![(b"Dkey".to_vec(), None)])
            .expect("write");
        assert_eq!(
            store.get(b"Dkey").expect("read"),
            None,
            "a local deletion pending wins"
        );
        store.pending_local.clear();
        let inflight = std::mem::take(&mut store.inflight);
        store
            .rocks
            .commit_with_local(&inflight.writes, &inflight.local, &Checkpoint::default())
            .expect("commit");
        assert_eq!(read(&store), Some(b"in flight".to_vec()));
        assert_eq!(store.get(b"Dkey").expect("read"), Some(b"local".to_vec()));
    }

    /// R-RUN-2 (issue 12): a durable round goes into RocksDB on a thread of its own while the
    /// next round begins. Meanwhile reads find its rows (state and local) in memory; a later
    /// round lands after it (its rows win, the checkpoint is the later one); and a store
    /// closed waits for its last round, so the partition's RocksDB can be opened again at
    /// once with every row and the last checkpoint.
    #[test]
    fn a_durable_round_lands_in_rocksdb_while_reads_find_it_first() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rocks = RocksStore::open(dir.path()).expect("store opens");
        rocks
            .commit_with_local(
                &[(b"Akey".to_vec(), Some(b"old".to_vec()))],
                &Default::default(),
                &Checkpoint::default(),
            )
            .expect("commit");
        let mut store = PartitionStore::new(rocks);
        let checkpoint = |offset| Checkpoint {
            changelog_offset: offset,
            ..Checkpoint::default()
        };
        let read = |s: &PartitionStore, key: &[u8]| s.get(key).expect("read");
        let cpu =
            prometheus::Counter::new("landing_cpu", "CPU of the landing threads").expect("counter");
        store.inflight = InFlight::new(
            vec![
                (b"Akey".to_vec(), Some(b"round 1".to_vec())),
                (b"Bkey".to_vec(), Some(b"round 1".to_vec())),
            ],
            [(b"Dkey".to_vec(), Some(b"local 1".to_vec()))]
                .into_iter()
                .collect(),
        );
        // A landing held back before it writes anything: its rows are read from memory.
        let (release, held) = std::sync::mpsc::channel::<()>();
        store.landing = Some(super::Landing {
            writes: std::sync::Arc::new(InFlight::new(
                vec![(b"Ekey".to_vec(), Some(b"landing".to_vec()))],
                [(b"Fkey".to_vec(), Some(b"landing local".to_vec()))]
                    .into_iter()
                    .collect(),
            )),
            done: std::thread::spawn(move || {
                let _ = held.recv();
                Ok(())
            }),
        });
        assert_eq!(read(&store, b"Ekey"), Some(b"landing".to_vec()));
        assert_eq!(read(&store, b"Fkey"), Some(b"landing local".to_vec()));
        assert_eq!(
            read(&store, b"Akey"),
            Some(b"round 1".to_vec()),
            "in flight first"
        );
        release.send(()).expect("release");
        store
            .start_landing(checkpoint(7), cpu.clone())
            .expect("landing starts");
        assert!(
            store.inflight.writes.is_empty(),
            "the round in flight is landing"
        );
        assert_eq!(read(&store, b"Akey"), Some(b"round 1".to_vec()));
        assert_eq!(read(&store, b"Dkey"), Some(b"local 1".to_vec()));
        store.inflight = InFlight::new(
            vec![(b"Akey".to_vec(), Some(b"round 2".to_vec()))],
            Default::default(),
        );
        assert_eq!(read(&store, b"Akey"), Some(b"round 2".to_vec()));
        assert_eq!(read(&store, b"Bkey"), Some(b"round 1".to_vec()));
        store
            .start_landing(checkpoint(9), cpu.clone())
            .expect("landing starts");
        assert_eq!(read(&store, b"Akey"), Some(b"round 2".to_vec()));
        drop(store);
        let reopened = RocksStore::open(dir.path()).expect("the store was closed");
        assert_eq!(
            reopened.checkpoint().expect("checkpoint"),
            Some(checkpoint(9))
        );
        for (key, value) in [
            (&b"Akey"[..], &b"round 2"[..]),
            (b"Bkey", b"round 1"),
            (b"Dkey", b"local 1"),
        ] {
            assert_eq!(reopened.get(key).expect("read"), Some(value.to_vec()));
        }
    }
}
