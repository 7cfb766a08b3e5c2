//! The key-value store the processors' state lives in.
//!
//! The engine keeps its working state typed in memory ([`crate::state::State`]) and writes every
//! change through to a [`Store`]: an in-memory map in tests and `simulate`, RocksDB (with a
//! changelog topic) in the runtime. Opening an engine on a store restores the state exactly.

use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::btree_map::Entry as RowEntry;
use std::collections::BTreeMap;
use std::hash::Hash;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O failed: {0}")]
    Io(String),
    #[error("state row {key} cannot be read: {reason} (`switchboard state list --unreadable` finds it, `switchboard state delete` removes it)")]
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
///
/// Changed keys are kept in a hash set (marking a key is one hash, whatever the table's size)
/// and sorted once when drained, so a flush writes them in key order, the same on every run.
///
/// While a record is being applied ([`Table::begin`]), the first change to each key keeps the
/// row as it was, so [`Table::rollback`] can put every row (and its changed mark) back when
/// the record is rejected: a record's changes are all applied, or none.
#[derive(Clone, Debug)]
pub struct Table<K: Ord + Clone + Hash, V: Clone> {
    rows: BTreeMap<K, V>,
    dirty: FxHashSet<K>,
    /// While `journaling`: key → (row before the record, changed mark before).
    journal: FxHashMap<K, (Option<V>, bool)>,
    journaling: bool,
}

impl<K: Ord + Clone + Hash, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            dirty: Default::default(),
            journal: Default::default(),
            journaling: false,
        }
    }
}

impl<K: Ord + Clone + Hash, V: Clone> Table<K, V> {
    /// Mark `k` changed; while a record is open, keep `before` (the row as it was) for a
    /// rollback the first time the record changes `k`. Callers look the row up once and hand
    /// over what they found, so a change costs one search of the rows.
    fn note(&mut self, k: &K, before: impl FnOnce() -> Option<V>) {
        if self.journaling && !self.journal.contains_key(k) {
            let was_dirty = self.dirty.contains(k);
            self.journal.insert(k.clone(), (before(), was_dirty));
        }
        self.dirty.insert(k.clone());
    }

    /// Start keeping what the next record changes.
    pub fn begin(&mut self) {
        self.journal.clear();
        self.journaling = true;
    }

    /// Keep what the record changed.
    pub fn commit(&mut self) {
        self.journal.clear();
        self.journaling = false;
    }

    /// Mark every row changed (tests re-encode whole stores).
    #[cfg(test)]
    pub(crate) fn mark_all_changed(&mut self) {
        self.dirty.extend(self.rows.keys().cloned());
    }

    /// Undo every change since [`Table::begin`].
    pub fn rollback(&mut self) {
        self.journaling = false;
        for (k, (row, was_dirty)) in self.journal.drain() {
            match row {
                Some(v) => self.rows.insert(k.clone(), v),
                None => self.rows.remove(&k),
            };
            if !was_dirty {
                self.dirty.remove(&k);
            }
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.rows.get(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.rows.contains_key(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let v = self.rows.get_mut(k)?;
        if self.journaling && !self.journal.contains_key(k) {
            let was_dirty = self.dirty.contains(k);
            self.journal.insert(k.clone(), (Some(v.clone()), was_dirty));
        }
        self.dirty.insert(k.clone());
        Some(v)
    }

    /// The row for `k`, inserted with `make()` when missing; marked changed.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let first = self.journaling && !self.journal.contains_key(&k);
        let was_dirty = self.dirty.contains(&k);
        self.dirty.insert(k.clone());
        match self.rows.entry(k) {
            RowEntry::Occupied(row) => {
                if first {
                    let before = (Some(row.get().clone()), was_dirty);
                    self.journal.insert(row.key().clone(), before);
                }
                row.into_mut()
            }
            RowEntry::Vacant(row) => {
                if first {
                    self.journal.insert(row.key().clone(), (None, was_dirty));
                }
                row.insert(make())
            }
        }
    }

    pub fn insert(&mut self, k: K, v: V) {
        let before = self.rows.insert(k.clone(), v);
        self.note(&k, || before);
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.rows.remove(k)?;
        self.note(k, || Some(v.clone()));
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
        let mut dirty: Vec<K> = self.dirty.drain().collect();
        dirty.sort_unstable();
        dirty
            .into_iter()
            .map(|k| {
                let v = self.rows.get(&k);
                (k, v)
            })
            .collect()
    }
}
