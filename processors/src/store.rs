//! The key-value store the processors' state lives in.
//!
//! The engine keeps its working state typed in memory ([`crate::state::State`]) and writes every
//! change through to a [`Store`]: an in-memory map in tests and `simulate`, RocksDB (with a
//! changelog topic) in the runtime. Opening an engine on a store restores the state exactly.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O failed: {0}")]
    Io(String),
    #[error("state entry {key:?} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A stored (key, value) pair.
pub type Entry = (Vec<u8>, Vec<u8>);
/// A write: a key and its new value, or `None` to delete it.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Ordered bytes-to-bytes storage.
pub trait Store {
    /// Every entry, in key order.
    fn entries(&self) -> Result<Vec<Entry>, StoreError>;
    /// Apply a batch of writes (`None` deletes) atomically.
    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError>;
}

/// A store in a `BTreeMap`: for tests and `simulate`.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct MemStore {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store for MemStore {
    fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
        for (k, v) in batch {
            match v {
                Some(v) => self.map.insert(k.clone(), v.clone()),
                None => self.map.remove(k),
            };
        }
        Ok(())
    }
}

/// A typed table: an ordered map that remembers which keys changed since the last flush.
#[derive(Clone, Debug)]
pub struct Table<K: Ord + Clone, V> {
    rows: BTreeMap<K, V>,
    dirty: std::collections::BTreeSet<K>,
}

impl<K: Ord + Clone, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            dirty: Default::default(),
        }
    }
}

impl<K: Ord + Clone, V> Table<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.rows.get(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.rows.contains_key(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let v = self.rows.get_mut(k)?;
        self.dirty.insert(k.clone());
        Some(v)
    }

    /// The row for `k`, inserted with `make()` when missing; marked changed.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        self.dirty.insert(k.clone());
        self.rows.entry(k).or_insert_with(make)
    }

    pub fn insert(&mut self, k: K, v: V) {
        self.dirty.insert(k.clone());
        self.rows.insert(k, v);
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.rows.remove(k)?;
        self.dirty.insert(k.clone());
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter()
    }

    pub fn range<R: std::ops::RangeBounds<K>>(&self, r: R) -> impl Iterator<Item = (&K, &V)> {
        self.rows.range(r)
    }

    pub fn first(&self) -> Option<(&K, &V)> {
        self.rows.iter().next()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Load a row read from the store (not dirty).
    pub(crate) fn load(&mut self, k: K, v: V) {
        self.rows.insert(k, v);
    }

    /// The changed rows since the last call, as (key, value or deletion).
    pub(crate) fn drain_dirty(&mut self) -> Vec<(K, Option<&V>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let v = self.rows.get(&k);
                (k, v)
            })
            .collect()
    }
}
