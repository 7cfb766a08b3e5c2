//! `switchboard produce`: write input records to Kafka the way the engine expects them, for
//! producers, the docs and the compose stack: the JSON mirror in (the `simulate` line
//! format), Avro single-object records out, each on its tenant's partition (murmur2 of the
//! tenant over the topic's partitions, whatever the key), keyed as docs/records.md says, with
//! the line's `ts` as the record timestamp. A tick without a partition goes to every partition
//! of `cc.ticks`, as the ticker writes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use switchboard_processors::partition::partition_of;
use switchboard_processors::simulation;
use switchboard_schemas::{Output, Topic};

use crate::config::Config;
use crate::kafka;
use crate::registry::Wire;
use crate::runtime::send;

/// What was written, and the lines that were not (with why).
pub struct Produced {
    pub written: BTreeMap<String, u64>,
    pub rejected: Vec<String>,
}

impl Produced {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (topic, n) in &self.written {
            let _ = writeln!(out, "{topic}: {n} record(s)");
        }
        for r in &self.rejected {
            let _ = writeln!(out, "not written: {r}");
        }
        out
    }
}

/// Read `input` (JSON lines), keep the records of `only` (all input topics when none), and
/// write them. A line that is not a valid record is not written and is reported; the others
/// are.
pub fn produce(config: &Config, input: &str, only: Option<Topic>) -> Result<Produced, String> {
    let bytes = std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}"))?;
    let (records, broken) = simulation::parse_jsonl(&bytes);
    let mut rejected: Vec<String> = broken
        .iter()
        .filter_map(|e| match &e.output {
            Output::DeadLetter(d) => Some(d.reason.clone()),
            _ => None,
        })
        .collect();
    // With a schema registry, inputs are written as Confluent's serializers write them; a
    // registry that cannot be reached fails the command (no retrying: `stop` is set).
    let mut wire = Wire::for_thread(config)?;
    let stop = std::sync::atomic::AtomicBool::new(true);
    wire.register_schemas_blocking(
        &Topic::INPUTS,
        "",
        config.schema_registry.output_framing,
        &stop,
    )?;
    let producer = kafka::idempotent_producer(config)
        .map_err(|e| format!("cannot create a Kafka producer: {e}"))?;
    let reader = kafka::reader(config, "read_uncommitted")
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let counts = kafka::partition_counts(&reader, Duration::from_secs(30))
        .map_err(|e| format!("cannot read the topics' metadata: {e}"))?;
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        if only.is_some_and(|t| t != r.topic) {
            continue;
        }
        let place = r.line.map_or(String::new(), |l| format!("line {l}: "));
        let input = match r.decoded {
            Ok(input) => input,
            Err(reason) => {
                rejected.push(reason);
                continue;
            }
        };
        let topic = r.topic.name();
        let Some(&partitions) = counts.get(topic) else {
            return Err(format!(
                "topic {topic} does not exist (switchboard topics create)"
            ));
        };
        let value = wire
            .encode_json(r.topic, &input.to_json())
            .map_err(|e| format!("{place}cannot encode: {e}"))?;
        let targets: Vec<i32> = match (r.partition, input.tenant_and_id()) {
            (_, Some((tenant, _))) => vec![partition_of(tenant, partitions as u32) as i32],
            (Some(p), None) if (p as usize) < partitions => vec![p as i32],
            (Some(p), None) => {
                rejected.push(format!(
                    "{place}{topic} has no partition {p} ({partitions} partitions)"
                ));
                continue;
            }
            (None, None) => (0..partitions as i32).collect(),
        };
        for p in targets {
            send(
                &producer,
                topic,
                p,
                r.key.as_deref().map(str::as_bytes),
                Some(&value),
                Some(r.ts),
                None,
            )
            .map_err(|e| format!("{place}{e}"))?;
            *written.entry(topic.to_string()).or_default() += 1;
        }
    }
    kafka::flush(&producer, Duration::from_secs(60))?;
    Ok(Produced { written, rejected })
}
