//! The action executor, `switchboard actions` (SPEC §10.4, docs/workflows.md): performs the
//! Call API requests workflows write to `cc.actions`.
//!
//! It reads `cc.actions` in a consumer group of its own, takes up to `actions.batch_size`
//! requests at a time and performs them concurrently (at most
//! `actions.max_concurrent_per_host` calls in flight to one host), each with a per-attempt
//! timeout, its idempotency key as the `Idempotency-Key` header, and retries with exponential
//! backoff and jitter for timeouts, connection errors, 408, 429 and 5xx (honouring
//! `Retry-After`), never for another 4xx. Every request gets one outcome record on
//! `cc.action-outcomes`; one that failed its last attempt goes to `cc.dlq` too, with its last
//! error. Only then are the batch's offsets committed: a crash repeats calls (with the same
//! idempotency key, which the engine derived from the request) and never loses one. Delivery
//! is at least once, deduplicated by key at the receiving end.

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_schemas::*;
use tokio::sync::Semaphore;

use crate::config::{Actions as Settings, Config};
use crate::metrics::Metrics;
use crate::registry::{Undecoded, Wire};

/// What one HTTP attempt gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A 2xx response.
    Done { status: u16 },
    /// Worth another try (timeout, connection error, 408, 429, 5xx); `after`: the server's
    /// `Retry-After`.
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    /// Not worth another (another 4xx or 3xx, a request that cannot be sent).
    Fail { status: Option<u16>, error: String },
}

/// The result label of an attempt in `switchboard_action_attempts_total`.
fn result_label(a: &Attempt) -> &'static str {
    let status = match a {
        Attempt::Done { status } => Some(*status),
        Attempt::Retry { status, .. } | Attempt::Fail { status, .. } => *status,
    };
    match (status, a) {
        (Some(200..=299), _) => "2xx",
        (Some(429), _) => "429",
        (Some(300..=399), _) => "3xx",
        (Some(400..=499), _) => "4xx",
        (Some(500..=599), _) => "5xx",
        (None, Attempt::Retry { error, .. }) if error.starts_with("timed out") => "timeout",
        (None, Attempt::Retry { error, .. }) if error.starts_with("connection") => "connect",
        _ => "other",
    }
}

/// Classify a response status.
fn classify(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        200..=299 => Attempt::Done { status },
        408 | 429 | 500..=599 => Attempt::Retry {
            status: Some(status),
            error: format!("HTTP {status}"),
            after: retry_after,
        },
        _ => Attempt::Fail {
            status: Some(status),
            error: format!("HTTP {status}"),
        },
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - now).num_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// A random number for jitter (the executor's only non-determinism).
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failed): the initial backoff doubled
/// per attempt, at most the maximum, with equal jitter (half fixed, half random); at least
/// the server's `Retry-After`, cut to the longest honoured.
pub fn backoff(settings: &Settings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = (settings.backoff_initial_ms as u64)
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
    let base = doubled.min(settings.backoff_max_ms as u64);
    let jittered = base / 2 + random() % (base / 2 + 1);
    let server = retry_after
        .map(|d| d.min(Duration::from_millis(settings.retry_after_max_ms as u64)))
        .unwrap_or_default();
    Duration::from_millis(jittered).max(server)
}

/// Performs Call API requests: one HTTP client, a concurrency bound per host.
pub struct Executor {
    client: reqwest::Client,
    settings: Settings,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Metrics,
}

impl Executor {
    pub fn new(settings: Settings, metrics: Metrics) -> Result<Executor, String> {
        let timeout = Duration::from_millis(settings.timeout_ms as u64);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(settings.max_concurrent_per_host as usize)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("switchboard-actions/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Executor {
            client,
            settings,
            hosts: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    fn permits(&self, url: &reqwest::Url) -> Arc<Semaphore> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(hosts.entry(host).or_insert_with(|| {
            Arc::new(Semaphore::new(
                self.settings.max_concurrent_per_host as usize,
            ))
        }))
    }

    /// One attempt at `call`, with `key` as its idempotency key.
    pub async fn attempt(&self, call: &CallApi, key: &str) -> Attempt {
        let fail = |error: String| Attempt::Fail {
            status: None,
            error,
        };
        let Ok(method) = reqwest::Method::from_bytes(call.method.to_ascii_uppercase().as_bytes())
        else {
            return fail(format!("invalid method {:?}", call.method));
        };
        let url = match reqwest::Url::parse(&call.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(u) => return fail(format!("unsupported URL scheme {:?}", u.scheme())),
            Err(e) => return fail(format!("invalid URL: {e}")),
        };
        let permits = self.permits(&url);
        // The semaphore is never closed, so acquiring only waits.
        let Ok(_permit) = permits.acquire_owned().await else {
            return fail("internal: host permits closed".into());
        };
        let mut request = self
            .client
            .request(method, url)
            .header("Idempotency-Key", key)
            .header(reqwest::header::CONTENT_TYPE, &call.content_type);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if !call.body.is_empty() {
            request = request.body(call.body.clone());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                // Read the body (the connection then serves the next call); its content is
                // not kept.
                let _ = response.bytes().await;
                classify(status, retry_after)
            }
            Err(e) if e.is_timeout() => Attempt::Retry {
                status: None,
                error: format!("timed out after {} ms", self.settings.timeout_ms),
                after: None,
            },
            Err(e) if e.is_connect() => Attempt::Retry {
                status: None,
                error: format!("connection failed: {}", error_chain(&e)),
                after: None,
            },
            Err(e) if e.is_builder() => fail(format!("invalid request: {}", error_chain(&e))),
            Err(e) => Attempt::Retry {
                status: None,
                error: format!("request failed: {}", error_chain(&e)),
                after: None,
            },
        }
    }

    /// Perform `request`, retrying as the policy says: its outcome.
    pub async fn perform(&self, request: &ActionRequest) -> ActionOutcome {
        let started = Instant::now();
        let ActionKind::CallApi(call) = &request.action;
        let key = idempotency_key(request);
        let mut attempts: u32 = 0;
        let (result, status, error) = loop {
            attempts += 1;
            let attempt = self.attempt(call, &key).await;
            self.metrics
                .action_attempts
                .with_label_values(&[result_label(&attempt)])
                .inc();
            match attempt {
                Attempt::Done { status } => break (ActionResult::Succeeded, Some(status), None),
                Attempt::Fail { status, error } => {
                    break (ActionResult::Failed, status, Some(error))
                }
                Attempt::Retry { status, error, .. }
                    if attempts >= self.settings.max_attempts as u32 =>
                {
                    let error = format!("{error} (attempt {attempts} of {attempts})");
                    break (ActionResult::Failed, status, Some(error));
                }
                Attempt::Retry { after, .. } => {
                    self.metrics.action_retries.inc();
                    tokio::time::sleep(backoff(&self.settings, attempts, after)).await;
                }
            }
        };
        let elapsed = started.elapsed();
        self.metrics.action_seconds.observe(elapsed.as_secs_f64());
        ActionOutcome {
            id: request.id.clone(),
            tenant: request.tenant.clone(),
            conversation_id: request.conversation_id.clone(),
            workflow_id: request.workflow_id.clone(),
            idempotency_key: key,
            outcome: result,
            status: status.map(i32::from),
            attempts: attempts as i32,
            error,
            latency_ms: elapsed.as_millis() as i64,
        }
    }
}

/// The request's idempotency key; requests written before keys existed get the one the engine
/// would derive.
fn idempotency_key(request: &ActionRequest) -> String {
    if !request.idempotency_key.is_empty() {
        return request.idempotency_key.clone();
    }
    format!(
        "sb-{:016x}",
        switchboard_processors::threading::stable_hash(&[&request.tenant, &request.id])
    )
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Run the executor until `stop`: serve its metrics, then take batches of requests from
/// `cc.actions`, perform them, write their outcomes and commit.
pub fn run(config: &Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    let metrics = Metrics::new();
    let addr = crate::http::serve(&config.actions.http_listen, metrics.clone(), None, None)
        .map_err(|e| e.replace("http.listen", "actions.http_listen"))?;
    tracing::info!(%addr, "actions: metrics at http://{addr}/metrics");
    crate::kafka::wait_for_brokers(config, &stop)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    rt.block_on(execute(config, stop, metrics))
}

/// What became of one record of a batch.
enum Done {
    Outcome(ActionOutcome),
    Undecodable(String),
}

async fn execute(config: &Config, stop: Arc<AtomicBool>, metrics: Metrics) -> Result<(), String> {
    let suffix = &config.topics.output_suffix;
    let source = crate::kafka::output_topic(Topic::Actions, suffix);
    let outcomes = crate::kafka::output_topic(Topic::ActionOutcomes, suffix);
    let dlq = crate::kafka::output_topic(Topic::Dlq, suffix);
    let group = match config.actions.group_id.as_str() {
        "" => format!("{}-actions", config.kafka.application_id),
        g => g.to_string(),
    };
    let consumer: StreamConsumer = crate::kafka::client_config(config)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("actions: cannot create the consumer: {e}"))?;
    consumer
        .subscribe(&[&source])
        .map_err(|e| format!("actions: cannot subscribe to {source}: {e}"))?;
    let producer: FutureProducer = crate::kafka::client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| format!("actions: cannot create the producer: {e}"))?;
    let mut wire = Wire::from_config(config)?;
    wire.register_schemas(
        &[Topic::ActionOutcomes, Topic::Dlq],
        suffix,
        config.schema_registry.output_framing,
        &stop,
    )
    .await?;
    let wire = Arc::new(wire);
    let executor = Arc::new(Executor::new(config.actions.clone(), metrics.clone())?);
    metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!(topic = %source, group = %group, "actions: executing requests");
    let batch_size = config.actions.batch_size as usize;
    while !stop.load(Ordering::Relaxed) {
        let first = match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "actions: consumer error");
                continue;
            }
            Ok(Ok(m)) => m.detach(),
        };
        let mut batch = vec![first];
        while batch.len() < batch_size {
            match tokio::time::timeout(Duration::from_millis(2), consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        let done = perform_batch(&executor, &wire, &batch, &stop).await;
        write_outcomes(&producer, &wire, &metrics, &batch, done, &outcomes, &dlq).await?;
        // A commit that fails (the partitions moved to another executor in a rebalance)
        // only means the new owner repeats these calls, with the same keys.
        if let Err(e) = commit(&consumer, &batch) {
            tracing::warn!(error = %e, "actions: the batch's calls may be repeated");
        }
    }
    tracing::info!("actions: stopped");
    Ok(())
}

/// Perform every request of `batch` concurrently; their outcomes in batch order.
async fn perform_batch(
    executor: &Arc<Executor>,
    wire: &Wire,
    batch: &[OwnedMessage],
    stop: &AtomicBool,
) -> Vec<Done> {
    let mut done: Vec<Option<Done>> = (0..batch.len()).map(|_| None).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, m) in batch.iter().enumerate() {
        let bytes = m.payload().unwrap_or_default();
        // A request whose schema is in a registry that cannot be reached waits for it: it is
        // never dead-lettered for the registry's outage.
        let decoded = loop {
            match wire.decode_json(Topic::Actions, bytes).await {
                Err(Undecoded::Waiting(_)) if !stop.load(Ordering::Relaxed) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => break other,
            }
        };
        let decoded = decoded
            .map_err(|e| e.to_string())
            .and_then(|json| Output::from_json(Topic::Actions, json));
        match decoded {
            Ok(Output::Action(request)) => {
                let executor = Arc::clone(executor);
                tasks.spawn(async move { (i, executor.perform(&request).await) });
            }
            Ok(_) => done[i] = Some(Done::Undecodable("not an action request".into())),
            Err(e) => done[i] = Some(Done::Undecodable(e)),
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, outcome)) => done[i] = Some(Done::Outcome(outcome)),
            Err(e) => tracing::error!(error = %e, "actions: a request task failed"),
        }
    }
    done.into_iter()
        .map(|d| d.unwrap_or_else(|| Done::Undecodable("internal: the request task failed".into())))
        .collect()
}

/// Write each request's outcome (and the dead letters) and wait until Kafka has them all.
async fn write_outcomes(
    producer: &FutureProducer,
    wire: &Wire,
    metrics: &Metrics,
    batch: &[OwnedMessage],
    done: Vec<Done>,
    outcomes: &str,
    dlq: &str,
) -> Result<(), String> {
    let mut records: Vec<(String, i32, Option<String>, Vec<u8>)> = Vec::new();
    for (m, d) in batch.iter().zip(done) {
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let dead = |id: String, reason: String| DeadLetter {
            id,
            source_topic: m.topic().to_string(),
            source_partition: Some(m.partition()),
            source_offset: Some(m.offset()),
            source_line: None,
            key: key.clone(),
            value: Bytes(m.payload().unwrap_or_default().to_vec()),
            reason,
        };
        let dead_letter = match d {
            Done::Outcome(outcome) => {
                let label = match outcome.outcome {
                    ActionResult::Succeeded => "succeeded",
                    ActionResult::Failed => "failed",
                };
                metrics.action_requests.with_label_values(&[label]).inc();
                let letter = (outcome.outcome == ActionResult::Failed).then(|| {
                    dead(
                        outcome.id.clone(),
                        format!(
                            "Call API failed after {} attempt(s): {}",
                            outcome.attempts,
                            outcome.error.as_deref().unwrap_or("unknown error")
                        ),
                    )
                });
                let bytes = wire
                    .encode(Topic::ActionOutcomes, &outcome)
                    .map_err(|e| format!("actions: cannot encode an outcome: {e}"))?;
                records.push((
                    outcomes.to_string(),
                    m.partition(),
                    Some(outcome.tenant.clone()),
                    bytes,
                ));
                letter
            }
            Done::Undecodable(reason) => {
                metrics
                    .action_requests
                    .with_label_values(&["undecodable"])
                    .inc();
                Some(dead(
                    format!("{}/{}/{}", m.topic(), m.partition(), m.offset()),
                    format!("undecodable cc.actions record: {reason}"),
                ))
            }
        };
        if let Some(letter) = dead_letter {
            metrics.action_dlq.inc();
            let bytes = wire
                .encode(Topic::Dlq, &letter)
                .map_err(|e| format!("actions: cannot encode a dead letter: {e}"))?;
            records.push((dlq.to_string(), m.partition(), key.clone(), bytes));
        }
    }
    let mut deliveries = Vec::with_capacity(records.len());
    for (topic, partition, key, value) in &records {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .partition(*partition)
            .payload(value.as_slice());
        if let Some(k) = key {
            record = record.key(k.as_str());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                // The local queue is full: let deliveries drain, then try again.
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(format!("actions: cannot write an outcome: {e}")),
            Err(_) => return Err("actions: the producer stopped before delivering".into()),
        }
    }
    Ok(())
}

/// Commit the offsets after the batch's last record of each partition.
fn commit(consumer: &StreamConsumer, batch: &[OwnedMessage]) -> Result<(), String> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .map_err(|e| format!("actions: {e}"))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| format!("actions: cannot commit offsets: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            retry_after_max_ms: 5_000,
            ..Settings::default()
        }
    }

    /// Backoff doubles per attempt up to the maximum, with jitter in its upper half, and
    /// honours Retry-After up to the longest allowed.
    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let s = settings();
        for _ in 0..50 {
            let first = backoff(&s, 1, None).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(&s, 3, None).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let tenth = backoff(&s, 10, None).as_millis();
            assert!((500..=1_000).contains(&tenth), "{tenth}");
        }
        assert_eq!(
            backoff(&s, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(&s, 1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Mon, 02 Mar 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 02 Mar 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_are_classified_for_retry() {
        assert_eq!(classify(204, None), Attempt::Done { status: 204 });
        for retried in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify(retried, None), Attempt::Retry { .. }),
                "{retried}"
            );
        }
        for failed in [301, 400, 401, 404, 422] {
            assert!(
                matches!(classify(failed, None), Attempt::Fail { .. }),
                "{failed}"
            );
        }
    }
}
