//! The key-value store the processors' state lives in.
//!
//! The engine keeps its working state typed in memory ([`crate::state::State`]) and writes every
//! change through to a [`Store`]: an in-memory map in tests and `simulate`, RocksDB (with a
//! changelog topic) in the runtime. Opening an engine on a store restores the state exactly.

use hashbrown::Equivalent;
use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

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
/// What [`Store::scan_tag`] calls with each (key, value).
pub type RowVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Ordered bytes-to-bytes storage.
pub trait Store {
    /// Every entry, in key order.
    fn entries(&self) -> Result<Vec<Entry>, StoreError>;
    /// Apply a batch of writes (`None` deletes) atomically.
    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError>;
    /// [`Store::write`], taking the batch: a store that keeps the bytes moves them rather
    /// than copying them.
    fn write_owned(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.write(&batch)
    }
    /// The value of one key, as the writes so far left it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes of rows derived from the others (the dedup window's index), kept in this store
    /// only: a store with a changelog does not send them, and a restore rebuilds them. The
    /// engine hands them over after the rows they index, which must never be durable after
    /// them (the runtime's store writes them once its round is committed).
    fn write_local(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.write_owned(batch)
    }
    /// Call `f` with every entry whose key starts with `tag`, in key order, one at a time.
    fn scan_tag(&self, tag: u8, f: &mut RowVisitor) -> Result<(), StoreError> {
        for (k, v) in self.entries()? {
            if k.first() == Some(&tag) {
                f(&k, &v)?;
            }
        }
        Ok(())
    }
    /// Every entry whose key does not start with one of `tags`, in key order (what the engine
    /// loads into memory: archived rows stay in the store).
    fn entries_except(&self, tags: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let mut entries = self.entries()?;
        entries.retain(|(k, _)| k.first().is_none_or(|t| !tags.contains(t)));
        Ok(entries)
    }
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

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan_tag(&self, tag: u8, f: &mut RowVisitor) -> Result<(), StoreError> {
        for (k, v) in self.map.range(vec![tag]..) {
            if k.first() != Some(&tag) {
                break;
            }
            f(k, v)?;
        }
        Ok(())
    }

    fn write_owned(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        for (k, v) in batch {
            match v {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
        Ok(())
    }
}

/// The map a [`Table`] keeps its rows in: ordered ([`BTreeMap`], for tables read in key
/// order, like the timers) or hashed ([`Rows`], for tables only looked up by key).
pub trait RowMap<K, V>: Default {
    fn get_row<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized;
    fn get_row_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized;
    fn key_of<Q>(&self, k: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized;
    fn remove_row<Q>(&mut self, k: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized;
    fn insert_row(&mut self, k: K, v: V) -> Option<V>;
    fn row_count(&self) -> usize;
    fn keys_cloned(&self) -> Vec<K>;
}

/// [`RowMap`] for a map type whose methods have the standard names (`BTreeMap`, hashbrown's
/// `HashMap`): the two differ in their bounds only.
macro_rules! row_map {
    ($map:ty, $($bound:tt)+) => {
        impl<K: $($bound)+, V> RowMap<K, V> for $map {
            fn get_row<Q>(&self, k: &Q) -> Option<&V>
            where
                K: Borrow<Q>,
                Q: Ord + Hash + Eq + ?Sized,
            {
                self.get(k)
            }
            fn get_row_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
            where
                K: Borrow<Q>,
                Q: Ord + Hash + Eq + ?Sized,
            {
                self.get_mut(k)
            }
            fn key_of<Q>(&self, k: &Q) -> Option<&K>
            where
                K: Borrow<Q>,
                Q: Ord + Hash + Eq + ?Sized,
            {
                self.get_key_value(k).map(|(k, _)| k)
            }
            fn remove_row<Q>(&mut self, k: &Q) -> Option<(K, V)>
            where
                K: Borrow<Q>,
                Q: Ord + Hash + Eq + ?Sized,
            {
                self.remove_entry(k)
            }
            fn insert_row(&mut self, k: K, v: V) -> Option<V> {
                self.insert(k, v)
            }
            fn row_count(&self) -> usize {
                self.len()
            }
            fn keys_cloned(&self) -> Vec<K> {
                self.keys().cloned().collect()
            }
        }
    };
}

row_map!(BTreeMap<K, V>, Ord + Clone);
row_map!(Rows<K, V>, Hash + Eq + Clone);

/// A typed table that remembers which keys changed since the last flush; its rows in an
/// ordered map by default, or in a hash map ([`HashTable`]) when nothing reads them in order.
///
/// Changed keys are kept in a hash set (marking a key is one hash, whatever the table's size)
/// and sorted once when drained, so a flush writes them in key order, the same on every run.
///
/// While a record is being applied ([`Table::begin`]), the first change to each key keeps the
/// row as it was, so [`Table::rollback`] can put every row (and its changed mark) back when
/// the record is rejected: a record's changes are all applied, or none.
#[derive(Clone, Debug)]
pub struct Table<K: Ord + Clone + Hash, V: Clone, M = BTreeMap<K, V>> {
    rows: M,
    dirty: FxHashSet<K>,
    /// While `journaling`: key → (row before the record, changed mark before).
    journal: FxHashMap<K, (Option<V>, bool)>,
    journaling: bool,
}

/// A [`Table`] whose rows are in a hash map: looked up by key only.
pub type HashTable<K, V> = Table<K, V, Rows<K, V>>;

impl<K: Ord + Clone + Hash, V: Clone, M: RowMap<K, V>> Default for Table<K, V, M> {
    fn default() -> Self {
        Table {
            rows: M::default(),
            dirty: Default::default(),
            journal: Default::default(),
            journaling: false,
        }
    }
}

impl<K: Ord + Clone + Hash, V: Clone, M: RowMap<K, V>> Table<K, V, M> {
    /// Mark `k` changed; while a record is open, keep `before` (the row as it was) for a
    /// rollback the first time the record changes `k`. Callers look the row up once and hand
    /// over what they found, so a change costs one search of the rows.
    fn note(&mut self, k: &K, before: impl FnOnce() -> Option<V>) {
        if self.journaling && !self.journal.contains_key(k) {
            let was_dirty = self.dirty.contains(k);
            self.journal.insert(k.clone(), (before(), was_dirty));
        }
        if !self.dirty.contains(k) {
            self.dirty.insert(k.clone());
        }
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
        self.dirty.extend(self.rows.keys_cloned());
    }

    /// Undo every change since [`Table::begin`].
    pub fn rollback(&mut self) {
        self.journaling = false;
        for (k, (row, was_dirty)) in self.journal.drain() {
            match row {
                Some(v) => self.rows.insert_row(k.clone(), v),
                None => self.rows.remove_row(&k).map(|(_, v)| v),
            };
            if !was_dirty {
                self.dirty.remove(&k);
            }
        }
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        self.rows.get_row(k)
    }

    pub fn contains<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        self.rows.get_row(k).is_some()
    }

    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        let first = self.journaling && !self.journal.contains_key(k);
        if first || !self.dirty.contains(k) {
            let key = self.rows.key_of(k)?.clone();
            if first {
                let was_dirty = self.dirty.contains(k);
                let row = self.rows.get_row(k).cloned();
                self.journal.insert(key.clone(), (row, was_dirty));
            }
            self.dirty.insert(key);
        }
        self.rows.get_row_mut(k)
    }

    /// The row for `k`, inserted with `make()` when missing; marked changed.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if self.rows.get_row(&k).is_none() {
            self.note(&k, || None);
            self.rows.insert_row(k.clone(), make());
        } else {
            let rows = &self.rows;
            let before = || rows.get_row(&k).cloned();
            if self.journaling && !self.journal.contains_key(&k) {
                let was_dirty = self.dirty.contains(&k);
                self.journal.insert(k.clone(), (before(), was_dirty));
            }
            if !self.dirty.contains(&k) {
                self.dirty.insert(k.clone());
            }
        }
        self.rows
            .get_row_mut(&k)
            .unwrap_or_else(|| unreachable!("present or inserted above"))
    }

    pub fn insert(&mut self, k: K, v: V) {
        let before = self.rows.insert_row(k.clone(), v);
        self.note(&k, || before);
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        self.remove_entry(k).map(|(_, v)| v)
    }

    /// Remove a row, returning its key as stored and its value.
    pub fn remove_entry<Q>(&mut self, k: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        let (key, v) = self.rows.remove_row(k)?;
        self.note(&key, || Some(v.clone()));
        Some((key, v))
    }

    pub fn len(&self) -> usize {
        self.rows.row_count()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.row_count() == 0
    }

    /// Load a row read from the store (not dirty).
    pub(crate) fn load(&mut self, k: K, v: V) {
        self.rows.insert_row(k, v);
    }

    /// The changed rows since the last call, as (key, value or deletion).
    pub(crate) fn drain_dirty(&mut self) -> Vec<(K, Option<&V>)> {
        let mut dirty: Vec<K> = self.dirty.drain().collect();
        dirty.sort_unstable();
        dirty
            .into_iter()
            .map(|k| {
                let v = self.rows.get_row(&k);
                (k, v)
            })
            .collect()
    }
}

impl<K: Ord + Clone + Hash, V: Clone> Table<K, V> {
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter()
    }

    pub fn range<R: std::ops::RangeBounds<K>>(&self, r: R) -> impl Iterator<Item = (&K, &V)> {
        self.rows.range(r)
    }

    pub fn first(&self) -> Option<(&K, &V)> {
        self.rows.iter().next()
    }
}

impl<K: Ord + Clone + Hash, V: Clone> HashTable<K, V> {
    /// Every row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter()
    }
}

/// What a record changed, for a rollback: each row's value as it was before the record's
/// first change to it. A row remembers the record (`epoch`) that last journaled it, so it is
/// journaled once per record, whatever the record does to it afterwards.
#[derive(Clone, Debug)]
pub(crate) struct Journal<E> {
    entries: Vec<E>,
    epoch: u64,
    journaling: bool,
}

impl<E> Default for Journal<E> {
    fn default() -> Self {
        Journal {
            entries: Vec::new(),
            epoch: 0,
            journaling: false,
        }
    }
}

impl<E> Journal<E> {
    /// Start keeping what the next record changes.
    pub(crate) fn begin(&mut self) {
        self.entries.clear();
        self.epoch += 1;
        self.journaling = true;
    }

    /// Keep what the record changed.
    pub(crate) fn commit(&mut self) {
        self.entries.clear();
        self.journaling = false;
    }

    /// The record's entries, to undo it; journaling stops.
    pub(crate) fn take(&mut self) -> Vec<E> {
        self.journaling = false;
        std::mem::take(&mut self.entries)
    }

    /// Journal `entry()` if this is the current record's first change to the row whose
    /// marks are `marks`.
    pub(crate) fn first_change(&mut self, marks: &mut Marks, entry: impl FnOnce() -> E) {
        if self.journaling && marks.epoch() != self.epoch {
            marks.set_epoch(self.epoch);
            self.entries.push(entry());
        }
    }
}

/// A row's two marks in one word: whether it changed since the last flush (the top bit) and
/// the record that last journaled it (the other 63 bits: a [`Journal`] counts one per record,
/// so they never run out). One word instead of two: every row of every table carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks(u64);

const DIRTY: u64 = 1 << 63;

impl Marks {
    /// Changed since the last flush.
    pub(crate) fn dirty(self) -> bool {
        self.0 & DIRTY != 0
    }

    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        if dirty {
            self.0 |= DIRTY;
        } else {
            self.0 &= !DIRTY;
        }
    }

    fn epoch(self) -> u64 {
        self.0 & !DIRTY
    }

    fn set_epoch(&mut self, epoch: u64) {
        self.0 = (self.0 & DIRTY) | (epoch & !DIRTY);
    }
}

/// A hash map with the fast (non-cryptographic) hasher: keys here come from our own state.
pub type Rows<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// One row of a [`TenantTable`]: the value (`None` once deleted, until the deletion is
/// flushed), whether it changed since the last flush, and the record that last journaled it.
#[derive(Clone, Debug)]
struct Slot<V> {
    value: Option<Box<V>>,
    marks: Marks,
}

/// A journal entry of a [`TenantTable`]: (tenant, id, the row before the record, its changed
/// mark before).
type Journaled<I, V> = (Arc<str>, I, Option<Box<V>>, bool);

/// A typed table keyed by (tenant, id): the rows of each tenant in a hash map of their own.
///
/// Lookups take `&str` (or any borrowed form of the id) and allocate nothing; a tenant's rows
/// are reachable without scanning the others'. Where order matters (a flush, a tenant's rows
/// walked by a processor) keys are sorted when asked, so every run is the same.
///
/// Changes are tracked in the rows themselves: a row changed since the last flush carries a
/// flag (its key is listed once), and a deleted row stays as a tombstone until flushed. While
/// a record is applied ([`TenantTable::begin`]), the first change to each row keeps its value
/// as it was, so [`TenantTable::rollback`] restores it: a record's changes are all applied, or
/// none.
#[derive(Clone, Debug)]
pub struct TenantTable<I: Hash + Eq + Ord + Clone, V: Clone> {
    /// Tenant name (one shared string, cloned into change marks and the journal) → rows.
    tenants: Rows<Arc<str>, Rows<I, Slot<V>>>,
    /// Rows flagged dirty (a key may repeat after a rollback; the flag decides).
    dirty: Vec<(Arc<str>, I)>,
    /// While a record is applied: (tenant, id, value before the record, dirty flag before).
    journal: Journal<Journaled<I, V>>,
    /// Rows with a value (tombstones excluded).
    len: usize,
}

impl<I: Hash + Eq + Ord + Clone, V: Clone> Default for TenantTable<I, V> {
    fn default() -> Self {
        TenantTable {
            tenants: Rows::default(),
            dirty: Vec::new(),
            journal: Journal::default(),
            len: 0,
        }
    }
}

impl<I: Hash + Eq + Ord + Clone, V: Clone> TenantTable<I, V> {
    fn slot<Q>(&self, tenant: &str, id: &Q) -> Option<&Slot<V>>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        self.tenants.get(tenant)?.get(id)
    }

    /// Mark a slot changed and journal its value the first time the record changes it.
    fn touch(
        slot: &mut Slot<V>,
        tenant: &Arc<str>,
        id: &I,
        journal: &mut Journal<Journaled<I, V>>,
        dirty: &mut Vec<(Arc<str>, I)>,
    ) {
        let (value, was_dirty) = (&slot.value, slot.marks.dirty());
        journal.first_change(&mut slot.marks, || {
            (Arc::clone(tenant), id.clone(), value.clone(), was_dirty)
        });
        if !slot.marks.dirty() {
            slot.marks.set_dirty(true);
            dirty.push((Arc::clone(tenant), id.clone()));
        }
    }

    /// Start keeping what the next record changes.
    pub fn begin(&mut self) {
        self.journal.begin();
    }

    /// Keep what the record changed.
    pub fn commit(&mut self) {
        self.journal.commit();
    }

    /// Undo every change since [`TenantTable::begin`].
    pub fn rollback(&mut self) {
        for (tenant, id, before, was_dirty) in self.journal.take() {
            let Some(rows) = self.tenants.get_mut(&*tenant) else {
                continue;
            };
            let Some(slot) = rows.get_mut(&id) else {
                continue;
            };
            match (&slot.value, &before) {
                (Some(_), None) => self.len -= 1,
                (None, Some(_)) => self.len += 1,
                _ => {}
            }
            if before.is_none() && !was_dirty {
                rows.remove(&id);
            } else {
                slot.value = before;
                slot.marks.set_dirty(was_dirty);
            }
        }
    }

    pub fn get<Q>(&self, tenant: &str, id: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        self.slot(tenant, id)?.value.as_deref()
    }

    pub fn contains<Q>(&self, tenant: &str, id: &Q) -> bool
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        self.get(tenant, id).is_some()
    }

    /// The key a row is stored under (a shared id can be handed on from it).
    pub fn key_of<Q>(&self, tenant: &str, id: &Q) -> Option<&I>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        let (k, slot) = self.tenants.get(tenant)?.get_key_value(id)?;
        slot.value.as_ref().map(|_| k)
    }

    /// The slot of an existing row, marked changed; and the count of rows with a value.
    fn existing_for_change<Q>(&mut self, tenant: &str, id: &Q) -> Option<(&mut Slot<V>, &mut usize)>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        let (tenant, rows) = self.tenants.get_key_value_mut(tenant)?;
        let (key, slot) = rows.get_key_value_mut(id)?;
        slot.value.as_ref()?;
        Self::touch(slot, tenant, key, &mut self.journal, &mut self.dirty);
        Some((slot, &mut self.len))
    }

    /// The row, to change in place (marked changed).
    pub fn get_mut<Q>(&mut self, tenant: &str, id: &Q) -> Option<&mut V>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        let (slot, _) = self.existing_for_change(tenant, id)?;
        slot.value.as_deref_mut()
    }

    /// The slot for (tenant, id), made empty when missing, marked changed; and the count of
    /// rows with a value, to keep up to date.
    fn slot_for_change(&mut self, tenant: &str, id: I) -> (&mut Slot<V>, &mut usize) {
        let TenantTable {
            tenants,
            dirty,
            journal,
            len,
        } = self;
        if !tenants.contains_key(tenant) {
            tenants.insert(Arc::from(tenant), Rows::default());
        }
        let Some((tenant, rows)) = tenants.get_key_value_mut(tenant) else {
            unreachable!("inserted above")
        };
        let (key, slot) = rows.get_or_insert_slot(id);
        Self::touch(slot, tenant, &key, journal, dirty);
        (slot, len)
    }

    /// The row for (tenant, id), inserted with `make()` when missing; marked changed.
    pub fn get_or_insert_with(&mut self, tenant: &str, id: I, make: impl FnOnce() -> V) -> &mut V {
        let (slot, len) = self.slot_for_change(tenant, id);
        if slot.value.is_none() {
            *len += 1;
        }
        slot.value.get_or_insert_with(|| Box::new(make()))
    }

    pub fn insert(&mut self, tenant: &str, id: I, v: V) {
        let (slot, len) = self.slot_for_change(tenant, id);
        if slot.value.replace(Box::new(v)).is_none() {
            *len += 1;
        }
    }

    pub fn remove<Q>(&mut self, tenant: &str, id: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        let (slot, len) = self.existing_for_change(tenant, id)?;
        *len -= 1;
        slot.value.take().map(|v| *v)
    }

    /// The ids of a tenant's rows, in order.
    pub fn ids_of(&self, tenant: &str) -> Vec<I> {
        let mut ids: Vec<I> = self
            .tenants
            .get(tenant)
            .into_iter()
            .flat_map(|rows| rows.iter())
            .filter(|(_, s)| s.value.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A tenant's rows, in id order.
    pub fn rows_of(&self, tenant: &str) -> Vec<(&I, &V)> {
        let mut rows: Vec<(&I, &V)> = self
            .tenants
            .get(tenant)
            .into_iter()
            .flat_map(|rows| rows.iter())
            .filter_map(|(id, s)| s.value.as_deref().map(|v| (id, v)))
            .collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows
    }

    /// How many rows a tenant has.
    pub fn count_of(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, |rows| {
            rows.values().filter(|s| s.value.is_some()).count()
        })
    }

    /// The tenants with rows, in order.
    pub fn tenants(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self
            .tenants
            .iter()
            .filter(|(_, rows)| rows.values().any(|s| s.value.is_some()))
            .map(|(t, _)| &**t)
            .collect();
        t.sort_unstable();
        t
    }

    /// Every row as ((tenant, id), value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = ((&str, &I), &V)> {
        let mut rows: Vec<((&str, &I), &V)> = self
            .tenants
            .iter()
            .flat_map(|(t, rows)| {
                rows.iter()
                    .filter_map(move |(id, s)| s.value.as_deref().map(|v| ((&**t, id), v)))
            })
            .collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Mark every row changed (tests re-encode whole stores).
    #[cfg(test)]
    pub(crate) fn mark_all_changed(&mut self) {
        for (t, rows) in self.tenants.iter_mut() {
            for (id, s) in rows.iter_mut() {
                if !s.marks.dirty() {
                    s.marks.set_dirty(true);
                    self.dirty.push((Arc::clone(t), id.clone()));
                }
            }
        }
    }

    /// Whether memory has a say on (tenant, id): a row, or its deletion not yet flushed.
    pub(crate) fn holds<Q>(&self, tenant: &str, id: &Q) -> bool
    where
        Q: Hash + Equivalent<I> + ?Sized,
    {
        self.slot(tenant, id).is_some()
    }

    /// Drop from memory the rows `keep` refuses; not from the store, where they stay (no
    /// deletion is written). Rows changed since the last flush stay: call it after one.
    pub(crate) fn evict(&mut self, mut keep: impl FnMut(&str, &I) -> bool) {
        let mut evicted = 0;
        for (tenant, rows) in self.tenants.iter_mut() {
            rows.retain(|id, slot| {
                let stays = slot.marks.dirty() || keep(tenant, id);
                if !stays && slot.value.is_some() {
                    evicted += 1;
                }
                stays
            });
        }
        self.tenants.retain(|_, rows| !rows.is_empty());
        self.len -= evicted;
    }

    /// Load a row read from the store (not dirty).
    pub(crate) fn load(&mut self, tenant: String, id: I, v: V) {
        if !self.tenants.contains_key(tenant.as_str()) {
            self.tenants
                .insert(Arc::from(tenant.as_str()), Rows::default());
        }
        let Some(rows) = self.tenants.get_mut(tenant.as_str()) else {
            unreachable!("inserted above")
        };
        let slot = Slot {
            value: Some(Box::new(v)),
            marks: Marks::default(),
        };
        if rows.insert(id, slot).is_none_or(|s| s.value.is_none()) {
            self.len += 1;
        }
    }

    /// Every row with its key, to change in place without marking it changed: for what a
    /// load derives (a value sharing its key's string), never for a change to keep.
    pub(crate) fn loaded_rows_mut(&mut self) -> impl Iterator<Item = (&I, &mut V)> {
        self.tenants
            .values_mut()
            .flat_map(|rows| rows.iter_mut())
            .filter_map(|(id, s)| s.value.as_deref_mut().map(|v| (id, v)))
    }

    /// Hand every row changed since the last call to `write`, as (tenant, id, value or
    /// deletion); deleted rows then leave memory. Rows come in the order they first changed,
    /// which the records decide, so every run writes the same batch: sorting the keys (as
    /// this did) cost about a tenth of the engine's work on the bench's workload.
    pub(crate) fn drain_dirty<E>(
        &mut self,
        mut write: impl FnMut(&str, &I, Option<&V>) -> Result<(), E>,
    ) -> Result<(), E> {
        // A key listed twice (changed again after a rollback) is written once: its flag is
        // cleared the first time.
        let dirty = std::mem::take(&mut self.dirty);
        let mut result = Ok(());
        for (tenant, id) in &dirty {
            let Some(rows) = self.tenants.get_mut(&**tenant) else {
                continue;
            };
            let Some(slot) = rows.get_mut(id) else {
                continue;
            };
            if !slot.marks.dirty() {
                continue;
            }
            if result.is_ok() {
                result = write(tenant, id, slot.value.as_deref());
            }
            slot.marks.set_dirty(false);
            if slot.value.is_none() {
                rows.remove(id);
                if rows.is_empty() {
                    self.tenants.remove(&**tenant);
                }
            }
        }
        result
    }
}

/// `entry`-like access to a tenant's rows keyed by an owned id.
trait SlotMap<I, V> {
    /// The (key, slot) for `id`, inserting an empty slot when missing.
    fn get_or_insert_slot(&mut self, id: I) -> (I, &mut Slot<V>);
}

impl<I: Hash + Eq + Clone, V> SlotMap<I, V> for Rows<I, Slot<V>> {
    fn get_or_insert_slot(&mut self, id: I) -> (I, &mut Slot<V>) {
        let key = id.clone();
        let slot = self.entry(id).or_insert(Slot {
            value: None,
            marks: Marks::default(),
        });
        (key, slot)
    }
}
