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

use std::collections::{BTreeMap, HashMap};
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

#[derive(Default, Debug)]
struct Bucket {
    /// Every fingerprint of the bucket, to forget them when the bucket expires.
    ids: Vec<u128>,
    /// How many of `ids` are in the store already.
    saved: usize,
    /// Store rows written for this bucket (chunks 0..chunks).
    chunks: u32,
}

/// The ids processed in the last window of stream time.
#[derive(Debug)]
pub struct DedupWindow {
    window_ms: i64,
    bucket_ms: i64,
    /// fingerprint → bucket index.
    seen: HashMap<u128, i64, BuildHasherDefault<FingerprintHasher>>,
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
            seen: HashMap::default(),
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
        self.seen.contains_key(&fingerprint(tenant, id))
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
        if self.seen.insert(fp, bucket).is_none() {
            self.buckets.entry(bucket).or_default().ids.push(fp);
        }
    }

    /// Forget every bucket past the window at stream time `now`.
    pub fn expire(&mut self, now: i64) {
        while let Some((&bucket, _)) = self.buckets.first_key_value() {
            if !self.expired(bucket, now) {
                break;
            }
            let Some(b) = self.buckets.remove(&bucket) else {
                break;
            };
            for fp in &b.ids {
                if self.seen.get(fp) == Some(&bucket) {
                    self.seen.remove(fp);
                }
            }
            for chunk in 0..b.chunks {
                self.deleted.push(row_key(bucket, chunk));
            }
        }
    }

    /// The store writes since the last call: new chunks and deleted buckets.
    pub(crate) fn take_changes(&mut self, batch: &mut Vec<Write>) {
        for key in self.deleted.drain(..) {
            batch.push((key, None));
        }
        for (&bucket, b) in self.buckets.iter_mut() {
            if b.saved == b.ids.len() {
                continue;
            }
            let mut value = Vec::with_capacity(1 + 16 * (b.ids.len() - b.saved));
            value.push(ROW_VERSION);
            for fp in &b.ids[b.saved..] {
                value.extend_from_slice(&fp.to_le_bytes());
            }
            batch.push((row_key(bucket, b.chunks), Some(value)));
            b.chunks += 1;
            b.saved = b.ids.len();
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
                    if self.seen.insert(fp, bucket).is_none() {
                        b.ids.push(fp);
                    }
                }
                b.saved = b.ids.len();
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
