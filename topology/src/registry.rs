//! The schema registry and the wire formats (SPEC §11, encoding; docs/operations.md, "Schema
//! registry").
//!
//! Without a registry every record is Avro single-object bytes and the writer schema is one
//! the engine has built in (the current schema or an earlier one from `schemas/avro/history`).
//! With `schema_registry.url` set:
//! - an input in the Confluent wire format is read with the writer schema its id names,
//!   fetched from the registry once and cached, and resolved to the engine's schema;
//! - an input in single-object framing whose fingerprint the engine does not know is looked
//!   up among the versions registered under its topic's subject (a producer a version ahead);
//! - outputs are written in the Confluent wire format (`schema_registry.output_framing`),
//!   their schemas registered under the TopicNameStrategy subjects (`<topic>-value`).
//!
//! A registry that cannot be reached never turns a good record into a dead letter: the record
//! waits ([`Undecoded::Waiting`]) and the runtime holds its partition until the registry
//! answers. Only an answer that the schema does not exist, or a schema that cannot be read as
//! the engine's, makes a dead letter.
//!
//! The client speaks the subset of Confluent's REST API that Confluent's own serializers use:
//! `GET /schemas/ids/{id}`, `GET /subjects/{subject}/versions`,
//! `GET /subjects/{subject}/versions/{version}` and `POST /subjects/{subject}/versions`.

use crate::config::{redact_url, Config, Framing};
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_schemas::{confluent_frame, Codec, CodecError, Framed, Input, Topic, TopicSchema};

/// The content type of Confluent's REST API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// After the registry fails to answer, how long records needing it wait before it is asked
/// again (so a partition held by an outage costs one request a second, not one per poll).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Why the registry did not give a schema.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    /// It could not be reached, timed out, refused our credentials or failed: ask again later.
    #[error("schema registry {url} unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// It answered that there is no such schema, or the schema is not usable Avro.
    #[error("{0}")]
    Rejected(String),
}

/// A Confluent-compatible schema registry client with its caches.
pub struct Registry {
    base: String,
    shown: String,
    client: reqwest::Client,
    auth: Option<(String, String)>,
    by_id: Mutex<HashMap<u32, Arc<TopicSchema>>>,
    /// Writer schemas found by fingerprint among a subject's versions.
    by_fingerprint: Mutex<HashMap<u64, Arc<TopicSchema>>>,
    /// The versions of each subject already fetched.
    versions_seen: Mutex<HashMap<String, HashSet<i64>>>,
    /// Set while the registry is failing: when to ask again.
    retry_at: Mutex<Option<Instant>>,
}

impl Registry {
    /// The registry `config.schema_registry` names, if any.
    pub fn from_config(config: &Config) -> Result<Option<Registry>, String> {
        let r = &config.schema_registry;
        if r.url.is_empty() {
            return Ok(None);
        }
        let field = |f: &str, e: &dyn std::fmt::Display| format!("schema_registry.{f}: {e}");
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(r.timeout_ms as u64))
            .connect_timeout(Duration::from_millis(r.timeout_ms as u64));
        if !r.ca_location.is_empty() {
            let pem = std::fs::read(&r.ca_location).map_err(|e| field("ca_location", &e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| field("ca_location", &e))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if !r.certificate_location.is_empty() {
            let mut pem = std::fs::read(&r.certificate_location)
                .map_err(|e| field("certificate_location", &e))?;
            pem.extend(std::fs::read(&r.key_location).map_err(|e| field("key_location", &e))?);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| field("certificate_location", &e))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| field("url", &e))?;
        let auth = (!r.username.is_empty()).then(|| (r.username.clone(), r.password.clone()));
        Ok(Some(Registry {
            base: r.url.trim_end_matches('/').to_string(),
            shown: redact_url(&r.url),
            client,
            auth,
            by_id: Mutex::default(),
            by_fingerprint: Mutex::default(),
            versions_seen: Mutex::default(),
            retry_at: Mutex::default(),
        }))
    }

    /// The URL as logs show it (no password).
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn unavailable(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Unavailable {
            url: self.shown.clone(),
            reason: reason.into(),
        }
    }

    /// Whether a failing registry should be left alone for now.
    fn backing_off(&self) -> Option<RegistryError> {
        let at = self.retry_at.lock().ok()?;
        match *at {
            Some(t) if Instant::now() < t => {
                Some(self.unavailable("not answering; asking again shortly"))
            }
            _ => None,
        }
    }

    fn note(&self, result: &Result<Json, RegistryError>) {
        if let Ok(mut at) = self.retry_at.lock() {
            match result {
                Err(RegistryError::Unavailable { .. }) => {
                    if at.is_none() {
                        tracing::warn!(
                            registry = %self.shown,
                            error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                            "schema registry unavailable: records that need it wait (their partitions are held, nothing is dead-lettered)"
                        );
                    }
                    *at = Some(Instant::now() + RETRY_EVERY);
                }
                _ => {
                    if at.take().is_some() {
                        tracing::info!(registry = %self.shown, "schema registry answering again");
                    }
                }
            }
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, RegistryError> {
        if let Some(e) = self.backing_off() {
            return Err(e);
        }
        let result = self.request(method, path, body).await;
        self.note(&result);
        result
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, RegistryError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.unavailable(without_url(&e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.unavailable(without_url(&e)))?;
        let json: Option<Json> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| self.unavailable(format!("{path}: the answer is not JSON")));
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
        {
            Err(RegistryError::Rejected(format!(
                "schema registry: {path}: {status} {message}"
            )))
        } else {
            Err(self.unavailable(format!("{path}: {status} {message}")))
        }
    }

    /// The Avro schema registered with `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<TopicSchema>, RegistryError> {
        if let Some(s) = self.by_id.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let answer = self
            .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        let schema = Arc::new(parse_answer(&answer, &format!("schema id {id}"))?);
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, Arc::clone(&schema));
        }
        Ok(schema)
    }

    /// The schema registered under `subject` whose CRC-64-AVRO fingerprint is `fingerprint`.
    pub async fn schema_by_fingerprint(
        &self,
        subject: &str,
        fingerprint: u64,
    ) -> Result<Arc<TopicSchema>, RegistryError> {
        if let Some(s) = self
            .by_fingerprint
            .lock()
            .ok()
            .and_then(|m| m.get(&fingerprint).cloned())
        {
            return Ok(s);
        }
        let subject_path = format!("/subjects/{}/versions", encode_path(subject));
        let versions = self.call(reqwest::Method::GET, &subject_path, None).await?;
        let versions: Vec<i64> = versions
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_i64).collect())
            .unwrap_or_default();
        let seen = self
            .versions_seen
            .lock()
            .ok()
            .and_then(|m| m.get(subject).cloned())
            .unwrap_or_default();
        for v in versions.into_iter().filter(|v| !seen.contains(v)) {
            let answer = self
                .call(reqwest::Method::GET, &format!("{subject_path}/{v}"), None)
                .await?;
            if let Ok(schema) = parse_answer(&answer, &format!("{subject} version {v}")) {
                if let Ok(mut m) = self.by_fingerprint.lock() {
                    m.insert(schema.fingerprint(), Arc::new(schema));
                }
            }
            if let Ok(mut m) = self.versions_seen.lock() {
                m.entry(subject.to_string()).or_default().insert(v);
            }
        }
        self.by_fingerprint
            .lock()
            .ok()
            .and_then(|m| m.get(&fingerprint).cloned())
            .ok_or_else(|| {
                RegistryError::Rejected(format!(
                    "unknown schema fingerprint {fingerprint:016x}: neither built in nor \
                     registered under subject {subject}"
                ))
            })
    }

    /// Register `schema` under `subject` (or find it there); its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema });
        let path = format!("/subjects/{}/versions", encode_path(subject));
        let answer = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        answer
            .get("id")
            .and_then(Json::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::Rejected(format!("{path}: no id in the answer")))
    }
}

/// reqwest's errors name the URL, which may carry credentials: keep only the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

/// A subject name as a URL path segment.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The schema of a registry answer (`{"schema": "...", "schemaType": ...}`), parsed.
fn parse_answer(answer: &Json, what: &str) -> Result<TopicSchema, RegistryError> {
    let kind = answer
        .get("schemaType")
        .and_then(Json::as_str)
        .unwrap_or("AVRO");
    if kind != "AVRO" {
        return Err(RegistryError::Rejected(format!(
            "{what} is a {kind} schema, not Avro"
        )));
    }
    let text = answer
        .get("schema")
        .and_then(Json::as_str)
        .ok_or_else(|| RegistryError::Rejected(format!("{what}: no schema in the answer")))?;
    TopicSchema::parse(text)
        .map_err(|e| RegistryError::Rejected(format!("{what} is not a usable Avro schema: {e}")))
}

/// Why a record's bytes did not give a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Undecoded {
    /// The bytes are bad, or their schema cannot be read as the engine's: a dead letter.
    Bad(String),
    /// The writer schema is in a registry that cannot be reached now: try again later.
    Waiting(String),
}

impl std::fmt::Display for Undecoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecoded::Bad(s) | Undecoded::Waiting(s) => f.write_str(s),
        }
    }
}

impl From<CodecError> for Undecoded {
    fn from(e: CodecError) -> Self {
        Undecoded::Bad(e.to_string())
    }
}

impl From<RegistryError> for Undecoded {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Unavailable { .. } => Undecoded::Waiting(e.to_string()),
            RegistryError::Rejected(s) => Undecoded::Bad(s),
        }
    }
}

/// The subject of a topic's record values (Confluent's TopicNameStrategy).
pub fn subject(topic_name: &str) -> String {
    format!("{topic_name}-value")
}

/// A record's writer schema: one built in, or one from the registry (with its id when the
/// record named it by id).
enum Writer<'a> {
    Builtin(&'a TopicSchema),
    Registered(Arc<TopicSchema>, Option<u32>),
}

impl Writer<'_> {
    fn schema(&self) -> &TopicSchema {
        match self {
            Writer::Builtin(s) => s,
            Writer::Registered(s, _) => s,
        }
    }

    /// A decoding error, naming the registry's schema id where there is one.
    fn error(&self, e: CodecError) -> Undecoded {
        match self {
            Writer::Registered(_, Some(id)) => Undecoded::Bad(format!("schema id {id}: {e}")),
            _ => e.into(),
        }
    }
}

/// Records to and from bytes in both framings: the built-in schemas, and the registry when
/// one is configured.
pub struct Wire {
    codec: Codec,
    registry: Option<Registry>,
    /// A runtime for the registry's requests from threads that run none (the engine's).
    rt: Option<tokio::runtime::Runtime>,
    /// Per topic (by discriminant), the registry id its outputs are framed with.
    output_ids: Vec<Option<u32>>,
}

impl Wire {
    /// Built-in schemas only (single-object framing): `simulate`, tests, the demo.
    pub fn builtin() -> Result<Wire, String> {
        Ok(Wire {
            codec: Codec::new().map_err(|e| e.to_string())?,
            registry: None,
            rt: None,
            output_ids: vec![None; Topic::ALL.len()],
        })
    }

    /// What `config` asks for, used from async code; without a registry, [`Wire::builtin`].
    pub fn from_config(config: &Config) -> Result<Wire, String> {
        let mut wire = Wire::builtin()?;
        wire.registry = Registry::from_config(config)?;
        Ok(wire)
    }

    /// What `config` asks for, used from a thread that runs no tokio runtime (the engine's):
    /// the `_blocking` methods.
    pub fn for_thread(config: &Config) -> Result<Wire, String> {
        let mut wire = Wire::from_config(config)?;
        if wire.registry.is_some() {
            wire.rt = Some(crate::tokio_runtime()?);
        }
        Ok(wire)
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// Register the schemas of `topics` (named with `suffix`) and frame the records this
    /// writes to them in the Confluent wire format from now on, when `framing` says so and a
    /// registry is configured. Waits for the registry while `stop` is unset, with a WARN per
    /// failure.
    pub async fn register_schemas(
        &mut self,
        topics: &[Topic],
        suffix: &str,
        framing: Framing,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), String> {
        let Some(registry) = &self.registry else {
            return Ok(());
        };
        if framing != Framing::Confluent {
            return Ok(());
        }
        for topic in topics {
            let subject = subject(&crate::kafka::output_topic(*topic, suffix));
            let id = loop {
                match registry.register(&subject, topic.schema_text()).await {
                    Ok(id) => break id,
                    Err(RegistryError::Rejected(e)) => {
                        return Err(format!("cannot register the schema of {subject}: {e}"))
                    }
                    Err(e) => {
                        tracing::warn!(subject = %subject, error = %e, "cannot register an output schema yet; retrying");
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return Err(e.to_string());
                        }
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                }
            };
            tracing::info!(subject = %subject, id, "output schema registered");
            self.output_ids[*topic as usize] = Some(id);
        }
        Ok(())
    }

    /// [`Wire::register_schemas`] from a thread that runs no tokio runtime.
    pub fn register_schemas_blocking(
        &mut self,
        topics: &[Topic],
        suffix: &str,
        framing: Framing,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), String> {
        let Some(rt) = self.rt.take() else {
            return Ok(());
        };
        let result = rt.block_on(self.register_schemas(topics, suffix, framing, stop));
        self.rt = Some(rt);
        result
    }

    /// The schema a record of `topic` was written with, and its datum: built in, or from the
    /// registry for a Confluent-framed record or an unknown fingerprint.
    async fn writer<'a>(
        &'a self,
        topic: Topic,
        bytes: &'a [u8],
    ) -> Result<(Writer<'a>, &'a [u8]), Undecoded> {
        let reader = self.codec.schema(topic);
        match Framed::parse(bytes)? {
            Framed::SingleObject { fingerprint, datum } => {
                if let Some(writer) = reader.known_writer(fingerprint) {
                    return Ok((Writer::Builtin(writer), datum));
                }
                let Some(registry) = &self.registry else {
                    return Err(CodecError::UnknownSchema(fingerprint).into());
                };
                let writer = registry
                    .schema_by_fingerprint(&subject(topic.name()), fingerprint)
                    .await?;
                Ok((Writer::Registered(writer, None), datum))
            }
            Framed::Confluent { id, datum } => {
                let Some(registry) = &self.registry else {
                    return Err(CodecError::NeedsRegistry(id).into());
                };
                let writer = registry.schema_by_id(id).await?;
                Ok((Writer::Registered(writer, Some(id)), datum))
            }
        }
    }

    /// Decode a record of `topic` to its JSON mirror, in the engine's schema, whichever
    /// framing and compatible writer schema it came in.
    pub async fn decode_json(&self, topic: Topic, bytes: &[u8]) -> Result<Json, Undecoded> {
        let (writer, datum) = self.writer(topic, bytes).await?;
        self.codec
            .schema(topic)
            .read_datum(writer.schema(), datum)
            .map_err(|e| writer.error(e))
    }

    /// [`Wire::decode_json`] from a thread that runs no tokio runtime (the engine's).
    pub fn decode_json_blocking(&self, topic: Topic, bytes: &[u8]) -> Result<Json, Undecoded> {
        match &self.rt {
            Some(rt) => rt.block_on(self.decode_json(topic, bytes)),
            // Without a registry nothing awaits.
            None => Ok(self.codec.schema(topic).decode(bytes)?),
        }
    }

    /// Decode an input record (within the limits of SPEC §11) from a thread with no runtime:
    /// straight into its type when written with the engine's own schema
    /// ([`Input::from_datum`]).
    pub fn decode_input(&self, topic: Topic, bytes: &[u8]) -> Result<Input, Undecoded> {
        switchboard_schemas::limits::check_record_size(bytes.len()).map_err(Undecoded::Bad)?;
        let Some(rt) = &self.rt else {
            return Ok(Input::decode(&self.codec, topic, bytes)?);
        };
        let (writer, datum) = rt.block_on(self.writer(topic, bytes))?;
        Input::from_datum(topic, self.codec.schema(topic), writer.schema(), datum)
            .map_err(|e| writer.error(e))
    }

    /// Encode an output's JSON mirror in the framing its topic is written in.
    pub fn encode_json(&self, topic: Topic, json: &Json) -> Result<Vec<u8>, CodecError> {
        let bytes = self.codec.schema(topic).encode(json)?;
        Ok(self.frame(topic, bytes))
    }

    /// Encode an output straight from its type in the framing its topic is written in.
    pub fn encode_output(
        &self,
        output: &switchboard_schemas::Output,
    ) -> Result<Vec<u8>, CodecError> {
        let bytes = output.encode(&self.codec)?;
        Ok(self.frame(output.topic(), bytes))
    }

    /// Encode a record straight from its type in the framing its topic is written in.
    pub fn encode<T: serde::Serialize>(
        &self,
        topic: Topic,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let bytes = self.codec.encode(topic, record)?;
        Ok(self.frame(topic, bytes))
    }

    fn frame(&self, topic: Topic, single_object: Vec<u8>) -> Vec<u8> {
        match self.output_ids[topic as usize] {
            Some(id) => confluent_frame(id, &single_object),
            None => single_object,
        }
    }
}
