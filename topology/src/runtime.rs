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
//! the partitions the group assigns (in parallel) is in [`restore`]; a round's work on its
//! partitions (processing, encoding, sending) in [`rounds`]; a partition's input buffers,
//! decoding and timestamp merge in [`partition`]; the partition's state store, RocksDB with
//! the rounds not yet in it, in [`store`].

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_processors::partition::partition_of;
use switchboard_processors::query::{Answer, Query};
use switchboard_processors::{Settings, StoreError};
use switchboard_schemas::Topic;

use crate::config::Config;
use crate::http::{QueryInbox, Reply};
use crate::kafka::{self, Producer_};
use crate::metrics::{count_thread_cpu, Metrics};
use crate::registry::Wire;

mod guarantee;
mod partition;
mod restore;
mod rounds;
mod store;
use guarantee::Durability;
pub use partition::decode_input;
use partition::{buffered, run_lengths, update_lag, Batch, Plan, Staged, Task};
use restore::Restorer;
pub(crate) use rounds::send;
use rounds::{on_threads, process_plans, Emitter};
pub use store::PartitionStore;

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
                    count_thread_cpu(Some(&emitter.workers_cpu()), || {
                        process_plans(tasks, plans, threads, &emitter)
                    })
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
            let metrics = &self.opts.metrics;
            let cpu = metrics.engine_cpu_seconds.with_label_values(&["store"]);
            task.engine.store_mut().start_landing(checkpoint, cpu)?;
            let timers = task.engine.state().timers.len() as i64;
            let label = p.to_string();
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
