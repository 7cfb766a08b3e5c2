//! One assigned partition as the runtime holds it ([`Task`]): its input buffers and the
//! timestamp merge that plans its next batch from them, the decoding and checks of consumed
//! records, and the batch processed ahead waiting for its round.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use switchboard_processors::partition::{check_key, check_partition};
use switchboard_processors::simulation::{
    apply_record, next_in_merge, Emitted, Head, SourceRecord,
};
use switchboard_processors::Engine;
use switchboard_schemas::{limits, Input, Topic};

use super::restore::Restored;
use super::store::PartitionStore;
use super::MAX_BATCH;
use crate::metrics::Metrics;
use crate::registry::{Undecoded, Wire};
use crate::state_store::Checkpoint;

/// One partition's batch for this round, in processing order.
pub(super) struct Plan {
    pub(super) partition: i32,
    pub(super) records: Vec<(u8, Buffered)>,
    /// Its intent is already in the changelog: the batch re-runs an unfinished intent, or
    /// its intent went out with the previous round's commit.
    pub(super) intent_written: bool,
}

pub(super) struct Buffered {
    pub(super) offset: i64,
    /// Decoded as it is read, so a record that cannot be decoded is known before the merge
    /// and takes no part in it.
    pub(super) source: SourceRecord,
    /// Its writer schema is in a schema registry that could not be reached: it is neither
    /// decoded nor a dead letter yet, and holds its partition's merge until it is decoded.
    pub(super) waiting: bool,
}

impl Buffered {
    pub(super) fn undecodable(&self) -> bool {
        !self.waiting && self.source.decoded.is_err()
    }

    /// Try again to decode a record that waits for the schema registry.
    pub(super) fn retry(&mut self, wire: &Wire, partitions: u32) {
        let s = &self.source;
        let (decoded, waiting) = decode_source(
            wire,
            s.topic,
            Some(s.ts),
            s.key.as_deref(),
            Some(&s.raw),
            s.partition.unwrap_or(0),
            partitions,
        );
        self.source.decoded = decoded;
        self.waiting = waiting;
    }
}

/// Decode and check one consumed record: the record or the dead-letter reason, and whether it
/// waits for the schema registry instead.
pub(super) fn decode_source(
    wire: &Wire,
    topic: Topic,
    ts: Option<i64>,
    key: Option<&str>,
    payload: Option<&[u8]>,
    partition: u32,
    partitions: u32,
) -> (Result<Input, String>, bool) {
    match decode_input(wire, topic, ts, key, payload).and_then(|input| {
        check_partition(&input, partition, partitions).map_err(Undecoded::Bad)?;
        Ok(input)
    }) {
        Ok(input) => (Ok(input), false),
        Err(Undecoded::Bad(reason)) => (Err(reason), false),
        Err(Undecoded::Waiting(reason)) => (Err(reason), true),
    }
}

/// A consumed record as the engine sees it: decoded (or why not), with its place; it must
/// sit on its tenant's partition of `partitions`.
pub(super) fn buffered(
    wire: &Wire,
    topic: Topic,
    partitions: u32,
    m: &rdkafka::message::OwnedMessage,
) -> Buffered {
    let (partition, offset, ts) = (m.partition(), m.offset(), m.timestamp().to_millis());
    let payload = m.payload();
    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let (decoded, waiting) = decode_source(
        wire,
        topic,
        ts,
        key.as_deref(),
        payload,
        partition as u32,
        partitions,
    );
    Buffered {
        offset,
        waiting,
        source: SourceRecord {
            topic,
            key,
            ts: ts.unwrap_or(0),
            partition: Some(partition as u32),
            line: None,
            offset: Some(offset),
            raw: payload.map(<[u8]>::to_vec).unwrap_or_default(),
            decoded,
        },
    }
}

/// One assigned partition: its engine, its state store and its input buffers.
pub(super) struct Task {
    pub(super) partition: i32,
    pub(super) engine: Engine<PartitionStore>,
    pub(super) buffers: Vec<VecDeque<Buffered>>,
    /// The next offset to process per input topic (by merge rank).
    pub(super) next: Vec<i64>,
    /// High watermarks asked of the broker when the task was created.
    pub(super) initial_hw: Vec<Option<i64>>,
    pub(super) checkpoint: Checkpoint,
    /// Recovery of an unfinished intent: the order to follow, and per output topic the
    /// highest sequence number already written.
    pub(super) replay: Option<Vec<(u8, u32)>>,
    pub(super) skip: BTreeMap<String, u64>,
    pub(super) waiting_since: Option<Instant>,
    pub(super) duplicates_seen: u64,
    /// A replay from a timestamp, on fresh state: per input topic, whether its first record
    /// at or after the timestamp has been seen.
    pub(super) start_ts: Option<i64>,
    pub(super) started: Vec<bool>,
    /// The batch processed ahead, waiting in memory for its round ([`Runtime::process_round`]).
    pub(super) staged: Option<Batch>,
}

/// A partition's batch, processed and waiting in memory to be sent in its round. Nothing of
/// it has left the process, so dropping it with its partition (a revocation) loses nothing:
/// the partition's next owner processes the same records from the last commit.
pub(super) struct Batch {
    /// Its records' topics in merge order (the intent, under `deduplicated`).
    pub(super) order: Vec<(u8, u32)>,
    /// Its intent is already in the changelog (as [`Plan::intent_written`]).
    pub(super) intent_written: bool,
    /// The partition's next output sequence number when the batch began.
    pub(super) seq: u64,
    pub(super) outputs: Vec<Staged>,
}

/// One output of a [`Batch`], encoded.
pub(super) struct Staged {
    pub(super) topic: Topic,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Vec<u8>,
    pub(super) ts: i64,
    pub(super) seq: u64,
}

/// Decode one input record: its timestamp within the accepted range, its value Avro in
/// either framing with a schema the engine can read (built in, or from the schema registry),
/// its key naming the record's tenant. A `Bad` error is the dead-letter reason.
pub fn decode_input(
    wire: &Wire,
    topic: Topic,
    ts: Option<i64>,
    key: Option<&str>,
    payload: Option<&[u8]>,
) -> Result<Input, Undecoded> {
    let ts = ts.ok_or_else(|| Undecoded::Bad(format!("{topic} record has no timestamp")))?;
    limits::check_timestamp(ts).map_err(Undecoded::Bad)?;
    let bytes = payload.ok_or_else(|| Undecoded::Bad(format!("{topic} record has no value")))?;
    let input = wire.decode_input(topic, bytes).map_err(|e| match e {
        Undecoded::Bad(e) => Undecoded::Bad(format!("cannot decode {topic} record: {e}")),
        waiting => waiting,
    })?;
    check_key(topic, key, &input).map_err(Undecoded::Bad)?;
    Ok(input)
}

pub(super) fn update_lag(metrics: &Metrics, task: &Task, cached: &[Option<i64>]) {
    for (rank, t) in Topic::INPUTS.iter().enumerate() {
        if let Some(hw) = cached[rank].or(task.initial_hw[rank]) {
            let lag = (hw - task.next[rank]).max(0);
            metrics
                .lag
                .with_label_values(&[t.name(), &task.partition.to_string()])
                .set(lag);
        }
    }
}

impl Task {
    /// The task of a partition just restored.
    pub(super) fn resume(r: Restored) -> Task {
        Task {
            partition: r.partition,
            engine: r.engine,
            buffers: (0..Topic::INPUTS.len()).map(|_| VecDeque::new()).collect(),
            next: r.next,
            initial_hw: r.initial_hw,
            checkpoint: r.checkpoint,
            replay: r.replay,
            skip: r.skip,
            waiting_since: None,
            duplicates_seen: 0,
            start_ts: r.start_ts,
            started: vec![false; Topic::INPUTS.len()],
            staged: None,
        }
    }

    /// The next batch in timestamp order (SPEC §1.3; ties by topic order, then offset).
    ///
    /// An input partition with nothing buffered holds the merge back while it is known to
    /// have unread records (its high watermark is past the next offset), and for at most
    /// `max_idle` while nothing is known; a partition known to be caught up does not. During
    /// recovery the batch is exactly the unfinished intent's, in its order.
    pub(super) fn plan(
        &mut self,
        cached: &[Option<i64>],
        max_idle: Duration,
    ) -> Vec<(u8, Buffered)> {
        let mut plan = Vec::new();
        if let Some(order) = &self.replay {
            let mut need = vec![0usize; self.buffers.len()];
            for (rank, n) in order {
                need[*rank as usize] += *n as usize;
            }
            if need
                .iter()
                .zip(&self.buffers)
                .any(|(n, b)| b.len() < *n || b.iter().take(*n).any(|r| r.waiting))
            {
                return plan; // wait until the whole batch is buffered and decoded
            }
            for (rank, n) in order.clone() {
                for _ in 0..n {
                    if let Some(rec) = self.buffers[rank as usize].pop_front() {
                        self.next[rank as usize] = rec.offset + 1;
                        plan.push((rank, rec));
                    }
                }
            }
            return plan;
        }
        while plan.len() < MAX_BATCH {
            // A record that cannot be decoded is dead-lettered where it stands, as soon as it
            // is the head of its topic: its timestamp (which may be anything) never holds
            // back the valid records behind it. `simulate` does the same.
            for (rank, buf) in self.buffers.iter_mut().enumerate() {
                while buf.front().is_some_and(Buffered::undecodable) {
                    if let Some(rec) = buf.pop_front() {
                        self.next[rank] = rec.offset + 1;
                        plan.push((rank as u8, rec));
                    }
                }
            }
            let mut heads = Vec::with_capacity(self.buffers.len());
            for (rank, buf) in self.buffers.iter().enumerate() {
                let head = match buf.front() {
                    // Its schema is in a registry that cannot be reached: hold the merge.
                    Some(r) if r.waiting => Head::Waiting,
                    Some(r) => Head::Record(r.source.ts),
                    None => match cached[rank].or(self.initial_hw[rank]) {
                        Some(hw) if self.next[rank] >= hw => Head::Done, // caught up
                        Some(hw) => {
                            // records on their way
                            tracing::trace!(
                                partition = self.partition,
                                rank,
                                next = self.next[rank],
                                hw,
                                "waiting for records"
                            );
                            Head::Waiting
                        }
                        None => {
                            let since = *self.waiting_since.get_or_insert_with(Instant::now);
                            if since.elapsed() < max_idle {
                                Head::Waiting
                            } else {
                                Head::Done
                            }
                        }
                    },
                };
                heads.push(head);
            }
            let Some(rank) = next_in_merge(heads) else {
                break;
            };
            self.waiting_since = None;
            if let Some(rec) = self.buffers[rank].pop_front() {
                self.next[rank] = rec.offset + 1;
                plan.push((rank as u8, rec));
            }
        }
        plan
    }

    /// Decode again the records waiting for the schema registry, in order, until one still
    /// waits.
    pub(super) fn retry_waiting(&mut self, wire: &Wire, partitions: u32) {
        for buf in &mut self.buffers {
            for rec in buf.iter_mut().filter(|r| r.waiting) {
                rec.retry(wire, partitions);
                if rec.waiting {
                    break;
                }
            }
        }
    }

    pub(super) fn checkpoint_inputs(&mut self) {
        for (rank, t) in Topic::INPUTS.iter().enumerate() {
            self.checkpoint
                .inputs
                .insert(t.name().to_string(), self.next[rank]);
        }
    }

    /// Process one record; its outputs (and dead letter, if any) in order.
    pub(super) fn apply(&mut self, rec: Buffered) -> Vec<Emitted> {
        apply_record(&mut self.engine, &rec.source, self.partition as u32)
    }
}

pub(super) fn run_lengths(plan: &[(u8, Buffered)]) -> Vec<(u8, u32)> {
    let mut out: Vec<(u8, u32)> = Vec::new();
    for (rank, _) in plan {
        match out.last_mut() {
            Some((r, n)) if r == rank => *n += 1,
            _ => out.push((*rank, 1)),
        }
    }
    out
}
