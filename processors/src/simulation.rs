//! Run the engine over a finite list of input records without Kafka, exactly as the runtime
//! does with topics: records are spread over partitions by tenant, each partition merges its
//! topics in timestamp order (ties: config < agent-events < commands < inbound < ticks, then
//! offset; SPEC §1.3), and each partition has its own engine, state and stream time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use switchboard_schemas::*;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{Engine, Settings};
use crate::partition::{check_key, check_partition, partition_of, tenant_of_key};
use crate::store::{MemStore, StoreError};

/// One input record as read from a file or topic.
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub topic: Topic,
    pub key: Option<String>,
    /// Event time (the Kafka record timestamp).
    pub ts: i64,
    /// An explicit partition (ticks are written to every partition by the ticker); otherwise
    /// the tenant's partition.
    pub partition: Option<u32>,
    /// Where it came from, for the dead-letter record: the 1-based line of a file, or the
    /// offset in its topic partition.
    pub line: Option<i64>,
    pub offset: Option<i64>,
    /// The original bytes.
    pub raw: Vec<u8>,
    /// The decoded record, or why it could not be decoded.
    pub decoded: Result<Input, String>,
}

/// An output with the event time it was emitted at and the partition that emitted it.
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted {
    pub ts: i64,
    pub partition: u32,
    pub output: Output,
}

/// The dead-letter record for a source record that could not be applied.
pub fn dead_letter(source: &SourceRecord, partition: Option<u32>, reason: String) -> DeadLetter {
    let place = match (source.line, source.offset) {
        (Some(line), _) => format!("line-{line}"),
        (None, offset) => format!("p{}-o{}", partition.unwrap_or(0), offset.unwrap_or(-1)),
    };
    DeadLetter {
        id: format!("dlq/{}/{place}", source.topic),
        source_topic: source.topic.name().to_string(),
        source_partition: partition.map(|p| p as i32),
        source_offset: source.offset,
        source_line: source.line,
        key: source.key.clone(),
        value: Bytes(source.raw.clone()),
        reason,
    }
}

/// Run one source record through `engine` (of partition `partition`): its outputs, then the
/// dead-letter record if it could not be decoded or applied. The Kafka runtime and
/// [`run`] both go through here, so they cannot disagree.
pub fn apply_record<S: crate::Store>(
    engine: &mut Engine<S>,
    record: &SourceRecord,
    partition: u32,
) -> Vec<Emitted> {
    let emitted = |(ts, output)| Emitted {
        ts,
        partition,
        output,
    };
    match &record.decoded {
        Ok(input) => {
            let step = engine.process(record.ts, input);
            let mut out: Vec<Emitted> = step.outputs.into_iter().map(emitted).collect();
            if let Some(rejection) = step.rejected {
                let dl = dead_letter(record, Some(partition), rejection.0);
                out.push(emitted((record.ts, Output::DeadLetter(dl))));
            }
            out
        }
        Err(reason) => {
            let dl = dead_letter(record, Some(partition), reason.clone());
            vec![emitted((record.ts, Output::DeadLetter(dl)))]
        }
    }
}

fn partition_for(r: &SourceRecord, partitions: u32) -> u32 {
    if let Some(p) = r.partition {
        return p % partitions.max(1);
    }
    let tenant = match (&r.decoded, &r.key) {
        (Ok(input), _) if input.tenant_and_id().is_some() => input
            .tenant_and_id()
            .map(|(t, _)| t.to_string())
            .unwrap_or_default(),
        (_, Some(key)) => tenant_of_key(key).to_string(),
        _ => String::new(),
    };
    partition_of(&tenant, partitions)
}

/// Process `records` (in file order, which is offset order per topic) over `partitions`
/// partitions and return every output in processing order.
pub fn run(
    records: Vec<SourceRecord>,
    partitions: u32,
    settings: &Settings,
) -> Result<Vec<Emitted>, StoreError> {
    run_engines(records, partitions, settings).map(|(out, _)| out)
}

/// [`run`], also returning each partition's engine with its final state (by partition), for
/// questions about that state ([`crate::query`]).
pub fn run_engines(
    records: Vec<SourceRecord>,
    partitions: u32,
    settings: &Settings,
) -> Result<(Vec<Emitted>, Vec<Engine<MemStore>>), StoreError> {
    run_engines_with(records, partitions, settings, &crate::standard_processors)
}

/// [`run_engines`] with the processors `processors()` makes for each partition's engine.
pub fn run_engines_with(
    records: Vec<SourceRecord>,
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
) -> Result<(Vec<Emitted>, Vec<Engine<MemStore>>), StoreError> {
    let mut out = Vec::new();
    let engines = run_streaming(records, partitions, settings, processors, &mut |e| {
        out.push(e)
    })?;
    Ok((out, engines))
}

/// Run `records` as [`run_engines_with`] does, handing each output to `sink` as it is made
/// (so a large run need not hold its outputs), and return the engines.
pub fn run_streaming(
    records: Vec<SourceRecord>,
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    sink: &mut dyn FnMut(Emitted),
) -> Result<Vec<Engine<MemStore>>, StoreError> {
    let partitions = partitions.max(1);
    let n_topics = Topic::INPUTS.len();
    // One queue per (partition, input topic), in offset order.
    let mut queues: Vec<VecDeque<SourceRecord>> =
        vec![VecDeque::new(); partitions as usize * n_topics];
    for mut r in records {
        let rank = r.topic.merge_rank() as usize;
        if let Some(p) = r.partition.filter(|p| *p >= partitions) {
            // Never wrapped onto a partition that exists: that would apply it elsewhere.
            r.partition = None;
            r.decoded = Err(format!(
                "partition {p} does not exist (partitions 0..{partitions})"
            ));
        }
        // A record given a partition must be on its tenant's, as on Kafka.
        if let (Some(p), Ok(input)) = (r.partition, &r.decoded) {
            if let Err(e) = check_partition(input, p, partitions) {
                r.decoded = Err(e);
            }
        }
        // A tick without a partition goes to every partition; a broken one is one dead letter.
        let broadcast = r.topic == Topic::Ticks && r.partition.is_none() && r.decoded.is_ok();
        let targets: Vec<u32> = if broadcast {
            (0..partitions).collect()
        } else {
            vec![partition_for(&r, partitions)]
        };
        let slot = |p: u32| p as usize * n_topics + rank.min(n_topics - 1);
        match targets.as_slice() {
            [p] => queues[slot(*p)].push_back(r),
            _ => {
                for p in &targets {
                    queues[slot(*p)].push_back(r.clone());
                }
            }
        }
    }
    let mut engines = (0..partitions)
        .map(|_| Engine::with_processors(MemStore::default(), settings.clone(), processors()))
        .collect::<Result<Vec<_>, _>>()?;
    /// A record that cannot be decoded is dead-lettered where it stands, as soon as it is the
    /// head of its queue: it takes no part in the merge, so its timestamp (which may be
    /// anything) never holds back the valid records behind it.
    fn drain_undecodable(
        queue: &mut VecDeque<SourceRecord>,
        engine: &mut Engine<MemStore>,
        partition: u32,
        sink: &mut dyn FnMut(Emitted),
    ) {
        while queue.front().is_some_and(|r| r.decoded.is_err()) {
            if let Some(record) = queue.pop_front() {
                for e in apply_record(engine, &record, partition) {
                    sink(e);
                }
            }
        }
    }
    // Heads ordered by (ts, topic rank, partition); each queue keeps offset order.
    let mut heads = BinaryHeap::new();
    for (q, queue) in queues.iter_mut().enumerate() {
        let p = q / n_topics;
        drain_undecodable(queue, &mut engines[p], p as u32, sink);
        if let Some(r) = queue.front() {
            heads.push(Reverse((r.ts, q % n_topics, q / n_topics, q)));
        }
    }
    while let Some(Reverse((_, _, partition, q))) = heads.pop() {
        let Some(record) = queues[q].pop_front() else {
            continue;
        };
        for e in apply_record(&mut engines[partition], &record, partition as u32) {
            sink(e);
        }
        drain_undecodable(
            &mut queues[q],
            &mut engines[partition],
            partition as u32,
            sink,
        );
        if let Some(next) = queues[q].front() {
            heads.push(Reverse((next.ts, q % n_topics, partition, q)));
        }
    }
    // The store mirrors the state at the end of the run, as the runtime's does at the end of
    // each round: each changed row is written once, not once per record that touched it.
    for engine in engines.iter_mut() {
        engine.flush()?;
    }
    Ok(engines)
}

// ---- JSON lines: the format of `switchboard simulate` and of the benchmarks' workloads ----

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
    if let Err(e) = limits::check_record_size(text.len()) {
        return broken(0, format!("line {number}: {e}"));
    }
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
        Some(ts) => match limits::check_timestamp(ts) {
            Ok(()) => ts,
            Err(e) => return broken(0, format!("line {number}: \"ts\": {e}")),
        },
        None => {
            return broken(
                0,
                format!("line {number}: \"ts\" must be an integer (ms since the Unix epoch)"),
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
    value: OutputValue<'a>,
}

/// Parse JSON-lines input (one record a line; blank lines and `#` comments skipped): the
/// records, and a dead letter for each line without a usable envelope (not UTF-8, not JSON,
/// no topic...), which takes no part in the timestamp merge.
pub fn parse_jsonl(input: &[u8]) -> (Vec<SourceRecord>, Vec<Emitted>) {
    let mut records = Vec::new();
    let mut broken = Vec::new();
    for (i, bytes) in input.split(|b| *b == b'\n').enumerate() {
        let number = i as i64 + 1;
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => {
                let trimmed = text.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                parse_line(number, trimmed)
            }
            Err(e) => Line::Broken {
                line: number,
                ts: 0,
                raw: bytes.to_vec(),
                reason: format!("line {number}: not valid UTF-8: {e}"),
            },
        };
        match parsed {
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
    (records, broken)
}

/// Write one output as a JSON line (`{"topic", "key", "ts", "value"}`), serialized straight
/// from the typed record.
pub fn write_jsonl(e: &Emitted, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let line = OutLine {
        topic: e.output.topic().name(),
        key: e.output.key(),
        ts: e.ts,
        value: e.output.value(),
    };
    serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}
