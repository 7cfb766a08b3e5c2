//! `switchboard bench`: end-to-end throughput through Kafka, in one run on the same broker and
//! the same input records:
//!
//! - `passthrough`: the no-op consume → produce loop a user would write (each record's bytes
//!   copied to a topic of the same partition as it is consumed, no flush in the loop, offsets
//!   committed asynchronously every 100 ms): the ceiling that the broker and client set;
//! - `exactly_once` and `deduplicated`: the engine, from an empty state, until it has
//!   processed every input record.
//!
//! Figures are input records per second of wall clock, from the first record handled to the
//! last (joining the group and restoring are left out); the engine's are also given as a
//! ratio to the passthrough's, which is what to compare across machines.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_processors::partition::{partition_of, tenant_of_key};
use switchboard_processors::simulation::{self, SourceRecord};
use switchboard_processors::Settings;
use switchboard_schemas::{Codec, Input, Topic};

use crate::config::{Config, Guarantee};
use crate::kafka;
use crate::metrics::Metrics;
use crate::runtime::{send, RunOptions, Runtime, StartFrom};
use crate::workload::{self, PARTITIONS};

pub struct BenchOptions {
    /// Customer messages to generate (the workload adds config, commands and ticks).
    pub messages: usize,
    pub tenants: usize,
    /// An external broker; none: librdkafka's in-process mock cluster.
    pub bootstrap_servers: Option<String>,
    /// Skip `exactly_once` (for brokers without transactions).
    pub skip_exactly_once: bool,
    /// Extra librdkafka properties for every client (e.g. `batch.num.messages=1` on tansu).
    pub properties: Vec<(String, String)>,
}

const PASSTHROUGH_TOPIC: &str = "bench.passthrough";

/// Run the benchmark and return its report.
pub fn run(opts: &BenchOptions) -> Result<String, String> {
    let mock = match &opts.bootstrap_servers {
        Some(_) => None,
        None => Some(MockCluster::new(1).map_err(|e| format!("mock cluster: {e}"))?),
    };
    let bootstrap = match (&opts.bootstrap_servers, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => return Err("no broker".into()),
    };
    let run_id = std::process::id();
    let base = |app: &str, guarantee: Guarantee| {
        let mut c = Config::default();
        c.kafka.bootstrap_servers = bootstrap.clone();
        c.kafka.application_id = format!("{app}-{run_id}");
        c.kafka.guarantee = guarantee;
        c.kafka.instance_id = "bench".into();
        c.kafka.properties = opts.properties.iter().cloned().collect();
        c.topics.partitions = PARTITIONS;
        c.topics.create = false;
        c.ticker.enabled = false;
        c.state.dir = std::env::temp_dir()
            .join(format!("switchboard-bench-{run_id}"))
            .display()
            .to_string();
        c
    };
    let eos = base("bench-eos", Guarantee::ExactlyOnce);
    let dedup = base("bench-dedup", Guarantee::Deduplicated);
    // The same without the cc.analytics windows: what they cost through Kafka.
    let mut lean = base("bench-lean", Guarantee::Deduplicated);
    lean.engine.analytics = false;
    // Topics: the mock cluster creates them itself (its admin API does not answer).
    // Every run's topics (the shared inputs and outputs, each run's changelog and instance
    // directory), once each.
    let mut topics: Vec<String> = [&eos, &dedup, &lean]
        .into_iter()
        .flat_map(|c| kafka::topic_plan(c, ""))
        .map(|(n, _)| n)
        .collect();
    topics.push(PASSTHROUGH_TOPIC.into());
    topics.sort();
    topics.dedup();
    match &mock {
        Some(m) => {
            for t in &topics {
                m.create_topic(t, PARTITIONS, 1)
                    .map_err(|e| format!("create {t}: {e}"))?;
            }
        }
        None => {
            kafka::create_topics(&eos, "").map_err(|e| e.to_string())?;
            kafka::create_topics(&dedup, "").map_err(|e| e.to_string())?;
            kafka::create_topics(&lean, "").map_err(|e| e.to_string())?;
            let mut one = dedup.clone();
            one.kafka.application_id = PASSTHROUGH_TOPIC.into();
            kafka::create_topics(&one, "").map_err(|e| e.to_string())?;
        }
    }
    let records = produce_workload(&dedup, opts)?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "switchboard bench: {records} input records ({} messages, {} tenants, {PARTITIONS} partitions) on {}",
        opts.messages,
        opts.tenants,
        if mock.is_some() { "librdkafka's in-process mock cluster".to_string() } else { bootstrap.clone() }
    );
    let pass = passthrough(&dedup, records)?;
    let _ = writeln!(
        report,
        "{:<14} {:>10.0} records/s  (baseline)",
        "passthrough", pass
    );
    let alone = in_process(opts)?;
    let _ = writeln!(
        report,
        "{:<14} {:>10.0} records/s  the engine alone on the same records, one thread (no Kafka)",
        "in-process", alone
    );
    let mut runs = Vec::new();
    if !opts.skip_exactly_once {
        runs.push(("exactly_once", eos));
    }
    runs.push(("deduplicated", dedup));
    runs.push(("no analytics", lean));
    let mut rates = BTreeMap::new();
    for (name, config) in runs {
        let guarantee = match config.kafka.guarantee {
            Guarantee::ExactlyOnce => "exactly_once",
            Guarantee::Deduplicated => "deduplicated",
        };
        let (rate, metrics) = engine(config, records)?;
        rates.insert(name, rate);
        let _ = writeln!(
            report,
            "{name:<14} {rate:>10.0} records/s  ratio to passthrough {:.3}, to in-process {:.2}",
            rate / pass.max(f64::MIN_POSITIVE),
            rate / alone.max(f64::MIN_POSITIVE)
        );
        let rounds = metrics.processing_seconds.get_sample_count();
        let _ = writeln!(
            report,
            "{:<14} {rounds} rounds: processing and encoding {:.2} s, each round made durable {:.2} s in all",
            "",
            metrics.processing_seconds.get_sample_sum(),
            metrics
                .commit_seconds
                .with_label_values(&[guarantee])
                .get_sample_sum(),
        );
    }
    if let (Some(with), Some(without)) = (rates.get("deduplicated"), rates.get("no analytics")) {
        let _ = writeln!(
            report,
            "{:<14} deduplicated with / without cc.analytics: {:.2}",
            "analytics",
            with / without.max(f64::MIN_POSITIVE)
        );
    }
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("switchboard-bench-{run_id}")));
    Ok(report)
}

fn produce_workload(config: &Config, opts: &BenchOptions) -> Result<u64, String> {
    let codec = Codec::new().map_err(|e| e.to_string())?;
    let producer = kafka::idempotent_producer(config).map_err(|e| e.to_string())?;
    let mut n = 0u64;
    for r in workload::contact_center(opts.tenants, opts.messages) {
        let bytes = Input::from_json(r.topic, r.value)?
            .encode(&codec)
            .map_err(|e| e.to_string())?;
        let p = r.partition.unwrap_or_else(|| {
            let tenant = tenant_of_key(r.key.as_deref().unwrap_or(""));
            partition_of(tenant, PARTITIONS as u32) as i32
        });
        send(
            &producer,
            r.topic.name(),
            p,
            r.key.as_deref().map(str::as_bytes),
            Some(&bytes),
            Some(r.ts),
            None,
        )
        .map_err(|e| e.to_string())?;
        n += 1;
    }
    kafka::flush(&producer, Duration::from_secs(120))?;
    Ok(n)
}

/// The no-op loop a user would write: records/s from the first record until every input
/// record is copied and acknowledged. It streams: each record is sent as it is consumed, the
/// producer is never flushed inside the loop (delivery reports are served as they come), and
/// the consumed offsets are committed asynchronously every 100 ms (at least once).
fn passthrough(config: &Config, records: u64) -> Result<f64, String> {
    let consumer: BaseConsumer = {
        let mut c = kafka::client_config(config);
        c.set(
            "group.id",
            format!("{}-passthrough", config.kafka.application_id),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky");
        c.create().map_err(|e| e.to_string())?
    };
    let producer = kafka::idempotent_producer(config).map_err(|e| e.to_string())?;
    let topics: Vec<&str> = Topic::INPUTS.iter().map(|t| t.name()).collect();
    let started = Instant::now();
    consumer.subscribe(&topics).map_err(|e| e.to_string())?;
    let deadline = started + Duration::from_secs(600);
    let mut done = 0u64;
    let mut first: Option<Instant> = None;
    let mut committed = Instant::now();
    while done < records {
        if Instant::now() > deadline {
            return Err(format!("passthrough stalled at {done} of {records}"));
        }
        match consumer.poll(Duration::from_millis(if done == 0 { 20 } else { 1 })) {
            Some(m) => {
                first.get_or_insert_with(Instant::now);
                let m = m.map_err(|e| e.to_string())?;
                send(
                    &producer,
                    PASSTHROUGH_TOPIC,
                    m.partition(),
                    m.key(),
                    m.payload(),
                    m.timestamp().to_millis(),
                    None,
                )
                .map_err(|e| e.to_string())?;
                producer.poll(Duration::ZERO);
                done += 1;
            }
            None => producer.poll(Duration::ZERO),
        }
        if committed.elapsed() >= Duration::from_millis(100) {
            // Nothing committed yet is not an error worth stopping a benchmark for.
            let _ = consumer.commit_consumer_state(CommitMode::Async);
            committed = Instant::now();
        }
    }
    kafka::flush(&producer, Duration::from_secs(60))?;
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    let from = first.unwrap_or(started);
    Ok(records as f64 / from.elapsed().as_secs_f64())
}

/// The same records through the engine in process (`simulate`'s path: merge, every
/// processor, state flushed at the end), decoded beforehand: what the runtime's engine
/// thread would do with no Kafka at all. The median of three runs.
fn in_process(opts: &BenchOptions) -> Result<f64, String> {
    let sources: Vec<SourceRecord> = workload::contact_center_sources(opts.tenants, opts.messages);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let records = sources.clone();
        let started = Instant::now();
        simulation::run(records, PARTITIONS as u32, &Settings::default())
            .map_err(|e| e.to_string())?;
        rates.push(sources.len() as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[1])
}

/// The engine from empty state: records/s until it has processed every input record.
fn engine(config: Config, records: u64) -> Result<(f64, Metrics), String> {
    let metrics = Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        output_suffix: String::new(),
        start: StartFrom::Committed,
        stop: stop.clone(),
        metrics: metrics.clone(),
        queries: None,
        until_end: false,
        directory: None,
    };
    let started = Instant::now();
    let handle = std::thread::spawn(move || {
        Runtime::new(config, opts)
            .and_then(Runtime::run)
            .map_err(|e| e.to_string())
    });
    let deadline = started + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let n = Metrics::total(&metrics.records_in, &[]);
        if n > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if n >= records || handle.is_finished() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = first.unwrap_or(started).elapsed().as_secs_f64();
    let processed = Metrics::total(&metrics.records_in, &[]);
    stop.store(true, Ordering::Relaxed);
    let result = handle
        .join()
        .map_err(|_| "the engine thread panicked".to_string())?;
    result?;
    if processed < records {
        return Err(format!(
            "the engine processed {processed} of {records} records"
        ));
    }
    Ok((records as f64 / elapsed, metrics))
}
