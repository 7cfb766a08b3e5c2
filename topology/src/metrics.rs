//! Prometheus metrics (SPEC §12.4): the pipeline figures the runtime records and the domain
//! figures read off the outputs. `crate::http` serves them.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use switchboard_schemas::{
    AgentStateEventKind, AnalyticsDimension, AnalyticsWindow, AssignmentEventKind,
    ConversationEventKind, CsatEventKind, Output, SentimentEventKind, SlaEventKind, Topic,
};

/// Most distinct queue label values on the analytics metrics.
pub const MAX_QUEUE_LABELS: usize = 200;

/// The durations of an analytics window, with their metric label.
/// Every figure the runtime exports. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub duplicates: IntCounter,
    pub dlq: IntCounter,
    pub processing_seconds: Histogram,
    pub commit_seconds: HistogramVec,
    /// CPU time of the runtime's own threads (`runtime`: the thread that polls, plans and
    /// commits rounds; `workers`: the threads that process and encode partitions side by
    /// side; `store`: the threads that write each durable round to RocksDB), beside which
    /// librdkafka's and RocksDB's background threads are not counted.
    pub engine_cpu_seconds: prometheus::CounterVec,
    /// State rows written to the changelog (tombstones included) and their bytes.
    pub changelog_records: IntCounter,
    pub changelog_bytes: IntCounter,
    pub lag: IntGaugeVec,
    pub restore_records: IntCounter,
    pub restoring_partitions: IntGauge,
    pub assigned_partitions: IntGauge,
    pub pending_timers: IntGaugeVec,
    /// Per partition: the state's size in bytes, and changelog records left to restore.
    pub state_bytes: IntGaugeVec,
    pub restore_remaining: IntGaugeVec,
    pub conversations: IntCounterVec,
    pub assignments: IntCounterVec,
    pub sla: IntCounterVec,
    pub sentiment: IntCounterVec,
    pub csat: IntCounterVec,
    pub agent_status: IntCounterVec,
    /// Workflow runs by workflow and trigger, and the actions they ran by type.
    pub workflow_runs: IntCounterVec,
    pub workflow_actions: IntCounterVec,
    /// Records rejected because their workflow cascade passed the bound, by the workflow named.
    pub workflow_rejections: IntCounterVec,
    /// The action executor (`switchboard actions`): requests by outcome, attempts by result,
    /// retries, dead letters and the time from first attempt to outcome.
    pub action_requests: IntCounterVec,
    pub action_attempts: IntCounterVec,
    pub action_retries: IntCounter,
    pub action_dlq: IntCounter,
    pub action_seconds: Histogram,
    /// Live figures (R-RUN-4), refreshed every few seconds from the engines' state: open
    /// conversations, each queue's waiting conversations and longest wait, agents by status
    /// group. Labelled by tenant only when `metrics.tenant_labels` is on (else `all`).
    pub open_conversations: IntGaugeVec,
    pub queue_waiting: IntGaugeVec,
    pub queue_longest_wait: prometheus::GaugeVec,
    pub agents: IntGaugeVec,
    /// Per queue, from the `cc.analytics` windows (corrections included): SLA targets met and
    /// breached, CSAT answers, message sentiment, and the durations' sums and counts; the
    /// p50 and p90 of the latest window with durations. Queue label values are capped at
    /// [`MAX_QUEUE_LABELS`] (the rest read `other`).
    pub queue_sla: IntCounterVec,
    pub queue_csat: IntCounterVec,
    pub queue_sentiment: IntCounterVec,
    pub queue_duration_sum: prometheus::CounterVec,
    pub queue_duration_count: IntCounterVec,
    pub queue_duration_quantile: prometheus::GaugeVec,
    queue_labels: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// 1 while `/readyz` answers 200.
    pub ready_gauge: IntGauge,
    pub build_info: IntGaugeVec,
    /// Set once the consumer has joined and every assigned partition is restored.
    pub ready: Arc<AtomicBool>,
}

/// Register a metric just made (`made` fails only on a bad name or labels: a bug here).
fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    name: &str,
    made: prometheus::Result<C>,
) -> C {
    let c = made.unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, name, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, name, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A gauge vector of fractional values (seconds).
fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    register(
        r,
        name,
        prometheus::GaugeVec::new(Opts::new(name, help), labels),
    )
}

/// CPU time the calling thread has used so far, in seconds (0 where the platform cannot
/// tell).
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` writes one `timespec` through a pointer to a live one.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// Run `work` as the whole body of a thread, then add the thread's CPU time to `cpu`.
pub fn count_thread_cpu<R>(cpu: Option<&prometheus::Counter>, work: impl FnOnce() -> R) -> R {
    let done = work();
    if let Some(cpu) = cpu {
        cpu.inc_by(thread_cpu_seconds());
    }
    done
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, name, IntCounter::new(name, help))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, name, IntGauge::new(name, help))
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let processing_seconds = register(
            &r,
            "switchboard_processing_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_processing_seconds",
                    "Time to process one batch of input records through the processors",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            ),
        );
        let commit_seconds = register(
            &r,
            "switchboard_commit_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_commit_seconds",
                    "Time to make a batch durable (outputs, changelog, offsets), by guarantee",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["guarantee"],
            ),
        );
        let action_seconds = register(
            &r,
            "switchboard_action_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_action_seconds",
                    "Time from a Call API request's first attempt to its outcome, retries included",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0,
                ]),
            ),
        );
        Metrics {
            records_in: counter_vec(
                &r,
                "switchboard_records_in_total",
                "Input records processed, by topic",
                &["topic"],
            ),
            records_out: counter_vec(
                &r,
                "switchboard_records_out_total",
                "Output records written, by topic",
                &["topic"],
            ),
            duplicates: counter(
                &r,
                "switchboard_duplicate_records_total",
                "Input records dropped because their id was already processed (R-TIME-1)",
            ),
            dlq: counter(
                &r,
                "switchboard_dlq_records_total",
                "Records sent to the dead-letter topic",
            ),
            processing_seconds,
            commit_seconds,
            engine_cpu_seconds: register(
                &r,
                "switchboard_engine_cpu_seconds_total",
                prometheus::CounterVec::new(
                    Opts::new(
                        "switchboard_engine_cpu_seconds_total",
                        "CPU time of the runtime's own threads, by role (runtime, workers, store)",
                    ),
                    &["thread"],
                ),
            ),
            changelog_records: counter(
                &r,
                "switchboard_changelog_records_total",
                "State rows written to the changelog topics, deletions included",
            ),
            changelog_bytes: counter(
                &r,
                "switchboard_changelog_bytes_total",
                "Bytes of keys and values written to the changelog topics",
            ),
            lag: gauge_vec(
                &r,
                "switchboard_consumer_lag",
                "Records not yet processed, by input topic and partition",
                &["topic", "partition"],
            ),
            restore_records: counter(
                &r,
                "switchboard_restore_records_total",
                "Changelog records applied while restoring state",
            ),
            restoring_partitions: gauge(
                &r,
                "switchboard_restoring_partitions",
                "Partitions whose state is being restored",
            ),
            assigned_partitions: gauge(
                &r,
                "switchboard_assigned_partitions",
                "Partitions this instance processes",
            ),
            pending_timers: gauge_vec(
                &r,
                "switchboard_pending_timers",
                "Timers scheduled and not yet fired, by partition",
                &["partition"],
            ),
            state_bytes: gauge_vec(
                &r,
                "switchboard_state_bytes",
                "Approximate size of a partition's state store (live data on disk and memtables)",
                &["partition"],
            ),
            restore_remaining: gauge_vec(
                &r,
                "switchboard_restore_remaining_records",
                "Changelog records a partition still has to read before it is restored (0 once it is)",
                &["partition"],
            ),
            conversations: counter_vec(
                &r,
                "switchboard_conversation_events_total",
                "Conversation events, by kind",
                &["kind"],
            ),
            assignments: counter_vec(
                &r,
                "switchboard_assignment_events_total",
                "Assignment events, by kind and method",
                &["kind", "method"],
            ),
            sla: counter_vec(
                &r,
                "switchboard_sla_events_total",
                "SLA events, by kind and metric",
                &["kind", "metric"],
            ),
            sentiment: counter_vec(
                &r,
                "switchboard_sentiment_messages_total",
                "Customer messages by sentiment label; other_language: not scored (another language)",
                &["label"],
            ),
            csat: counter_vec(
                &r,
                "switchboard_csat_events_total",
                "CSAT survey events, by kind and answer (happy, not_happy)",
                &["kind", "score"],
            ),
            agent_status: counter_vec(
                &r,
                "switchboard_agent_state_events_total",
                "Agent state events, by kind and status group",
                &["kind", "group"],
            ),
            workflow_runs: counter_vec(
                &r,
                "switchboard_workflow_runs_total",
                "Workflow runs (trigger fired, condition held), by workflow and trigger",
                &["workflow", "trigger"],
            ),
            workflow_actions: counter_vec(
                &r,
                "switchboard_workflow_actions_total",
                "Actions of the workflows that ran, by action",
                &["action"],
            ),
            workflow_rejections: counter_vec(
                &r,
                "switchboard_workflow_rejections_total",
                "Records dead-lettered because their workflow cascade passed the bound, by the workflow named",
                &["workflow"],
            ),
            action_requests: counter_vec(
                &r,
                "switchboard_action_requests_total",
                "Call API requests the executor finished, by outcome (succeeded, failed, undecodable)",
                &["outcome"],
            ),
            action_attempts: counter_vec(
                &r,
                "switchboard_action_attempts_total",
                "HTTP attempts by result (2xx, 3xx, 4xx, 429, 5xx, timeout, connect, other)",
                &["result"],
            ),
            action_retries: counter(
                &r,
                "switchboard_action_retries_total",
                "Attempts after the first (timeouts, connection errors, 429 and 5xx)",
            ),
            action_dlq: counter(
                &r,
                "switchboard_action_dlq_total",
                "Requests dead-lettered after their last attempt, or undecodable",
            ),
            action_seconds,
            open_conversations: gauge_vec(
                &r,
                "switchboard_open_conversations",
                "Conversations that are not Closed",
                &["tenant"],
            ),
            queue_waiting: gauge_vec(
                &r,
                "switchboard_queue_waiting",
                "Conversations waiting unassigned in a queue (queue depth)",
                &["tenant", "queue"],
            ),
            queue_longest_wait: float_gauge_vec(
                &r,
                "switchboard_queue_longest_wait_seconds",
                "How long the longest-waiting conversation of a queue has waited, in stream time",
                &["tenant", "queue"],
            ),
            agents: gauge_vec(
                &r,
                "switchboard_agents",
                "Enabled agents by status group",
                &["tenant", "group"],
            ),
            queue_sla: counter_vec(
                &r,
                "switchboard_queue_sla_total",
                "SLA targets met and breached, by queue, metric and result (from cc.analytics)",
                &["queue", "metric", "result"],
            ),
            queue_csat: counter_vec(
                &r,
                "switchboard_queue_csat_total",
                "CSAT answers by queue and score (from cc.analytics)",
                &["queue", "score"],
            ),
            queue_sentiment: counter_vec(
                &r,
                "switchboard_queue_sentiment_total",
                "Customer messages by queue and sentiment label (from cc.analytics)",
                &["queue", "label"],
            ),
            queue_duration_sum: {
                let name = "switchboard_queue_duration_seconds_total";
                let help = "Sum of time to assign, first response and handling times, by queue (from cc.analytics)";
                register(
                    &r,
                    name,
                    prometheus::CounterVec::new(Opts::new(name, help), &["queue", "measure"]),
                )
            },
            queue_duration_count: counter_vec(
                &r,
                "switchboard_queue_durations_total",
                "Count of time to assign, first response and handling times, by queue (from cc.analytics)",
                &["queue", "measure"],
            ),
            queue_duration_quantile: float_gauge_vec(
                &r,
                "switchboard_queue_duration_quantile_seconds",
                "p50 and p90 of the latest analytics window with durations, by queue and measure",
                &["queue", "measure", "quantile"],
            ),
            queue_labels: Arc::default(),
            ready_gauge: gauge(
                &r,
                "switchboard_ready",
                "1 while this instance holds partitions and every one is restored (/readyz)",
            ),
            build_info: {
                let g = gauge_vec(
                    &r,
                    "switchboard_build_info",
                    "The build: Switchboard's and librdkafka's versions (value 1)",
                    &["version", "librdkafka"],
                );
                let (librdkafka, _) = crate::kafka::librdkafka_build();
                g.with_label_values(&[env!("CARGO_PKG_VERSION"), &librdkafka])
                    .set(1);
                g
            },
            ready: Arc::new(AtomicBool::new(false)),
            registry: {
                // process_cpu_seconds_total, process_resident_memory_bytes, open fds...
                #[cfg(target_os = "linux")]
                let _ = r.register(Box::new(
                    prometheus::process_collector::ProcessCollector::for_self(),
                ));
                r
            },
        }
    }

    /// Count one output record: per topic, and the domain figures it carries. Label values are
    /// the records' own names (variant names, snake_case enum symbols); a field the record
    /// leaves out reads `none`, so no label value is blank.
    pub fn observe_output(&self, output: &Output) {
        self.records_out
            .with_label_values(&[output.topic().name()])
            .inc();
        let or_none = |s: &'static str| if s.is_empty() { "none" } else { s };
        match output {
            Output::Conversation(e) => {
                self.conversations
                    .with_label_values(&[variant_name(&e.event)])
                    .inc();
                if let ConversationEventKind::WorkflowRan(w) = &e.event {
                    let label = |s: &str| {
                        if s.is_empty() {
                            "none".to_string()
                        } else {
                            s.to_string()
                        }
                    };
                    self.workflow_runs
                        .with_label_values(&[&label(&w.workflow_id), &label(&w.trigger)])
                        .inc();
                    for action in &w.actions {
                        self.workflow_actions.with_label_values(&[action]).inc();
                    }
                }
            }
            Output::Assignment(e) => {
                let method = match &e.event {
                    AssignmentEventKind::Assigned(a) => variant_name(&a.method),
                    _ => "none",
                };
                self.assignments
                    .with_label_values(&[variant_name(&e.event), or_none(method)])
                    .inc();
            }
            Output::Sla(e) => {
                let metric = match &e.event {
                    SlaEventKind::SlaBreached(b) => variant_name(&b.metric),
                    SlaEventKind::SlaMet(m) => variant_name(&m.metric),
                    _ => "none",
                };
                self.sla
                    .with_label_values(&[variant_name(&e.event), or_none(metric)])
                    .inc();
            }
            // Each customer message once (not the conversation's running mood).
            Output::Sentiment(e) => {
                if let SentimentEventKind::MessageSentiment(m) = &e.event {
                    // A message in another language was not scored: its own label.
                    let label = if m.language.is_some() {
                        "other_language"
                    } else {
                        variant_name(&m.label)
                    };
                    self.sentiment.with_label_values(&[label]).inc();
                }
            }
            Output::Csat(e) => {
                let score = match &e.event {
                    CsatEventKind::SurveyFeedback(f) => {
                        f.score.as_ref().map_or("none", variant_name)
                    }
                    _ => "none",
                };
                self.csat
                    .with_label_values(&[variant_name(&e.event), or_none(score)])
                    .inc();
            }
            Output::AgentState(e) => {
                let group = match &e.event {
                    AgentStateEventKind::AgentStatus(s) => variant_name(&s.group),
                    _ => "none",
                };
                self.agent_status
                    .with_label_values(&[variant_name(&e.event), or_none(group)])
                    .inc();
            }
            Output::Analytics(w) => self.observe_window(w),
            Output::DeadLetter(d) => {
                self.dlq.inc();
                if let Some(workflow) = cascade_workflow(&d.reason) {
                    self.workflow_rejections
                        .with_label_values(&[workflow])
                        .inc();
                }
            }
            _ => {}
        }
    }

    /// A queue's analytics window: add its counts and durations to the queue's series.
    fn observe_window(&self, w: &AnalyticsWindow) {
        if w.dimension != AnalyticsDimension::Queue || w.key.is_empty() {
            return;
        }
        let queue = {
            let mut seen = self.queue_labels.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains(&w.key) || seen.len() < MAX_QUEUE_LABELS {
                seen.insert(w.key.clone());
                w.key.clone()
            } else {
                "other".to_string()
            }
        };
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        for (counts, result) in [(&w.sla_met, "met"), (&w.sla_breached, "breached")] {
            for (metric, count) in [
                ("first_response", counts.first_response),
                ("next_reply", counts.next_reply),
                ("resolution", counts.resolution),
            ] {
                if n(count) > 0 {
                    self.queue_sla
                        .with_label_values(&[&queue, metric, result])
                        .inc_by(n(count));
                }
            }
        }
        for (count, score) in [(w.csat_happy, "happy"), (w.csat_not_happy, "not_happy")] {
            if n(count) > 0 {
                self.queue_csat
                    .with_label_values(&[&queue, score])
                    .inc_by(n(count));
            }
        }
        for (count, label) in [
            (w.sentiment_positive, "positive"),
            (w.sentiment_neutral, "neutral"),
            (w.sentiment_negative, "negative"),
        ] {
            if n(count) > 0 {
                self.queue_sentiment
                    .with_label_values(&[&queue, label])
                    .inc_by(n(count));
            }
        }
        let measures = [
            ("time_to_assign", &w.time_to_assign),
            ("first_response", &w.first_response),
            ("handling", &w.handling),
        ];
        for (measure, d) in measures {
            let count = n(d.count);
            if count == 0 {
                continue;
            }
            let seconds = |ms: i64| ms as f64 / 1000.0;
            self.queue_duration_count
                .with_label_values(&[&queue, measure])
                .inc_by(count);
            self.queue_duration_sum
                .with_label_values(&[&queue, measure])
                .inc_by(seconds(d.sum_ms).max(0.0));
            if !w.correction {
                for (p, q) in [(d.p50_ms, "0.5"), (d.p90_ms, "0.9")] {
                    if let Some(ms) = p {
                        self.queue_duration_quantile
                            .with_label_values(&[&queue, measure, q])
                            .set(seconds(ms));
                    }
                }
            }
        }
    }

    /// The sum of a counter vector over the series whose labels include every
    /// `(name, value)` pair of `want`.
    pub fn total(vec: &IntCounterVec, want: &[(&str, &str)]) -> u64 {
        use prometheus::core::Collector;
        vec.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                want.iter().all(|(name, value)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *name && l.value() == *value)
                })
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The name of every metric registered, whether or not it has a value yet.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: Vec<&dyn Collector> = vec![
            &self.records_in,
            &self.records_out,
            &self.duplicates,
            &self.dlq,
            &self.processing_seconds,
            &self.commit_seconds,
            &self.engine_cpu_seconds,
            &self.changelog_records,
            &self.changelog_bytes,
            &self.lag,
            &self.restore_records,
            &self.restoring_partitions,
            &self.assigned_partitions,
            &self.pending_timers,
            &self.queue_sla,
            &self.queue_csat,
            &self.queue_sentiment,
            &self.queue_duration_sum,
            &self.queue_duration_count,
            &self.queue_duration_quantile,
            &self.state_bytes,
            &self.restore_remaining,
            &self.conversations,
            &self.assignments,
            &self.sla,
            &self.sentiment,
            &self.csat,
            &self.agent_status,
            &self.workflow_runs,
            &self.workflow_actions,
            &self.workflow_rejections,
            &self.action_requests,
            &self.action_attempts,
            &self.action_retries,
            &self.action_dlq,
            &self.action_seconds,
            &self.open_conversations,
            &self.queue_waiting,
            &self.queue_longest_wait,
            &self.agents,
            &self.ready_gauge,
            &self.build_info,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }

    /// Set the live figures from every partition held here (tenant → figures, each queue
    /// with its longest wait in ms). With `tenant_labels` the `max_tenants` tenants with the
    /// most open conversations get their own label value and the rest `other`; without, every
    /// series is `tenant="all"`. Series of queues and tenants that are gone are dropped.
    pub fn set_live(
        &self,
        tenants: &BTreeMap<String, LiveTenant>,
        tenant_labels: bool,
        max_tenants: usize,
    ) {
        let mut ranked: Vec<(&String, &LiveTenant)> = tenants.iter().collect();
        ranked.sort_by(|a, b| b.1.open.cmp(&a.1.open).then(a.0.cmp(b.0)));
        let label = |i: usize, name: &str| -> String {
            match (tenant_labels, i < max_tenants) {
                (false, _) => "all".into(),
                (true, true) => name.to_string(),
                (true, false) => "other".into(),
            }
        };
        let mut open: BTreeMap<String, u64> = BTreeMap::new();
        let mut queues: BTreeMap<(String, String), (u64, i64)> = BTreeMap::new();
        let mut agents: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for (i, (name, t)) in ranked.into_iter().enumerate() {
            let tenant = label(i, name);
            *open.entry(tenant.clone()).or_default() += t.open;
            for (queue, (waiting, longest)) in &t.queues {
                let q = queues.entry((tenant.clone(), queue.clone())).or_default();
                q.0 += waiting;
                q.1 = q.1.max(*longest);
            }
            for ((_, group), n) in switchboard_processors::query::GROUPS.iter().zip(t.agents) {
                *agents.entry((tenant.clone(), group)).or_default() += n;
            }
        }
        self.open_conversations.reset();
        self.queue_waiting.reset();
        self.queue_longest_wait.reset();
        self.agents.reset();
        for (tenant, n) in open {
            self.open_conversations
                .with_label_values(&[&tenant])
                .set(n as i64);
        }
        for ((tenant, queue), (waiting, longest)) in queues {
            self.queue_waiting
                .with_label_values(&[&tenant, &queue])
                .set(waiting as i64);
            self.queue_longest_wait
                .with_label_values(&[&tenant, &queue])
                .set(longest.max(0) as f64 / 1000.0);
        }
        for ((tenant, group), n) in agents {
            self.agents
                .with_label_values(&[&tenant, group])
                .set(n as i64);
        }
    }

    /// The Prometheus text exposition of every metric.
    /// Drop a partition's gauges when it leaves this instance: its figures are now another
    /// instance's to report.
    pub fn forget_partition(&self, partition: i32) {
        let label = partition.to_string();
        for g in [
            &self.pending_timers,
            &self.state_bytes,
            &self.restore_remaining,
        ] {
            let _ = g.remove_label_values(&[&label]);
        }
        for t in Topic::INPUTS {
            let _ = self.lag.remove_label_values(&[t.name(), &label]);
        }
    }

    pub fn render(&self) -> String {
        self.ready_gauge.set(i64::from(
            self.ready.load(std::sync::atomic::Ordering::Relaxed),
        ));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// One tenant's live figures as the metrics take them ([`Metrics::set_live`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveTenant {
    pub open: u64,
    /// Queue → (conversations waiting, the longest wait in ms).
    pub queues: BTreeMap<String, (u64, i64)>,
    /// Agents per status group, in [`switchboard_processors::query::GROUPS`] order.
    pub agents: [u64; 4],
}

/// The workflow a cascade rejection names (`... (workflow "w" was next) ...`).
fn cascade_workflow(reason: &str) -> Option<&str> {
    if !reason.starts_with("workflows ran more than") {
        return None;
    }
    let rest = &reason[reason.find("(workflow \"")? + 11..];
    rest.get(..rest.find('"')?)
}

/// A union value in the JSON mirror is `{"VariantName": {fields}}`.
/// The serde name of an enum value's variant (a union branch's name, or a snake_case symbol),
/// found without serializing its content.
fn variant_name<T: serde::Serialize>(value: &T) -> &'static str {
    value.serialize(VariantName).unwrap_or("none")
}

/// A serializer that answers with the variant's name and refuses everything else.
struct VariantName;

#[derive(Debug)]
struct NotAVariant;

impl std::fmt::Display for NotAVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an enum variant")
    }
}

impl std::error::Error for NotAVariant {}

impl serde::ser::Error for NotAVariant {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotAVariant
    }
}

impl serde::Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotAVariant;
    type SerializeSeq = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTuple = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTupleStruct = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTupleVariant = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeMap = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeStruct = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeStructVariant = serde::ser::Impossible<&'static str, NotAVariant>;

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<&'static str, NotAVariant> {
        Ok(variant)
    }

    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<&'static str, NotAVariant> {
        Ok(variant)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAVariant> {
        Err(NotAVariant)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAVariant> {
        Err(NotAVariant)
    }

    fn serialize_bool(self, _: bool) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_i8(self, _: i8) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_i16(self, _: i16) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_i32(self, _: i32) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_i64(self, _: i64) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_u8(self, _: u8) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_u16(self, _: u16) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_u32(self, _: u32) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_u64(self, _: u64) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_f32(self, _: f32) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_f64(self, _: f64) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_char(self, _: char) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_str(self, _: &str) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_none(self) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(
        self,
        _: &T,
    ) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_unit(self) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotAVariant> {
        Err(NotAVariant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_schemas::Output;

    /// R-RUN-4: every metric the Grafana dashboards query is one the engine exports.
    #[test]
    fn r_run_4_dashboards_query_only_exported_metrics() {
        let names = Metrics::new().names();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("dashboards folder") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
            for panel in json["panels"].as_array().expect("panels") {
                for target in panel["targets"].as_array().expect("targets") {
                    let expr = target["expr"].as_str().expect("expr");
                    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        if !word.starts_with("switchboard_") {
                            continue;
                        }
                        let base = word
                            .trim_end_matches("_bucket")
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count");
                        assert!(
                            names.iter().any(|n| n == base),
                            "{}: {word} is not exported",
                            path.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} metric references found");
    }

    /// R-RUN-4: every metric the alert rules (docker/alerts.yml) use is one the engine or the
    /// executor exports (promtool checks their syntax in CI).
    #[test]
    fn r_run_4_alert_rules_use_only_exported_metrics() {
        let names = Metrics::new().names();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/alerts.yml"))
                .expect("docker/alerts.yml");
        let mut checked = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("switchboard_") {
                continue;
            }
            assert!(names.iter().any(|n| n == word), "{word} is not exported");
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} metric references found");
    }

    /// R-RUN-4, R-FLOW: workflow runs are counted by workflow and trigger, their actions by
    /// type, and a cascade rejection by the workflow it names.
    #[test]
    fn r_run_4_workflow_runs_actions_and_rejections_are_counted() {
        let m = Metrics::new();
        let ran = serde_json::json!({"id": "x#0", "tenant": "acme", "conversation_id": "c1",
            "short_id": 1, "event": {"WorkflowRan": {"workflow_id": "nudge",
            "trigger": "agent_did_not_reply_for", "actions": ["add_note", "unassign_agent"]}}});
        m.observe_output(&Output::from_json(Topic::ConversationEvents, ran).expect("event"));
        let dead = serde_json::json!({"id": "d", "source_topic": "cc.commands", "value": "",
            "reason": "workflows ran more than 1000 times for one record (workflow \"w07\" was next): too wide"});
        m.observe_output(&Output::from_json(Topic::Dlq, dead).expect("dead letter"));
        let text = m.render();
        for want in [
            "switchboard_workflow_runs_total{trigger=\"agent_did_not_reply_for\",workflow=\"nudge\"} 1",
            "switchboard_workflow_actions_total{action=\"unassign_agent\"} 1",
            "switchboard_conversation_events_total{kind=\"WorkflowRan\"} 1",
            "switchboard_workflow_rejections_total{workflow=\"w07\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
    }

    /// R-RUN-4: the live figures: by default one `all` series per queue (waiting summed,
    /// longest wait the longest); with tenant labels the biggest tenants by name and the rest
    /// as `other`; no blank label values; series of queues that emptied are dropped.
    #[test]
    fn r_run_4_live_gauges_aggregate_and_cap_tenant_labels() {
        let m = Metrics::new();
        let tenant = |open, waiting, longest, available| LiveTenant {
            open,
            queues: [("support".to_string(), (waiting, longest))].into(),
            agents: [available, 1, 0, 0],
        };
        let tenants: BTreeMap<String, LiveTenant> = [
            ("acme".to_string(), tenant(10, 3, 90_000, 2)),
            ("globex".to_string(), tenant(4, 1, 30_000, 1)),
            ("initech".to_string(), tenant(2, 2, 120_000, 0)),
        ]
        .into();
        m.set_live(&tenants, false, 50);
        let text = m.render();
        for want in [
            "switchboard_open_conversations{tenant=\"all\"} 16",
            "switchboard_queue_waiting{queue=\"support\",tenant=\"all\"} 6",
            "switchboard_queue_longest_wait_seconds{queue=\"support\",tenant=\"all\"} 120",
            "switchboard_agents{group=\"available\",tenant=\"all\"} 3",
            "switchboard_agents{group=\"busy\",tenant=\"all\"} 3",
            "switchboard_ready 0",
            "switchboard_build_info{",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        m.set_live(&tenants, true, 1);
        let text = m.render();
        for want in [
            "switchboard_open_conversations{tenant=\"acme\"} 10",
            "switchboard_open_conversations{tenant=\"other\"} 6",
            "switchboard_queue_longest_wait_seconds{queue=\"support\",tenant=\"other\"} 120",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        assert!(
            !text.contains("tenant=\"all\""),
            "stale series kept: {text}"
        );
        assert!(!text.contains("=\"\""), "a blank label value: {text}");
    }

    /// R-RUN-4: outputs are counted per topic and by their domain figures.
    #[test]
    fn r_run_4_outputs_feed_the_domain_figures() {
        let m = Metrics::new();
        let json = serde_json::json!({"id": "x#0", "tenant": "acme", "conversation_id": "c1",
            "event": {"Assigned": {"agent_id": "ana", "method": "single", "score": null}}});
        let output = Output::from_json(Topic::Assignments, json).expect("assignment");
        m.observe_output(&output);
        let text = m.render();
        assert!(
            text.contains("switchboard_records_out_total{topic=\"cc.assignments\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchboard_assignment_events_total{kind=\"Assigned\",method=\"single\"} 1"
            ),
            "{text}"
        );
        // Each topic's labels: variant names, snake_case symbols, `none` where a record has
        // no such field.
        for (topic, json) in [
            (
                Topic::SlaEvents,
                serde_json::json!({"id": "s", "tenant": "acme", "conversation_id": "c1",
                "event": {"SlaBreached": {"metric": "first_response", "due_at": 1, "breached_at": 2}}}),
            ),
            (
                Topic::SlaEvents,
                serde_json::json!({"id": "s2", "tenant": "acme", "conversation_id": "c1",
                "event": {"SlaRecalculated": {}}}),
            ),
            (
                Topic::Sentiment,
                serde_json::json!({"id": "m", "tenant": "acme", "conversation_id": "c1",
                "event": {"MessageSentiment": {"message_id": "m1", "score": -0.5, "label": "negative"}}}),
            ),
            (
                Topic::Csat,
                serde_json::json!({"id": "c", "tenant": "acme", "conversation_id": "c1",
                "event": {"SurveyFeedback": {"score": "not_happy"}}}),
            ),
            (
                Topic::Csat,
                serde_json::json!({"id": "c2", "tenant": "acme", "conversation_id": "c1",
                "event": {"SurveySuppressed": {"reason": "opted out"}}}),
            ),
            (
                Topic::AgentState,
                serde_json::json!({"id": "a", "tenant": "acme", "agent_id": "ana",
                "event": {"AgentStatus": {"status": "Lunch", "group": "away"}}}),
            ),
        ] {
            let output = Output::from_json(topic, json).expect("an output");
            m.observe_output(&output);
        }
        let text = m.render();
        for want in [
            "switchboard_sla_events_total{kind=\"SlaBreached\",metric=\"first_response\"} 1",
            "switchboard_sla_events_total{kind=\"SlaRecalculated\",metric=\"none\"} 1",
            "switchboard_sentiment_messages_total{label=\"negative\"} 1",
            "switchboard_csat_events_total{kind=\"SurveyFeedback\",score=\"not_happy\"} 1",
            "switchboard_csat_events_total{kind=\"SurveySuppressed\",score=\"none\"} 1",
            "switchboard_agent_state_events_total{group=\"away\",kind=\"AgentStatus\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
    }

    /// R-RUN-4 (issue 16 item 5): a queue's analytics window feeds the per-queue SLA, CSAT
    /// and sentiment counters, the durations' sums and counts, and the latest p50 and p90; a
    /// correction adds to the counts but leaves the percentiles; an agent's window adds
    /// nothing.
    #[test]
    fn r_run_4_analytics_windows_feed_the_queue_figures() {
        let m = Metrics::new();
        let window = |dimension: &str, correction: bool, p50: i64| {
            let dist = |count: i64, sum: i64, p: Option<i64>| serde_json::json!({"count": count, "sum_ms": sum, "max_ms": sum, "p50_ms": p, "p90_ms": p});
            let json = serde_json::json!({"id": "w#0", "tenant": "acme", "dimension": dimension,
                "key": "billing", "window_start": 0, "window_end": 60000, "correction": correction,
                "offered": 3, "assigned": 2, "abandoned": 0, "solved": 1,
                "time_to_assign": dist(2, 4000, Some(p50)), "first_response": dist(0, 0, None),
                "handling": dist(0, 0, None),
                "sla_met": {"first_response": 2, "next_reply": 0, "resolution": 1},
                "sla_breached": {"first_response": 1, "next_reply": 0, "resolution": 0},
                "csat_happy": 1, "csat_not_happy": 0,
                "sentiment_positive": 0, "sentiment_neutral": 2, "sentiment_negative": 1});
            let output = Output::from_json(Topic::Analytics, json).expect("analytics window");
            m.observe_output(&output);
        };
        window("queue", false, 1500);
        window("queue", true, 9000);
        window("agent", false, 7000);
        let text = m.render();
        for line in [
            "switchboard_queue_sla_total{metric=\"first_response\",queue=\"billing\",result=\"met\"} 4",
            "switchboard_queue_sla_total{metric=\"first_response\",queue=\"billing\",result=\"breached\"} 2",
            "switchboard_queue_csat_total{queue=\"billing\",score=\"happy\"} 2",
            "switchboard_queue_sentiment_total{label=\"negative\",queue=\"billing\"} 2",
            "switchboard_queue_durations_total{measure=\"time_to_assign\",queue=\"billing\"} 4",
            "switchboard_queue_duration_seconds_total{measure=\"time_to_assign\",queue=\"billing\"} 8",
            "switchboard_queue_duration_quantile_seconds{measure=\"time_to_assign\",quantile=\"0.5\",queue=\"billing\"} 1.5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("measure=\"first_response\""),
            "empty measures add nothing"
        );
    }
}
