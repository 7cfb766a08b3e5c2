//! The long-running commands: `run`, `replay`, `ticker`: logging, signals, the HTTP endpoints,
//! the built-in ticker and the runtime, wired together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_schemas::{Codec, Input, Tick, Topic};

use crate::config::Config;
use crate::directory::{advertised_url, Directory};
use crate::http;
use crate::kafka::{self, Producer_};
use crate::metrics::Metrics;
use crate::runtime::{send, RunOptions, Runtime, StartFrom};

/// Structured logs to stderr (`RUST_LOG` filters; default `info`), as readable lines.
pub fn init_logging() {
    init_logging_as(crate::config::LogFormat::Text);
}

/// Structured logs to stderr in `format` (`log.format`: text lines, or one JSON object per
/// line for log shippers).
pub fn init_logging_as(format: crate::config::LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // apache-avro warns at every start about the schemas' unions of one branch (`cc.actions`'
    // `action`, with room for more kinds by design): nothing a user can act on.
    if let Ok(quiet) = "apache_avro=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        crate::config::LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// A flag set by SIGINT or SIGTERM: finish the round in flight, then stop (R-RUN-7).
pub fn stop_on_signal() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    crate::spawn_async("signals", async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: finishing the round in flight");
        flag.store(true, Ordering::Relaxed);
    })?;
    Ok(stop)
}

/// Write a `Tick` to every partition of `cc.ticks` every `ticker.interval_ms` until `stop`
/// (SPEC §1.5).
pub fn run_ticker(config: &Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    let producer = kafka::idempotent_producer(config).map_err(|e| format!("ticker: {e}"))?;
    let codec = Codec::new().map_err(|e| e.to_string())?;
    let interval = Duration::from_millis(config.ticker.interval_ms as u64);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        send_ticks(
            &producer,
            &codec,
            &Tick::default(),
            config.topics.partitions,
            wall_clock_ms(),
        )
        .map_err(|e| format!("ticker: {e}"))?;
        kafka::flush(&producer, Duration::from_secs(30)).map_err(|e| format!("ticker: {e}"))?;
        next += interval;
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.min(Duration::from_millis(200)));
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Send `tick` with timestamp `ts` to each of the first `partitions` partitions of `cc.ticks`.
pub(crate) fn send_ticks(
    producer: &Producer_,
    codec: &Codec,
    tick: &Tick,
    partitions: i32,
    ts: i64,
) -> Result<(), String> {
    let value = Input::Tick(tick.clone())
        .encode(codec)
        .map_err(|e| e.to_string())?;
    for p in 0..partitions {
        send(
            producer,
            Topic::Ticks.name(),
            p,
            None,
            Some(&value),
            Some(ts),
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch by the wall clock.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `run` and `replay`: log, serve HTTP, start the ticker if enabled, and run the engine until
/// SIGINT or SIGTERM ends it.
/// Whether the application id's consumer group has committed offsets on any input
/// partition: a replay `--from-beginning` under it would silently resume instead.
pub fn has_committed_offsets(config: &Config) -> Result<bool, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = {
        let mut c = kafka::client_config(config);
        c.set("group.id", &config.kafka.application_id)
            .set("enable.auto.commit", "false");
        c.create()
            .map_err(|e| format!("cannot create a Kafka client: {e}"))?
    };
    let mut tpl = TopicPartitionList::new();
    for t in switchboard_schemas::Topic::INPUTS {
        for p in 0..config.topics.partitions {
            tpl.add_partition(t.name(), p);
        }
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .map_err(|e| format!("cannot read the group's committed offsets: {e}"))?;
    Ok(committed
        .elements()
        .iter()
        .any(|e| matches!(e.offset(), Offset::Offset(o) if o >= 0)))
}

pub fn run_engine(
    config: Config,
    output_suffix: String,
    start: StartFrom,
    until_end: bool,
) -> Result<Metrics, String> {
    init_logging_as(config.log.format);
    for name in &config.ignored_env {
        tracing::debug!(variable = %name, "ignored: not a SWITCHBOARD__<SECTION>__<KEY> override");
    }
    let stop = stop_on_signal()?;
    let metrics = Metrics::new();
    let (queries, inbox) = http::query_channel();
    let directory = Directory::new(&config.instance_id(), "");
    let addr = http::serve(
        &config.http.listen,
        metrics.clone(),
        Some(queries),
        Some(directory.clone()),
    )?;
    directory.set_url(&advertised_url(&config, addr));
    tracing::info!(
        %addr,
        advertised = %directory.url(),
        "serving the wallboard at /, /metrics, /healthz, /readyz and queries under /tenants"
    );
    kafka::wait_for_brokers(&config, &stop)?;
    if config.topics.create {
        kafka::create_topics(&config, &output_suffix).map_err(|e| e.to_string())?;
    }
    directory.connect(&config)?;
    let ticker = if config.ticker.enabled {
        let (c, s) = (config.clone(), stop.clone());
        Some(
            std::thread::Builder::new()
                .name("ticker".into())
                .spawn(move || run_ticker(&c, s))
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let opts = RunOptions {
        output_suffix,
        start,
        stop: stop.clone(),
        metrics: metrics.clone(),
        queries: Some(inbox),
        until_end,
        directory: Some(directory),
    };
    let result = Runtime::new(config, opts)
        .and_then(Runtime::run)
        .map_err(|e| e.to_string());
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        match t.join() {
            Ok(Err(e)) if result.is_ok() => return Err(e),
            _ => {}
        }
    }
    result.map(|()| metrics)
}
