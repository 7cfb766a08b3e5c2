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
use crate::metrics::{thread_cpu_seconds, Metrics};
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
    /// The engine's processing threads (`engine.threads`; 0: one per core).
    pub threads: i64,
    /// Runs of the in-process engine and of each guarantee, alternating (1 or more).
    pub repeat: usize,
}

const PASSTHROUGH_TOPIC: &str = "bench.passthrough";

/// The broker to run against: the one `opts` names, or a mock cluster in this process (kept
/// alive by the caller); its bootstrap address.
fn broker(
    opts: &BenchOptions,
) -> Result<
    (
        Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
        String,
    ),
    String,
> {
    match &opts.bootstrap_servers {
        Some(b) => Ok((None, b.clone())),
        None => {
            let mock = MockCluster::new(1).map_err(|e| format!("mock cluster: {e}"))?;
            let bootstrap = mock.bootstrap_servers();
            Ok((Some(mock), bootstrap))
        }
    }
}

/// Run the benchmark and return its report.
pub fn run(opts: &BenchOptions) -> Result<String, String> {
    let (mock, bootstrap) = broker(opts)?;
    let run_id = std::process::id();
    let repeat = opts.repeat.max(1);
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
        c.engine.threads = opts.threads;
        c.state.dir = std::env::temp_dir()
            .join(format!("switchboard-bench-{run_id}"))
            .display()
            .to_string();
        c
    };
    // Each repetition runs as applications of its own (its own consumer group, changelog
    // and state), over the same input topics.
    let round = |i: usize| {
        let app = |name: &str| match i {
            0 => name.to_string(),
            i => format!("{name}-{i}"),
        };
        let eos = base(&app("bench-eos"), Guarantee::ExactlyOnce);
        let dedup = base(&app("bench-dedup"), Guarantee::Deduplicated);
        // The same without the cc.analytics windows: what they cost through Kafka.
        let mut lean = base(&app("bench-lean"), Guarantee::Deduplicated);
        lean.engine.analytics = false;
        // The same with the dedup window's ids in memory rather than looked up in RocksDB.
        let mut ids = base(&app("bench-ids"), Guarantee::Deduplicated);
        ids.engine.dedup_window_in_memory = true;
        (eos, dedup, lean, ids)
    };
    let rounds: Vec<(Config, Config, Config, Config)> = (0..repeat).map(round).collect();
    let dedup = rounds[0].1.clone();
    // Topics: the mock cluster creates them itself (its admin API does not answer).
    // Every run's topics (the shared inputs and outputs, each run's changelog and instance
    // directory), once each.
    let mut topics: Vec<String> = rounds
        .iter()
        .flat_map(|(a, b, c, d)| [a, b, c, d])
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
            for (a, b, c, d) in &rounds {
                for config in [a, b, c, d] {
                    kafka::create_topics(config, "").map_err(|e| e.to_string())?;
                }
            }
            let mut one = dedup.clone();
            one.kafka.application_id = PASSTHROUGH_TOPIC.into();
            kafka::create_topics(&one, "").map_err(|e| e.to_string())?;
        }
    }
    let records = produce_workload(&dedup, opts)?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "switchboard bench: {records} input records ({} messages, {} tenants, {PARTITIONS} partitions, engine threads {}) on {}",
        opts.messages,
        opts.tenants,
        match opts.threads { 0 => "one per core".to_string(), n => n.to_string() },
        if mock.is_some() { "librdkafka's in-process mock cluster".to_string() } else { bootstrap.clone() }
    );
    let pass = passthrough(&dedup, records)?;
    let _ = writeln!(
        report,
        "{:<14} {:>10.0} records/s  (baseline)",
        "passthrough", pass
    );
    // Per run name, each repetition's ratio to the in-process run just before it.
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cpu_ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (i, (eos, dedup, lean, ids)) in rounds.into_iter().enumerate() {
        if repeat > 1 {
            let _ = writeln!(report, "run {} of {repeat}", i + 1);
        }
        let (alone, alone_cpu) = in_process(opts)?;
        let _ = writeln!(
            report,
            "{:<14} {:>10.0} records/s  the engine alone on the same records, one thread (no Kafka); {:.2} µs of CPU a record",
            "in-process", alone, alone_cpu * 1e6
        );
        let mut runs = Vec::new();
        if !opts.skip_exactly_once {
            runs.push(("exactly_once", eos));
        }
        runs.push(("deduplicated", dedup));
        runs.push(("no analytics", lean));
        runs.push(("ids in memory", ids));
        let mut rates = BTreeMap::new();
        for (name, config) in runs {
            let guarantee = match config.kafka.guarantee {
                Guarantee::ExactlyOnce => "exactly_once",
                Guarantee::Deduplicated => "deduplicated",
            };
            let (rate, metrics) = engine(config, records)?;
            rates.insert(name, rate);
            let ratio = rate / alone.max(f64::MIN_POSITIVE);
            ratios.entry(name).or_default().push(ratio);
            let _ = writeln!(
                report,
                "{name:<14} {rate:>10.0} records/s  ratio to passthrough {:.3}, to in-process {ratio:.2}",
                rate / pass.max(f64::MIN_POSITIVE),
            );
            // The runtime's own threads' CPU per record against the engine's alone: what
            // the runtime adds, apart from the broker's and librdkafka's threads, which
            // share this machine's cores (issue 12 counts either figure).
            let cpu = |role: &str| metrics.engine_cpu_seconds.with_label_values(&[role]).get();
            let (runtime_cpu, workers_cpu, store_cpu) =
                (cpu("runtime"), cpu("workers"), cpu("store"));
            let per_record = (runtime_cpu + workers_cpu + store_cpu) / records.max(1) as f64;
            let cpu_ratio = alone_cpu / per_record.max(f64::MIN_POSITIVE);
            cpu_ratios.entry(name).or_default().push(cpu_ratio);
            let _ = writeln!(
                report,
                "{:<14} engine threads' CPU {:.2} µs a record (runtime thread {runtime_cpu:.2} s, workers {workers_cpu:.2} s, RocksDB writes {store_cpu:.2} s), in-process CPU ÷ this {cpu_ratio:.2}",
                "",
                per_record * 1e6,
            );
            let per_input = |n: u64| n as f64 / records.max(1) as f64;
            let _ = writeln!(
                report,
                "{:<14} written per input record: {:.2} outputs, {:.2} changelog rows of {:.0} bytes",
                "",
                per_input(Metrics::total(&metrics.records_out, &[])),
                per_input(metrics.changelog_records.get()),
                metrics.changelog_bytes.get() as f64
                    / metrics.changelog_records.get().max(1) as f64,
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
        // `deduplicated` against each of its variants: what the difference costs.
        let variants = [
            ("no analytics", "analytics", "with / without cc.analytics"),
            (
                "ids in memory",
                "dedup window",
                "with the dedup window in RocksDB / in memory",
            ),
        ];
        for (variant, label, what) in variants {
            if let (Some(base), Some(other)) = (rates.get("deduplicated"), rates.get(variant)) {
                let _ = writeln!(
                    report,
                    "{label:<14} deduplicated {what}: {:.2}",
                    base / other.max(f64::MIN_POSITIVE)
                );
            }
        }
    }
    if repeat > 1 {
        for (what, all) in [("ratio", ratios), ("CPU ratio", cpu_ratios)] {
            for (name, mut rs) in all {
                rs.sort_by(f64::total_cmp);
                let listed: Vec<String> = rs.iter().map(|r| format!("{r:.2}")).collect();
                let _ = writeln!(
                    report,
                    "{name:<14} median {what} to in-process {:.2} over {repeat} runs ({})",
                    median(&rs),
                    listed.join(", ")
                );
            }
        }
    }
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("switchboard-bench-{run_id}")));
    Ok(report)
}

fn produce_workload(config: &Config, opts: &BenchOptions) -> Result<u64, String> {
    write_records(
        config,
        &workload::contact_center(opts.tenants, opts.messages),
    )
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

/// The median of sorted `xs` (the mean of the middle two for an even count).
fn median(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The same records through the engine in process (`simulate`'s path: merge, every
/// processor, state flushed at the end), decoded beforehand: what the runtime's engine
/// thread would do with no Kafka at all. The median of three runs: records per second, and
/// seconds of this thread's CPU per record.
fn in_process(opts: &BenchOptions) -> Result<(f64, f64), String> {
    let sources: Vec<SourceRecord> = workload::contact_center_sources(opts.tenants, opts.messages);
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let records = sources.clone();
        let started = Instant::now();
        let cpu = thread_cpu_seconds();
        simulation::run(records, PARTITIONS as u32, &Settings::default())
            .map_err(|e| e.to_string())?;
        cpus.push((thread_cpu_seconds() - cpu) / sources.len().max(1) as f64);
        rates.push(sources.len() as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    Ok((median(&rates), median(&cpus)))
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

/// `switchboard bench --restart-conversations N`: the time from process start to the first
/// output after a SIGKILL, with `N` conversations open over 4 partitions (issue 12).
///
/// The engine runs as a child process of this one (the `run` command of the same binary)
/// against the broker: the mock cluster lives in this process and the child reaches it over
/// loopback. The child processes the generated tenants' config and `N` first messages from
/// distinct customers (each opens a conversation), is killed with SIGKILL once idle, and is
/// started again; one more message is then written, and the figure is from the restart to that
/// message's `Opened` event on `cc.conversation-events`. The child's own log gives how long
/// restoring each partition took.
pub fn restart(opts: &BenchOptions, conversations: usize) -> Result<String, String> {
    let (mock, bootstrap) = broker(opts)?;
    let run_id = std::process::id();
    let dir = std::env::temp_dir().join(format!("switchboard-restart-{run_id}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut config = Config::default();
    config.kafka.bootstrap_servers = bootstrap.clone();
    config.kafka.application_id = format!("bench-restart-{run_id}");
    config.kafka.guarantee = if opts.skip_exactly_once {
        Guarantee::Deduplicated
    } else {
        Guarantee::ExactlyOnce
    };
    config.kafka.instance_id = "bench".into();
    config.kafka.properties = opts.properties.iter().cloned().collect();
    config.topics.partitions = PARTITIONS;
    config.topics.create = mock.is_none();
    config.engine.threads = opts.threads;
    config.ticker.enabled = false;
    config.state.dir = dir.join("state").display().to_string();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?
    };
    config.http.listen = listen.to_string();
    let config_path = dir.join("switchboard.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    match &mock {
        Some(m) => {
            for (t, _) in kafka::topic_plan(&config, "") {
                m.create_topic(&t, PARTITIONS, 1)
                    .map_err(|e| format!("create {t}: {e}"))?;
            }
        }
        None => {
            kafka::create_topics(&config, "").map_err(|e| e.to_string())?;
        }
    }

    // The tenants' config and agents, then one first message per customer.
    let mut records = workload::contact_center(opts.tenants, 0);
    let t0 = records.iter().map(|r| r.ts).max().unwrap_or(0) + 1_000;
    let message = |i: usize| workload::Record {
        topic: Topic::Inbound,
        key: Some(format!("t{}", i % opts.tenants)),
        ts: t0 + i as i64,
        partition: None,
        value: serde_json::json!({"id": format!("open-{i}"), "tenant": format!("t{}", i % opts.tenants),
            "channel": "sms", "from": format!("+1{i:010}"), "to": "support", "content": "hello"}),
    };
    records.extend((0..conversations).map(message));
    let total = write_records(&config, &records)?;

    let log = dir.join("engine.log");
    let first = Child::start(&config_path, &log)?;
    let processed = first.wait_for_records(listen, total, Duration::from_secs(1_800));
    // Let the last round become durable: the figure is a restart's, not a crash recovery's
    // (which also re-runs the batch in flight).
    std::thread::sleep(Duration::from_secs(5));
    first.kill();
    processed?;

    // SIGKILLed with everything processed; start again, then one more customer writes.
    let events = Topic::ConversationEvents.name();
    let reader = kafka::reader(&config, "read_committed").map_err(|e| e.to_string())?;
    let extra = message(conversations);
    let extra_partition = partition_of(
        &format!("t{}", conversations % opts.tenants),
        PARTITIONS as u32,
    ) as i32;
    let (_, before) =
        kafka::watermarks(&reader, events, extra_partition).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let second = Child::start(&config_path, &log)?;
    write_records(&config, std::slice::from_ref(&extra))?;
    let opened = wait_for_opened(&reader, events, extra_partition, before, &extra_id(&extra));
    let elapsed = started.elapsed().as_secs_f64();
    second.kill();
    opened?;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let restore_lines: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("state restored"))
        .collect();
    let restored: Vec<f64> = restore_lines
        .iter()
        .filter_map(|l| log_field(l, "seconds"))
        .collect();
    // The partitions restore side by side: the wall time of the second run's restore.
    let parallel = log_text
        .lines()
        .filter(|l| l.contains("restored in parallel"))
        .filter_map(|l| log_field(l, "seconds"))
        .next_back();
    // From the second runtime's start to the group's assignment: the broker's part.
    let assigned_after = log_text
        .lines()
        .filter_map(|l| log_field(l, "assigned_after_seconds"))
        .next_back();
    // The second run's restores are the last `PARTITIONS` lines.
    let second_restores = &restored[restored.len().saturating_sub(PARTITIONS as usize)..];
    let mut report = String::new();
    let _ = writeln!(
        report,
        "switchboard bench --restart-conversations {conversations}: {total} input records ({} tenants, {PARTITIONS} partitions, {:?}) on {}",
        opts.tenants,
        config.kafka.guarantee,
        if mock.is_some() { "librdkafka's in-process mock cluster".to_string() } else { bootstrap }
    );
    let _ = writeln!(
        report,
        "restart after SIGKILL: {elapsed:.2} s from process start to the first output; restoring the partitions took {} s ({} s side by side)",
        second_restores
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" + "),
        parallel.map_or("?".to_string(), |s| format!("{s:.2}"))
    );
    // Where the slowest partition's restore went (its log line's fields).
    if let Some(slowest) = restore_lines
        .iter()
        .rev()
        .take(PARTITIONS as usize)
        .max_by(|a, b| {
            let seconds = |l: &str| log_field(l, "seconds").unwrap_or(0.0);
            seconds(a).total_cmp(&seconds(b))
        })
    {
        let field =
            |name: &str| log_field(slowest, name).map_or("?".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            report,
            "the slowest partition: opening the store {} s, the changelog past the checkpoint {} s, loading the state {} s, offsets and output positions {} s",
            field("open_seconds"),
            field("changelog_seconds"),
            field("load_seconds"),
            field("positions_seconds")
        );
    }
    if let Some(a) = assigned_after {
        let _ = writeln!(
            report,
            "of which {a:.2} s waiting for the consumer group to assign the partitions (the broker's wait for the killed member); the other {:.2} s: the process starting, the restore, the first round",
            elapsed - a
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// The number a log line gives for `name` (tracing's ` name=value` fields).
fn log_field(line: &str, name: &str) -> Option<f64> {
    line.split(&format!(" {name}="))
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn extra_id(r: &workload::Record) -> String {
    r.value["id"].as_str().unwrap_or_default().to_string()
}

/// Write `records` (each on its tenant's partition, or its explicit one); how many.
fn write_records(config: &Config, records: &[workload::Record]) -> Result<u64, String> {
    let codec = Codec::new().map_err(|e| e.to_string())?;
    let producer = kafka::idempotent_producer(config).map_err(|e| e.to_string())?;
    for r in records {
        let bytes = Input::from_json(r.topic, r.value.clone())?
            .encode(&codec)
            .map_err(|e| e.to_string())?;
        let p = r.partition.unwrap_or_else(|| {
            partition_of(
                tenant_of_key(r.key.as_deref().unwrap_or("")),
                PARTITIONS as u32,
            ) as i32
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
    }
    kafka::flush(&producer, Duration::from_secs(300))?;
    Ok(records.len() as u64)
}

/// Wait for the `Opened` event caused by input record `id` on `topic`/`partition`, reading
/// from `from`.
fn wait_for_opened(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    id: &str,
) -> Result<(), String> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))
        .map_err(|e| e.to_string())?;
    reader.assign(&tpl).map_err(|e| e.to_string())?;
    let codec = Codec::new().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let Some(m) = reader.poll(Duration::from_millis(5)) else {
            continue;
        };
        let m = m.map_err(|e| e.to_string())?;
        let Ok(json) = codec
            .schema(Topic::ConversationEvents)
            .decode(m.payload().unwrap_or_default())
        else {
            continue;
        };
        let cause = json["id"].as_str().unwrap_or_default();
        if cause.starts_with(&format!("{id}#")) && json["event"].get("Opened").is_some() {
            return Ok(());
        }
    }
    Err(format!("no Opened event for {id} within 600 s"))
}

/// The engine as a child process: `switchboard run --config <path>`, logging to `log`.
struct Child(std::process::Child);

impl Child {
    fn start(config: &std::path::Path, log: &std::path::Path) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| e.to_string())?;
        std::process::Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map(Child)
            .map_err(|e| format!("cannot start the engine: {e}"))
    }

    /// Wait until the child's `/metrics` count `want` input records.
    fn wait_for_records(
        &self,
        addr: std::net::SocketAddr,
        want: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if records_in(addr) >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the engine did not process {want} records in time"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `switchboard_records_in_total` summed over topics, from the engine's `/metrics` (0 while it
/// does not answer).
fn records_in(addr: std::net::SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("switchboard_records_in_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
