//! The Kafka runtime: consumes the input topics as a consumer group, merges each partition's
//! topics in timestamp order, runs the processors, and makes every batch durable under one of
//! two guarantees (docs/guarantees.md):
//!
//! - `exactly_once`: outputs, changelog records and input offsets in one Kafka transaction.
//! - `deduplicated`: no transactions. Each batch first writes an *intent* (its input records,
//!   in merge order) to the changelog, then its outputs (each with a per-source-partition
//!   sequence number in its headers), then its state changes and a *checkpoint* marker. A
//!   restart restores the state to the last checkpoint, replays an unfinished intent in the
//!   same order (processing is deterministic, so it re-derives the same outputs) and skips
//!   the outputs that already reached their topics.
//!
//! The loop is crash-only: any failure to make a batch durable ends the process with an
//! error, and the next start recovers from the changelog. Local RocksDB state is only updated
//! after a batch is durable, atomically with its checkpoint, so it never runs ahead.
//!
//! What differs between the two guarantees is behind one trait in [`guarantee`]; restoring
//! the partitions the group assigns (in parallel) is in [`restore`].

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_processors::partition::{check_key, check_partition, partition_of};
use switchboard_processors::query::{Answer, Query};
use switchboard_processors::simulation::{
    apply_record, next_in_merge, Emitted, Head, SourceRecord,
};
use switchboard_processors::store::{Entry, RowVisitor, Write};
use switchboard_processors::{Engine, Settings, Store, StoreError};
use switchboard_schemas::{limits, Input, Topic};

use crate::config::Config;
use crate::http::{QueryInbox, Reply};
use crate::kafka::{self, Producer_, SEQ_HEADER, SOURCE_HEADER};
use crate::metrics::Metrics;
use crate::registry::{Undecoded, Wire};
use crate::state_store::{Checkpoint, RocksStore};

mod guarantee;
mod restore;
use guarantee::Durability;
use restore::{Restored, Restorer};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(#[from] kafka::KafkaSetupError),
    #[error("partition {partition}: {reason}")]
    Partition { partition: i32, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Changelog keys that are not state rows start with a NUL byte (state keys are text).
pub(crate) const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
const INTENT_KEY: &[u8] = b"\0intent";
/// Records processed per partition per round, at most.
const MAX_BATCH: usize = 2_000;
/// Records buffered per input partition before the runtime stops polling for more.
const MAX_BUFFERED: usize = 20_000;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to start when the group has no committed offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The group's committed offsets, else the beginning.
    Committed,
    /// The first offsets at or after this timestamp (ms), for a replay.
    Timestamp(i64),
}

/// How one run is set up beyond the configuration file.
pub struct RunOptions {
    pub output_suffix: String,
    pub start: StartFrom,
    /// Set to stop after the round in flight (graceful shutdown).
    pub stop: Arc<AtomicBool>,
    pub metrics: Metrics,
    /// Interactive queries from the HTTP endpoints, answered between rounds (R-RUN-5).
    pub queries: Option<QueryInbox>,
    /// Stop by itself once every input partition is processed up to the end offsets it had
    /// when the run started (`replay --until-end`).
    pub until_end: bool,
    /// Where this instance announces its partitions, so other instances forward queries for
    /// them here ([`crate::directory`]).
    pub directory: Option<crate::directory::Directory>,
}

/// A batch's intent: its first input offsets and its records' topics in merge order
/// (run-length encoded by merge rank), written before its outputs.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Intent {
    inputs: BTreeMap<String, i64>,
    order: Vec<(u8, u32)>,
    seq: u64,
    outputs: BTreeMap<String, i64>,
}

/// The engine's store in the runtime: reads come from RocksDB; writes wait in `pending` until
/// their round sends them, in `inflight` until the round is durable, then go to RocksDB with
/// the checkpoint in one atomic write, on a thread of its own while the next round begins
/// (`landing`).
pub struct PartitionStore {
    rocks: Arc<RocksStore>,
    pending: Vec<Write>,
    /// Rows for RocksDB alone ([`Store::write_local`]: the dedup window's index), never sent
    /// to the changelog, committed with the round's other writes.
    pending_local: LocalWrites,
    /// The writes of the round being committed: the next batch, processed meanwhile, reads
    /// them as the state it follows.
    inflight: InFlight,
    /// The writes of the last durable round while they go into RocksDB, read before it.
    landing: Option<Landing>,
}

/// A durable round's writes on their way into RocksDB.
struct Landing {
    writes: Arc<InFlight>,
    done: std::thread::JoinHandle<Result<(), StoreError>>,
}

impl PartitionStore {
    fn new(rocks: RocksStore) -> PartitionStore {
        PartitionStore {
            rocks: Arc::new(rocks),
            pending: Vec::new(),
            pending_local: LocalWrites::new(),
            inflight: InFlight::default(),
            landing: None,
        }
    }

    /// Write what waits for RocksDB alone now, outside a round: rows derived from rows RocksDB
    /// already holds (the dedup window's index rebuilt after a restore from the changelog).
    fn settle_local(&mut self) -> Result<(), StoreError> {
        self.land()?;
        let writes: Vec<Write> = self.pending_local.drain().collect();
        self.rocks.write_rows(&writes)
    }

    /// Start writing the round in flight, now durable in Kafka, to RocksDB with `checkpoint`
    /// (after the round before it has landed: rounds reach RocksDB in order, each in one
    /// atomic write). Until it has landed, reads find its rows in memory first.
    fn start_landing(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.land()?;
        let writes = Arc::new(std::mem::take(&mut self.inflight));
        let (rocks, shared) = (Arc::clone(&self.rocks), Arc::clone(&writes));
        let done = std::thread::Builder::new()
            .name("switchboard-land".into())
            .spawn(move || rocks.commit_with_local(&shared.writes, &shared.local, &checkpoint))
            .map_err(|e| StoreError::Io(format!("cannot start a thread: {e}")))?;
        self.landing = Some(Landing { writes, done });
        Ok(())
    }

    /// Wait until the last durable round is in RocksDB.
    fn land(&mut self) -> Result<(), StoreError> {
        match self.landing.take() {
            None => Ok(()),
            Some(l) => l
                .done
                .join()
                .map_err(|_| StoreError::Io("the RocksDB write panicked".into()))?,
        }
    }

    /// The state's size in bytes, as RocksDB estimates it.
    fn size_bytes(&self) -> u64 {
        self.rocks.size_bytes()
    }
}

impl Drop for PartitionStore {
    /// A store closed (its partition revoked, or the engine stopping) first lets its last
    /// round land: the partition's RocksDB is then closed, and may be opened again.
    fn drop(&mut self) {
        if let Err(e) = self.land() {
            tracing::error!(error = %e, "writing the last round to RocksDB failed; a restore reads it from the changelog");
        }
    }
}

/// Writes for the local store alone, by key (the latest write of a key wins).
type LocalWrites = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A round's writes while it is committed, and an index to read them by key without a scan
/// (a batch may read several keys per new conversation: its customer's rows), built by the
/// first read.
#[derive(Default)]
struct InFlight {
    writes: Vec<Write>,
    /// The round's writes for RocksDB alone.
    local: LocalWrites,
    /// Hash of a key → the position of the latest write whose key has that hash.
    index: std::sync::OnceLock<HashMap<u64, usize>>,
}

impl InFlight {
    fn new(writes: Vec<Write>, local: LocalWrites) -> InFlight {
        InFlight {
            writes,
            local,
            index: std::sync::OnceLock::new(),
        }
    }

    fn hash(key: &[u8]) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
    }

    /// The latest write of `key`, if the round has one.
    fn get(&self, key: &[u8]) -> Option<&Write> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.writes.len());
            for (i, (k, _)) in self.writes.iter().enumerate() {
                index.insert(Self::hash(k), i);
            }
            index
        });
        let i = *index.get(&Self::hash(key))?;
        match self.writes.get(i) {
            Some(w) if w.0 == key => Some(w),
            // Another key with the same hash wrote later: look for this one.
            _ => self.writes.iter().rev().find(|(k, _)| k == key),
        }
    }
}

impl Store for PartitionStore {
    fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.rocks.entries()
    }

    fn write(&mut self, batch: &[Write]) -> Result<(), StoreError> {
        self.pending.extend_from_slice(batch);
        Ok(())
    }

    fn write_local(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.pending_local.extend(batch);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // A write waiting for its batch to be durable is newer than RocksDB. A key is written
        // either locally or for the changelog, never both, so their order does not matter.
        let landing = self.landing.as_ref().map(|l| &*l.writes);
        let pending = self.pending.iter().rev().find(|(k, _)| k == key);
        if let Some((_, v)) = pending
            .or_else(|| self.inflight.get(key))
            .or_else(|| landing.and_then(|l| l.get(key)))
        {
            return Ok(v.clone());
        }
        match self
            .pending_local
            .get(key)
            .or_else(|| self.inflight.local.get(key))
            .or_else(|| landing.and_then(|l| l.local.get(key)))
        {
            Some(v) => Ok(v.clone()),
            None => self.rocks.get(key),
        }
    }

    fn entries_except(&self, tags: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.rocks.entries_except(tags)
    }

    fn scan_tag(&self, tag: u8, f: &mut RowVisitor) -> Result<(), StoreError> {
        self.rocks.scan_tag(tag, f)
    }
}

/// One partition's batch for this round, in processing order.
struct Plan {
    partition: i32,
    records: Vec<(u8, Buffered)>,
    /// Its intent is already in the changelog: the batch re-runs an unfinished intent, or
    /// its intent went out with the previous round's commit.
    intent_written: bool,
}

struct Buffered {
    offset: i64,
    /// Decoded as it is read, so a record that cannot be decoded is known before the merge
    /// and takes no part in it.
    source: SourceRecord,
    /// Its writer schema is in a schema registry that could not be reached: it is neither
    /// decoded nor a dead letter yet, and holds its partition's merge until it is decoded.
    waiting: bool,
}

impl Buffered {
    fn undecodable(&self) -> bool {
        !self.waiting && self.source.decoded.is_err()
    }

    /// Try again to decode a record that waits for the schema registry.
    fn retry(&mut self, wire: &Wire, partitions: u32) {
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
fn decode_source(
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
fn buffered(
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
struct Task {
    partition: i32,
    engine: Engine<PartitionStore>,
    buffers: Vec<VecDeque<Buffered>>,
    /// The next offset to process per input topic (by merge rank).
    next: Vec<i64>,
    /// High watermarks asked of the broker when the task was created.
    initial_hw: Vec<Option<i64>>,
    checkpoint: Checkpoint,
    /// Recovery of an unfinished intent: the order to follow, and per output topic the
    /// highest sequence number already written.
    replay: Option<Vec<(u8, u32)>>,
    skip: BTreeMap<String, u64>,
    waiting_since: Option<Instant>,
    duplicates_seen: u64,
    /// A replay from a timestamp, on fresh state: per input topic, whether its first record
    /// at or after the timestamp has been seen.
    start_ts: Option<i64>,
    started: Vec<bool>,
    /// The batch processed ahead, waiting in memory for its round ([`Runtime::process_round`]).
    staged: Option<Batch>,
}

/// A partition's batch, processed and waiting in memory to be sent in its round. Nothing of
/// it has left the process, so dropping it with its partition (a revocation) loses nothing:
/// the partition's next owner processes the same records from the last commit.
struct Batch {
    /// Its records' topics in merge order (the intent, under `deduplicated`).
    order: Vec<(u8, u32)>,
    /// Its intent is already in the changelog (as [`Plan::intent_written`]).
    intent_written: bool,
    /// The partition's next output sequence number when the batch began.
    seq: u64,
    outputs: Vec<Staged>,
}

/// One output of a [`Batch`], encoded.
struct Staged {
    topic: Topic,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    ts: i64,
    seq: u64,
}

/// Group membership changes, noted during `poll` and handled right after it.
#[derive(Default)]
pub struct GroupContext {
    events: Mutex<Vec<GroupEvent>>,
}

enum GroupEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    ps.sort_unstable();
    ps.dedup();
    ps
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Nothing is in flight when `poll` runs (rounds end with a commit; a batch processed
        // ahead is still in memory and goes with its partition), so revocation only has to
        // drop the partitions: no work in the callback.
        if let (Rebalance::Revoke(tpl), Ok(mut ev)) = (rebalance, self.events.lock()) {
            ev.push(GroupEvent::Revoked(partitions_of(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Assign(tpl), Ok(mut ev)) = (rebalance, self.events.lock()) {
            ev.push(GroupEvent::Assigned(partitions_of(tpl)));
        }
    }
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

pub struct Runtime {
    /// What makes a round durable: `kafka.guarantee`'s half of the runtime.
    durability: Box<dyn Durability>,
    /// When this runtime was created (restart figures in the logs).
    started: Instant,
    /// Threads that process a round's partitions side by side (`engine.threads`, resolved).
    threads: usize,
    /// When the live figures were last refreshed (R-RUN-4), and for which partitions.
    live_at: Option<Instant>,
    live_partitions: Vec<i32>,
    config: Config,
    opts: RunOptions,
    wire: Wire,
    consumer: BaseConsumer<GroupContext>,
    producer: Producer_,
    reader: BaseConsumer,
    tasks: BTreeMap<i32, Task>,
    input_names: Vec<CString>,
    /// Every topic's name with the output suffix, indexed by the topic's discriminant (only
    /// output topics are looked up).
    output_names: Vec<String>,
    changelog: String,
    source: String,
    settings: Settings,
    /// Queries that arrived while a batch was processed ahead: answered once it is committed.
    held: Vec<crate::http::Request>,
    /// `replay --until-end`: the end offsets seen at start.
    ends: Option<BTreeMap<(usize, i32), i64>>,
    /// The last round committed a batch: the next poll does not wait for records.
    busy: bool,
}

impl Runtime {
    pub fn new(config: Config, opts: RunOptions) -> Result<Runtime, RuntimeError> {
        let started = Instant::now();
        let mut wire = Wire::for_thread(&config).map_err(RuntimeError::Other)?;
        let outputs: Vec<Topic> = Topic::ALL
            .into_iter()
            .filter(|t| !t.is_input() && *t != Topic::ActionOutcomes)
            .collect();
        wire.register_schemas_blocking(
            &outputs,
            &opts.output_suffix,
            config.schema_registry.output_framing,
            &opts.stop,
        )
        .map_err(RuntimeError::Other)?;
        let durability = guarantee::of(config.kafka.guarantee);
        let app = config.kafka.application_id.clone();
        let cc = kafka::group_consumer_config(&config);
        let consumer: BaseConsumer<GroupContext> =
            cc.create_with_context(GroupContext::default())?;
        let producer = durability.producer(&config)?;
        let reader = kafka::reader(&config, durability.isolation())?;
        let input_names = Topic::INPUTS
            .iter()
            .map(|t| CString::new(t.name()).map_err(|e| RuntimeError::Other(e.to_string())))
            .collect::<Result<_, _>>()?;
        let settings = Settings {
            dedup_retention_ms: config.engine.dedup_retention_hours * 3_600_000,
            // RocksDB is on disk: the window's ids are looked up there, so memory does not
            // grow with traffic (SPEC R-TIME-1), unless the operator chose memory.
            dedup_in_store: !config.engine.dedup_window_in_memory,
            archive_closed_after_ms: Some(config.engine.archive_closed_after_minutes * 60_000),
            analytics: config.engine.analytics,
            analytics_window_ms: config.engine.analytics_window_seconds * 1000,
            analytics_grace_ms: config.engine.analytics_grace_seconds * 1000,
            ..Settings::default()
        };
        let output_names = Topic::ALL
            .iter()
            .map(|t| kafka::output_topic(*t, &opts.output_suffix))
            .collect();
        let threads = match config.engine.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => usize::try_from(n).unwrap_or(1),
        };
        Ok(Runtime {
            durability,
            started,
            threads,
            output_names,
            changelog: kafka::changelog_topic(&app),
            source: app,
            wire,
            consumer,
            producer,
            reader,
            tasks: BTreeMap::new(),
            live_at: None,
            live_partitions: Vec::new(),
            input_names,
            settings,
            config,
            opts,
            held: Vec::new(),
            ends: None,
            busy: false,
        })
    }

    fn restorer(&self) -> Restorer<'_> {
        Restorer {
            config: &self.config,
            metrics: &self.opts.metrics,
            settings: &self.settings,
            changelog: &self.changelog,
            source: &self.source,
            output_names: &self.output_names,
            start: self.opts.start,
            isolation: self.durability.isolation(),
            replays_intents: self.durability.replays_intents(),
        }
    }

    /// Run until `stop` is set; every round ends with its batch durable.
    pub fn run(mut self) -> Result<(), RuntimeError> {
        self.check_partitions()?;
        if let StartFrom::Timestamp(ts) = self.opts.start {
            self.commit_start_offsets(ts)?;
        }
        let topics: Vec<&str> = Topic::INPUTS.iter().map(|t| t.name()).collect();
        self.consumer.subscribe(&topics)?;
        tracing::info!(
            application_id = %self.source,
            guarantee = ?self.config.kafka.guarantee,
            "subscribed; waiting for the consumer group to assign partitions"
        );
        if self.opts.until_end {
            self.ends = Some(self.end_offsets()?);
        }
        // This thread's CPU time, counted as it goes (threads it starts count their own).
        let cpu = self
            .opts
            .metrics
            .engine_cpu_seconds
            .with_label_values(&["runtime"]);
        let mut cpu_seen = crate::metrics::thread_cpu_seconds();
        while !self.opts.stop.load(Ordering::Relaxed) {
            self.poll_round()?;
            self.process_round()?;
            self.answer_queries();
            self.refresh_live_figures();
            let now = crate::metrics::thread_cpu_seconds();
            cpu.inc_by((now - cpu_seen).max(0.0));
            cpu_seen = now;
            if !self.ahead() && self.at_end(&self.tasks) {
                tracing::info!("caught up with the end offsets seen at start");
                break;
            }
        }
        if self.ahead() {
            self.process_round()?; // a stop holds back: this commits the batch processed ahead
        }
        cpu.inc_by((crate::metrics::thread_cpu_seconds() - cpu_seen).max(0.0));
        for task in self.tasks.values_mut() {
            task.engine.store_mut().land()?;
        }
        tracing::info!("stopping: the last round is committed");
        self.consumer.unsubscribe();
        self.tasks.clear();
        if let Some(d) = &self.opts.directory {
            d.close();
        }
        Ok(())
    }

    /// Every `metrics.live_interval_ms`, set the live gauges from the state of every partition
    /// held here (committed state: every round has ended durable when this runs). Costs one
    /// pass over the open conversations and agents.
    fn refresh_live_figures(&mut self) {
        if !self.live_due(&self.tasks) || self.ahead() {
            return; // not due, or due after the round that holds back for it
        }
        self.live_at = Some(Instant::now());
        self.live_partitions = self.tasks.keys().copied().collect();
        let mut tenants = BTreeMap::new();
        for task in self.tasks.values() {
            let now = task.engine.stream_time();
            for (tenant, f) in task.engine.live_figures() {
                let queues = f
                    .queues
                    .into_iter()
                    .map(|(q, (waiting, since))| (q, (waiting, now.saturating_sub(since))))
                    .collect();
                tenants.insert(
                    tenant,
                    crate::metrics::LiveTenant {
                        open: f.open_conversations,
                        queues,
                        agents: f.agents,
                    },
                );
            }
        }
        self.opts.metrics.set_live(
            &tenants,
            self.config.metrics.tenant_labels,
            self.config.metrics.max_tenants as usize,
        );
    }

    /// Whether the live figures are due: at once when partitions come or go, else every
    /// `metrics.live_interval_ms`.
    fn live_due(&self, tasks: &BTreeMap<i32, Task>) -> bool {
        let every = Duration::from_millis(self.config.metrics.live_interval_ms as u64);
        self.live_at.is_none_or(|at| at.elapsed() >= every)
            || !tasks.keys().eq(self.live_partitions.iter())
    }

    /// Whether a batch has been processed ahead of the last commit (the state in memory is
    /// then ahead of the committed state).
    fn ahead(&self) -> bool {
        self.tasks.values().any(|t| t.staged.is_some())
    }

    /// Take the queries that arrived into `held`.
    fn hold_queries(&mut self) {
        if let Some(inbox) = &self.opts.queries {
            self.held.extend(inbox.pending());
        }
    }

    /// Answer the interactive queries that arrived, from committed state (R-RUN-5). While a
    /// batch is processed ahead they wait: the next round holds back for them.
    fn answer_queries(&mut self) {
        self.hold_queries();
        if self.ahead() {
            return;
        }
        for request in std::mem::take(&mut self.held) {
            let reply = self.answer(&request.query);
            request.answer(reply);
        }
    }

    fn answer(&self, query: &Query) -> Reply {
        let Some(tenant) = query.tenant() else {
            // Every partition's tenants, with the partitions they come from.
            let mut tenants: Vec<String> = Vec::new();
            for task in self.tasks.values() {
                if let Answer::Found(v) = task.engine.answer(query) {
                    let names = v["tenants"].as_array().cloned().unwrap_or_default();
                    tenants.extend(names.iter().filter_map(|n| n.as_str().map(str::to_string)));
                }
            }
            tenants.sort();
            return Reply::found(serde_json::json!({
                "tenants": tenants,
                "partitions": self.tasks.keys().collect::<Vec<_>>(),
            }));
        };
        let p = partition_of(tenant, self.config.topics.partitions as u32) as i32;
        match self.tasks.get(&p) {
            Some(task) => match task.engine.answer(query) {
                Answer::Found(v) => Reply::found(v),
                Answer::NotFound(why) => Reply::error(404, why),
            },
            None => Reply {
                status: 503,
                body: serde_json::json!({
                    "error": format!("tenant {tenant:?} is on partition {p}, which is not assigned to this instance"),
                    "partition": p,
                }),
            },
        }
    }

    /// Co-partitioning (R-TIME-2): every input and output topic has the same partition count.
    /// The end offset of every input topic partition, by (merge rank, partition).
    fn end_offsets(&self) -> Result<BTreeMap<(usize, i32), i64>, RuntimeError> {
        let mut ends = BTreeMap::new();
        for (rank, t) in Topic::INPUTS.iter().enumerate() {
            for p in 0..self.config.topics.partitions {
                ends.insert((rank, p), kafka::watermarks(&self.reader, t.name(), p)?.1);
            }
        }
        Ok(ends)
    }

    /// Under `replay --until-end`, whether every partition is held here and `tasks` are
    /// processed up to the end offsets seen at start, nothing buffered.
    fn at_end(&self, tasks: &BTreeMap<i32, Task>) -> bool {
        let partitions = self.config.topics.partitions as usize;
        self.ends.as_ref().is_some_and(|ends| {
            tasks.len() == partitions
                && tasks.values().all(|task| {
                    task.replay.is_none()
                        && task.buffers.iter().all(VecDeque::is_empty)
                        && task.next.iter().enumerate().all(|(rank, next)| {
                            *next >= ends.get(&(rank, task.partition)).copied().unwrap_or(0)
                        })
                })
        })
    }

    fn check_partitions(&self) -> Result<(), RuntimeError> {
        let counts = kafka::partition_counts(&self.reader, Duration::from_secs(10))?;
        let want = self.config.topics.partitions;
        for (name, _) in kafka::topic_plan(&self.config, &self.opts.output_suffix) {
            if !kafka::topic_exists(&counts, &name, want)? {
                return Err(RuntimeError::Other(format!(
                    "topic {name} does not exist: run `switchboard topics create` or set topics.create = true"
                )));
            }
        }
        Ok(())
    }

    /// A replay from a timestamp: commit the group's start offsets before joining it.
    fn commit_start_offsets(&self, ts: i64) -> Result<(), RuntimeError> {
        let mut tpl = TopicPartitionList::new();
        for t in Topic::INPUTS {
            for p in 0..self.config.topics.partitions {
                tpl.add_partition_offset(t.name(), p, Offset::Offset(ts))?;
            }
        }
        let found = self
            .consumer
            .offsets_for_times(tpl, Duration::from_secs(30))?;
        let mut start = TopicPartitionList::new();
        for e in found.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // No record at or after the timestamp: start at the end.
                _ => {
                    let (_, high) = kafka::watermarks(&self.reader, e.topic(), e.partition())?;
                    Offset::Offset(high)
                }
            };
            start.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        self.consumer
            .commit(&start, rdkafka::consumer::CommitMode::Sync)?;
        Ok(())
    }

    fn handle_group_events(&mut self) -> Result<(), RuntimeError> {
        let events = match self.consumer.context().events.lock() {
            Ok(mut ev) => std::mem::take(&mut *ev),
            Err(_) => return Err(RuntimeError::Other("group event lock poisoned".into())),
        };
        let changed = !events.is_empty();
        for ev in events {
            match ev {
                GroupEvent::Revoked(ps) => {
                    for p in ps {
                        if self.tasks.remove(&p).is_some() {
                            tracing::info!(partition = p, "partition revoked; state closed");
                        }
                        self.opts.metrics.forget_partition(p);
                    }
                }
                GroupEvent::Assigned(ps) => {
                    self.opts.metrics.ready.store(false, Ordering::Relaxed);
                    let assigned_after = self.started.elapsed();
                    let new: Vec<i32> = ps
                        .iter()
                        .filter(|p| !self.tasks.contains_key(p))
                        .copied()
                        .collect();
                    for r in self.restorer().restore_all(&new)? {
                        self.tasks.insert(r.partition, Task::resume(r));
                    }
                    tracing::info!(
                        application_id = %self.source,
                        assigned = ?ps,
                        all = ?self.tasks.keys().collect::<Vec<_>>(),
                        // From the runtime's start: how long the group took to assign, and
                        // how long until the partitions were restored as well.
                        assigned_after_seconds = assigned_after.as_secs_f64(),
                        restored_after_seconds = self.started.elapsed().as_secs_f64(),
                        "joined the consumer group: partitions assigned and restored"
                    );
                }
            }
        }
        if changed {
            if let Some(d) = &self.opts.directory {
                d.announce(&self.tasks.keys().copied().collect::<Vec<_>>());
            }
        }
        self.opts
            .metrics
            .assigned_partitions
            .set(self.tasks.len() as i64);
        // Ready only while this instance holds partitions, all restored (docs/operations.md).
        self.opts
            .metrics
            .ready
            .store(!self.tasks.is_empty(), Ordering::Relaxed);
        Ok(())
    }

    /// Poll records into the partitions' buffers, for up to a short wait.
    fn poll_round(&mut self) -> Result<(), RuntimeError> {
        // Wait for records only when the last round had nothing to do: after one that did,
        // what is buffered may already make the next (under load the buffers hold several
        // rounds, and a 20 ms wait per round was a fifth of the bench's time).
        let mut wait = match self.busy {
            true => Duration::ZERO,
            false => Duration::from_millis(20),
        };
        let started = Instant::now();
        let mut n = 0usize;
        loop {
            let polled = self.consumer.poll(wait).map(|r| r.map(|m| m.detach()));
            self.handle_group_events()?;
            let Some(result) = polled else { break };
            wait = Duration::ZERO;
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            let Some(topic) = Topic::from_name(m.topic()).filter(|t| t.is_input()) else {
                continue;
            };
            let rank = topic.merge_rank() as usize;
            tracing::trace!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "polled"
            );
            let Some(task) = self.tasks.get_mut(&m.partition()) else {
                tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "record for a partition not assigned here"
                );
                continue;
            };
            if m.offset() < task.next[rank] {
                continue; // already processed before a restart or a rebalance
            }
            if let Some(from) = task.start_ts {
                // A replay from a timestamp starts each input partition at its first record
                // at or after it (as ListOffsets by time does; checked here too, so a
                // broker that answers that request loosely cannot widen the replay).
                if !task.started[rank] {
                    if m.timestamp().to_millis().unwrap_or(i64::MIN) < from {
                        task.next[rank] = m.offset() + 1;
                        continue;
                    }
                    task.started[rank] = true;
                }
            }
            let partitions = self.config.topics.partitions as u32;
            task.buffers[rank].push_back(buffered(&self.wire, topic, partitions, &m));
            n += 1;
            if n >= MAX_BUFFERED || started.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
        self.apply_backpressure()
    }

    /// Pause partitions whose buffers are full; resume them once drained.
    fn apply_backpressure(&mut self) -> Result<(), RuntimeError> {
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        for (p, task) in &self.tasks {
            for (rank, buf) in task.buffers.iter().enumerate() {
                let name = Topic::INPUTS[rank].name();
                if buf.len() >= MAX_BUFFERED {
                    pause.add_partition(name, *p);
                } else if buf.len() < MAX_BUFFERED / 2 {
                    resume.add_partition(name, *p);
                }
            }
        }
        if pause.count() > 0 {
            self.consumer.pause(&pause)?;
        }
        if resume.count() > 0 {
            // Resuming a partition that is not paused is a no-op.
            let _ = self.consumer.resume(&resume);
        }
        Ok(())
    }

    /// One round: the batches processed ahead are sent and committed, and while the commit
    /// waits for the broker the next batches are processed, in memory only (docs/guarantees.md,
    /// "Overlapped rounds"). With nothing processed ahead (the first round, or after one that
    /// held back), the round's batches are processed first.
    fn process_round(&mut self) -> Result<(), RuntimeError> {
        let mut tasks = std::mem::take(&mut self.tasks);
        let result = self.round(&mut tasks);
        self.tasks = tasks;
        result
    }

    fn round(&mut self, tasks: &mut BTreeMap<i32, Task>) -> Result<(), RuntimeError> {
        self.busy = false;
        if !tasks.values().any(|t| t.staged.is_some()) {
            let plans = self.plan_round(tasks);
            if plans.is_empty() {
                return Ok(());
            }
            process_plans(tasks, plans, self.threads, &self.emitter())?;
        }
        // Queries and the live figures read committed state, and a stop or the end of a
        // replay ends the run: such a round processes nothing ahead.
        self.hold_queries();
        let hold_back = !self.held.is_empty()
            || self.live_due(tasks)
            || self.opts.stop.load(Ordering::Relaxed)
            || self.at_end(tasks);
        self.busy = true;
        let commit_started = Instant::now();
        if let Err(e) = self.make_durable(tasks, hold_back) {
            self.durability.abort_round(&self.producer);
            return Err(e);
        }
        self.opts
            .metrics
            .commit_seconds
            .with_label_values(&[self.durability.label()])
            .observe(commit_started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Each task's next batch from its buffers, without polling.
    fn plan_round(&self, tasks: &mut BTreeMap<i32, Task>) -> Vec<Plan> {
        let max_idle = Duration::from_millis(self.config.engine.max_idle_ms.max(0) as u64);
        let mut plans: Vec<Plan> = Vec::new();
        for (p, task) in tasks.iter_mut() {
            let cached: Vec<Option<i64>> = self
                .input_names
                .iter()
                .map(|n| kafka::cached_high_watermark(&self.consumer, n, *p))
                .collect();
            let intent_written = task.replay.is_some();
            task.retry_waiting(&self.wire, self.config.topics.partitions as u32);
            let plan = task.plan(&cached, max_idle);
            if !plan.is_empty() {
                plans.push(Plan {
                    partition: *p,
                    records: plan,
                    intent_written,
                });
            }
            update_lag(&self.opts.metrics, task, &cached);
        }
        plans
    }

    fn emitter(&self) -> Emitter<'_> {
        Emitter {
            wire: &self.wire,
            producer: &self.producer,
            output_names: &self.output_names,
            metrics: &self.opts.metrics,
            changelog: &self.changelog,
            source: &self.source,
        }
    }

    /// Make the batches processed ahead durable: begun as the guarantee wants, sent,
    /// committed, and the local stores caught up. Unless `hold_back`, the next batches are
    /// processed while the commit waits.
    fn make_durable(
        &self,
        tasks: &mut BTreeMap<i32, Task>,
        hold_back: bool,
    ) -> Result<(), RuntimeError> {
        let emitter = self.emitter();
        // 1. Begin: a transaction, or the intents (docs/guarantees.md).
        self.durability
            .begin_round(&self.producer, &self.changelog, tasks)?;
        // 2. The outputs, each partition's in order, partitions side by side.
        let jobs: Vec<&mut Task> = tasks.values_mut().filter(|t| t.staged.is_some()).collect();
        let sent = on_threads(jobs, self.threads, Some(&emitter.workers_cpu()), |task| {
            emitter.send_batch(task)
        })?;
        self.durability.after_outputs(&self.producer)?;
        // 3. State changes and the checkpoint marker, encoded side by side the same way.
        let jobs: Vec<&mut Task> = tasks
            .iter_mut()
            .filter(|(p, _)| sent.contains(p))
            .map(|(_, task)| task)
            .collect();
        let checkpoints = on_threads(jobs, self.threads, Some(&emitter.workers_cpu()), |task| {
            emitter.write_state(task)
        })?;
        let mut offsets = TopicPartitionList::new();
        for p in &sent {
            let task = &tasks[p];
            for (rank, t) in Topic::INPUTS.iter().enumerate() {
                offsets.add_partition_offset(t.name(), *p, Offset::Offset(task.next[rank]))?;
            }
        }
        // 4. Commit: every record of the round acknowledged, the offsets with them. Meanwhile
        //    the next batches are processed from what is buffered (no poll while a round is
        //    in flight: a rebalance finds every round committed).
        let mut plans = match hold_back {
            true => Vec::new(),
            false => self.plan_round(tasks),
        };
        self.durability
            .write_intents_ahead(&self.producer, &self.changelog, &mut plans, tasks)?;
        let threads = self.threads;
        let (committed, processed) = std::thread::scope(|s| {
            let ahead = match plans.is_empty() {
                true => None,
                false => Some(s.spawn(|| {
                    let processed = process_plans(tasks, plans, threads, &emitter);
                    emitter
                        .workers_cpu()
                        .inc_by(crate::metrics::thread_cpu_seconds());
                    processed
                })),
            };
            let committed = self
                .durability
                .commit_round(&self.producer, &self.consumer, &offsets);
            let processed = ahead.map_or(Ok(()), |h| {
                h.join()
                    .map_err(|_| RuntimeError::Other("a worker thread panicked".into()))?
            });
            (committed, processed)
        });
        committed?;
        processed?;
        // 5. Durable: the local state catches up, atomically with its checkpoint, on a thread
        //    of its own while the next round begins (its reads find these rows in memory
        //    until they have landed; the next round's own catching up waits for them).
        for (p, mut checkpoint) in checkpoints {
            let Some(task) = tasks.get_mut(&p) else {
                continue;
            };
            let marker_offset = self
                .producer
                .context()
                .last_offset(&self.changelog, p)
                .unwrap_or(-1);
            checkpoint.changelog_offset = marker_offset;
            task.checkpoint.changelog_offset = marker_offset;
            task.engine.store_mut().start_landing(checkpoint)?;
            let timers = task.engine.state().timers.len() as i64;
            let label = p.to_string();
            let metrics = &self.opts.metrics;
            metrics
                .pending_timers
                .with_label_values(&[&label])
                .set(timers);
            let bytes = task.engine.store().size_bytes();
            metrics
                .state_bytes
                .with_label_values(&[&label])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.durability.after_round(&self.consumer, &offsets);
        Ok(())
    }
}

/// Process each plan's batch into its task's [`Batch`]: partitions side by side on up to
/// `threads` threads, each partition's records in order on one of them.
fn process_plans(
    tasks: &mut BTreeMap<i32, Task>,
    plans: Vec<Plan>,
    threads: usize,
    emitter: &Emitter,
) -> Result<(), RuntimeError> {
    let processing = Instant::now();
    let mut plans: BTreeMap<i32, Plan> = plans.into_iter().map(|p| (p.partition, p)).collect();
    let jobs: Vec<(&mut Task, Plan)> = tasks
        .iter_mut()
        .filter_map(|(p, task)| plans.remove(p).map(|plan| (task, plan)))
        .collect();
    on_threads(
        jobs,
        threads,
        Some(&emitter.workers_cpu()),
        |(task, plan)| emitter.process(task, plan),
    )?;
    emitter
        .metrics
        .processing_seconds
        .observe(processing.elapsed().as_secs_f64());
    Ok(())
}

/// What a partition's batch needs to write its outputs and state changes: shared, read-only,
/// by the threads that process the partitions of a round.
struct Emitter<'a> {
    wire: &'a Wire,
    producer: &'a Producer_,
    output_names: &'a [String],
    metrics: &'a Metrics,
    changelog: &'a str,
    source: &'a str,
}

impl Emitter<'_> {
    /// Where the threads that process and encode partitions count their CPU time.
    fn workers_cpu(&self) -> prometheus::Counter {
        self.metrics
            .engine_cpu_seconds
            .with_label_values(&["workers"])
    }

    /// Run a partition's batch through its engine and encode the outputs, in order, each with
    /// the partition's next sequence number (skipping what a crashed run already wrote): the
    /// task's [`Batch`], sent with its round.
    fn process(&self, task: &mut Task, plan: Plan) -> Result<(), RuntimeError> {
        let mut batch = Batch {
            order: run_lengths(&plan.records),
            intent_written: plan.intent_written,
            seq: task.checkpoint.seq,
            outputs: Vec::new(),
        };
        for (rank, rec) in plan.records {
            let topic = Topic::INPUTS[rank as usize];
            self.metrics
                .records_in
                .with_label_values(&[topic.name()])
                .inc();
            let emitted = task.apply(rec);
            for e in emitted {
                let seq = task.checkpoint.seq;
                task.checkpoint.seq += 1;
                let topic = e.output.topic();
                let name = &self.output_names[topic as usize];
                if task.skip.get(name).is_some_and(|&w| seq <= w) {
                    continue; // written before the crash
                }
                self.metrics.observe_output(&e.output);
                let value = self.wire.encode_output(&e.output).map_err(|err| {
                    RuntimeError::Other(format!("cannot encode an output: {err}"))
                })?;
                batch.outputs.push(Staged {
                    topic,
                    key: e.output.key().map(|k| k.as_bytes().to_vec()),
                    value,
                    ts: e.ts,
                    seq,
                });
            }
        }
        task.replay = None;
        task.skip.clear();
        let dups = task.engine.stats.duplicates;
        self.metrics.duplicates.inc_by(dups - task.duplicates_seen);
        task.duplicates_seen = dups;
        task.staged = Some(batch);
        Ok(())
    }

    /// Send a partition's processed batch; its partition.
    fn send_batch(&self, task: &mut Task) -> Result<i32, RuntimeError> {
        let p = task.partition;
        let Some(batch) = task.staged.take() else {
            return Ok(p);
        };
        let source = format!("{}/{p}", self.source);
        for out in batch.outputs {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: SOURCE_HEADER,
                    value: Some(source.as_bytes()),
                })
                .insert(Header {
                    key: SEQ_HEADER,
                    value: Some(out.seq.to_string().as_bytes()),
                });
            send(
                self.producer,
                &self.output_names[out.topic as usize],
                p,
                out.key.as_deref(),
                Some(&out.value),
                Some(out.ts),
                Some(headers),
            )?;
        }
        Ok(p)
    }

    /// After the outputs are acknowledged: note where they ended, then send the partition's
    /// state changes and its checkpoint marker to the changelog. The changes wait in the
    /// store's `inflight` until the round is durable; the checkpoint they go with.
    fn write_state(&self, task: &mut Task) -> Result<(i32, Checkpoint), RuntimeError> {
        let p = task.partition;
        for t in kafka::output_topics() {
            let name = &self.output_names[t as usize];
            if let Some(last) = self.producer.context().last_offset(name, p) {
                task.checkpoint.outputs.insert(name.clone(), last + 1);
            }
        }
        task.checkpoint_inputs();
        task.engine.flush()?;
        let store = task.engine.store_mut();
        store.inflight = InFlight::new(
            std::mem::take(&mut store.pending),
            std::mem::take(&mut store.pending_local),
        );
        let bytes: usize = store
            .inflight
            .writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.metrics
            .changelog_records
            .inc_by(store.inflight.writes.len() as u64);
        self.metrics.changelog_bytes.inc_by(bytes as u64);
        for (k, v) in &store.inflight.writes {
            send(
                self.producer,
                self.changelog,
                p,
                Some(k),
                v.as_deref(),
                None,
                None,
            )?;
        }
        let marker = meta_bytes(&task.checkpoint)?;
        send(
            self.producer,
            self.changelog,
            p,
            Some(CHECKPOINT_KEY),
            Some(&marker),
            None,
            None,
        )?;
        Ok((p, task.checkpoint.clone()))
    }
}

/// Run `work` on every item, on up to `threads` scoped threads (items dealt round-robin, each
/// thread taking its items in order); inline when one thread would do. The results in the
/// items' order; the first error wins (the runtime is crash-only: a failed round or restore
/// ends it). Used by the rounds and by restores. Each thread it starts adds its CPU time to
/// `cpu`; work done inline is the calling thread's.
fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    cpu: Option<&prometheus::Counter>,
    work: impl Fn(T) -> Result<R, RuntimeError> + Sync,
) -> Result<Vec<R>, RuntimeError> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let mut dealt: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        dealt[i % threads].push((i, item));
    }
    let work = &work;
    let mut done: Vec<(usize, R)> = Vec::new();
    std::thread::scope(|s| -> Result<(), RuntimeError> {
        let mut handles = Vec::with_capacity(dealt.len());
        for (n, share) in dealt.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("switchboard-{n}"))
                .spawn_scoped(s, move || {
                    let done = share
                        .into_iter()
                        .map(|(i, item)| work(item).map(|r| (i, r)))
                        .collect::<Result<Vec<_>, RuntimeError>>();
                    if let Some(cpu) = cpu {
                        cpu.inc_by(crate::metrics::thread_cpu_seconds());
                    }
                    done
                })
                .map_err(|e| RuntimeError::Other(format!("cannot start a thread: {e}")))?;
            handles.push(spawned);
        }
        for h in handles {
            let results = h
                .join()
                .map_err(|_| RuntimeError::Other("a worker thread panicked".into()))??;
            done.extend(results);
        }
        Ok(())
    })?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

fn update_lag(metrics: &Metrics, task: &Task, cached: &[Option<i64>]) {
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
    fn resume(r: Restored) -> Task {
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
    fn plan(&mut self, cached: &[Option<i64>], max_idle: Duration) -> Vec<(u8, Buffered)> {
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
    fn retry_waiting(&mut self, wire: &Wire, partitions: u32) {
        for buf in &mut self.buffers {
            for rec in buf.iter_mut().filter(|r| r.waiting) {
                rec.retry(wire, partitions);
                if rec.waiting {
                    break;
                }
            }
        }
    }

    fn checkpoint_inputs(&mut self) {
        for (rank, t) in Topic::INPUTS.iter().enumerate() {
            self.checkpoint
                .inputs
                .insert(t.name().to_string(), self.next[rank]);
        }
    }

    /// Process one record; its outputs (and dead letter, if any) in order.
    fn apply(&mut self, rec: Buffered) -> Vec<Emitted> {
        apply_record(&mut self.engine, &rec.source, self.partition as u32)
    }
}

fn run_lengths(plan: &[(u8, Buffered)]) -> Vec<(u8, u32)> {
    let mut out: Vec<(u8, u32)> = Vec::new();
    for (rank, _) in plan {
        match out.last_mut() {
            Some((r, n)) if r == rank => *n += 1,
            _ => out.push((*rank, 1)),
        }
    }
    out
}

fn meta_bytes<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec(v).map_err(|e| RuntimeError::Other(e.to_string()))
}

fn parse_meta<T: serde::de::DeserializeOwned>(
    partition: i32,
    payload: Option<&[u8]>,
) -> Result<T, RuntimeError> {
    serde_json::from_slice(payload.unwrap_or_default()).map_err(|e| RuntimeError::Partition {
        partition,
        reason: format!("unreadable changelog marker: {e}"),
    })
}

/// Send one record, waiting for room in the producer's queue.
pub(crate) fn send(
    producer: &Producer_,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    ts: Option<i64>,
    headers: Option<OwnedHeaders>,
) -> Result<(), RuntimeError> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = payload {
        record = record.payload(v);
    }
    if let Some(ts) = ts {
        record = record.timestamp(ts);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{on_threads, InFlight, PartitionStore, RuntimeError};
    use crate::state_store::{Checkpoint, RocksStore};
    use std::collections::HashSet;
    use std::sync::Mutex;
    use switchboard_processors::Store;

    /// Issue 12 (overlapped rounds): while a round's state changes are in flight, the next
    /// batch, processed meanwhile, reads them (an archived conversation named again), newest
    /// first: this round's pending writes, then the round in flight, then RocksDB. Once the
    /// round is durable they are read from RocksDB. Rows for RocksDB alone (the dedup window's
    /// index, R-TIME-1) are read the same way and committed with the round.
    #[test]
    fn writes_in_flight_are_read_before_rocksdb() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut rocks = RocksStore::open(dir.path()).expect("store opens");
        let old = (b"Akey".to_vec(), Some(b"old".to_vec()));
        rocks
            .commit(std::slice::from_ref(&old), &Checkpoint::default())
            .expect("commit");
        let mut store = PartitionStore::new(rocks);
        store.inflight = InFlight::new(
            vec![
                (b"Akey".to_vec(), Some(b"old in flight".to_vec())),
                (b"Bkey".to_vec(), Some(b"other".to_vec())),
                (b"Akey".to_vec(), Some(b"in flight".to_vec())),
            ],
            [(b"Dkey".to_vec(), Some(b"local".to_vec()))]
                .into_iter()
                .collect(),
        );
        let read = |s: &PartitionStore| s.get(b"Akey").expect("read");
        assert_eq!(read(&store), Some(b"in flight".to_vec()));
        store.write(&[(b"Akey".to_vec(), None)]).expect("write");
        assert_eq!(read(&store), None, "a deletion pending now wins");
        store.pending.clear();
        assert_eq!(store.get(b"Bkey").expect("read"), Some(b"other".to_vec()));
        assert_eq!(store.get(b"Ckey").expect("read"), None);
        assert_eq!(store.get(b"Dkey").expect("read"), Some(b"local".to_vec()));
        store
            .write_local(vec![(b"Dkey".to_vec(), None)])
            .expect("write");
        assert_eq!(
            store.get(b"Dkey").expect("read"),
            None,
            "a local deletion pending wins"
        );
        store.pending_local.clear();
        let inflight = std::mem::take(&mut store.inflight);
        store
            .rocks
            .commit_with_local(&inflight.writes, &inflight.local, &Checkpoint::default())
            .expect("commit");
        assert_eq!(read(&store), Some(b"in flight".to_vec()));
        assert_eq!(store.get(b"Dkey").expect("read"), Some(b"local".to_vec()));
    }

    /// Issue 12: a durable round goes into RocksDB on a thread of its own while the next
    /// round begins. Meanwhile reads find its rows (state and local) in memory; a later
    /// round lands after it (its rows win, the checkpoint is the later one); and a store
    /// closed waits for its last round, so the partition's RocksDB can be opened again at
    /// once with every row and the last checkpoint.
    #[test]
    fn a_durable_round_lands_in_rocksdb_while_reads_find_it_first() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rocks = RocksStore::open(dir.path()).expect("store opens");
        rocks
            .commit_with_local(
                &[(b"Akey".to_vec(), Some(b"old".to_vec()))],
                &Default::default(),
                &Checkpoint::default(),
            )
            .expect("commit");
        let mut store = PartitionStore::new(rocks);
        let checkpoint = |offset| Checkpoint {
            changelog_offset: offset,
            ..Checkpoint::default()
        };
        let read = |s: &PartitionStore, key: &[u8]| s.get(key).expect("read");
        store.inflight = InFlight::new(
            vec![
                (b"Akey".to_vec(), Some(b"round 1".to_vec())),
                (b"Bkey".to_vec(), Some(b"round 1".to_vec())),
            ],
            [(b"Dkey".to_vec(), Some(b"local 1".to_vec()))]
                .into_iter()
                .collect(),
        );
        // A landing held back before it writes anything: its rows are read from memory.
        let (release, held) = std::sync::mpsc::channel::<()>();
        store.landing = Some(super::Landing {
            writes: std::sync::Arc::new(InFlight::new(
                vec![(b"Ekey".to_vec(), Some(b"landing".to_vec()))],
                [(b"Fkey".to_vec(), Some(b"landing local".to_vec()))]
                    .into_iter()
                    .collect(),
            )),
            done: std::thread::spawn(move || {
                let _ = held.recv();
                Ok(())
            }),
        });
        assert_eq!(read(&store, b"Ekey"), Some(b"landing".to_vec()));
        assert_eq!(read(&store, b"Fkey"), Some(b"landing local".to_vec()));
        assert_eq!(
            read(&store, b"Akey"),
            Some(b"round 1".to_vec()),
            "in flight first"
        );
        release.send(()).expect("release");
        store.start_landing(checkpoint(7)).expect("landing starts");
        assert!(
            store.inflight.writes.is_empty(),
            "the round in flight is landing"
        );
        assert_eq!(read(&store, b"Akey"), Some(b"round 1".to_vec()));
        assert_eq!(read(&store, b"Dkey"), Some(b"local 1".to_vec()));
        store.inflight = InFlight::new(
            vec![(b"Akey".to_vec(), Some(b"round 2".to_vec()))],
            Default::default(),
        );
        assert_eq!(read(&store, b"Akey"), Some(b"round 2".to_vec()));
        assert_eq!(read(&store, b"Bkey"), Some(b"round 1".to_vec()));
        store.start_landing(checkpoint(9)).expect("landing starts");
        assert_eq!(read(&store, b"Akey"), Some(b"round 2".to_vec()));
        drop(store);
        let reopened = RocksStore::open(dir.path()).expect("the store was closed");
        assert_eq!(
            reopened.checkpoint().expect("checkpoint"),
            Some(checkpoint(9))
        );
        for (key, value) in [
            (&b"Akey"[..], &b"round 2"[..]),
            (b"Bkey", b"round 1"),
            (b"Dkey", b"local 1"),
        ] {
            assert_eq!(reopened.get(key).expect("read"), Some(value.to_vec()));
        }
    }

    /// Issue 12: a round's partitions processed side by side come back in the partitions'
    /// order, each exactly once, whatever the number of threads; every item is worked on
    /// by one thread, and more than one thread is used when asked.
    #[test]
    fn on_threads_keeps_the_order_and_uses_the_threads() {
        for threads in [0, 1, 2, 3, 8] {
            let seen = Mutex::new(HashSet::new());
            let items: Vec<u32> = (0..7).collect();
            let out = on_threads(items, threads, None, |i| {
                if let Ok(mut s) = seen.lock() {
                    s.insert(std::thread::current().id());
                }
                Ok(i * 10)
            })
            .unwrap_or_default();
            assert_eq!(out, vec![0, 10, 20, 30, 40, 50, 60], "threads {threads}");
            let used = seen.lock().map(|s| s.len()).unwrap_or(0);
            assert_eq!(used, threads.clamp(1, 7), "threads {threads}");
        }
    }

    /// A failed partition fails the round (the runtime is crash-only), with its own error.
    #[test]
    fn on_threads_returns_the_failure() {
        let result = on_threads((0..4).collect::<Vec<i32>>(), 2, None, |p| {
            if p == 2 {
                Err(RuntimeError::Partition {
                    partition: p,
                    reason: "broken".into(),
                })
            } else {
                Ok(p)
            }
        });
        match result {
            Err(RuntimeError::Partition { partition, .. }) => assert_eq!(partition, 2),
            other => panic!("expected partition 2's error, got {other:?}"),
        }
    }
}
