//! Idempotency by record id (R-TIME-1) in memory bounded by the window, not by history; or,
//! with the window kept in the store, in memory that does not grow with traffic at all.
//!
//! A processed record's `(tenant, id)` is remembered as a 128-bit fingerprint in the bucket of
//! its event time. Buckets are 1/24 of the window wide; a bucket is forgotten, in memory and
//! in the store, once stream time is a whole window past its end. So an id is remembered for
//! at least the window and at most the window plus one bucket.
//!
//! Where the ids are looked up ([`DedupWindow::new`]):
//! - **In memory** (`simulate`, tests: the whole state is in memory anyway): one hash set of
//!   the window's ids, about 37 bytes an id. Flat under steady traffic, but it grows with the
//!   traffic rate (about 3.2 GB at 1,000 records/s over 24 hours).
//! - **In the store** (the runtime, RocksDB on disk): an index row per id, fingerprint →
//!   bucket, kept in the local store only: derived from the bucket rows below, it costs the
//!   changelog nothing, and a restore rebuilds what is missing. Memory holds only the ids
//!   since the last flush (one round), a few bytes per bucket and a fixed-size filter (two
//!   bloom filters of 4 MiB, one per generation of 32 buckets), whatever the traffic. The
//!   filter rules out nearly every new id without a store read; an id it cannot rule out is
//!   one store read. A forgotten bucket's index rows are deleted a bounded slice per flush,
//!   each after one read (an id remembered again since keeps its row); until then a row
//!   naming a bucket that is no longer in the window counts as absent.
//!
//! Store layout: one row per bucket and flush, `[T_DEDUP][bucket: i64 BE][chunk: u32 BE]` →
//! `[version 1][fingerprint: u128 LE]*`. A flush writes one row per bucket that gained ids,
//! never rewrites an old one, and forgetting a bucket deletes its rows. The index (store mode
//! only): `[T_DEDUP_INDEX][fingerprint: u128 BE][bucket: i64 BE]` → empty, written with
//! [`Store::write_local`]. The bucket is in the key so that forgetting a bucket deletes its
//! ids' index rows without reading them: an id remembered again in a newer bucket has a row
//! of its own. (Stores written before kept `[T_DEDUP_INDEX_FORMER][fingerprint]` → bucket;
//! a restore deletes those rows and indexes the ids anew.)
//!
//! Fingerprints are FNV-1a 128 over `tenant 0xFF id`: two different ids collide with
//! probability about 2^-128 per pair, so a false "duplicate" is not a practical concern.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::store::{Store, StoreError, Write};

/// The table tag of dedup rows in the store.
pub(crate) const T_DEDUP: u8 = b'd';
/// The table tag of the window's index rows (store mode): local to the store, not changelogged.
pub(crate) const T_DEDUP_INDEX: u8 = b'E';
/// The tag of the index rows of stores written before the bucket was in the index key.
pub(crate) const T_DEDUP_INDEX_FORMER: u8 = b'D';
const ROW_VERSION: u8 = 1;
/// The default window: 24 hours of stream time (SPEC R-TIME-1).
pub const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;
/// Buckets per window.
const BUCKETS: i64 = 24;
/// Index rows a flush deletes at least (store mode), when forgotten buckets are waiting: with
/// at least twice the ids the flush adds, the deletion keeps up with any traffic, and a flush
/// never holds a whole bucket's deletions at once.
const PURGE_PER_FLUSH: usize = 65_536;
/// Buckets per generation of the store mode's filter: more than the 26 buckets whose ids can
/// be alive at once (the window's 24, the current one, one more while a bucket ends), so
/// those fall in at most two consecutive generations.
const GENERATION: i64 = 32;
/// The store mode's filter: bytes per generation (two are kept), whatever the traffic.
const FILTER_BYTES: usize = 4 << 20;

/// The fingerprint of a record id.
pub fn fingerprint(tenant: &str, id: &str) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for b in tenant
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(id.bytes())
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// Hashes a fingerprint for the map: it is already uniform, so fold and mix its halves once.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64);
        // splitmix64's finaliser.
        let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = x ^ (x >> 31);
    }
}

/// A remembered id: the low 120 bits of its fingerprint, and in the top 8 bits the bucket it
/// was remembered in (modulo 256). Compared and hashed by the fingerprint bits only, so a
/// lookup finds an id whatever its bucket; the buckets alive at once (the window's 24, the
/// current one, and one more while a bucket ends) are fewer than 256, so their tags differ.
/// 120 bits leave two different ids colliding with probability about 2^-120 per pair.
#[derive(Clone, Copy, Debug)]
struct Remembered(u128);

const FINGERPRINT_BITS: u128 = (1 << 120) - 1;

impl Remembered {
    fn new(fp: u128, bucket: i64) -> Remembered {
        Remembered(fp & FINGERPRINT_BITS | u128::from(tag(bucket)) << 120)
    }

    fn tag(self) -> u8 {
        (self.0 >> 120) as u8
    }
}

/// The tag of a bucket in [`Remembered`].
fn tag(bucket: i64) -> u8 {
    bucket.rem_euclid(256) as u8
}

impl PartialEq for Remembered {
    fn eq(&self, other: &Remembered) -> bool {
        (self.0 ^ other.0) & FINGERPRINT_BITS == 0
    }
}

impl Eq for Remembered {}

impl std::hash::Hash for Remembered {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.0 & FINGERPRINT_BITS);
    }
}

/// A fixed-size filter of the ids remembered in store mode, so that most lookups of a new
/// id (nearly every record) need no store read: a bloom filter per generation of
/// [`GENERATION`] buckets, the two generations the live buckets can fall in. An id is set as
/// four bits of one 64-bit word, chosen by its fingerprint (already uniform). It never says
/// "absent" of a remembered id; as more ids than it was sized for arrive, it says "maybe"
/// more often, and the store answers. A generation's bits are cleared when a generation two
/// later begins: by then none of its buckets is alive.
#[derive(Debug)]
struct Filter {
    generations: [Option<(i64, Vec<u64>)>; 2],
    words: usize,
    /// An id was remembered in a generation older than those kept (adopted from the former
    /// layout): the filter can no longer rule anything out.
    bypass: bool,
}

impl Filter {
    fn new(bytes: usize) -> Filter {
        Filter {
            generations: [None, None],
            words: (bytes / 8).next_power_of_two().max(1),
            bypass: false,
        }
    }

    /// The word of `fp` and the four bits it sets in it. FNV-1a spreads similar ids (`m-1`,
    /// `m-2`, ...) poorly over its bits, so they are mixed first (splitmix64's finaliser).
    fn place(&self, fp: u128) -> (usize, u64) {
        let mix = |x: u64| {
            let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        let h = mix((fp as u64) ^ mix((fp >> 64) as u64));
        let word = (h >> 32) as usize & (self.words - 1);
        let bits = (0..4).fold(0u64, |m, i| m | 1 << ((h >> (6 * i)) & 63));
        (word, bits)
    }

    fn insert(&mut self, fp: u128, bucket: i64) {
        let generation = bucket.div_euclid(GENERATION);
        let (word, bits) = self.place(fp);
        if let Some((_, words)) = self
            .generations
            .iter_mut()
            .flatten()
            .find(|(g, _)| *g == generation)
        {
            words[word] |= bits;
            return;
        }
        // Only the newest generation and the one before it can hold live buckets: a new one
        // takes an empty slot or the oldest slot outside those two. An id of an older
        // generation (only adopted from the former layout) leaves the filter unable to rule
        // anything out.
        let newest = self
            .generations
            .iter()
            .flatten()
            .map(|(g, _)| *g)
            .fold(generation, i64::max);
        if generation < newest - 1 {
            self.bypass = true;
            return;
        }
        let free = (0..self.generations.len())
            .filter(|&i| {
                self.generations[i]
                    .as_ref()
                    .is_none_or(|(g, _)| *g < newest - 1)
            })
            .min_by_key(|&i| self.generations[i].as_ref().map_or(i64::MIN, |(g, _)| *g));
        match free {
            Some(i) => {
                let mut words = match self.generations[i].take() {
                    Some((_, mut words)) => {
                        words.fill(0);
                        words
                    }
                    None => vec![0; self.words],
                };
                words[word] |= bits;
                self.generations[i] = Some((generation, words));
            }
            None => self.bypass = true,
        }
    }

    fn may_contain(&self, fp: u128) -> bool {
        if self.bypass {
            return true;
        }
        let (word, bits) = self.place(fp);
        self.generations
            .iter()
            .flatten()
            .any(|(_, words)| words[word] & bits == bits)
    }

    /// [`Filter::may_contain`] for the generation of `bucket` alone (true when the filter
    /// does not hold that generation, and so cannot rule it out).
    fn may_contain_in(&self, fp: u128, bucket: i64) -> bool {
        let generation = bucket.div_euclid(GENERATION);
        match self
            .generations
            .iter()
            .flatten()
            .find(|(g, _)| *g == generation)
        {
            Some((_, words)) if !self.bypass => {
                let (word, bits) = self.place(fp);
                words[word] & bits == bits
            }
            _ => true,
        }
    }
}

#[derive(Default, Debug)]
struct Bucket {
    /// Fingerprints remembered since the last flush, for the store.
    unsaved: Vec<u128>,
    /// How many ids the bucket holds.
    ids: usize,
    /// Store rows written for this bucket (chunks 0..chunks).
    chunks: u32,
}

/// The ids processed in the last window of stream time (see the module's documentation).
#[derive(Debug)]
pub struct DedupWindow {
    window_ms: i64,
    bucket_ms: i64,
    /// Whether the window's ids are looked up in the store ([`T_DEDUP_INDEX`] rows).
    in_store: bool,
    /// In memory: every id of the window, each tagged with its bucket (about 26 bytes an id
    /// with the set's free room). In the store: the ids since the last flush, and ids a
    /// restore found without index rows until the next flush writes them.
    seen: HashSet<Remembered, BuildHasherDefault<FingerprintHasher>>,
    buckets: BTreeMap<i64, Bucket>,
    /// In memory: rows to delete at the next flush (forgotten buckets).
    deleted: Vec<Vec<u8>>,
    /// In the store: the rows of forgotten buckets whose index rows are still to delete.
    purge: VecDeque<(i64, u32)>,
    /// In the store: ids a restore found without index rows, to index at the next flush.
    unindexed: Vec<(u128, i64)>,
    /// Index rows of the former layout a restore found, to delete at the next flush.
    former_index: Vec<Vec<u8>>,
    /// In the store: index rows a flush deletes at least, when forgotten buckets wait.
    purge_per_flush: usize,
    /// In the store: what rules out most new ids without a store read.
    filter: Filter,
}

impl Default for DedupWindow {
    fn default() -> DedupWindow {
        DedupWindow::new(DEFAULT_WINDOW_MS, false)
    }
}

impl DedupWindow {
    /// A window of `window_ms` of stream time, its ids looked up in memory, or in the store
    /// when `in_store`.
    pub fn new(window_ms: i64, in_store: bool) -> DedupWindow {
        let window_ms = window_ms.max(1);
        DedupWindow {
            window_ms,
            bucket_ms: (window_ms / BUCKETS).max(1),
            in_store,
            seen: HashSet::default(),
            buckets: BTreeMap::new(),
            deleted: Vec::new(),
            purge: VecDeque::new(),
            unindexed: Vec::new(),
            former_index: Vec::new(),
            purge_per_flush: PURGE_PER_FLUSH,
            filter: Filter::new(if in_store { FILTER_BYTES } else { 8 }),
        }
    }

    /// How many ids the window remembers, in memory or in the store.
    pub fn len(&self) -> usize {
        self.buckets.values().map(|b| b.ids).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many ids are held in memory (all of them, unless the window is in the store).
    pub fn in_memory(&self) -> usize {
        self.seen.len()
    }

    /// Whether `(tenant, id)` was processed in the window: in memory, or else (in store mode)
    /// in `store`'s index.
    pub fn contains<S: Store + ?Sized>(
        &self,
        store: &S,
        tenant: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let fp = fingerprint(tenant, id);
        if self.seen.contains(&Remembered::new(fp, 0)) {
            return Ok(true);
        }
        if !self.in_store || !self.filter.may_contain(fp) {
            return Ok(false);
        }
        // One read per live bucket of a generation the filter cannot rule out, newest first
        // (a repeat is most often recent): only an id the filter cannot rule out gets here.
        for &bucket in self.buckets.keys().rev() {
            if self.filter.may_contain_in(fp, bucket) && self.indexed_in(store, fp, bucket)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `fp` has an index row in `bucket`.
    fn indexed_in<S: Store + ?Sized>(
        &self,
        store: &S,
        fp: u128,
        bucket: i64,
    ) -> Result<bool, StoreError> {
        Ok(store.get(&index_key(fp, bucket))?.is_some())
    }

    /// Whether a bucket is past the window at stream time `now`.
    fn expired(&self, bucket: i64, now: i64) -> bool {
        let end = bucket
            .saturating_add(1)
            .saturating_mul(self.bucket_ms)
            .saturating_add(self.window_ms);
        end <= now
    }

    /// Remember `(tenant, id)`, processed with event time `ts`, unless its bucket is already
    /// past the window at stream time `now` (an id that old is forgotten at once).
    pub fn insert(&mut self, tenant: &str, id: &str, ts: i64, now: i64) {
        self.insert_fingerprint(fingerprint(tenant, id), ts.div_euclid(self.bucket_ms), now);
    }

    fn insert_fingerprint(&mut self, fp: u128, bucket: i64, now: i64) {
        if self.expired(bucket, now) {
            return;
        }
        if self.seen.insert(Remembered::new(fp, bucket)) {
            let b = self.buckets.entry(bucket).or_default();
            b.unsaved.push(fp);
            b.ids += 1;
            if self.in_store {
                self.filter.insert(fp, bucket);
            }
        }
    }

    /// Forget every bucket past the window at stream time `now`: its ids leave the set (one
    /// pass over it per bucket, once every 1/24 of the window), and the set gives back room
    /// it no longer needs, so memory follows the traffic of the last window down as well as
    /// up. In store mode the bucket's rows wait for [`DedupWindow::take_changes`] to delete
    /// them with their index rows.
    pub fn expire(&mut self, now: i64) {
        let mut forgotten = false;
        while let Some((&bucket, _)) = self.buckets.first_key_value() {
            if !self.expired(bucket, now) {
                break;
            }
            let Some(b) = self.buckets.remove(&bucket) else {
                break;
            };
            // A tag another remembered bucket shares (only after adopting ids of the former
            // layout, which can be far apart) stays until that bucket goes: remembered
            // longer, never shorter.
            let t = tag(bucket);
            if !self.seen.is_empty() && !self.buckets.keys().any(|k| tag(*k) == t) {
                let before = self.seen.len();
                self.seen.retain(|r| r.tag() != t);
                forgotten |= self.seen.len() < before;
            }
            if self.in_store {
                self.unindexed.retain(|(_, b)| *b != bucket);
                self.purge
                    .extend((0..b.chunks).map(|chunk| (bucket, chunk)));
            } else {
                self.deleted
                    .extend((0..b.chunks).map(|chunk| row_key(bucket, chunk)));
            }
        }
        if forgotten && self.seen.capacity() > 4 * self.seen.len().max(1024) {
            self.seen.shrink_to(2 * self.seen.len());
        }
    }

    /// The store writes since the last call: new chunks and deleted buckets into `batch` (for
    /// the store and its changelog), and in store mode the index rows into `local` (for the
    /// store only). Reads `store` for the rows of forgotten buckets.
    pub(crate) fn take_changes<S: Store + ?Sized>(
        &mut self,
        store: &S,
        batch: &mut Vec<Write>,
        local: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        for key in self.deleted.drain(..) {
            batch.push((key, None));
        }
        local.extend(self.former_index.drain(..).map(|key| (key, None)));
        if self.in_store {
            let added: usize = self.buckets.values().map(|b| b.unsaved.len()).sum();
            self.purge_some(store, self.purge_per_flush.max(2 * added), batch, local)?;
            self.take_unindexed(local);
        }
        for (&bucket, b) in self.buckets.iter_mut() {
            if b.unsaved.is_empty() {
                continue;
            }
            let mut value = Vec::with_capacity(1 + 16 * b.unsaved.len());
            value.push(ROW_VERSION);
            for fp in b.unsaved.drain(..) {
                value.extend_from_slice(&fp.to_le_bytes());
                if self.in_store {
                    local.push(index_row(fp, bucket));
                }
            }
            b.unsaved.shrink_to(64);
            batch.push((row_key(bucket, b.chunks), Some(value)));
            b.chunks += 1;
        }
        if self.in_store {
            // What was flushed is looked up in the store from now on.
            self.seen.clear();
            if self.seen.capacity() > 65_536 {
                self.seen.shrink_to(0);
            }
        }
        Ok(())
    }

    /// The index rows of the ids a restore found without them ([`DedupWindow::restore`]), for
    /// a store that writes them at once: those ids are then looked up there, not in memory.
    pub(crate) fn take_unindexed(&mut self, local: &mut Vec<Write>) {
        local.extend(self.former_index.drain(..).map(|key| (key, None)));
        for (fp, bucket) in self.unindexed.drain(..) {
            self.seen.remove(&Remembered::new(fp, bucket));
            local.push(index_row(fp, bucket));
        }
        if self.seen.capacity() > 65_536 && self.seen.len() < 1024 {
            self.seen.shrink_to(0);
        }
    }

    /// Delete the rows of forgotten buckets, up to about `budget` ids: each id's index row in
    /// that bucket (an id remembered again since, in a later bucket, keeps the row it has
    /// there), then the bucket's row. Nothing is read but the bucket's row.
    fn purge_some<S: Store + ?Sized>(
        &mut self,
        store: &S,
        budget: usize,
        batch: &mut Vec<Write>,
        local: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        let mut spent = 0;
        while spent < budget {
            let Some(&(bucket, chunk)) = self.purge.front() else {
                break;
            };
            let key = row_key(bucket, chunk);
            if let Some(value) = store.get(&key)? {
                let (_, _, ids) = parse_row(&key, &value)?;
                for fp in ids {
                    local.push((index_key(fp, bucket), None));
                    spent += 1;
                }
                batch.push((key, None));
            }
            self.purge.pop_front();
        }
        Ok(())
    }

    /// Restore the window from `store`'s rows at stream time `now`. In memory, every id goes
    /// into the set. In the store, a row whose ids are indexed is only counted; the ids of a
    /// row without index rows (a store restored from the changelog, or written in memory
    /// mode) are held in memory and indexed at the next flush; a forgotten bucket's rows are
    /// queued for deletion.
    pub(crate) fn restore<S: Store + ?Sized>(
        &mut self,
        store: &S,
        now: i64,
    ) -> Result<(), StoreError> {
        // The former index layout's rows go (once); the ids they indexed have no row of the
        // current layout, so they are indexed anew below.
        store.scan_tag(T_DEDUP_INDEX_FORMER, &mut |key, _| {
            self.former_index.push(key.to_vec());
            Ok(())
        })?;
        store.scan_tag(T_DEDUP, &mut |key, value| {
            let (bucket, chunk, ids) = parse_row(key, value)?;
            if !self.in_store {
                self.load_ids(bucket, chunk, ids);
                return Ok(());
            }
            if self.expired(bucket, now) {
                self.purge.push_back((bucket, chunk));
                return Ok(());
            }
            let b = self.buckets.entry(bucket).or_default();
            b.chunks = b.chunks.max(chunk + 1);
            b.ids += ids.len();
            for fp in ids.clone() {
                self.filter.insert(fp, bucket);
            }
            let mut ids = ids.peekable();
            let indexed = match ids.peek() {
                Some(&first) => self.indexed_in(store, first, bucket)?,
                None => true,
            };
            if !indexed {
                for fp in ids {
                    self.seen.insert(Remembered::new(fp, bucket));
                    self.unindexed.push((fp, bucket));
                }
            }
            Ok(())
        })
    }

    /// Take the ids of one row into the set (memory mode).
    fn load_ids(&mut self, bucket: i64, chunk: u32, ids: impl Iterator<Item = u128>) {
        let b = self.buckets.entry(bucket).or_default();
        b.chunks = b.chunks.max(chunk + 1);
        for fp in ids {
            if self.seen.insert(Remembered::new(fp, bucket)) {
                b.ids += 1;
            }
        }
    }

    /// Take over an id from the former one-row-per-id layout (`seen` rows): it is remembered
    /// in its bucket and written in the new layout at the next flush.
    pub(crate) fn adopt(&mut self, tenant: &str, id: &str, ts: i64) {
        self.insert_fingerprint(
            fingerprint(tenant, id),
            ts.div_euclid(self.bucket_ms),
            i64::MIN,
        );
    }
}

/// Read one stored row (`key` starts with [`T_DEDUP`]): its bucket, chunk and ids.
pub(crate) fn parse_row<'a>(
    key: &[u8],
    value: &'a [u8],
) -> Result<(i64, u32, impl ExactSizeIterator<Item = u128> + Clone + 'a), StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("{key:?}"),
        reason: reason.to_string(),
    };
    let (Some(bucket), Some(chunk)) = (
        key.get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes),
        key.get(9..13)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes),
    ) else {
        return Err(corrupt("dedup row key is not [tag][bucket][chunk]"));
    };
    match value.split_first() {
        Some((&ROW_VERSION, ids)) if ids.len() % 16 == 0 => {
            let ids = ids.chunks_exact(16).map(|raw| {
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(raw);
                u128::from_le_bytes(bytes)
            });
            Ok((bucket, chunk, ids))
        }
        Some((&ROW_VERSION, _)) => Err(corrupt("dedup row length is not a multiple of 16")),
        _ => Err(corrupt("unknown dedup row version")),
    }
}

/// Read one index row (`key` starts with [`T_DEDUP_INDEX`], or [`T_DEDUP_INDEX_FORMER`]):
/// the bucket it names.
pub(crate) fn parse_index_row(key: &[u8], value: &[u8]) -> Result<i64, StoreError> {
    let bucket = match (key.first(), key.len()) {
        (Some(&T_DEDUP_INDEX), 25) if value.is_empty() => key.get(17..25),
        (Some(&T_DEDUP_INDEX_FORMER), 17) => Some(value),
        _ => None,
    };
    match bucket.and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(bucket) => Ok(i64::from_be_bytes(bucket)),
        None => Err(StoreError::Corrupt {
            key: format!("{key:?}"),
            reason: "dedup index row is not [tag][fingerprint][bucket] -> empty".into(),
        }),
    }
}

fn row_key(bucket: i64, chunk: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(T_DEDUP);
    key.extend_from_slice(&bucket.to_be_bytes());
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// The index row saying `fp` is remembered in `bucket`.
fn index_row(fp: u128, bucket: i64) -> Write {
    (index_key(fp, bucket), Some(Vec::new()))
}

fn index_key(fp: u128, bucket: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.push(T_DEDUP_INDEX);
    key.extend_from_slice(&fp.to_be_bytes());
    key.extend_from_slice(&bucket.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    const HOUR: i64 = 3_600_000;
    const MODES: [bool; 2] = [false, true];

    /// Write the window's changes into `store`, as a flush does.
    fn flush<S: Store>(w: &mut DedupWindow, store: &mut S) {
        let (mut batch, mut local) = (Vec::new(), Vec::new());
        w.take_changes(&*store, &mut batch, &mut local)
            .expect("changes");
        store.write_owned(batch).expect("write");
        store.write_local(local).expect("write");
    }

    fn has(w: &DedupWindow, store: &MemStore, tenant: &str, id: &str) -> bool {
        w.contains(store, tenant, id).expect("lookup")
    }

    fn rows(store: &MemStore, tag: u8) -> usize {
        store.map.keys().filter(|k| k[0] == tag).count()
    }

    #[test]
    fn ids_are_remembered_for_the_window_then_forgotten() {
        for in_store in MODES {
            let mut w = DedupWindow::new(24 * HOUR, in_store);
            let mut store = MemStore::default();
            w.insert("t", "a", 10 * HOUR, 10 * HOUR);
            assert!(has(&w, &store, "t", "a"), "before a flush");
            flush(&mut w, &mut store);
            assert!(has(&w, &store, "t", "a"), "after a flush");
            assert!(!has(&w, &store, "t", "b"));
            assert!(!has(&w, &store, "u", "a"));
            w.expire(10 * HOUR + 24 * HOUR - 1);
            assert!(has(&w, &store, "t", "a"), "still inside the window");
            w.expire(10 * HOUR + 25 * HOUR);
            assert!(
                !has(&w, &store, "t", "a"),
                "a bucket past the window is forgotten (in store: {in_store})"
            );
            assert!(w.is_empty());
            flush(&mut w, &mut store);
            assert!(store.map.is_empty(), "its rows are deleted");
        }
    }

    /// R-TIME-1: over two windows of steady traffic, each id is remembered exactly while its
    /// bucket is inside the window (checked against a plain map of id → bucket), and a window
    /// restored at any flush remembers the same ids: from the store as it is, and (in store
    /// mode) from the changelogged rows alone, without the index, as after a restore from
    /// the changelog.
    #[test]
    fn ids_are_remembered_exactly_for_their_bucket_window() {
        for in_store in MODES {
            let window = 24 * HOUR;
            let bucket_ms = window / BUCKETS;
            let mut w = DedupWindow::new(window, in_store);
            let mut model: BTreeMap<String, i64> = BTreeMap::new();
            let mut store = MemStore::default();
            let mut now = 0;
            for i in 0..2_000i64 {
                now += 97 * 60_000 / 4; // about 24 minutes a record: two windows in all
                let id = format!("r{i}");
                w.expire(now);
                w.insert("t", &id, now, now);
                model.insert(id, now.div_euclid(bucket_ms));
                if i % 50 != 0 {
                    continue;
                }
                flush(&mut w, &mut store);
                let mut changelog = store.clone();
                changelog.map.retain(|k, _| k[0] != T_DEDUP_INDEX);
                let mut restored = DedupWindow::new(window, in_store);
                restored.restore(&store, now).expect("restore");
                let mut rebuilt = DedupWindow::new(window, in_store);
                rebuilt.restore(&changelog, now).expect("restore");
                for (id, bucket) in &model {
                    let alive = !w.expired(*bucket, now);
                    assert_eq!(has(&w, &store, "t", id), alive, "{id} at {now}");
                    assert_eq!(has(&restored, &store, "t", id), alive, "restored {id}");
                    assert_eq!(has(&rebuilt, &changelog, "t", id), alive, "rebuilt {id}");
                }
                assert_eq!(w.len(), restored.len());
                assert_eq!(w.len(), rebuilt.len());
                if in_store {
                    assert_eq!(w.in_memory(), 0, "flushed ids are looked up in the store");
                    assert_eq!(
                        restored.in_memory(),
                        0,
                        "an indexed store is read, not loaded"
                    );
                    assert_eq!(
                        rows(&store, T_DEDUP_INDEX),
                        w.len(),
                        "one index row per id of the window: forgotten ones are deleted"
                    );
                    // The rebuilt window indexes what it found at its next flush, or at once
                    // when asked (the runtime, after a restore).
                    let mut at_once = changelog.clone();
                    let mut indexed = DedupWindow::new(window, in_store);
                    indexed.restore(&at_once, now).expect("restore");
                    let mut local = Vec::new();
                    indexed.take_unindexed(&mut local);
                    at_once.write_local(local).expect("write");
                    assert_eq!(indexed.in_memory(), 0);
                    assert_eq!(at_once, store, "the index written at once is the store's");
                    flush(&mut rebuilt, &mut changelog);
                    assert_eq!(rebuilt.in_memory(), 0);
                    assert_eq!(
                        changelog, store,
                        "the rebuilt index is the same as the store's"
                    );
                }
            }
        }
    }

    /// In store mode, an id remembered again after its bucket was forgotten, while that
    /// bucket's index rows wait to be deleted, stays remembered when they are.
    #[test]
    fn an_id_remembered_again_survives_its_old_buckets_purge() {
        let mut w = DedupWindow::new(24 * HOUR, true);
        w.purge_per_flush = 10;
        let mut store = MemStore::default();
        for i in 0..10 {
            w.insert("t", &format!("x{i}"), 0, 0);
        }
        flush(&mut w, &mut store);
        w.insert("t", "a", 0, 0);
        flush(&mut w, &mut store);
        w.expire(26 * HOUR);
        assert!(
            !has(&w, &store, "t", "a"),
            "forgotten before its rows are deleted"
        );
        w.insert("t", "a", 26 * HOUR, 26 * HOUR);
        flush(&mut w, &mut store);
        assert_eq!(
            rows(&store, T_DEDUP),
            2,
            "one flush deleted the first old row only"
        );
        flush(&mut w, &mut store);
        assert_eq!(rows(&store, T_DEDUP), 1, "the next one deleted a's old row");
        assert!(
            has(&w, &store, "t", "a"),
            "a stays remembered in its new bucket"
        );
        assert!(!has(&w, &store, "t", "x0"));
        assert_eq!(
            rows(&store, T_DEDUP_INDEX),
            1,
            "the x's index rows are deleted"
        );
    }

    /// R-TIME-1: a store whose index rows have the former layout (`[D][fingerprint]` →
    /// bucket) is restored to the current one: the former rows are deleted at the first
    /// flush, every id is indexed anew (the same rows a store written in the current layout
    /// has), and every id is still remembered.
    #[test]
    fn an_index_of_the_former_layout_is_rebuilt() {
        let mut w = DedupWindow::new(24 * HOUR, true);
        let mut store = MemStore::default();
        for i in 0..50 {
            w.insert("t", &format!("m-{i}"), (i % 3) * HOUR, 2 * HOUR);
        }
        flush(&mut w, &mut store);
        let current = store.clone();
        let former: BTreeMap<Vec<u8>, Vec<u8>> = store
            .map
            .iter()
            .map(|(k, v)| match parse_index_row(k, v) {
                Ok(bucket) if k[0] == T_DEDUP_INDEX => {
                    let mut key = vec![T_DEDUP_INDEX_FORMER];
                    key.extend_from_slice(&k[1..17]);
                    (key, bucket.to_be_bytes().to_vec())
                }
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let mut store = MemStore { map: former };
        assert_eq!(rows(&store, T_DEDUP_INDEX_FORMER), 50);
        let mut restored = DedupWindow::new(24 * HOUR, true);
        restored.restore(&store, 2 * HOUR).expect("restore");
        for i in 0..50 {
            assert!(has(&restored, &store, "t", &format!("m-{i}")), "m-{i}");
        }
        flush(&mut restored, &mut store);
        assert_eq!(store, current, "the current layout's rows, and no others");
        assert!(has(&restored, &store, "t", "m-7"));
        assert!(!has(&restored, &store, "t", "m-50"));
    }

    /// In store mode a flush deletes a bounded slice of a forgotten bucket's index rows;
    /// the rest count as absent meanwhile and go with later flushes.
    #[test]
    fn forgotten_index_rows_are_deleted_a_slice_per_flush() {
        let mut w = DedupWindow::new(24 * HOUR, true);
        w.purge_per_flush = 15;
        let mut store = MemStore::default();
        for chunk in 0..4 {
            for i in 0..10 {
                w.insert("t", &format!("{chunk}-{i}"), 0, 0);
            }
            flush(&mut w, &mut store);
        }
        w.expire(26 * HOUR);
        flush(&mut w, &mut store);
        assert_eq!(rows(&store, T_DEDUP), 2, "two rows of ten ids went");
        assert_eq!(rows(&store, T_DEDUP_INDEX), 20);
        assert!(
            !has(&w, &store, "t", "3-0"),
            "a row still there counts as absent"
        );
        flush(&mut w, &mut store);
        assert!(store.map.is_empty());
    }

    /// A store that counts its reads.
    #[derive(Default)]
    struct Counted {
        store: MemStore,
        reads: std::cell::Cell<usize>,
    }

    impl Store for Counted {
        fn entries(&self) -> Result<Vec<crate::store::Entry>, StoreError> {
            self.store.entries()
        }
        fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
            self.store.write(batch)
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.reads.set(self.reads.get() + 1);
            self.store.get(key)
        }
    }

    /// R-TIME-1, store mode: forgetting a bucket reads its rows of ids and nothing else (no
    /// read per id), and deletes every index row of that bucket.
    #[test]
    fn forgetting_a_bucket_reads_only_its_rows() {
        let mut w = DedupWindow::new(24 * HOUR, true);
        let mut store = Counted::default();
        for chunk in 0..3 {
            for i in 0..100 {
                w.insert("t", &format!("{chunk}-{i}"), 0, 0);
            }
            flush(&mut w, &mut store);
        }
        let reads = store.reads.get();
        w.expire(26 * HOUR);
        flush(&mut w, &mut store);
        assert_eq!(store.reads.get() - reads, 3, "one read per row of 100 ids");
        assert!(
            store.store.map.is_empty(),
            "every row and index row deleted"
        );
    }

    /// R-TIME-1, store mode: the filter answers nearly every new id without reading the
    /// store, never turns away a remembered one (before and after a restore), and keeps
    /// doing so across generations as stream time moves on.
    #[test]
    fn the_filter_spares_store_reads_and_misses_no_remembered_id() {
        let mut w = DedupWindow::new(24 * HOUR, true);
        let mut store = Counted::default();
        for day in 0..5i64 {
            let now = day * 24 * HOUR + HOUR;
            w.expire(now);
            for i in 0..2_000 {
                w.insert("t", &format!("{day}-{i}"), now, now);
            }
            flush(&mut w, &mut store);
            let mut restored = DedupWindow::new(24 * HOUR, true);
            restored.restore(&store, now).expect("restore");
            for window in [&w, &restored] {
                store.reads.set(0);
                for i in 0..2_000 {
                    let id = format!("{day}-{i}");
                    assert!(window.contains(&store, "t", &id).expect("lookup"), "{id}");
                }
                assert_eq!(
                    store.reads.get(),
                    2_000,
                    "a remembered id is read in the store"
                );
                store.reads.set(0);
                for i in 0..2_000 {
                    let new = format!("new-{day}-{i}");
                    assert!(!window.contains(&store, "t", &new).expect("lookup"));
                }
                assert!(
                    store.reads.get() < 20,
                    "{} of 2,000 new ids read the store on day {day}",
                    store.reads.get()
                );
            }
        }
    }

    /// Producers number their records (`m-1`, `m-2`, ...), which FNV-1a spreads poorly over
    /// its bits: the filter still rules out nearly every id it was not given.
    #[test]
    fn the_filter_rules_out_numbered_ids_it_was_not_given() {
        let mut filter = Filter::new(FILTER_BYTES);
        for i in 0..40_000 {
            filter.insert(fingerprint("t3", &format!("m-{i}")), 5);
        }
        assert!((0..40_000).all(|i| filter.may_contain(fingerprint("t3", &format!("m-{i}")))));
        let next = (40_000..80_000)
            .filter(|i| filter.may_contain(fingerprint("t3", &format!("m-{i}"))))
            .count();
        let other = (0..40_000)
            .filter(|i| filter.may_contain(fingerprint("t4", &format!("m-{i}"))))
            .count();
        assert!(
            next + other < 80,
            "{next} + {other} of 80,000 false positives"
        );
    }

    /// Ids adopted from the former layout can lie 256 buckets apart and share a tag:
    /// forgetting one bucket keeps the other's ids.
    #[test]
    fn a_bucket_sharing_a_tag_keeps_its_ids() {
        for in_store in MODES {
            let mut store = MemStore::default();
            let mut w = DedupWindow::new(24 * HOUR, in_store);
            w.adopt("t", "new", 256 * HOUR);
            w.adopt("t", "old", 0);
            flush(&mut w, &mut store);
            w.expire(256 * HOUR);
            assert!(!w.buckets.contains_key(&0), "the old bucket is forgotten");
            assert!(has(&w, &store, "t", "new"), "the newer bucket's id stays");
            w.expire(300 * HOUR);
            assert!(w.is_empty());
        }
    }

    #[test]
    fn an_id_older_than_the_window_is_not_remembered() {
        for in_store in MODES {
            let mut store = MemStore::default();
            let mut w = DedupWindow::new(24 * HOUR, in_store);
            w.insert("t", "old", 0, 30 * HOUR);
            flush(&mut w, &mut store);
            assert!(!has(&w, &store, "t", "old"));
            assert!(store.map.is_empty());
        }
    }

    #[test]
    fn rows_restore_the_same_window_and_expiry_deletes_them() {
        for in_store in MODES {
            let mut w = DedupWindow::new(24 * HOUR, in_store);
            let mut store = MemStore::default();
            w.insert("t", "a", HOUR, HOUR);
            flush(&mut w, &mut store);
            w.insert("t", "b", HOUR + 1, HOUR + 1);
            w.insert("t", "c", 5 * HOUR, 5 * HOUR);
            flush(&mut w, &mut store);
            assert_eq!(rows(&store, T_DEDUP), 3, "one new row per bucket and flush");

            let mut restored = DedupWindow::new(24 * HOUR, in_store);
            restored.restore(&store, 5 * HOUR).expect("restore");
            for id in ["a", "b", "c"] {
                assert!(has(&restored, &store, "t", id));
            }
            restored.expire(27 * HOUR);
            flush(&mut restored, &mut store);
            assert!(!has(&restored, &store, "t", "a") && has(&restored, &store, "t", "c"));
            assert_eq!(
                rows(&store, T_DEDUP),
                1,
                "the expired bucket's rows are deleted"
            );

            // A restore after the window: the rows of forgotten buckets are deleted at once.
            let mut late = DedupWindow::new(24 * HOUR, in_store);
            late.restore(&store, 40 * HOUR).expect("restore");
            late.expire(40 * HOUR);
            flush(&mut late, &mut store);
            assert!(store.map.is_empty(), "in store: {in_store}");
        }
    }
}
