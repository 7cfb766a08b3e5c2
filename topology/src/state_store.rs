//! RocksDB state stores: the [`Store`] the engine writes through to in the runtime.
//!
//! One store per assigned partition. State rows live in the default column family, exactly
//! as the engine writes them (the same bytes go to the partition's changelog topic). Runtime
//! metadata, such as the changelog offset the local state is known to match, lives in a
//! separate `meta` column family, so restoring state never sees it. State rows and the
//! checkpoint are written in one atomic batch ([`RocksStore::commit`]). The dedup window's
//! index rows (tag `D`) exist only here, not in the changelog ([`RocksStore::commit_with_local`]).

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use switchboard_processors::store::{Entry, RowVisitor, Write};
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
        // Bloom filters answer most reads of a key that is not there (the dedup window's
        // lookup of a new record id) without reading a block.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        let mut rows = Options::default();
        rows.set_memtable_whole_key_filtering(true);
        rows.set_memtable_prefix_bloom_ratio(0.05);
        rows.set_compression_type(rocksdb::DBCompressionType::Lz4);
        rows.set_block_based_table_factory(&table);
        let families = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, rows),
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
        self.commit_with_local(batch, &Default::default(), checkpoint)
    }

    /// [`RocksStore::commit`], with rows for this store alone (not in the changelog: the dedup
    /// window's index). Their deletions go in the same atomic write; the rows they add go in
    /// a second write right after it, not synced: an index row must never be durable before
    /// the row it indexes, and one lost to a crash is found missing and rebuilt by the restore
    /// ([`switchboard_processors::dedup`]), as all of a round's are written at once.
    pub fn commit_with_local(
        &self,
        batch: &[Write],
        local: &std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let mut rows = borrowed(batch);
        let mut added: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        for (k, v) in local {
            match v {
                Some(v) => added.push((k, Some(v))),
                None => rows.push((k, None)),
            }
        }
        let mut wb = sorted_batch(rows);
        let after = sorted_batch(added);
        let bytes = serde_json::to_vec(checkpoint).map_err(|e| StoreError::Io(e.to_string()))?;
        wb.put_cf(self.meta()?, CHECKPOINT, bytes);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(io)?;
        if !after.is_empty() {
            self.db.write(after).map_err(io)?;
        }
        Ok(())
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

/// The rows of `batch`, borrowed, for [`sorted_batch`].
fn borrowed(batch: &[Write]) -> Vec<(&[u8], Option<&[u8]>)> {
    batch
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect()
}

/// A write batch of `rows` (a value, or `None` to delete) in key order. A stable sort: a key
/// written twice keeps its last write last. In key order the memtable's skip list inserts
/// each row next to the one before it, instead of searching from its top for every row.
fn sorted_batch(mut rows: Vec<(&[u8], Option<&[u8]>)>) -> WriteBatch {
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut wb = WriteBatch::default();
    for (k, v) in rows {
        match v {
            Some(v) => wb.put(k, v),
            None => wb.delete(k),
        }
    }
    wb
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

    /// Skips the rows of `tags` without reading them (a seek past each): the archive and the
    /// dedup window's index can be far larger than what the engine keeps in memory.
    fn entries_except(&self, tags: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        while let Some(k) = it.key() {
            match k.first() {
                Some(&t) if tags.contains(&t) => match t.checked_add(1) {
                    Some(next) => it.seek([next]),
                    None => break,
                },
                _ => {
                    out.push((k.to_vec(), it.value().unwrap_or_default().to_vec()));
                    it.next();
                }
            }
        }
        it.status().map_err(io)?;
        Ok(out)
    }

    fn scan_tag(&self, tag: u8, f: &mut RowVisitor) -> Result<(), StoreError> {
        for item in self
            .db
            .iterator(IteratorMode::From(&[tag], Direction::Forward))
        {
            let (k, v) = item.map_err(io)?;
            if k.first() != Some(&tag) {
                break;
            }
            f(&k, &v)?;
        }
        Ok(())
    }

    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
        self.write_rows(batch)
    }
}

impl RocksStore {
    /// [`Store::write`] through a shared reference: RocksDB takes writes from any thread.
    pub fn write_rows(&self, batch: &[Write]) -> Result<(), StoreError> {
        let wb = sorted_batch(borrowed(batch));
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        self.db.write_opt(wb, &opts).map_err(io)
    }
}
