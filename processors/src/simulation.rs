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

/// The head of one of a partition's input queues, as the merge sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// A record with this timestamp is next in the queue.
    Record(i64),
    /// Nothing is buffered, and nothing earlier can still come (the topic is caught up, or
    /// a file has no more lines for it).
    Done,
    /// Nothing is buffered, but a record may still come: it could be the earliest.
    Waiting,
}

/// The merge rule of SPEC §1.3, the one place it is written, for `simulate` and the runtime:
/// given a partition's queue heads in topic order (config, agent-events, commands, inbound,
/// ticks), the queue whose record goes next: the earliest timestamp, ties to the earlier
/// topic (each queue keeps offset order). `None` when every queue is done, or while a
/// waiting queue holds the merge back.
pub fn next_in_merge(heads: impl IntoIterator<Item = Head>) -> Option<usize> {
    let mut best: Option<(i64, usize)> = None;
    let mut held = false;
    for (rank, head) in heads.into_iter().enumerate() {
        match head {
            Head::Record(ts) if best.is_none_or(|(b, _)| ts < b) => best = Some((ts, rank)),
            Head::Record(_) | Head::Done => {}
            Head::Waiting => held = true,
        }
    }
    best.filter(|_| !held).map(|(_, rank)| rank)
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
    let queues = fill_queues(records.into_iter().map(|r| (r, None)), partitions);
    merge(
        queues,
        partitions,
        settings,
        processors,
        sink,
        FinalState::Flushed,
    )
}

/// Run JSON-lines `input` (see [`parse_jsonl`]) as [`run_streaming`] runs its records, without
/// holding them decoded: each line is decoded once to place it, and again when it is its
/// turn, so memory holds the engines' state and the input text, not every record. The dead
/// letters of lines without a usable envelope come first, as [`parse_jsonl`] returns them.
/// Returns the number of input records (those lines included). The engines' final state is
/// not written to a store (nothing reads it; writing it was the run's peak of memory).
pub fn run_jsonl_streaming(
    input: &[u8],
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    sink: &mut dyn FnMut(Emitted),
) -> Result<usize, StoreError> {
    let mut broken = Vec::new();
    let mut count = 0;
    let records = jsonl_lines(input).filter_map(|(number, line)| {
        count += 1;
        match line {
            Ok(text) => match parse_line(number, text) {
                Line::Record(r) => Some((*r, Some(text))),
                Line::Broken {
                    line,
                    ts,
                    raw,
                    reason,
                } => {
                    broken.push(broken_line(line, ts, raw, reason));
                    None
                }
            },
            Err(dead) => {
                broken.push(dead);
                None
            }
        }
    });
    let queues = fill_queues(records, partitions);
    for e in broken {
        sink(e);
    }
    merge(
        queues,
        partitions,
        settings,
        processors,
        sink,
        FinalState::Dropped,
    )?;
    Ok(count)
}

/// What a run does with the engines' state at its end.
#[derive(PartialEq)]
enum FinalState {
    /// Flushed into each engine's store, as the runtime does at the end of each round.
    Flushed,
    /// Left unwritten: the caller only wants the outputs.
    Dropped,
}

/// A record waiting in its partition's queue for its turn in the merge.
#[derive(Clone)]
enum Queued<'a> {
    Decoded(Box<SourceRecord>),
    /// A line of JSON-lines input, decoded again when it is its turn; what placing it found
    /// (its partition, or why it cannot be applied) is kept.
    Line {
        text: &'a str,
        number: i64,
        ts: i64,
        partition: Option<u32>,
        error: Option<String>,
    },
}

impl Queued<'_> {
    fn ts(&self) -> i64 {
        match self {
            Queued::Decoded(r) => r.ts,
            Queued::Line { ts, .. } => *ts,
        }
    }

    fn undecodable(&self) -> bool {
        match self {
            Queued::Decoded(r) => r.decoded.is_err(),
            Queued::Line { error, .. } => error.is_some(),
        }
    }

    fn into_record(self) -> SourceRecord {
        match self {
            Queued::Decoded(r) => *r,
            Queued::Line {
                text,
                number,
                partition,
                error,
                ..
            } => {
                let mut r = match parse_line(number, text) {
                    Line::Record(r) => *r,
                    // It parsed when it was placed; parsing is deterministic.
                    Line::Broken {
                        ts, raw, reason, ..
                    } => SourceRecord {
                        topic: Topic::Inbound,
                        key: None,
                        ts,
                        partition: None,
                        line: Some(number),
                        offset: None,
                        raw,
                        decoded: Err(reason),
                    },
                };
                r.partition = partition;
                if let Some(e) = error {
                    r.decoded = Err(e);
                }
                r
            }
        }
    }
}

/// One queue per (partition, input topic), in offset order, with each record placed as the
/// input topics would place it: on its tenant's partition, or its own given one (checked),
/// a tick without one on every partition.
fn fill_queues<'a>(
    records: impl Iterator<Item = (SourceRecord, Option<&'a str>)>,
    partitions: u32,
) -> Vec<VecDeque<Queued<'a>>> {
    let partitions = partitions.max(1);
    let n_topics = Topic::INPUTS.len();
    let mut queues: Vec<VecDeque<Queued>> = vec![VecDeque::new(); partitions as usize * n_topics];
    for (mut r, text) in records {
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
        let item = match (text, r.line) {
            (Some(text), Some(number)) => Queued::Line {
                text,
                number,
                ts: r.ts,
                partition: r.partition,
                error: r.decoded.err(),
            },
            _ => Queued::Decoded(Box::new(r)),
        };
        let slot = |p: u32| p as usize * n_topics + rank.min(n_topics - 1);
        match targets.as_slice() {
            [p] => queues[slot(*p)].push_back(item),
            _ => {
                for p in &targets {
                    queues[slot(*p)].push_back(item.clone());
                }
            }
        }
    }
    queues
}

/// Each partition's queues merged in timestamp order (ties: topic order, then offset) through
/// its own engine; partitions interleaved by (timestamp, topic, partition).
fn merge(
    mut queues: Vec<VecDeque<Queued>>,
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    sink: &mut dyn FnMut(Emitted),
    end: FinalState,
) -> Result<Vec<Engine<MemStore>>, StoreError> {
    let partitions = partitions.max(1);
    let n_topics = Topic::INPUTS.len();
    let mut engines = (0..partitions)
        .map(|_| Engine::with_processors(MemStore::default(), settings.clone(), processors()))
        .collect::<Result<Vec<_>, _>>()?;
    /// A record that cannot be decoded is dead-lettered where it stands, as soon as it is the
    /// head of its queue: it takes no part in the merge, so its timestamp (which may be
    /// anything) never holds back the valid records behind it.
    fn drain_undecodable(
        queue: &mut VecDeque<Queued>,
        engine: &mut Engine<MemStore>,
        partition: u32,
        sink: &mut dyn FnMut(Emitted),
    ) {
        while queue.front().is_some_and(Queued::undecodable) {
            if let Some(record) = queue.pop_front() {
                for e in apply_record(engine, &record.into_record(), partition) {
                    sink(e);
                }
            }
        }
    }
    for (q, queue) in queues.iter_mut().enumerate() {
        let p = q / n_topics;
        drain_undecodable(queue, &mut engines[p], p as u32, sink);
    }
    // Each partition's next record by the merge rule; partitions interleaved by (timestamp,
    // topic, partition) so the output is one deterministic stream.
    let next_of = |queues: &[VecDeque<Queued>], p: usize| {
        let own = &queues[p * n_topics..(p + 1) * n_topics];
        let heads = own
            .iter()
            .map(|queue| queue.front().map_or(Head::Done, |r| Head::Record(r.ts())));
        next_in_merge(heads).and_then(|rank| {
            let ts = own[rank].front()?.ts();
            Some(Reverse((ts, rank, p)))
        })
    };
    let mut heads: BinaryHeap<_> = (0..partitions as usize)
        .filter_map(|p| next_of(&queues, p))
        .collect();
    while let Some(Reverse((_, rank, partition))) = heads.pop() {
        let q = partition * n_topics + rank;
        let Some(record) = queues[q].pop_front() else {
            continue;
        };
        let record = record.into_record();
        for e in apply_record(&mut engines[partition], &record, partition as u32) {
            sink(e);
        }
        drain_undecodable(
            &mut queues[q],
            &mut engines[partition],
            partition as u32,
            sink,
        );
        heads.extend(next_of(&queues, partition));
    }
    // The store mirrors the state at the end of the run, as the runtime's does at the end of
    // each round: each changed row is written once, not once per record that touched it.
    if end == FinalState::Flushed {
        for engine in engines.iter_mut() {
            engine.flush_into_store()?;
        }
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
    for (number, line) in jsonl_lines(input) {
        match line.map(|text| parse_line(number, text)) {
            Ok(Line::Record(r)) => records.push(*r),
            Ok(Line::Broken {
                line,
                ts,
                raw,
                reason,
            }) => broken.push(broken_line(line, ts, raw, reason)),
            Err(dead) => broken.push(dead),
        }
    }
    (records, broken)
}

/// The lines of JSON-lines input with their 1-based numbers, trimmed; blank lines and `#`
/// comments skipped; a line that is not UTF-8 is its dead letter.
fn jsonl_lines(input: &[u8]) -> impl Iterator<Item = (i64, Result<&str, Emitted>)> {
    input
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, bytes)| {
            let number = i as i64 + 1;
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    let trimmed = text.trim();
                    (!trimmed.is_empty() && !trimmed.starts_with('#'))
                        .then_some((number, Ok(trimmed)))
                }
                Err(e) => Some((
                    number,
                    Err(broken_line(
                        number,
                        0,
                        bytes.to_vec(),
                        format!("line {number}: not valid UTF-8: {e}"),
                    )),
                )),
            }
        })
}

/// The dead letter of a line without a usable envelope.
fn broken_line(line: i64, ts: i64, raw: Vec<u8>, reason: String) -> Emitted {
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
    Emitted {
        ts,
        partition: 0,
        output: Output::DeadLetter(dl),
    }
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
