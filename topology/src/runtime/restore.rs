//! Restoring partitions when the group assigns them: the local RocksDB store brought up to
//! the changelog's last checkpoint, the engine opened on it, the input offsets to resume
//! from, and, under `deduplicated`, what an unfinished batch already wrote.
//!
//! Partitions assigned together restore in parallel, each on a thread of its own with its
//! own reader, so a restart costs about the slowest partition rather than the sum of all
//! (issue 12). A local store whose checkpoint is the changelog's last one is used as it is:
//! nothing is replayed.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard_processors::{Engine, Settings, Store};
use switchboard_schemas::Topic;

use super::{
    on_threads, parse_meta, Intent, PartitionStore, RuntimeError, StartFrom, CHECKPOINT_KEY,
    INTENT_KEY,
};
use crate::config::Config;
use crate::kafka::{self, SEQ_HEADER, SOURCE_HEADER};
use crate::metrics::Metrics;
use crate::state_store::{Checkpoint, RocksStore};
use switchboard_processors::store::Write;

/// Threads that restore partitions, at most: each restore holds a reader (a Kafka client) and a
/// RocksDB store open while it runs.
const MAX_PARALLEL: usize = 8;

/// A restored partition: everything the runtime needs to resume it.
pub(super) struct Restored {
    pub partition: i32,
    pub engine: Engine<PartitionStore>,
    /// The next offset to process per input topic (by merge rank).
    pub next: Vec<i64>,
    /// The input topics' high watermarks at the restore.
    pub initial_hw: Vec<Option<i64>>,
    pub checkpoint: Checkpoint,
    /// An unfinished batch to replay (`deduplicated`): its records' order, and per output
    /// topic the highest sequence number it already wrote.
    pub replay: Option<Vec<(u8, u32)>>,
    pub skip: BTreeMap<String, u64>,
    /// A replay from a timestamp on fresh state.
    pub start_ts: Option<i64>,
}

/// What restoring needs of the runtime, shared by the restoring threads.
pub(super) struct Restorer<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub settings: &'a Settings,
    pub changelog: &'a str,
    /// The application id: state directories and the outputs' source header.
    pub source: &'a str,
    pub output_names: &'a [String],
    pub start: StartFrom,
    /// How the guarantee reads the changelog and the outputs.
    pub isolation: &'static str,
    /// Whether an unfinished batch is replayed from its intent (`deduplicated`).
    pub replays_intents: bool,
}

impl Restorer<'_> {
    /// Restore `partitions`, in parallel (on up to [`MAX_PARALLEL`] threads). The first error
    /// wins; the runtime treats it as fatal (crash-only), so nothing half-restored is used.
    pub fn restore_all(&self, partitions: &[i32]) -> Result<Vec<Restored>, RuntimeError> {
        let started = Instant::now();
        let restored = on_threads(partitions.to_vec(), MAX_PARALLEL, None, |p| self.restore(p))?;
        if partitions.len() > 1 {
            tracing::info!(
                partitions = ?partitions,
                seconds = started.elapsed().as_secs_f64(),
                "partitions restored in parallel"
            );
        }
        Ok(restored)
    }

    /// Restore one partition with a reader of its own.
    fn restore(&self, partition: i32) -> Result<Restored, RuntimeError> {
        let reader = kafka::reader(self.config, self.isolation)?;
        self.metrics.restoring_partitions.inc();
        let result = self.restore_with(&reader, partition);
        self.metrics.restoring_partitions.dec();
        result
    }

    fn restore_with(
        &self,
        reader: &BaseConsumer,
        partition: i32,
    ) -> Result<Restored, RuntimeError> {
        let started = Instant::now();
        let dir = PathBuf::from(&self.config.state.dir)
            .join(self.source)
            .join(format!("partition-{partition}"));
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Partition {
            partition,
            reason: format!("cannot create state directory {}: {e}", dir.display()),
        })?;
        let mut rocks = RocksStore::open(&dir)?;
        let opened_store = started.elapsed();
        let intent = self.replay_changelog(reader, partition, &mut rocks)?;
        let read_changelog = started.elapsed();
        let mut checkpoint = rocks.checkpoint()?.unwrap_or(Checkpoint {
            changelog_offset: -1,
            ..Checkpoint::default()
        });
        let mut engine = Engine::open(PartitionStore::new(rocks), self.settings.clone())?;
        // Ids whose rows came from the changelog are indexed in RocksDB now, not held in
        // memory until the first round.
        if engine.index_restored_ids()? > 0 {
            engine.store_mut().settle_local()?;
        }
        let loaded = started.elapsed();
        let mut next = Vec::new();
        let mut initial_hw = Vec::new();
        for t in Topic::INPUTS {
            next.push(checkpoint.inputs.get(t.name()).copied().unwrap_or(0));
            initial_hw.push(Some(kafka::watermarks(reader, t.name(), partition)?.1));
        }
        let start_ts = match (self.start, checkpoint.inputs.is_empty()) {
            (StartFrom::Timestamp(ts), true) => Some(ts),
            _ => None,
        };
        for t in kafka::output_topics() {
            let name = self.output_names[t as usize].clone();
            if let std::collections::btree_map::Entry::Vacant(slot) = checkpoint.outputs.entry(name)
            {
                let from = intent
                    .as_ref()
                    .and_then(|i| i.outputs.get(slot.key()).copied());
                let end = match from {
                    Some(o) => o,
                    None => kafka::watermarks(reader, slot.key(), partition)?.1,
                };
                slot.insert(end);
            }
        }
        let (mut replay, mut skip) = (None, BTreeMap::new());
        if let Some(intent) = intent {
            if self.replays_intents {
                skip = self.written_outputs(reader, partition, &intent)?;
                tracing::info!(
                    partition,
                    records = intent.order.iter().map(|(_, n)| *n as u64).sum::<u64>(),
                    "replaying an unfinished batch; outputs already written are skipped"
                );
                replay = Some(intent.order);
            }
        }
        // Where a restore's time went: opening the store, reading the changelog past its
        // checkpoint, loading the state into memory, then offsets and output positions.
        tracing::info!(
            partition,
            open_seconds = opened_store.as_secs_f64(),
            changelog_seconds = (read_changelog - opened_store).as_secs_f64(),
            load_seconds = (loaded - read_changelog).as_secs_f64(),
            positions_seconds = (started.elapsed() - loaded).as_secs_f64(),
            seconds = started.elapsed().as_secs_f64(),
            "partition assigned; state restored"
        );
        Ok(Restored {
            partition,
            engine,
            next,
            initial_hw,
            checkpoint,
            replay,
            skip,
            start_ts,
        })
    }

    /// Bring the local state up to the changelog's last checkpoint. Returns the intent of an
    /// unfinished batch after it, if any.
    fn replay_changelog(
        &self,
        reader: &BaseConsumer,
        partition: i32,
        rocks: &mut RocksStore,
    ) -> Result<Option<Intent>, RuntimeError> {
        let from = rocks.checkpoint()?.map(|c| c.changelog_offset + 1);
        let (low, high) = kafka::watermarks(reader, self.changelog, partition)?;
        let start = from.unwrap_or(low).max(low);
        if from.is_some_and(|f| f < low) {
            // The local state is older than what the changelog still holds: start over from
            // `low`. Deleting the rows and moving the checkpoint to just before `low` is one
            // atomic write, so a crash cannot leave stale rows or skip a changelog record.
            let rows: Vec<Write> = rocks
                .entries()?
                .into_iter()
                .map(|(k, _)| (k, None))
                .collect();
            let fresh = Checkpoint {
                changelog_offset: low - 1,
                ..Checkpoint::default()
            };
            rocks.commit(&rows, &fresh)?;
        }
        let mut pending: Vec<Write> = Vec::new();
        let mut intent: Option<Intent> = None;
        let remaining = self
            .metrics
            .restore_remaining
            .with_label_values(&[&partition.to_string()]);
        remaining.set(high.saturating_sub(start).max(0));
        let ranges = [(self.changelog, partition, start, high)];
        read_to_end(reader, &ranges, &mut |m| {
            self.metrics.restore_records.inc();
            if m.offset() % 1024 == 0 {
                remaining.set(high.saturating_sub(m.offset() + 1).max(0));
            }
            let key = m.key().unwrap_or_default();
            if key == CHECKPOINT_KEY {
                let mut cp: Checkpoint = parse_meta(partition, m.payload())?;
                cp.changelog_offset = m.offset();
                rocks.commit(&pending, &cp)?;
                pending.clear();
                intent = None;
            } else if key == INTENT_KEY {
                intent = Some(parse_meta(partition, m.payload())?);
            } else {
                pending.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
            }
            Ok(())
        })?;
        remaining.set(0);
        // Writes after the last checkpoint belong to an unfinished batch: it is re-derived.
        Ok(intent)
    }

    /// For an unfinished batch: the highest sequence number this partition already wrote to
    /// each output topic after the batch began.
    fn written_outputs(
        &self,
        reader: &BaseConsumer,
        partition: i32,
        intent: &Intent,
    ) -> Result<BTreeMap<String, u64>, RuntimeError> {
        let source = format!("{}/{partition}", self.source);
        let mut ranges: Vec<(String, i64, i64)> = Vec::new();
        for t in kafka::output_topics() {
            let name = self.output_names[t as usize].clone();
            let from = intent.outputs.get(&name).copied().unwrap_or(0);
            let (_, high) = kafka::watermarks(reader, &name, partition)?;
            ranges.push((name, from, high));
        }
        let tails: Vec<(&str, i32, i64, i64)> = ranges
            .iter()
            .map(|(name, from, high)| (name.as_str(), partition, *from, *high))
            .collect();
        // Every output topic's tail in one pass: the highest sequence number of this partition
        // written since the batch began.
        let mut written: BTreeMap<String, u64> = BTreeMap::new();
        read_to_end(reader, &tails, &mut |m| {
            let Some(headers) = m.headers() else {
                return Ok(());
            };
            let mut src = None;
            let mut seq = None;
            for h in headers.iter() {
                match h.key {
                    SOURCE_HEADER => src = h.value,
                    SEQ_HEADER => {
                        seq = h
                            .value
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse::<u64>().ok())
                    }
                    _ => {}
                }
            }
            if let (Some(src), Some(seq)) = (src, seq) {
                if src == source.as_bytes() && seq >= intent.seq {
                    let highest = written.entry(m.topic().to_string()).or_insert(seq);
                    *highest = (*highest).max(seq);
                }
            }
            Ok(())
        })?;
        Ok(written)
    }
}

/// Read each (topic, partition, from, high) range to its end with `reader`, handing every
/// record to `on`: up to the high watermark, then on until the partitions stay quiet, as a
/// broker may report the watermark late (tansu 0.6.0 does after multi-record batches). One
/// assignment and one quiet period at the end, whatever the number of ranges.
fn read_to_end(
    reader: &BaseConsumer,
    ranges: &[(&str, i32, i64, i64)],
    on: &mut dyn FnMut(&BorrowedMessage<'_>) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    let mut tpl = TopicPartitionList::new();
    let mut position: Vec<i64> = Vec::with_capacity(ranges.len());
    for (topic, partition, from, _) in ranges {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*from))?;
        position.push(*from);
    }
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let caught_up = |position: &[i64]| ranges.iter().zip(position).all(|(r, p)| *p >= r.3);
    loop {
        if Instant::now() > deadline {
            let (topic, partition, _, high) = ranges
                .iter()
                .zip(&position)
                .find(|(r, p)| **p < r.3)
                .map(|(r, _)| *r)
                .unwrap_or(ranges[0]);
            return Err(RuntimeError::Partition {
                partition,
                reason: format!("reading {topic} stalled before offset {high}"),
            });
        }
        let Some(result) = reader.poll(Duration::from_millis(200)) else {
            if caught_up(&position) {
                break; // at the end, and nothing more came
            }
            // Transaction markers occupy offsets without records: ask where we are.
            if let Ok(pos) = reader.position() {
                for ((topic, partition, _, _), p) in ranges.iter().zip(position.iter_mut()) {
                    if let Some(Offset::Offset(o)) =
                        pos.find_partition(topic, *partition).map(|e| e.offset())
                    {
                        *p = (*p).max(o);
                    }
                }
            }
            if caught_up(&position) {
                // Past the markers to the end, after a poll that stayed quiet: done, without
                // waiting out a second quiet period.
                break;
            }
            continue;
        };
        let m = result?;
        if let Some(i) = ranges
            .iter()
            .position(|(t, p, _, _)| *t == m.topic() && *p == m.partition())
        {
            position[i] = m.offset() + 1;
        }
        on(&m)?;
    }
    reader.unassign()?;
    Ok(())
}
