//! Run the engine over a finite list of input records without Kafka, exactly as the runtime
//! does with topics: records are spread over partitions by tenant, each partition merges its
//! topics in timestamp order (ties: config < agent-events < commands < inbound < ticks, then
//! offset; SPEC §1.3), and each partition has its own engine, state and stream time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender};
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
    let queues = fill_queues(
        records
            .into_iter()
            .map(|r| Placed::Parsed(Box::new(r), None)),
        partitions,
    );
    merge(queues, settings, processors, sink, Flushes::AtEnd)
}

/// Run JSON-lines `input` (see [`parse_jsonl`]) as [`run_streaming`] runs its records, without
/// holding them decoded: a line is placed by its envelope alone where that is sure to place
/// it right ([`Envelope`]) and decoded once, when it is its turn; other lines are decoded to
/// place them and again when it is their turn. So memory holds the engines' state and the
/// input text, not every record. The dead letters of lines without a usable envelope come
/// first, as [`parse_jsonl`] returns them.
/// Returns the number of input records (those lines included). The engines' final state is
/// not written to a store (nothing reads it; writing it was the run's peak of memory).
pub fn run_jsonl_streaming(
    input: &[u8],
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    sink: &mut dyn FnMut(Emitted),
) -> Result<usize, StoreError> {
    let (queues, broken, count) = place_lines(input, partitions);
    broken.into_iter().for_each(&mut *sink);
    merge(
        queues,
        settings,
        processors,
        sink,
        Flushes::ReadBack(READ_BACK_EVERY),
    )?;
    Ok(count)
}

/// [`run_jsonl_streaming`] with the partitions spread over `threads` threads, each output
/// encoded by `encode` on its partition's thread and handed to `sink` on this one: the same
/// outputs in the same order, for any number of threads. `encode` gets consecutive outputs
/// (those of one record, maybe none, or a broken line's dead letter) and `sink` their
/// encodings in order, on this thread while the partitions' threads go on. (With one thread
/// this still costs a thread and a buffer per record: `simulate` then writes each output
/// itself through [`run_jsonl_streaming`].)
pub fn run_jsonl_parallel<T: Send>(
    input: &[u8],
    partitions: u32,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    threads: usize,
    encode: &(dyn Fn(&[Emitted]) -> T + Sync),
    sink: &mut dyn FnMut(T),
) -> Result<usize, StoreError> {
    // The lines are placed in `threads` pieces side by side, each piece's queues then
    // appended to the pieces' before it: what placing them in one pass makes.
    let pieces = std::thread::scope(|s| {
        let handles: Vec<_> = split_lines(input, threads)
            .into_iter()
            .map(|(first, piece)| s.spawn(move || place_lines_from(piece, first, partitions)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<_>>()
    });
    let (mut queues, mut count) = (Vec::new(), 0);
    for (piece, broken, n) in pieces {
        for e in broken {
            sink(encode(std::slice::from_ref(&e)));
        }
        count += n;
        if queues.is_empty() {
            queues = piece;
        } else {
            for (queue, mut more) in queues.iter_mut().zip(piece) {
                queue.append(&mut more);
            }
        }
    }
    merge_parallel(queues, settings, processors, threads, encode, sink)?;
    Ok(count)
}

/// `input` cut into about `pieces` pieces at line ends, each with the number of its first line.
fn split_lines(input: &[u8], pieces: usize) -> Vec<(i64, &[u8])> {
    let mut out = Vec::with_capacity(pieces);
    let (mut rest, mut first) = (input, 1i64);
    for left in (1..=pieces.max(1)).rev() {
        let at = if left == 1 {
            rest.len()
        } else {
            let target = rest.len() / left;
            rest[target..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| target + i + 1)
        };
        let (piece, after) = rest.split_at(at);
        out.push((first, piece));
        first += piece.iter().filter(|b| **b == b'\n').count() as i64;
        rest = after;
    }
    out
}

/// The lines of JSON-lines `input` in their partitions' queues ([`fill_queues`]): a line is
/// placed by its envelope alone where that is sure to place it right ([`Envelope`]),
/// otherwise decoded whole. Also the dead letters of lines without a usable envelope, and the
/// number of input records (those lines included).
fn place_lines(input: &[u8], partitions: u32) -> (Vec<VecDeque<Queued<'_>>>, Vec<Emitted>, usize) {
    place_lines_from(input, 1, partitions)
}

/// [`place_lines`] for lines numbered from `first`.
fn place_lines_from(
    input: &[u8],
    first: i64,
    partitions: u32,
) -> (Vec<VecDeque<Queued<'_>>>, Vec<Emitted>, usize) {
    let mut broken = Vec::new();
    let mut count = 0;
    let records = jsonl_lines(input, first).filter_map(|(number, line)| {
        count += 1;
        let text = match line {
            Ok(text) => text,
            Err(dead) => {
                broken.push(dead);
                return None;
            }
        };
        if let Some(envelope) = Envelope::read(number, text) {
            return Some(Placed::Envelope(envelope));
        }
        match parse_line(number, text) {
            Line::Record(r) => Some(Placed::Parsed(r, Some(text))),
            Line::Broken {
                line,
                ts,
                raw,
                reason,
            } => {
                broken.push(broken_line(line, ts, raw, reason));
                None
            }
        }
    });
    let queues = fill_queues(records, partitions);
    (queues, broken, count)
}

/// A line of JSON-lines input whose envelope alone was read (its value skipped): enough to
/// place a record that names its tenant in its key. Its value is decoded once, when the
/// record reaches the head of its queue ([`Queued::settle`]).
struct Envelope<'a> {
    text: &'a str,
    number: i64,
    topic: Topic,
    key: &'a str,
    ts: i64,
    partition: Option<u32>,
}

impl<'a> Envelope<'a> {
    /// The envelope of `text`, when reading it alone is sure to place the record exactly as
    /// decoding it whole ([`parse_line`]) would, and to find no fault in the line that
    /// [`parse_line`] would report as a broken line. Otherwise `None`, and the caller decodes
    /// the line whole. That holds when:
    /// - the envelope has exactly its fields, a string key and an input topic other than
    ///   `cc.ticks` (a tick without a partition goes to every partition, if it decodes): the
    ///   key's tenant is then the record's partition whether the value decodes or not, as
    ///   [`check_key`] rejects a value of another tenant;
    /// - the value is valid JSON by the skipping reader, and the text has nothing that reader
    ///   is more lenient with than the decoding one: no `\` escape (it accepts any `\u`
    ///   code), no number with an exponent or 100 digits (it checks no range), fewer than 100
    ///   brackets (it checks no depth).
    fn read(number: i64, text: &'a str) -> Option<Envelope<'a>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields<'a> {
            topic: &'a str,
            key: &'a str,
            ts: i64,
            #[serde(default)]
            partition: Option<u32>,
            #[allow(dead_code)]
            value: serde::de::IgnoredAny,
        }
        if limits::check_record_size(text.len()).is_err() || !plain(text.as_bytes()) {
            return None;
        }
        let fields: Fields = serde_json::from_str(text).ok()?;
        let topic =
            Topic::from_name(fields.topic).filter(|t| t.is_input() && *t != Topic::Ticks)?;
        limits::check_timestamp(fields.ts).ok()?;
        Some(Envelope {
            text,
            number,
            topic,
            key: fields.key,
            ts: fields.ts,
            partition: fields.partition,
        })
    }
}

/// Whether `text` has none of what the skipping JSON reader accepts and the decoding one may
/// refuse ([`Envelope::read`]). Conservative: a match inside a string counts too.
fn plain(text: &[u8]) -> bool {
    let mut brackets = 0;
    // The length of the run of digits just read.
    let mut digits = 0;
    for &b in text {
        match b {
            b'\\' => return false,
            b'[' | b'{' => brackets += 1,
            b'e' | b'E' if digits > 0 => return false,
            _ => {}
        }
        digits = if b.is_ascii_digit() { digits + 1 } else { 0 };
        if brackets >= 100 || digits >= 100 {
            return false;
        }
    }
    true
}

/// A line as the first pass over the input leaves it: decoded whole, or its envelope alone.
enum Placed<'a> {
    Parsed(Box<SourceRecord>, Option<&'a str>),
    Envelope(Envelope<'a>),
}

/// When a run flushes its engines' state.
#[derive(Clone, Copy, PartialEq)]
enum Flushes {
    /// Everything into each engine's store at the end, as the runtime does at the end of
    /// each round (callers ask the state questions).
    AtEnd,
    /// Every this many records of a partition, only what the engine reads back
    /// ([`Engine::flush_read_back`]), and the state dropped at the end: the caller only
    /// wants the outputs, and memory holds the state, not its changes since the start.
    ReadBack(usize),
}

/// Records a partition applies between two flushes of what its engine reads back in a
/// JSON-lines run ([`Flushes::ReadBack`]).
const READ_BACK_EVERY: usize = 8_192;

/// A record waiting in its partition's queue for its turn in the merge.
#[derive(Clone)]
enum Queued<'a> {
    Decoded(Box<SourceRecord>),
    /// A line placed by its envelope alone ([`Envelope`]), decoded when it is at the head of
    /// its queue ([`Queued::settle`]); its given partition (`None` if it does not exist, with
    /// the error saying so).
    Envelope {
        text: &'a str,
        number: i64,
        ts: i64,
        partition: Option<u32>,
        partitions: u32,
        error: Option<String>,
    },
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
            Queued::Line { ts, .. } | Queued::Envelope { ts, .. } => *ts,
        }
    }

    /// Whether the record cannot be applied ([`Queued::settle`] it first).
    fn undecodable(&self) -> bool {
        match self {
            Queued::Decoded(r) => r.decoded.is_err(),
            Queued::Line { error, .. } | Queued::Envelope { error, .. } => error.is_some(),
        }
    }

    /// Decode a record placed by its envelope, checking what placing it would have checked
    /// with its value (its given partition is its tenant's), so it reads as if it had been
    /// decoded when it was placed.
    fn settle(&mut self) {
        if let Queued::Envelope {
            text,
            number,
            partition,
            partitions,
            error,
            ..
        } = self
        {
            let mut r = record_of_line(*number, text);
            r.partition = *partition;
            if let Some(e) = error.take() {
                r.decoded = Err(e);
            } else if let (Some(p), Ok(input)) = (r.partition, &r.decoded) {
                if let Err(e) = check_partition(input, p, *partitions) {
                    r.decoded = Err(e);
                }
            }
            *self = Queued::Decoded(Box::new(r));
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
                let mut r = record_of_line(number, text);
                r.partition = partition;
                if let Some(e) = error {
                    r.decoded = Err(e);
                }
                r
            }
            // Settled before it is taken; were it not, it is decoded as settling would.
            envelope @ Queued::Envelope { .. } => {
                let mut settled = envelope;
                settled.settle();
                settled.into_record()
            }
        }
    }
}

/// The record of a line decoded whole, which [`parse_line`] found to be one when the line
/// was placed (decoding is deterministic; a broken line would be a record that cannot be
/// applied).
fn record_of_line(number: i64, text: &str) -> SourceRecord {
    match parse_line(number, text) {
        Line::Record(r) => *r,
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
    }
}

/// One queue per (partition, input topic), in offset order, with each record placed as the
/// input topics would place it: on its tenant's partition, or its own given one (checked),
/// a tick without one on every partition.
fn fill_queues<'a>(
    records: impl Iterator<Item = Placed<'a>>,
    partitions: u32,
) -> Vec<VecDeque<Queued<'a>>> {
    let partitions = partitions.max(1);
    let n_topics = Topic::INPUTS.len();
    let mut queues: Vec<VecDeque<Queued>> = vec![VecDeque::new(); partitions as usize * n_topics];
    let slot = |p: u32, rank: usize| p as usize * n_topics + rank.min(n_topics - 1);
    for placed in records {
        let (mut r, text) = match placed {
            Placed::Parsed(r, text) => (*r, text),
            Placed::Envelope(e) => {
                // As below, with the checks that need the value left to `Queued::settle`.
                let (partition, error) = match e.partition {
                    Some(p) if p >= partitions => (None, Some(no_such_partition(p, partitions))),
                    given => (given, None),
                };
                let p = partition.map_or_else(
                    || partition_of(tenant_of_key(e.key), partitions),
                    |p| p % partitions,
                );
                let rank = e.topic.merge_rank() as usize;
                queues[slot(p, rank)].push_back(Queued::Envelope {
                    text: e.text,
                    number: e.number,
                    ts: e.ts,
                    partition,
                    partitions,
                    error,
                });
                continue;
            }
        };
        let rank = r.topic.merge_rank() as usize;
        if let Some(p) = r.partition.filter(|p| *p >= partitions) {
            // Never wrapped onto a partition that exists: that would apply it elsewhere.
            r.partition = None;
            r.decoded = Err(no_such_partition(p, partitions));
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
        match targets.as_slice() {
            [p] => queues[slot(*p, rank)].push_back(item),
            _ => {
                for p in &targets {
                    queues[slot(*p, rank)].push_back(item.clone());
                }
            }
        }
    }
    queues
}

fn no_such_partition(p: u32, partitions: u32) -> String {
    format!("partition {p} does not exist (partitions 0..{partitions})")
}

/// One partition's part of a run: its input queues (one per input topic, in merge rank order)
/// and its engine. The merge rule decides which of its queues goes next; nothing in it depends
/// on another partition, which is what lets partitions run on threads of their own
/// ([`run_jsonl_parallel`]) with the same outputs in the same order.
struct PartitionRun<'a> {
    partition: u32,
    queues: Vec<VecDeque<Queued<'a>>>,
    engine: Engine<MemStore>,
    flushes: Flushes,
    /// Records applied since the last flush.
    unflushed: usize,
}

impl<'a> PartitionRun<'a> {
    /// Split `queues` (partition-major, as [`fill_queues`] makes them) into one run per
    /// partition, each with a new engine.
    fn all(
        queues: Vec<VecDeque<Queued<'a>>>,
        settings: &Settings,
        processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
        flushes: Flushes,
    ) -> Result<Vec<PartitionRun<'a>>, StoreError> {
        let n_topics = Topic::INPUTS.len();
        let mut runs: Vec<PartitionRun> = Vec::with_capacity(queues.len() / n_topics);
        for (q, mut queue) in queues.into_iter().enumerate() {
            // Filled by pushes, a queue has up to twice the room it needs, for the whole run.
            queue.shrink_to_fit();
            if q % n_topics == 0 {
                runs.push(PartitionRun {
                    partition: (q / n_topics) as u32,
                    queues: Vec::with_capacity(n_topics),
                    engine: Engine::with_processors(
                        MemStore::default(),
                        settings.clone(),
                        processors(),
                    )?,
                    flushes,
                    unflushed: 0,
                });
            }
            if let Some(run) = runs.last_mut() {
                run.queues.push(queue);
            }
        }
        Ok(runs)
    }

    /// A record that cannot be decoded is dead-lettered where it stands, as soon as it is the
    /// head of its queue: it takes no part in the merge, so its timestamp (which may be
    /// anything) never holds back the valid records behind it.
    fn drain_undecodable(&mut self, rank: usize, out: &mut Vec<Emitted>) {
        let queue = &mut self.queues[rank];
        while queue.front_mut().is_some_and(|head| {
            head.settle();
            head.undecodable()
        }) {
            if let Some(record) = queue.pop_front() {
                out.extend(apply_record(
                    &mut self.engine,
                    &record.into_record(),
                    self.partition,
                ));
                self.unflushed += 1;
            }
        }
    }

    /// What the run does before the merge starts: the undecodable heads of every queue.
    fn start(&mut self, out: &mut Vec<Emitted>) {
        for rank in 0..self.queues.len() {
            self.drain_undecodable(rank, out);
        }
    }

    /// How many records are still to come.
    fn records(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// The partition's next record by the merge rule: its (timestamp, topic rank).
    fn next(&self) -> Option<(i64, usize)> {
        let heads = self
            .queues
            .iter()
            .map(|queue| queue.front().map_or(Head::Done, |r| Head::Record(r.ts())));
        next_in_merge(heads).and_then(|rank| Some((self.queues[rank].front()?.ts(), rank)))
    }

    /// Apply the head of queue `rank` (what [`PartitionRun::next`] named), then dead-letter
    /// what cannot be decoded behind it; flush when it is time.
    fn step(&mut self, rank: usize, out: &mut Vec<Emitted>) -> Result<(), StoreError> {
        if let Some(record) = self.queues[rank].pop_front() {
            let record = record.into_record();
            out.extend(apply_record(&mut self.engine, &record, self.partition));
            self.unflushed += 1;
        }
        self.drain_undecodable(rank, out);
        if let Flushes::ReadBack(every) = self.flushes {
            if self.unflushed >= every {
                self.engine.flush_read_back()?;
                self.unflushed = 0;
            }
        }
        Ok(())
    }

    /// The engine at the end of the run, its state written to its store or not.
    fn finish(mut self) -> Result<Engine<MemStore>, StoreError> {
        // The store mirrors the state at the end of the run, as the runtime's does at the end
        // of each round: each changed row is written once, not once per record that touched it.
        if self.flushes == Flushes::AtEnd {
            self.engine.flush_into_store()?;
        }
        Ok(self.engine)
    }
}

/// The order partitions interleave in: (timestamp, topic rank, partition), ascending.
type Key = (i64, usize, u32);
type MergeKey = Reverse<Key>;

/// Each partition's queues merged in timestamp order (ties: topic order, then offset) through
/// its own engine; partitions interleaved by (timestamp, topic, partition).
fn merge(
    queues: Vec<VecDeque<Queued>>,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    sink: &mut dyn FnMut(Emitted),
    flushes: Flushes,
) -> Result<Vec<Engine<MemStore>>, StoreError> {
    let mut runs = PartitionRun::all(queues, settings, processors, flushes)?;
    let mut out = Vec::new();
    for run in runs.iter_mut() {
        run.start(&mut out);
    }
    out.drain(..).for_each(&mut *sink);
    merge_steps(&mut runs, &mut |_, out| {
        out.drain(..).for_each(&mut *sink);
        true
    })?;
    runs.into_iter().map(PartitionRun::finish).collect()
}

/// The merge itself: `runs` (in partition order) step by step, each partition's next record
/// by the merge rule and partitions interleaved by (timestamp, topic rank, partition).
/// `stepped` gets each step's key and outputs (none, maybe), and stops the merge by
/// returning `false`.
fn merge_steps(
    runs: &mut [PartitionRun],
    stepped: &mut dyn FnMut(Key, &mut Vec<Emitted>) -> bool,
) -> Result<(), StoreError> {
    let key = |run: &PartitionRun| {
        run.next()
            .map(|(ts, rank)| Reverse((ts, rank, run.partition)))
    };
    let mut heads: BinaryHeap<MergeKey> = runs.iter().filter_map(key).collect();
    let mut out = Vec::new();
    while let Some(Reverse((ts, rank, p))) = heads.pop() {
        let Ok(i) = runs.binary_search_by_key(&p, |run| run.partition) else {
            continue;
        };
        let run = &mut runs[i];
        run.step(rank, &mut out)?;
        if !stepped((ts, rank, p), &mut out) {
            return Ok(());
        }
        out.clear();
        heads.extend(key(run));
    }
    Ok(())
}

/// Steps a partition's thread hands over at a time in [`merge_parallel`].
const STEPS_PER_BATCH: usize = 256;

/// What a thread of [`merge_parallel`] hands to the merging one.
enum Batch<T> {
    /// First: the encoded outputs of [`PartitionRun::start`], by partition.
    Started(Vec<(u32, T)>),
    /// Then, in the thread's own merge order: each step's key and encoded outputs (every
    /// step, with outputs or not).
    Steps(Vec<(Key, T)>),
}

/// [`merge`] with the partitions spread over `threads` threads (balanced by their records),
/// their outputs encoded there by `encode` and handed to `sink` in exactly
/// [`merge`]'s order. Each thread merges its own partitions by (timestamp, topic rank,
/// partition), which is [`merge`]'s order restricted to them (a partition's next record does
/// not depend on the others), and this thread merges the threads' streams by the same keys.
/// The engines are dropped at the end, on their threads.
fn merge_parallel<T: Send>(
    queues: Vec<VecDeque<Queued>>,
    settings: &Settings,
    processors: &dyn Fn() -> Vec<Box<dyn crate::Processor>>,
    threads: usize,
    encode: &(dyn Fn(&[Emitted]) -> T + Sync),
    sink: &mut dyn FnMut(T),
) -> Result<(), StoreError> {
    let mut runs = PartitionRun::all(
        queues,
        settings,
        processors,
        Flushes::ReadBack(READ_BACK_EVERY),
    )?;
    let threads = threads.clamp(1, runs.len().max(1));
    // Partitions to threads by their records, largest first, each to the thread with the
    // fewest so far; each thread's partitions in partition order.
    runs.sort_by_key(|run| Reverse((run.records(), Reverse(run.partition))));
    let mut shares: Vec<(usize, Vec<PartitionRun>)> =
        (0..threads).map(|_| (0, Vec::new())).collect();
    for run in runs {
        if let Some((load, share)) = shares.iter_mut().min_by_key(|(load, _)| *load) {
            *load += run.records();
            share.push(run);
        }
    }
    std::thread::scope(|s| {
        let mut streams = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (_, mut share) in shares {
            share.sort_by_key(|run| run.partition);
            let (tx, rx) = std::sync::mpsc::sync_channel(4);
            handles.push(s.spawn(move || partition_thread(share, encode, tx)));
            streams.push((rx, VecDeque::new()));
        }
        // The next step of one thread's stream, waiting for it when none is buffered; `None`
        // once the thread is done.
        fn next<T>(
            (rx, pending): &mut (Receiver<Batch<T>>, VecDeque<(Key, T)>),
        ) -> Option<(Key, T)> {
            loop {
                if let Some(step) = pending.pop_front() {
                    return Some(step);
                }
                match rx.recv() {
                    Ok(Batch::Steps(steps)) => pending.extend(steps),
                    Ok(Batch::Started(_)) => {}
                    Err(_) => return None,
                }
            }
        }
        let mut started = Vec::new();
        for (rx, _) in &streams {
            if let Ok(Batch::Started(outputs)) = rx.recv() {
                started.extend(outputs);
            }
        }
        started.sort_by_key(|(p, _)| *p);
        started.into_iter().for_each(|(_, t)| sink(t));
        let mut held: Vec<Option<T>> = (0..threads).map(|_| None).collect();
        let mut heads = BinaryHeap::new();
        for (t, stream) in streams.iter_mut().enumerate() {
            if let Some((key, encoded)) = next(stream) {
                held[t] = Some(encoded);
                heads.push(Reverse((key, t)));
            }
        }
        while let Some(Reverse((_, t))) = heads.pop() {
            if let Some(encoded) = held[t].take() {
                sink(encoded);
            }
            if let Some((key, encoded)) = next(&mut streams[t]) {
                held[t] = Some(encoded);
                heads.push(Reverse((key, t)));
            }
        }
        // The first thread's error, if any (its stream ended there).
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Result<Vec<()>, StoreError>>()
            .map(drop)
    })
}

/// One thread of [`merge_parallel`]: its partitions (in partition order) merged as [`merge`]
/// merges them, each step's outputs encoded and sent in batches.
fn partition_thread<T>(
    mut runs: Vec<PartitionRun>,
    encode: &(dyn Fn(&[Emitted]) -> T + Sync),
    tx: SyncSender<Batch<T>>,
) -> Result<(), StoreError> {
    let mut out = Vec::new();
    let mut started = Vec::new();
    for run in runs.iter_mut() {
        run.start(&mut out);
        if !out.is_empty() {
            started.push((run.partition, encode(&out)));
            out.clear();
        }
    }
    if tx.send(Batch::Started(started)).is_err() {
        return Ok(());
    }
    let mut batch = Vec::with_capacity(STEPS_PER_BATCH);
    let mut gone = false;
    merge_steps(&mut runs, &mut |key, out| {
        // A step without outputs is sent too: the merging thread orders the streams by their
        // next step's key, and a partition's keys need not rise (timestamps out of order), so
        // leaving a step out could let the partition's later steps go before another's.
        batch.push((key, encode(out)));
        if batch.len() == STEPS_PER_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(STEPS_PER_BATCH));
            gone = tx.send(Batch::Steps(full)).is_err();
        }
        !gone
    })?;
    if !gone {
        let _ = tx.send(Batch::Steps(batch));
    }
    Ok(())
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

/// A line's envelope as [`parse_line`] reads it, borrowed, with the value's text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainLine<'a> {
    topic: &'a str,
    #[serde(default)]
    key: Option<&'a str>,
    ts: i64,
    #[serde(borrow)]
    value: &'a serde_json::value::RawValue,
    #[serde(default)]
    partition: Option<u32>,
}

/// [`parse_line`] for a line it would accept, read in one pass without building a
/// `serde_json::Value`: a line with no escape whose envelope reads as a [`PlainLine`] (so its
/// fields are the known ones, each once, of the types `parse_line` requires) and whose value
/// [`Input::from_json_text`] decodes. `None` for any other line, which `parse_line` then
/// reads (and reports) the general way; what this accepts, it reads as `parse_line` does.
fn plain_record(number: i64, text: &str) -> Option<Line> {
    if text.contains('\\') || limits::check_record_size(text.len()).is_err() {
        return None;
    }
    let line: PlainLine = serde_json::from_str(text).ok()?;
    limits::check_timestamp(line.ts).ok()?;
    let topic = Topic::from_name(line.topic).filter(|t| t.is_input())?;
    let input = Input::from_json_text(topic, line.value.get())?;
    check_key(topic, line.key, &input).ok()?;
    Some(Line::Record(Box::new(SourceRecord {
        topic,
        key: line.key.map(String::from),
        ts: line.ts,
        partition: line.partition,
        line: Some(number),
        offset: None,
        raw: text.as_bytes().to_vec(),
        decoded: Ok(input),
    })))
}

fn parse_line(number: i64, text: &str) -> Line {
    plain_record(number, text).unwrap_or_else(|| parse_line_generally(number, text))
}

/// [`parse_line`] for any line: the whole line read as a `serde_json::Value`, each check in
/// turn with its own error.
fn parse_line_generally(number: i64, text: &str) -> Line {
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
    for (number, line) in jsonl_lines(input, 1) {
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

/// The lines of JSON-lines input with their numbers (the first is `first`), trimmed; blank lines and `#`
/// comments skipped; a line that is not UTF-8 is its dead letter.
fn jsonl_lines(input: &[u8], first: i64) -> impl Iterator<Item = (i64, Result<&str, Emitted>)> {
    input
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(move |(i, bytes)| {
            let number = i as i64 + first;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The outputs a run hands to its sink.
    fn collect(run: impl FnOnce(&mut dyn FnMut(Emitted))) -> Vec<Emitted> {
        let mut out = Vec::new();
        run(&mut |e| out.push(e));
        out
    }

    /// What `simulate` made of JSON lines before envelopes: every line decoded whole to
    /// place it, the broken lines' dead letters first.
    fn decoded_whole(input: &str, partitions: u32) -> Vec<Emitted> {
        let (records, broken) = parse_jsonl(input.as_bytes());
        let settings = Settings::default();
        let outputs = collect(|sink| {
            run_streaming(
                records,
                partitions,
                &settings,
                &crate::standard_processors,
                sink,
            )
            .map(drop)
            .expect("run")
        });
        broken.into_iter().chain(outputs).collect()
    }

    fn streamed(input: &str, partitions: u32) -> Vec<Emitted> {
        let settings = Settings::default();
        collect(|sink| {
            run_jsonl_streaming(
                input.as_bytes(),
                partitions,
                &settings,
                &crate::standard_processors,
                sink,
            )
            .map(drop)
            .expect("run")
        })
    }

    fn inbound(id: &str, tenant: &str, key: &str, ts: i64, text: &str) -> String {
        format!(
            r#"{{"topic":"cc.inbound","key":"{key}","ts":{ts},"value":{{"id":"{id}","tenant":"{tenant}","channel":"sms","from":"+1","to":"+100","content":"{text}"}}}}"#
        )
    }

    fn with_partition(line: &str, partition: u32) -> String {
        line.replacen(
            ",\"value\"",
            &format!(",\"partition\":{partition},\"value\""),
            1,
        )
    }

    /// Lines placed by their envelope alone (their values decoded once, at their turn) give
    /// exactly the outputs of lines decoded whole, and every line the skipping reader could
    /// judge differently is decoded whole: escapes (a lone surrogate), numbers out of range,
    /// nesting past the decoder's depth, a duplicate field, a key of another tenant, a
    /// partition that is not the tenant's or does not exist, a tick.
    #[test]
    fn envelopes_place_and_decode_as_whole_lines_do() {
        let t = 1_772_445_600_000i64;
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let lines = [
            inbound("m1", "acme", "acme", t, "hello"),
            inbound("m2", "globex", "globex", t + 1, "refund please"),
            inbound("m3", "acme", "globex", t + 2, "wrong key"),
            inbound("m4", "acme", "acme", t + 3, r"lone \ud800 surrogate"),
            inbound("m5", "acme", "acme", t + 4, r#"an escaped \" quote"#),
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{},"value":{{"id":"m6","x":1e999}}}}"#,
                t + 5
            ),
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{},"value":{deep}}}"#,
                t + 6
            ),
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{},"value":{{}},"value":{{}}}}"#,
                t + 7
            ),
            with_partition(&inbound("m8", "acme", "acme", t + 8, "on 0"), 0),
            with_partition(&inbound("m9", "acme", "acme", t + 9, "on 1"), 1),
            with_partition(&inbound("m9b", "acme", "acme", t + 9, "on 9"), 9),
            format!(
                r#"{{"topic":"cc.ticks","key":null,"ts":{},"value":{{"id":"tick-1"}}}}"#,
                t + 10
            ),
            r#"{"topic":"cc.inbound","key":"acme","ts":1.5,"value":{}}"#.to_string(),
            inbound("m1", "acme", "acme", t + 11, "a repeat"),
            inbound("m10", "acme", "acme", t - 5, "late"),
        ];
        let input = lines.join("\n");
        for partitions in [1, 2, 3] {
            assert_eq!(
                streamed(&input, partitions),
                decoded_whole(&input, partitions),
                "over {partitions} partitions"
            );
        }
        let placed: Vec<bool> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Envelope::read(i as i64 + 1, l).is_some())
            .collect();
        assert_eq!(
            placed,
            [
                true, true, true, false, false, false, false, false, true, true, true, false,
                false, true, true
            ],
            "which lines are placed by their envelope"
        );
    }

    /// R-TIME-6: partitions run on threads of their own emit exactly what one thread emits, in
    /// the same order: the examples, the hostile seeds and the lines above (undecodable heads,
    /// late records, a step without outputs before an earlier record, ticks to every
    /// partition), over 2 to 5 partitions on 1 to 5 threads.
    #[test]
    fn partitions_on_threads_emit_what_one_thread_emits() {
        let t = 1_772_445_600_000i64;
        // First, a record of each tenant that cannot be decoded: dead-lettered before the merge
        // starts, partition by partition.
        let mut input = String::new();
        for tenant in ["acme", "globex", "initech", "umbrella", "hooli"] {
            input.push_str(&format!(
                r#"{{"topic":"cc.inbound","key":"{tenant}","ts":{t},"value":{{"id":"bad"}}}}"#
            ));
            input.push('\n');
        }
        for text in sample_files() {
            input.push_str(&text);
            input.push('\n');
        }
        for (i, tenant) in ["acme", "globex", "initech", "umbrella", "hooli"]
            .iter()
            .enumerate()
        {
            let i = i as i64;
            input.push_str(&inbound(
                &format!("x{i}"),
                tenant,
                tenant,
                t + 100 - i,
                "late one",
            ));
            input.push_str("\nnot json\n");
            input.push_str(&inbound(
                &format!("y{i}"),
                tenant,
                tenant,
                t + i,
                "refund please",
            ));
            input.push('\n');
            // A repeated id far ahead (a step without outputs), then a record far behind it.
            input.push_str(&inbound(
                &format!("y{i}"),
                tenant,
                tenant,
                t + 500_000,
                "again",
            ));
            input.push('\n');
            input.push_str(&inbound(
                &format!("z{i}"),
                tenant,
                tenant,
                t + 50 + i,
                "behind",
            ));
            input.push('\n');
        }
        input.push_str(&format!(
            r#"{{"topic":"cc.ticks","key":null,"ts":{},"value":{{"id":"tick-1"}}}}"#,
            t + 1_000_000
        ));
        let settings = Settings::default();
        for partitions in 2..=5 {
            let one = streamed(&input, partitions);
            assert!(one.len() > 50, "{} outputs", one.len());
            for threads in 1..=5 {
                let mut many = Vec::new();
                run_jsonl_parallel(
                    input.as_bytes(),
                    partitions,
                    &settings,
                    &crate::standard_processors,
                    threads,
                    &|emitted: &[Emitted]| emitted.to_vec(),
                    &mut |emitted| many.extend(emitted),
                )
                .expect("run");
                assert!(
                    one == many,
                    "{partitions} partitions on {threads} threads: the outputs differ"
                );
            }
        }
    }

    /// Flushing only what the engine reads back (and forgetting the other changes) changes no
    /// output: the quickstart, its conversations Closed, then its customers back two days
    /// later (their conversations archived, their rows let go by the hourly sweep and read
    /// back: the agent who last replied, for a sticky queue), and commands naming the archived
    /// conversations; flushed after every record, every 7 records and never, against the run
    /// that keeps every change. Only rows of the tables read back are written.
    #[test]
    fn flushing_what_is_read_back_changes_no_output() {
        // The first sample file is the quickstart.
        let quickstart = sample_files().swap_remove(0);
        let mut input = quickstart.clone();
        let later = 2 * 24 * 3_600_000i64;
        // Every conversation Closed (and archived an hour later, its customer's rows let go).
        for i in 1..=8 {
            input.push_str(&format!(
                "\n{{\"topic\":\"cc.commands\",\"key\":\"acme\",\"ts\":{},\"value\":{{\"id\":\"close-{i}\",\"tenant\":\"acme\",\"conversation_id\":\"#{i}\",\"by\":\"ana\",\"command\":{{\"SetStatus\":{{\"status\":\"closed\"}}}}}}}}",
                1_772_526_600_000i64 + 3_600_000 + i
            ));
        }
        // Billing assigns returning customers to the agent who last replied to them.
        input.push_str(&format!(
            "\n{{\"topic\":\"cc.config\",\"key\":\"acme\",\"ts\":{},\"value\":{{\"id\":\"sticky\",\"tenant\":\"acme\",\"version\":2,\"change\":{{\"UpsertQueue\":{{\"queue\":{{\"id\":\"billing\",\"auto_assign\":true,\"sticky_lookback\":\"ever\"}}}}}}}}}}",
            1_772_442_000_000 + later - 3_600_000
        ));
        let mut n = 0;
        for line in quickstart.lines().filter(|l| l.contains("\"cc.inbound\"")) {
            let mut v: serde_json::Value = serde_json::from_str(line).expect("example line");
            n += 1;
            v["ts"] = (v["ts"].as_i64().unwrap_or(0) + later).into();
            v["value"]["id"] = format!("back-{n}").into();
            input.push('\n');
            input.push_str(&v.to_string());
        }
        let t = 1_772_526_600_000 + later + 3_600_000;
        for (i, (conversation, command)) in [
            ("#1", r#"{"AddNote":{"text":"called back"}}"#),
            ("#2", r#"{"Reply":{"content":"anything else?"}}"#),
            ("#3", r#"{"SetStatus":{"status":"closed"}}"#),
            ("#1", r#"{"SetStatus":{"status":"closed"}}"#),
        ]
        .iter()
        .enumerate()
        {
            input.push_str(&format!(
                "\n{{\"topic\":\"cc.commands\",\"key\":\"acme\",\"ts\":{},\"value\":{{\"id\":\"later-{i}\",\"tenant\":\"acme\",\"conversation_id\":\"{conversation}\",\"by\":\"ana\",\"command\":{command}}}}}",
                t + i as i64
            ));
        }
        input.push_str(&format!(
            "\n{{\"topic\":\"cc.ticks\",\"key\":null,\"ts\":{},\"value\":{{\"id\":\"tick-end\"}}}}",
            t + 10 * 3_600_000
        ));
        let settings = Settings::default();
        let run = |flushes: Flushes| {
            let (queues, broken, _) = place_lines(input.as_bytes(), 2);
            let mut out = broken;
            let engines = merge(
                queues,
                &settings,
                &crate::standard_processors,
                &mut |e| out.push(e),
                flushes,
            )
            .expect("run");
            (out, engines)
        };
        let (kept, _) = run(Flushes::AtEnd);
        assert!(kept.len() > 100, "{} outputs", kept.len());
        for every in [1, 7, usize::MAX] {
            let (out, engines) = run(Flushes::ReadBack(every));
            assert!(out == kept, "flushed every {every}: the outputs differ");
            let tags: std::collections::BTreeSet<u8> = engines
                .iter()
                .flat_map(|e| e.store().map.keys().filter_map(|k| k.first().copied()))
                .collect();
            assert!(
                tags.iter().all(|t| crate::state::READ_BACK.contains(t)),
                "rows written: {tags:?}"
            );
            if every == 1 {
                assert!(
                    tags.contains(&crate::state::T_ARCHIVE) && tags.contains(&b'r'),
                    "archived conversations and customers' rows are written: {tags:?}"
                );
            }
        }
    }

    /// The text of the examples and of the hostile seeds, a file each.
    fn sample_files() -> Vec<String> {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        [
            "examples/quickstart.jsonl",
            "examples/reassign-if-no-answer.jsonl",
            "tests/fuzz-corpus/hostile.jsonl",
        ]
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(here.join(file)).unwrap_or_default();
            assert!(!text.is_empty(), "{file} is read");
            text
        })
        .collect()
    }

    /// What a line reads as, to compare the two readers.
    fn line_as_read(line: &Line) -> String {
        match line {
            Line::Record(r) => format!("{r:?}"),
            Line::Broken { .. } => "broken".into(),
        }
    }

    /// R-TOPIC (SPEC §11: the JSON mirror, input limits, bad input dead-lettered with its
    /// reason): a line read in one pass, straight into its record, reads exactly as the
    /// general reader reads it, and every line the general reader refuses falls to it. Checked on the examples, the hostile seeds, lines at and
    /// past each limit, and every line with one byte changed, cut short or repeated.
    #[test]
    fn plain_lines_read_as_the_general_reader_reads_them() {
        let t = 1_772_445_600_000i64;
        let long = "x".repeat(limits::MAX_ID_BYTES);
        let deep = |n: usize| {
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{t},"value":{{"id":"m","tenant":"acme","channel":"sms","from":"+1","to":"+2","content":"x","attributes":{}1{}}}}}"#,
                r#"{"a":"#.repeat(n),
                "}".repeat(n)
            )
        };
        let mut bases: Vec<String> = vec![
            inbound("m1", "acme", "acme", t, "hello"),
            inbound("m2", "acme", "acme", t, &long),
            inbound("m3", "acme", "acme", t, &format!("{long}y")),
            inbound(&long, "acme", "acme", t, "an id at the limit"),
            inbound(
                &format!("{long}y"),
                "acme",
                "acme",
                t,
                "an id past the limit",
            ),
            inbound("m4", "acme", "globex", t, "another tenant's key"),
            with_partition(&inbound("m5", "acme", "acme", t, "placed"), 3),
            deep(40),
            deep(47),
            deep(60),
            format!(r#"{{"topic":"cc.ticks","key":null,"ts":{t},"value":{{"id":"tick-1"}}}}"#),
            format!(
                r##"{{"topic":"cc.commands","key":"acme","ts":{t},"value":{{"id":"c1","tenant":"acme","conversation_id":"#1","by":"a1","command":{{"Unassign":null}}}}}}"##
            ),
            format!(
                r##"{{"topic":"cc.commands","key":"acme","ts":{t},"value":{{"id":"c1","tenant":"acme","conversation_id":"#1","by":"a1","command":"Unassign"}}}}"##
            ),
            format!(
                r##"{{"topic":"cc.commands","key":"acme","ts":{t},"value":{{"id":"c1","tenant":"acme","conversation_id":"#1","by":"a1","command":{{"Reply":{{"content":"on it"}}}}}}}}"##
            ),
            format!(
                r##"{{"topic":"cc.commands","key":"acme","ts":{t},"value":{{"id":"c1","tenant":"acme","conversation_id":"#1","by":"a1","command":{{"Reply":{{"content":"on it"}},"Unassign":null}}}}}}"##
            ),
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{t},"value":{{"id":"m","tenant":"acme","id":"n","channel":"sms","from":"+1","to":"+2","content":"dup"}}}}"#
            ),
            format!(
                r#"{{"topic":"cc.inbound","key":"acme","ts":{t},"ts":{t},"value":{{"id":"m","tenant":"acme","channel":"sms","from":"+1","to":"+2","content":"x"}}}}"#
            ),
        ];
        for text in sample_files() {
            bases.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let mut lines = Vec::new();
        for base in &bases {
            lines.push(base.clone());
            if base.len() > 2_000 {
                continue;
            }
            let bytes = base.as_bytes();
            for i in (0..bytes.len()).step_by(7) {
                for b in *b"[{}\\\",1e" {
                    let mut changed = bytes.to_vec();
                    changed[i] = b;
                    lines.extend(String::from_utf8(changed).ok());
                }
                lines.extend(base.get(..i).map(String::from));
                lines.extend(
                    base.get(..i)
                        .zip(base.get(i..))
                        .map(|(a, b)| format!("{a}{a}{b}")),
                );
            }
        }
        let (mut plain, mut general) = (0, 0);
        for (i, line) in lines.iter().enumerate() {
            let number = i as i64 + 1;
            let generally = line_as_read(&parse_line_generally(number, line));
            match plain_record(number, line) {
                Some(read) => {
                    plain += 1;
                    assert_eq!(line_as_read(&read), generally, "line {line}");
                }
                None => general += 1,
            }
        }
        eprintln!("{plain} plain, {general} general");
        assert!(
            plain > 1_000 && general > 5_000,
            "{plain} plain, {general} general"
        );
    }
}
