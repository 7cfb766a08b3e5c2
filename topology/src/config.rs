//! Runtime configuration: a TOML file, every key overridable by an environment variable
//! `SWITCHBOARD__<SECTION>__<KEY>` (for example `SWITCHBOARD__KAFKA__BOOTSTRAP_SERVERS`), and
//! librdkafka properties by `SWITCHBOARD__KAFKA__PROPERTIES__<PROPERTY>` (`_` for `.`; a
//! `_FILE` suffix reads the value from a file, as Kubernetes mounts secrets). Invalid
//! configuration is rejected with the offending field named; nothing has a silent fallback
//! except the documented defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// How outputs reach consumers exactly once (docs/guarantees.md). On the command line (`demo
/// --guarantee`): `exactly-once`, `deduplicated`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Kafka transactions: outputs, changelog writes and input offsets commit together.
    ExactlyOnce,
    /// No transactions: deterministic re-processing, with a per-partition output sequence in
    /// record headers that consumers (and recovery) use to drop what was already written.
    Deduplicated,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Kafka {
    pub bootstrap_servers: String,
    pub application_id: String,
    pub guarantee: Guarantee,
    /// This instance's name within the application: part of its `transactional.id`
    /// (`<application.id>-<instance_id>`), so it must be stable across restarts and distinct
    /// between instances. Empty: the host name.
    pub instance_id: String,
    /// Extra librdkafka properties passed through unchanged (security settings, timeouts).
    pub properties: BTreeMap<String, String>,
    /// Join the consumer group as a static member (`group.instance.id` =
    /// `<application_id>-<instance_id>`): an instance restarted within `session.timeout.ms`
    /// gets its partitions back at once, without a rebalance or waiting for its former self's
    /// session to expire.
    pub static_membership: bool,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            bootstrap_servers: "localhost:9092".into(),
            application_id: "switchboard".into(),
            guarantee: Guarantee::ExactlyOnce,
            instance_id: String::new(),
            properties: BTreeMap::new(),
            static_membership: true,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Create missing topics at start.
    pub create: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Appended to every output topic name (replay into separate topics).
    pub output_suffix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            create: true,
            partitions: 4,
            replication_factor: 1,
            output_suffix: String::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// One RocksDB store per assigned partition is kept below this directory.
    pub dir: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            dir: "./switchboard-state".into(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// `/metrics`, `/healthz`, `/readyz`, the wallboard and the interactive queries.
    pub listen: String,
    /// The URL other instances forward queries to (`http://host:port`); empty: the listen
    /// address, with a wildcard host replaced by the host name.
    pub advertised_url: String,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:9464".into(),
            advertised_url: String::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ticker {
    /// Write a `Tick` to every partition of `cc.ticks` every `interval_ms` of wall clock.
    pub enabled: bool,
    pub interval_ms: i64,
}

impl Default for Ticker {
    fn default() -> Self {
        Ticker {
            enabled: true,
            interval_ms: 1000,
        }
    }
}

/// How the logs are written (stderr).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers (Fluent Bit, Vector, Loki's promtail).
    Json,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// How long processed record ids are remembered for idempotency, in hours of stream time.
    pub dedup_retention_hours: i64,
    /// Hold the dedup window's ids in memory (about 40 bytes each, so memory grows with the
    /// traffic) instead of looking them up in RocksDB (the default: memory does not grow).
    pub dedup_window_in_memory: bool,
    /// How long a partition waits for its other topics before processing what it has (SPEC
    /// §1.3, live data).
    pub max_idle_ms: i64,
    /// How long, in minutes of stream time, a Closed conversation stays in memory before its
    /// rows move to the state store's archive (read back when a command names it).
    pub archive_closed_after_minutes: i64,
    /// Keep and emit the `cc.analytics` windows; their tumbling window, and how long after
    /// its end one is emitted (later figures come as corrections).
    pub analytics: bool,
    pub analytics_window_seconds: i64,
    pub analytics_grace_seconds: i64,
    /// Threads that process the partitions' batches of a round side by side (each partition
    /// on one thread at a time, in order); 0: one per core. At most the partitions held.
    pub threads: i64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            dedup_retention_hours: 24,
            dedup_window_in_memory: false,
            max_idle_ms: 100,
            archive_closed_after_minutes: 60,
            analytics: true,
            analytics_window_seconds: 60,
            analytics_grace_seconds: 30,
            threads: 0,
        }
    }
}

/// What `/metrics` exports beyond the pipeline figures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Label the live figures (open conversations, queue depth and longest wait, agents by
    /// status group) by tenant; off, every series is `tenant="all"`.
    pub tenant_labels: bool,
    /// With tenant labels, the tenants with the most open conversations that get their own
    /// label; the rest are `tenant="other"` (bounded cardinality).
    pub max_tenants: i64,
    /// How often the live figures are refreshed from the engines' state.
    pub live_interval_ms: i64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            tenant_labels: false,
            max_tenants: 50,
            live_interval_ms: 5_000,
        }
    }
}

/// The action executor (`switchboard actions`, docs/workflows.md): how it performs the Call
/// API requests workflows write to `cc.actions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Actions {
    /// Its consumer group; empty: `<kafka.application_id>-actions`.
    pub group_id: String,
    /// Its `/metrics`, `/healthz` and `/readyz`.
    pub http_listen: String,
    /// Each attempt's limit, connecting and reading the response included.
    pub timeout_ms: i64,
    /// Attempts per request, the first included.
    pub max_attempts: i64,
    /// The wait before the first retry; each retry doubles it, up to `backoff_max_ms`, and
    /// waits a random part of it (full jitter).
    pub backoff_initial_ms: i64,
    pub backoff_max_ms: i64,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub retry_after_max_ms: i64,
    /// Calls in flight to one host at most.
    pub max_concurrent_per_host: i64,
    /// Requests taken from the topic at a time: performed concurrently, their outcomes
    /// written, then their offsets committed.
    pub batch_size: i64,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            group_id: String::new(),
            http_listen: "127.0.0.1:9465".into(),
            timeout_ms: 10_000,
            max_attempts: 5,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            retry_after_max_ms: 300_000,
            max_concurrent_per_host: 32,
            batch_size: 500,
        }
    }
}

/// How outputs name their schema when a registry is configured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// The Confluent wire format: a zero byte and the schema's registry id (registered under
    /// `<topic>-value`), which Confluent's deserializers read.
    #[default]
    Confluent,
    /// Avro single-object encoding, as without a registry.
    SingleObject,
}

/// A Confluent-compatible schema registry (docs/operations.md, "Schema registry"). With an
/// empty `url` there is none: records are Avro single-object bytes with the schemas built in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistry {
    /// `http://` or `https://` base URL, e.g. `https://registry.example.com:8081`.
    pub url: String,
    /// HTTP basic auth (Confluent Cloud: the API key and secret).
    pub username: String,
    pub password: String,
    /// PEM file of the CA certificates that verify the registry (empty: the system's roots).
    pub ca_location: String,
    /// PEM files of a client certificate and its key, for registries that ask for one.
    pub certificate_location: String,
    pub key_location: String,
    /// Per request; a registry that does not answer in time is treated as unreachable.
    pub timeout_ms: i64,
    /// The framing of the outputs written while a registry is configured.
    pub output_framing: Framing,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        SchemaRegistry {
            url: String::new(),
            username: String::new(),
            password: String::new(),
            ca_location: String::new(),
            certificate_location: String::new(),
            key_location: String::new(),
            timeout_ms: 5_000,
            output_framing: Framing::Confluent,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: Kafka,
    pub topics: Topics,
    pub state: State,
    pub http: Http,
    pub ticker: Ticker,
    pub engine: Engine,
    pub log: Log,
    pub metrics: MetricsSettings,
    pub actions: Actions,
    pub schema_registry: SchemaRegistry,
    /// `SWITCHBOARD_*` variables that are not overrides (Kubernetes sets
    /// `SWITCHBOARD_SERVICE_HOST` and the like for a Service named switchboard): ignored, and
    /// named in a debug line at start.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

const PREFIX: &str = "SWITCHBOARD_";
/// The override form: a double underscore, which Kubernetes' service variables never have.
const OVERRIDE: &str = "SWITCHBOARD__";

/// Apply the environment's overrides to a parsed TOML table; return the `SWITCHBOARD_*`
/// variables that are not overrides.
///
/// - `SWITCHBOARD__<SECTION>__<KEY>`: one setting, read as the type the key has in the
///   defaults (integer, boolean or string); an unknown one is an error.
/// - `SWITCHBOARD__KAFKA__PROPERTIES__<PROPERTY>`: a librdkafka property, `_` standing for
///   `.` (`SASL_PASSWORD` is `sasl.password`); with a `_FILE` suffix the value is read from
///   the file it names (trailing newline dropped).
/// - `SWITCHBOARD_<SECTION>_<KEY>` (one underscore, the former form): applied when it names
///   a setting, otherwise ignored.
fn apply_env(
    table: &mut toml::Table,
    vars: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let defaults =
        toml::Table::try_from(Config::default()).map_err(|e| invalid("config", e.to_string()))?;
    let known = |section: &str, key: &str| {
        defaults
            .get(section)
            .and_then(|s| s.as_table())
            .and_then(|s| s.get(key))
            .cloned()
    };
    let mut ignored = Vec::new();
    for (name, value) in vars {
        if let Some(rest) = name.strip_prefix(OVERRIDE) {
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            match parts.as_slice() {
                [kafka, properties, property] if kafka == "kafka" && properties == "properties" => {
                    let (property, value) = match property.strip_suffix("_file") {
                        Some(p) => (p, read_secret_file(name, value)?),
                        None => (property.as_str(), value.clone()),
                    };
                    let property = property.replace('_', ".");
                    let kafka = section_mut(table, "kafka")?;
                    let props = kafka
                        .entry("properties")
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    match props {
                        toml::Value::Table(t) => {
                            t.insert(property, toml::Value::String(value));
                        }
                        _ => return Err(invalid("kafka.properties", "must be a table")),
                    }
                }
                [section, key] if key.ends_with("_file") && known(section, key).is_none() => {
                    // `<KEY>_FILE`: the setting's value is the file's content (a mounted secret).
                    let key = &key[..key.len() - "_file".len()];
                    let Some(default) = known(section, key) else {
                        return Err(invalid(
                            &format!("{section}.{key}"),
                            format!("unknown setting (from {name})"),
                        ));
                    };
                    let value = read_secret_file(name, value)?;
                    set_from_env(table, section, key, &default, name, &value)?;
                }
                [section, key] => {
                    let Some(default) = known(section, key) else {
                        return Err(invalid(
                            &format!("{section}.{key}"),
                            format!("unknown setting (from {name})"),
                        ));
                    };
                    set_from_env(table, section, key, &default, name, value)?;
                }
                _ => {
                    return Err(invalid(
                        name,
                        "expected SWITCHBOARD__<SECTION>__<KEY> or \
                         SWITCHBOARD__KAFKA__PROPERTIES__<PROPERTY>",
                    ))
                }
            }
        } else if let Some(rest) = name.strip_prefix(PREFIX) {
            let rest = rest.to_lowercase();
            let setting = rest
                .split_once('_')
                .and_then(|(section, key)| known(section, key).map(|d| (section, key, d)));
            match setting {
                Some((section, key, default)) => {
                    set_from_env(table, section, key, &default, name, value)?
                }
                None => ignored.push(name.clone()),
            }
        }
    }
    Ok(ignored)
}

/// The `section.key` whose value the configuration types refuse (serde's messages, such as
/// "unknown variant", do not say where): each setting is tried alone over the defaults.
fn offending_field(table: &toml::Table) -> Option<String> {
    for (section, value) in table {
        let Some(keys) = value.as_table() else {
            return Some(section.clone());
        };
        for (key, v) in keys {
            let mut alone = toml::Table::new();
            let mut inner = toml::Table::new();
            inner.insert(key.clone(), v.clone());
            alone.insert(section.clone(), toml::Value::Table(inner));
            if toml::Value::Table(alone).try_into::<Config>().is_err() {
                return Some(format!("{section}.{key}"));
            }
        }
    }
    None
}

fn read_secret_file(name: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| invalid(name, format!("cannot read {path}: {e}")))
}

fn section_mut<'t>(
    table: &'t mut toml::Table,
    section: &str,
) -> Result<&'t mut toml::Table, ConfigError> {
    match table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => Ok(t),
        _ => Err(invalid(section, "must be a table")),
    }
}

/// Set `section.key` from the variable `name`, read as the type of `default`.
fn set_from_env(
    table: &mut toml::Table,
    section: &str,
    key: &str,
    default: &toml::Value,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let field = format!("{section}.{key}");
    let parsed = match default {
        toml::Value::Integer(_) => value
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| invalid(&field, format!("{value:?} is not an integer (from {name})")))?,
        toml::Value::Boolean(_) => match value.trim() {
            "true" | "1" => toml::Value::Boolean(true),
            "false" | "0" => toml::Value::Boolean(false),
            _ => {
                return Err(invalid(
                    &field,
                    format!("{value:?} is not true or false (from {name})"),
                ))
            }
        },
        toml::Value::Table(_) => {
            return Err(invalid(
                &field,
                format!("a table cannot be set from {name}"),
            ))
        }
        _ => toml::Value::String(value.to_string()),
    };
    section_mut(table, section)?.insert(key.to_string(), parsed);
    Ok(())
}

/// Letters, digits, '.', '_' and '-' only: safe in topic names and client ids.
fn is_kafka_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn name_rule(s: &str) -> String {
    format!("{s:?} must be letters, digits, '.', '_' or '-'")
}

impl Config {
    /// Load from TOML text (`path` names it in errors) with environment overrides.
    pub fn parse(text: &str, path: &str, vars: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_string(),
                    reason: e.message().to_string(),
                })?;
        let ignored_env = apply_env(&mut table, vars)?;
        let mut config: Config =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_string(),
                    reason: match offending_field(&table) {
                        Some(field) => format!("{field}: {}", e.message()),
                        None => e.message().to_string(),
                    },
                })?;
        config.validate()?;
        config.ignored_env = ignored_env;
        Ok(config)
    }

    /// Load `path` with the process environment's overrides; no file: the defaults.
    pub fn load(path: Option<&str>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                    path: p.to_string(),
                    reason: e.to_string(),
                })?;
                Config::parse(&text, p, &vars)
            }
            None => Config::parse("", "(defaults)", &vars),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        // Both become parts of Kafka names (group, topics, transactional.id).
        let id = &self.kafka.application_id;
        if id.is_empty() || !is_kafka_name(id) {
            return Err(invalid("kafka.application_id", name_rule(id)));
        }
        let instance = &self.kafka.instance_id;
        if !is_kafka_name(instance) {
            return Err(invalid("kafka.instance_id", name_rule(instance)));
        }
        if !(1..=10_000).contains(&self.topics.partitions) {
            return Err(invalid(
                "topics.partitions",
                format!("{} is not between 1 and 10000", self.topics.partitions),
            ));
        }
        if !(1..=32).contains(&self.topics.replication_factor) {
            return Err(invalid(
                "topics.replication_factor",
                format!("{} is not between 1 and 32", self.topics.replication_factor),
            ));
        }
        if self.state.dir.trim().is_empty() {
            return Err(invalid("state.dir", "must not be empty"));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            ));
        }
        let url = &self.http.advertised_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "http.advertised_url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if !(10..=60_000).contains(&self.ticker.interval_ms) {
            return Err(invalid(
                "ticker.interval_ms",
                format!("{} is not between 10 and 60000", self.ticker.interval_ms),
            ));
        }
        let a = &self.actions;
        if !a.group_id.is_empty() && !is_kafka_name(&a.group_id) {
            return Err(invalid("actions.group_id", name_rule(&a.group_id)));
        }
        if a.http_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "actions.http_listen",
                format!("{:?} is not an address like 127.0.0.1:9465", a.http_listen),
            ));
        }
        let m = &self.metrics;
        let e = &self.engine;
        for (field, value, range) in [
            (
                "engine.analytics_window_seconds",
                e.analytics_window_seconds,
                1..=86_400,
            ),
            (
                "engine.analytics_grace_seconds",
                e.analytics_grace_seconds,
                0..=86_400,
            ),
            ("metrics.max_tenants", m.max_tenants, 1..=1_000),
            (
                "metrics.live_interval_ms",
                m.live_interval_ms,
                100..=600_000,
            ),
            ("actions.timeout_ms", a.timeout_ms, 1..=600_000),
            ("actions.max_attempts", a.max_attempts, 1..=100),
            (
                "actions.backoff_initial_ms",
                a.backoff_initial_ms,
                1..=3_600_000,
            ),
            ("actions.backoff_max_ms", a.backoff_max_ms, 1..=3_600_000),
            (
                "actions.retry_after_max_ms",
                a.retry_after_max_ms,
                0..=3_600_000,
            ),
            (
                "actions.max_concurrent_per_host",
                a.max_concurrent_per_host,
                1..=4_096,
            ),
            ("actions.batch_size", a.batch_size, 1..=10_000),
        ] {
            if !range.contains(&value) {
                return Err(invalid(
                    field,
                    format!(
                        "{value} is not between {} and {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        if a.backoff_max_ms < a.backoff_initial_ms {
            return Err(invalid(
                "actions.backoff_max_ms",
                "must not be less than actions.backoff_initial_ms",
            ));
        }
        if !(1..=8_760).contains(&self.engine.dedup_retention_hours) {
            return Err(invalid(
                "engine.dedup_retention_hours",
                format!(
                    "{} is not between 1 and 8760",
                    self.engine.dedup_retention_hours
                ),
            ));
        }
        if !(1..=525_600).contains(&self.engine.archive_closed_after_minutes) {
            return Err(invalid(
                "engine.archive_closed_after_minutes",
                format!(
                    "{} is not between 1 and 525600 (a year)",
                    self.engine.archive_closed_after_minutes
                ),
            ));
        }
        if !(0..=256).contains(&self.engine.threads) {
            return Err(invalid(
                "engine.threads",
                format!(
                    "{} is not between 0 (one per core) and 256",
                    self.engine.threads
                ),
            ));
        }
        if !(0..=60_000).contains(&self.engine.max_idle_ms) {
            return Err(invalid(
                "engine.max_idle_ms",
                format!("{} is not between 0 and 60000", self.engine.max_idle_ms),
            ));
        }
        let r = &self.schema_registry;
        if !(r.url.is_empty() || r.url.starts_with("http://") || r.url.starts_with("https://")) {
            return Err(invalid(
                "schema_registry.url",
                format!("{:?} is not an http:// or https:// URL", redact_url(&r.url)),
            ));
        }
        if !(100..=120_000).contains(&r.timeout_ms) {
            return Err(invalid(
                "schema_registry.timeout_ms",
                format!("{} is not between 100 and 120000", r.timeout_ms),
            ));
        }
        if r.username.is_empty() != r.password.is_empty() {
            return Err(invalid(
                "schema_registry.password",
                "basic auth needs both schema_registry.username and schema_registry.password",
            ));
        }
        if r.certificate_location.is_empty() != r.key_location.is_empty() {
            return Err(invalid(
                "schema_registry.key_location",
                "a client certificate needs both certificate_location and key_location",
            ));
        }
        for (field, path) in [
            ("schema_registry.ca_location", &r.ca_location),
            (
                "schema_registry.certificate_location",
                &r.certificate_location,
            ),
            ("schema_registry.key_location", &r.key_location),
        ] {
            if !path.is_empty() && std::fs::metadata(path).is_err() {
                return Err(invalid(field, format!("cannot read {path}")));
            }
        }
        // librdkafka knows its properties: a typo is an error here, not a silent default.
        for (key, value) in &self.kafka.properties {
            let mut probe = rdkafka::ClientConfig::new();
            probe.set(key, value);
            if let Err(e) = probe.create_native_config() {
                let reason = e.to_string();
                // The value is never repeated for an unknown property: it may be a secret
                // under a misspelt name.
                let reason = if reason.contains("No such configuration property") {
                    "librdkafka has no such property (its CONFIGURATION.md lists them)".to_string()
                } else if is_secret(key) && !value.is_empty() {
                    reason.replace(value.as_str(), REDACTED)
                } else {
                    reason
                };
                return Err(invalid(&format!("kafka.properties.{key}"), reason));
            }
        }
        Ok(())
    }

    /// The instance id, defaulting to the host name.
    pub fn instance_id(&self) -> String {
        if !self.kafka.instance_id.is_empty() {
            return self.kafka.instance_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "instance".to_string())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for (key, value) in shown.kafka.properties.iter_mut() {
            if is_secret(key) {
                *value = REDACTED.to_string();
            }
        }
        if !shown.schema_registry.password.is_empty() {
            shown.schema_registry.password = REDACTED.to_string();
        }
        shown.schema_registry.url = redact_url(&shown.schema_registry.url);
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

/// `url` with the password of any `user:password@` part replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!(
                "{scheme}://{user}:{REDACTED}@{host}{}",
                &rest[authority_end..]
            )
        }
        None => url.to_string(),
    }
}

/// What a secret is shown as in `config check`, logs and errors.
pub const REDACTED: &str = "[redacted]";

/// Whether a librdkafka property holds a secret (passwords, private keys, client secrets).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "ssl.key.pem",
        "ssl_key",
        "private",
        "token",
    ]
    .iter()
    .any(|word| key.contains(word))
}
