//! `switchboard simulate`: the processors over a JSON-lines file, without Kafka.
//!
//! Input, one record per line: `{"topic": "cc.inbound", "key": "<tenant>", "ts": <ms>,
//! "value": {…}}` (`partition` may be given for ticks; a tick without one goes to every
//! partition, as the ticker does). Blank lines and lines starting with `#` are skipped.
//! Output: one line per output record in the same shape. A line that is not valid JSON, or not
//! a valid record, becomes a `cc.dlq` line with its line number and a readable reason, and
//! processing continues. The output is byte-identical from run to run.

use serde::Serialize;
use serde_json::Value;
use switchboard_processors::partition::check_key;
use switchboard_processors::simulation::{self, dead_letter, Emitted, SourceRecord};
use switchboard_processors::Settings;
use switchboard_schemas::{Input, Output, Topic};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("state store: {0}")]
    Store(#[from] switchboard_processors::StoreError),
}

/// A parsed line, or why the line has no usable envelope.
enum Line {
    Record(Box<SourceRecord>),
    Broken {
        line: i64,
        ts: i64,
        raw: Vec<u8>,
        reason: String,
    },
}

fn parse_line(number: i64, text: &str) -> Line {
    let raw = text.as_bytes().to_vec();
    let broken = |ts: i64, reason: String| Line::Broken {
        line: number,
        ts,
        raw: raw.clone(),
        reason,
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return broken(0, format!("line {number}: not valid JSON: {e}")),
    };
    let Value::Object(mut obj) = value else {
        return broken(
            0,
            format!("line {number}: expected an object {{\"topic\", \"key\", \"ts\", \"value\"}}"),
        );
    };
    let ts = match obj.get("ts").and_then(Value::as_i64) {
        Some(ts) if ts >= 0 => ts,
        _ => {
            return broken(
                0,
                format!(
                "line {number}: \"ts\" must be a non-negative integer (ms since the Unix epoch)"
            ),
            )
        }
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "topic" | "key" | "ts" | "value" | "partition") {
            return broken(ts, format!("line {number}: unknown field {k:?} (expected topic, key, ts, value, partition)"));
        }
    }
    let topic = match obj.get("topic").and_then(Value::as_str).map(|t| (t, Topic::from_name(t))) {
        Some((_, Some(t))) if t.is_input() => t,
        Some((t, _)) => {
            return broken(ts, format!("line {number}: {t:?} is not an input topic (cc.config, cc.agent-events, cc.commands, cc.inbound, cc.ticks)"))
        }
        None => return broken(ts, format!("line {number}: missing \"topic\"")),
    };
    let key = match obj.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return broken(ts, format!("line {number}: \"key\" must be a string")),
    };
    let partition = match obj.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => match p.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => Some(p),
            None => {
                return broken(
                    ts,
                    format!("line {number}: \"partition\" must be a non-negative integer"),
                )
            }
        },
    };
    let decoded = match obj.remove("value") {
        None => Err(format!("line {number}: missing \"value\"")),
        Some(v) => Input::from_json(topic, v)
            .map_err(|e| format!("line {number}: invalid {topic} record: {e}"))
            .and_then(|input| {
                check_key(topic, key.as_deref(), &input)
                    .map_err(|e| format!("line {number}: {e}"))?;
                Ok(input)
            }),
    };
    Line::Record(Box::new(SourceRecord {
        topic,
        key,
        ts,
        partition,
        line: Some(number),
        offset: None,
        raw,
        decoded,
    }))
}

#[derive(Serialize)]
struct OutLine<'a> {
    topic: &'a str,
    key: Option<&'a str>,
    ts: i64,
    value: Value,
}

/// Run the processors over the JSON-lines `input` text and return the output text.
pub fn simulate_text(
    input: &str,
    partitions: u32,
    settings: &Settings,
) -> Result<String, SimulateError> {
    let mut records = Vec::new();
    let mut broken = Vec::new();
    for (i, text) in input.lines().enumerate() {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(i as i64 + 1, trimmed) {
            Line::Record(r) => records.push(*r),
            Line::Broken {
                line,
                ts,
                raw,
                reason,
            } => {
                let source = SourceRecord {
                    topic: Topic::Inbound,
                    key: None,
                    ts,
                    partition: None,
                    line: Some(line),
                    offset: None,
                    raw,
                    decoded: Err(reason.clone()),
                };
                let mut dl = dead_letter(&source, None, reason);
                dl.source_topic = "unknown".to_string();
                dl.id = format!("dlq/line-{line}");
                broken.push(Emitted {
                    ts,
                    partition: 0,
                    output: Output::DeadLetter(dl),
                });
            }
        }
    }
    let mut emitted = broken;
    emitted.extend(simulation::run(records, partitions, settings)?);
    let mut out = String::new();
    for e in &emitted {
        let line = OutLine {
            topic: e.output.topic().name(),
            key: e.output.key(),
            ts: e.ts,
            value: e.output.to_json(),
        };
        // Plain data with string keys: serializing cannot fail.
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

/// `switchboard simulate --input FILE --output FILE`.
pub fn simulate_file(
    input: &str,
    output: &str,
    partitions: u32,
) -> Result<(usize, usize), SimulateError> {
    let text = std::fs::read_to_string(input).map_err(|source| SimulateError::Read {
        path: input.to_string(),
        source,
    })?;
    let out = simulate_text(&text, partitions, &Settings::default())?;
    std::fs::write(output, &out).map_err(|source| SimulateError::Write {
        path: output.to_string(),
        source,
    })?;
    let records = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .count();
    Ok((records, out.lines().count()))
}
