//! Idempotency by record id (R-TIME-1) in memory bounded by the window, not by history.
//!
//! A processed record's `(tenant, id)` is remembered as a 128-bit fingerprint in the bucket of
//! its event time. Buckets are 1/24 of the window wide; a bucket is forgotten, in memory and
//! in the store, once stream time is a whole window past its end. So an id is remembered for
//! at least the window and at most the window plus one bucket, and memory holds only the ids
//! of the last window: it stays flat under steady traffic, however long the engine runs.
//! (The previous design kept a row, a timer and a timer-index row per record id, about 1 KB
//! each; see docs/decisions.md.)
//!
//! Store layout: one row per bucket and flush, `[T_DEDUP][bucket: i64 BE][chunk: u32 BE]` →
//! `[version 1][fingerprint: u128 LE]*`. A flush writes one row per bucket that gained ids,
//! never rewrites an old one, and forgetting a bucket deletes its rows.
//!
//! Fingerprints are FNV-1a 128 over `tenant 0xFF id`: two different ids collide with
//! probability about 2^-128 per pair, so a false "duplicate" is not a practical concern.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::store::{StoreError, Write};

/// The table tag of dedup rows in the store.
pub(crate) const T_DEDUP: u8 = b'd';
const ROW_VERSION: u8 = 1;
/// The default window: 24 hours of stream time (SPEC R-TIME-1).
pub const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;
/// Buckets per window.
const BUCKETS: i64 = 24;

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

#[derive(Default, Debug)]
struct Bucket {
    /// Fingerprints remembered since the last flush, for the store.
    unsaved: Vec<u128>,
    /// How many ids the bucket holds.
    ids: usize,
    /// Store rows written for this bucket (chunks 0..chunks).
    chunks: u32,
}

/// The ids processed in the last window of stream time: one set of 16-byte entries, each
/// tagged with its bucket (about 26 bytes an id with the set's free room; a map from id to
/// bucket beside per-bucket lists took 86).
#[derive(Debug)]
pub struct DedupWindow {
    window_ms: i64,
    bucket_ms: i64,
    seen: HashSet<Remembered, BuildHasherDefault<FingerprintHasher>>,
    buckets: BTreeMap<i64, Bucket>,
    /// Rows to delete at the next flush (forgotten buckets).
    deleted: Vec<Vec<u8>>,
}

impl Default for DedupWindow {
    fn default() -> DedupWindow {
        DedupWindow::new(DEFAULT_WINDOW_MS)
    }
}

impl DedupWindow {
    pub fn new(window_ms: i64) -> DedupWindow {
        let window_ms = window_ms.max(1);
        DedupWindow {
            window_ms,
            bucket_ms: (window_ms / BUCKETS).max(1),
            seen: HashSet::default(),
            buckets: BTreeMap::new(),
            deleted: Vec::new(),
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    pub fn contains(&self, tenant: &str, id: &str) -> bool {
        self.seen
            .contains(&Remembered::new(fingerprint(tenant, id), 0))
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
        }
    }

    /// Forget every bucket past the window at stream time `now`: its ids leave the set (one
    /// pass over it per bucket, once every 1/24 of the window), and the set gives back room
    /// it no longer needs, so memory follows the traffic of the last window down as well as
    /// up.
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
            if b.ids > 0 && !self.buckets.keys().any(|k| tag(*k) == t) {
                self.seen.retain(|r| r.tag() != t);
                forgotten = true;
            }
            for chunk in 0..b.chunks {
                self.deleted.push(row_key(bucket, chunk));
            }
        }
        if forgotten && self.seen.capacity() > 4 * self.seen.len().max(1024) {
            self.seen.shrink_to(2 * self.seen.len());
        }
    }

    /// The store writes since the last call: new chunks and deleted buckets.
    pub(crate) fn take_changes(&mut self, batch: &mut Vec<Write>) {
        for key in self.deleted.drain(..) {
            batch.push((key, None));
        }
        for (&bucket, b) in self.buckets.iter_mut() {
            if b.unsaved.is_empty() {
                continue;
            }
            let mut value = Vec::with_capacity(1 + 16 * b.unsaved.len());
            value.push(ROW_VERSION);
            for fp in b.unsaved.drain(..) {
                value.extend_from_slice(&fp.to_le_bytes());
            }
            b.unsaved.shrink_to(64);
            batch.push((row_key(bucket, b.chunks), Some(value)));
            b.chunks += 1;
        }
    }

    /// Load one stored row (`key` starts with [`T_DEDUP`]).
    pub(crate) fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
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
                let b = self.buckets.entry(bucket).or_default();
                b.chunks = b.chunks.max(chunk + 1);
                for raw in ids.chunks_exact(16) {
                    let mut bytes = [0u8; 16];
                    bytes.copy_from_slice(raw);
                    let fp = u128::from_le_bytes(bytes);
                    if self.seen.insert(Remembered::new(fp, bucket)) {
                        b.ids += 1;
                    }
                }
                Ok(())
            }
            Some((&ROW_VERSION, _)) => Err(corrupt("dedup row length is not a multiple of 16")),
            _ => Err(corrupt("unknown dedup row version")),
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

fn row_key(bucket: i64, chunk: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(T_DEDUP);
    key.extend_from_slice(&bucket.to_be_bytes());
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    /// Write the window's changes into `store`, as a flush does.
    fn flush(w: &mut DedupWindow, store: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut batch = Vec::new();
        w.take_changes(&mut batch);
        for (k, v) in batch {
            match v {
                Some(v) => store.insert(k, v),
                None => store.remove(&k),
            };
        }
    }

    #[test]
    fn ids_are_remembered_for_the_window_then_forgotten() {
        let mut w = DedupWindow::new(24 * HOUR);
        w.insert("t", "a", 10 * HOUR, 10 * HOUR);
        assert!(w.contains("t", "a"));
        assert!(!w.contains("t", "b"));
        assert!(!w.contains("u", "a"));
        w.expire(10 * HOUR + 24 * HOUR - 1);
        assert!(w.contains("t", "a"), "still inside the window");
        w.expire(10 * HOUR + 25 * HOUR);
        assert!(
            !w.contains("t", "a"),
            "a bucket past the window is forgotten"
        );
        assert!(w.is_empty());
    }

    /// R-TIME-1: over two windows of steady traffic, each id is remembered exactly while its
    /// bucket is inside the window (checked against a plain map of id → bucket), and a window
    /// restored from its rows at any flush remembers the same ids.
    #[test]
    fn ids_are_remembered_exactly_for_their_bucket_window() {
        let window = 24 * HOUR;
        let bucket_ms = window / BUCKETS;
        let mut w = DedupWindow::new(window);
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        let mut store = BTreeMap::new();
        let mut now = 0;
        for i in 0..2_000i64 {
            now += 97 * 60_000 / 4; // about 24 minutes a record: two windows in all
            let id = format!("r{i}");
            w.expire(now);
            w.insert("t", &id, now, now);
            model.insert(id, now.div_euclid(bucket_ms));
            if i % 50 == 0 {
                flush(&mut w, &mut store);
                let mut restored = DedupWindow::new(window);
                for (k, v) in &store {
                    restored.load_row(k, v).expect("row");
                }
                for (id, bucket) in &model {
                    let alive = !w.expired(*bucket, now);
                    assert_eq!(w.contains("t", id), alive, "{id} at {now}");
                    assert_eq!(restored.contains("t", id), alive, "restored {id} at {now}");
                }
                assert_eq!(w.len(), restored.len());
            }
        }
    }

    /// Ids adopted from the former layout can lie 256 buckets apart and share a tag:
    /// forgetting one bucket keeps the other's ids.
    #[test]
    fn a_bucket_sharing_a_tag_keeps_its_ids() {
        let mut w = DedupWindow::new(24 * HOUR);
        w.adopt("t", "old", 0);
        w.adopt("t", "new", 256 * HOUR);
        w.expire(256 * HOUR);
        assert!(!w.buckets.contains_key(&0), "the old bucket is forgotten");
        assert!(w.contains("t", "new"), "the newer bucket's id stays");
        w.expire(300 * HOUR);
        assert!(w.is_empty());
    }

    #[test]
    fn an_id_older_than_the_window_is_not_remembered() {
        let mut w = DedupWindow::new(24 * HOUR);
        w.insert("t", "old", 0, 30 * HOUR);
        assert!(!w.contains("t", "old"));
    }

    #[test]
    fn rows_restore_the_same_window_and_expiry_deletes_them() {
        let mut w = DedupWindow::new(24 * HOUR);
        let mut store = BTreeMap::new();
        w.insert("t", "a", HOUR, HOUR);
        flush(&mut w, &mut store);
        w.insert("t", "b", HOUR + 1, HOUR + 1);
        w.insert("t", "c", 5 * HOUR, 5 * HOUR);
        flush(&mut w, &mut store);
        assert_eq!(store.len(), 3, "one new row per bucket and flush");

        let mut restored = DedupWindow::new(24 * HOUR);
        for (k, v) in &store {
            restored.load_row(k, v).expect("row");
        }
        for id in ["a", "b", "c"] {
            assert!(restored.contains("t", id));
        }
        restored.expire(27 * HOUR);
        flush(&mut restored, &mut store);
        assert!(!restored.contains("t", "a") && restored.contains("t", "c"));
        assert_eq!(store.len(), 1, "the expired bucket's rows are deleted");
    }
}
