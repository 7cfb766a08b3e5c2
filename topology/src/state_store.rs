//! RocksDB state stores: the [`Store`] the engine writes through to in the runtime.
//!
//! One store per assigned partition. State rows live in the default column family, exactly
//! as the engine writes them (the same bytes go to the partition's changelog topic). Runtime
//! metadata, such as the changelog offset the local state is known to match, lives in a
//! separate `meta` column family, so restoring state never sees it. State rows and the
//! checkpoint are written in one atomic batch ([`RocksStore::commit`]).

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use switchboard_processors::store::{Entry, Write};
use switchboard_processors::{Store, StoreError};

const META: &str = "meta";
const CHECKPOINT: &[u8] = b"checkpoint";

pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Sync the write-ahead log on every batch (off: the changelog is the durable copy).
    sync: bool,
}

fn io(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl RocksStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<RocksStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, Options::default()),
            ColumnFamilyDescriptor::new(META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&options, path, families).map_err(io)?;
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
            sync: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// About how many bytes the state takes: RocksDB's estimate of its live data on disk plus
    /// what its memtables hold.
    pub fn size_bytes(&self) -> u64 {
        let prop = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        prop("rocksdb.estimate-live-data-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    fn meta(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(META)
            .ok_or_else(|| StoreError::Io("missing meta column family".into()))
    }

    /// Where the local state stands against the changelog and the input topics, if known.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.db.get_cf(self.meta()?, CHECKPOINT).map_err(io)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: "meta/checkpoint".into(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Apply `batch` and record `checkpoint` in one atomic, synced write: the local state and
    /// its checkpoint never disagree, even after a crash.
    pub fn commit(&mut self, batch: &[Write], checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (k, v) in batch {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        let bytes = serde_json::to_vec(checkpoint).map_err(|e| StoreError::Io(e.to_string()))?;
        wb.put_cf(self.meta()?, CHECKPOINT, bytes);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(io)
    }

    /// One row, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(io)
    }

    /// Forget the checkpoint: the local state is then restored from the changelog's start.
    pub fn clear_checkpoint(&mut self) -> Result<(), StoreError> {
        self.db.delete_cf(self.meta()?, CHECKPOINT).map_err(io)
    }
}

/// Where one partition's state stands: written atomically with the state rows in RocksDB, and
/// as the marker record that closes each batch in the changelog topic.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Offset of this checkpoint's marker in the changelog partition (-1: not in it yet).
    pub changelog_offset: i64,
    /// The next input offset to process, per input topic.
    pub inputs: BTreeMap<String, i64>,
    /// The next output sequence number of this source partition.
    pub seq: u64,
    /// The end offset of each output topic's partition after this batch's outputs.
    pub outputs: BTreeMap<String, i64>,
}

impl Store for RocksStore {
    fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.db
            .iterator(IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(io)
    }

    /// Skips the rows of `tags` without copying them: the archive can be far larger than
    /// what the engine keeps in memory.
    fn entries_except(&self, tags: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(io)?;
            if k.first().is_none_or(|t| !tags.contains(t)) {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (k, v) in batch {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        self.db.write_opt(wb, &opts).map_err(io)
    }
}
