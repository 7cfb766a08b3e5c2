//! Kafka plumbing shared by the runtime, the ticker, the demo and the tools: client
//! configuration, delivery tracking, topic bootstrap and offset look-ups.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;
use switchboard_schemas::Topic;

use crate::config::{Config, Guarantee};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("{0}")]
    Runtime(String),
}

/// The header naming the source partition of an output record: `<application.id>/<partition>`.
pub const SOURCE_HEADER: &str = "switchboard.source";
/// The header carrying an output's sequence number within its source partition.
pub const SEQ_HEADER: &str = "switchboard.seq";

/// The client properties every client of the application shares: the brokers, and the
/// user's `kafka.properties`. (Every record is sent to an explicit partition, murmur2 of the
/// tenant computed by the engine (R-TIME-2), so no client relies on a partitioner.)
pub fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    c.set("log_level", "4");
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// librdkafka's version and built-in features (`builtin.features`: ssl, sasl_scram, zstd,
/// ...), as `switchboard config check` prints them.
pub fn librdkafka_build() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .ok()
        .and_then(|c| c.get("builtin.features").ok())
        .unwrap_or_default();
    (version, features)
}

/// Every output topic name, with the configured suffix (replays write to their own topics).
pub fn output_topic(topic: Topic, suffix: &str) -> String {
    format!("{}{}", topic.name(), suffix)
}

/// The changelog topic of the application's state store.
pub fn changelog_topic(application_id: &str) -> String {
    format!("{application_id}-state-changelog")
}

pub fn output_topics() -> impl Iterator<Item = Topic> {
    Topic::ALL.iter().copied().filter(|t| !t.is_input())
}

/// Delivery reports: the last offset written per (topic, partition) and the errors seen.
#[derive(Default)]
pub struct Deliveries {
    state: Mutex<DeliveryState>,
}

#[derive(Default)]
struct DeliveryState {
    /// Topic → the last offset delivered to each of its partitions (`i64::MIN`: none yet).
    last: HashMap<String, Vec<i64>>,
    errors: Vec<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match result {
            // Once per record written: no allocation but a topic's first.
            Ok(m) => {
                let Ok(p) = usize::try_from(m.partition()) else {
                    return;
                };
                let topic = m.topic();
                let offsets = match st.last.get_mut(topic) {
                    Some(offsets) => offsets,
                    None => st.last.entry(topic.to_string()).or_default(),
                };
                if offsets.len() <= p {
                    offsets.resize(p + 1, i64::MIN);
                }
                offsets[p] = offsets[p].max(m.offset());
            }
            Err((e, m)) => {
                let err = format!("{}/{}: {e}", m.topic(), m.partition());
                st.errors.push(err);
            }
        }
    }
}

impl Deliveries {
    /// The errors reported since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.errors))
            .unwrap_or_default()
    }

    /// The last offset delivered to `topic`/`partition`, if any.
    pub fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.state.lock().ok().and_then(|s| {
            let p = usize::try_from(partition).ok()?;
            s.last
                .get(topic)?
                .get(p)
                .copied()
                .filter(|o| *o != i64::MIN)
        })
    }
}

pub type Producer_ = BaseProducer<Deliveries>;

/// How long [`flush`] sleeps when no delivery report is waiting.
const FLUSH_NAP: Duration = Duration::from_micros(100);

/// Wait until every record sent through `producer` is acknowledged (or failed), serving
/// delivery reports as they come, and fail on any delivery error since the last flush.
///
/// Not `BaseProducer::flush`: in rust-rdkafka 0.39 it polls in 100 ms quanta and each poll
/// runs to its deadline, so every flush with a record in flight cost at least 100 ms
/// (docs/benchmarks.md, issue 12). Not `poll` with a short timeout either: its loop rounds
/// the time left down to whole milliseconds, so the last millisecond of every poll is a busy
/// loop, and a flush made of 1 ms polls kept a core busy for as long as it waited. Here each
/// waiting delivery report is served at once (`poll` with no timeout serves one), and when
/// none is waiting the thread sleeps for [`FLUSH_NAP`]: a flush costs what the broker takes,
/// plus at most one nap, and almost no CPU.
pub fn flush(producer: &Producer_, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut left = producer.in_flight_count();
    while left > 0 {
        producer.poll(Duration::ZERO);
        let now = producer.in_flight_count();
        if now == left {
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "flush: {now} record(s) still unacknowledged after {timeout:?}"
                ));
            }
            std::thread::sleep(FLUSH_NAP);
        }
        left = now;
    }
    let errors = producer.context().take_errors();
    match errors.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} record(s) not delivered, first: {first}",
            errors.len()
        )),
    }
}

/// Wait until the brokers answer, with a WARN naming them every few seconds while they do
/// not (a wrong address, a TLS or SASL failure: librdkafka's own lines, delivered here, say
/// which). Fails only when `stop` is set.
pub fn wait_for_brokers(config: &Config, stop: &AtomicBool) -> Result<(), String> {
    let probe: BaseConsumer = client_config(config)
        .create()
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let started = std::time::Instant::now();
    loop {
        match probe.fetch_metadata(None, Duration::from_secs(3)) {
            Ok(_) => {
                if started.elapsed() > Duration::from_secs(3) {
                    tracing::info!(
                        bootstrap_servers = %config.kafka.bootstrap_servers,
                        "the Kafka brokers answer"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                // Serves the client's queue: librdkafka's log lines about the failure.
                let _ = probe.poll(Duration::ZERO);
                tracing::warn!(
                    bootstrap_servers = %config.kafka.bootstrap_servers,
                    error = %e,
                    "cannot reach the Kafka brokers; retrying"
                );
            }
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(format!(
                "stopped before the Kafka brokers at {} answered",
                config.kafka.bootstrap_servers
            ));
        }
    }
}

/// An idempotent producer (acks=all, ordered, no duplicates from retries).
pub fn idempotent_producer(config: &Config) -> Result<Producer_, KafkaError> {
    let mut c = client_config(config);
    // Gapless: a record that could be lost behind an acknowledged one is a fatal error
    // instead, so a durable record implies every earlier one of its partition is durable
    // (a checkpoint marker its state rows, a batch's intent the previous marker).
    c.set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none");
    c.create_with_context(Deliveries::default())
}

/// The engine's consumer in its application's group: offsets committed by the runtime with
/// its batches, cooperative rebalancing, `read_committed` under `exactly_once`, and static
/// membership unless turned off (docs/operations.md, "Restarts").
pub fn group_consumer_config(config: &Config) -> ClientConfig {
    let app = &config.kafka.application_id;
    let isolation = match config.kafka.guarantee {
        Guarantee::ExactlyOnce => "read_committed",
        Guarantee::Deduplicated => "read_uncommitted",
    };
    let mut cc = client_config(config);
    cc.set("group.id", app)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "false");
    if config.kafka.static_membership {
        // The same id as the transactional id: stable across restarts, distinct between
        // instances.
        cc.set(
            "group.instance.id",
            format!("{app}-{}", config.instance_id()),
        );
    }
    cc
}

/// A consumer outside any group, for reading changelogs and output tails by assignment.
pub fn reader(config: &Config, isolation: &str) -> Result<BaseConsumer, KafkaError> {
    let mut c = client_config(config);
    c.set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "false")
        .set(
            "group.id",
            format!("{}-reader", config.kafka.application_id),
        );
    c.create()
}

/// The low and high watermarks of `topic`/`partition`, asked of the broker.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))
}

/// Partition counts of the topics that exist, by name.
pub fn partition_counts(
    consumer: &BaseConsumer,
    timeout: Duration,
) -> Result<BTreeMap<String, usize>, KafkaError> {
    let md = consumer.fetch_metadata(None, timeout)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect())
}

/// Whether topic `name` exists, given the partition counts of the existing topics; one with a
/// count other than `want` is an error, as co-partitioned topics need the same count
/// (R-TIME-2).
pub fn topic_exists(
    existing: &BTreeMap<String, usize>,
    name: &str,
    want: i32,
) -> Result<bool, KafkaSetupError> {
    match existing.get(name) {
        None => Ok(false),
        Some(&n) if n as i32 == want => Ok(true),
        Some(&n) => Err(KafkaSetupError::Topic {
            topic: name.to_string(),
            reason: format!(
                "has {n} partitions, topics.partitions is {want}: co-partitioned topics need the same count"
            ),
        }),
    }
}

/// What `topics create` makes: every input and output topic with `topics.partitions`
/// partitions (co-partitioned, R-TIME-2), `cc.config` and the changelog compacted.
pub fn topic_plan(config: &Config, output_suffix: &str) -> Vec<(String, bool)> {
    let mut plan: Vec<(String, bool)> = Topic::INPUTS
        .iter()
        .map(|t| (t.name().to_string(), *t == Topic::Config))
        .collect();
    plan.extend(output_topics().map(|t| (output_topic(t, output_suffix), false)));
    plan.push((changelog_topic(&config.kafka.application_id), true));
    plan.push((
        crate::directory::instances_topic(&config.kafka.application_id),
        true,
    ));
    plan
}

/// Create the topics of [`topic_plan`] that are missing; check the partition counts of those
/// that exist. Returns the names created.
pub fn create_topics(config: &Config, output_suffix: &str) -> Result<Vec<String>, KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let probe = reader(config, "read_uncommitted")?;
    let existing = partition_counts(&probe, Duration::from_secs(10))?;
    let want = config.topics.partitions;
    let plan = topic_plan(config, output_suffix);
    let mut created = Vec::new();
    let mut new_topics = Vec::new();
    for (name, compact) in &plan {
        if !topic_exists(&existing, name, want)? {
            let mut t = NewTopic::new(
                name,
                want,
                TopicReplication::Fixed(config.topics.replication_factor),
            );
            if *compact {
                t = t.set("cleanup.policy", "compact");
            }
            new_topics.push(t);
        }
    }
    if new_topics.is_empty() {
        return Ok(created);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let rt = crate::tokio_runtime().map_err(KafkaSetupError::Runtime)?;
    let results = rt.block_on(admin.create_topics(new_topics.iter(), &opts))?;
    for r in results {
        match r {
            Ok(name) => created.push(name),
            // Created meanwhile by another instance: fine.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaSetupError::Topic {
                    topic: name,
                    reason: format!("cannot be created: {code}"),
                })
            }
        }
    }
    Ok(created)
}

/// The cached high watermark librdkafka last saw for `topic`/`partition` in a fetch response
/// (no broker round trip), if it has seen one.
pub fn cached_high_watermark<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<i64> {
    let mut low = -1i64;
    let mut high = -1i64;
    // SAFETY: the client pointer is valid for the consumer's lifetime, the topic is a valid
    // NUL-terminated string, and librdkafka only writes the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

#[cfg(test)]
mod tests {
    /// Issue 13: librdkafka is built with TLS, the SASL mechanisms managed Kafka services use
    /// (SCRAM, OAUTHBEARER with its OIDC token fetch) and every compression codec.
    #[test]
    fn librdkafka_has_tls_sasl_and_every_codec() {
        let (version, features) = super::librdkafka_build();
        assert!(version.starts_with("2."), "{version}");
        let features: Vec<&str> = features.split(',').collect();
        for want in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "http",
            "oidc",
            "zstd",
            "lz4",
            "snappy",
            "gzip",
        ] {
            assert!(features.contains(&want), "{want} missing from {features:?}");
        }
    }
}
