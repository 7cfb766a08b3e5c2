//! RocksDB state stores: the [`Store`] the engine writes through to in the runtime.
//!
//! One store per assigned partition. State rows live in the default column family, exactly
//! as the engine writes them (the same bytes go to the partition's changelog topic). Runtime
//! metadata, such as the changelog offset the local state is known to match, lives in a
//! separate `meta` column family, so restoring state never sees it.

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};
use switchboard_processors::store::{Entry, Write};
use switchboard_processors::{Store, StoreError};

const META: &str = "meta";
const CHECKPOINT: &[u8] = b"changelog-offset";

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

    /// The changelog offset the local state was last known to match, if any.
    pub fn checkpoint(&self) -> Result<Option<i64>, StoreError> {
        let cf = self
            .db
            .cf_handle(META)
            .ok_or_else(|| StoreError::Io("missing meta column family".into()))?;
        match self.db.get_cf(&cf, CHECKPOINT).map_err(io)? {
            None => Ok(None),
            Some(bytes) => {
                let raw: [u8; 8] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            key: "meta/changelog-offset".into(),
                            reason: format!("{} bytes, expected 8", bytes.len()),
                        })?;
                Ok(Some(i64::from_be_bytes(raw)))
            }
        }
    }

    /// Record that the local state matches the changelog up to `offset` (inclusive).
    pub fn set_checkpoint(&mut self, offset: i64) -> Result<(), StoreError> {
        let cf = self
            .db
            .cf_handle(META)
            .ok_or_else(|| StoreError::Io("missing meta column family".into()))?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(&cf, CHECKPOINT, offset.to_be_bytes(), &opts)
            .map_err(io)
    }

    /// Forget the checkpoint: after an unclean stop the local state is not trusted beyond the
    /// last committed transaction, so it is restored from the changelog.
    pub fn clear_checkpoint(&mut self) -> Result<(), StoreError> {
        let cf = self
            .db
            .cf_handle(META)
            .ok_or_else(|| StoreError::Io("missing meta column family".into()))?;
        self.db.delete_cf(&cf, CHECKPOINT).map_err(io)
    }
}

impl Store for RocksStore {
    fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.db
            .iterator(IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
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
