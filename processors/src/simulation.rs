//! Run the engine over a finite list of input records without Kafka, exactly as the runtime
//! does with topics: records are spread over partitions by tenant, each partition merges its
//! topics in timestamp order (ties: config < agent-events < commands < inbound < ticks, then
//! offset; SPEC §1.3), and each partition has its own engine, state and stream time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use switchboard_schemas::*;

use crate::engine::{Engine, Settings};
use crate::partition::{partition_of, tenant_of_key};
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
    let partitions = partitions.max(1);
    let n_topics = Topic::INPUTS.len();
    // One queue per (partition, input topic), in offset order.
    let mut queues: Vec<VecDeque<SourceRecord>> =
        vec![VecDeque::new(); partitions as usize * n_topics];
    for r in records {
        let rank = r.topic.merge_rank() as usize;
        let targets: Vec<u32> = if r.topic == Topic::Ticks && r.partition.is_none() {
            (0..partitions).collect()
        } else {
            vec![partition_for(&r, partitions)]
        };
        for p in targets {
            queues[p as usize * n_topics + rank.min(n_topics - 1)].push_back(r.clone());
        }
    }
    let mut engines = (0..partitions)
        .map(|_| Engine::open(MemStore::default(), settings.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    // Heads ordered by (ts, topic rank, partition); each queue keeps offset order.
    let mut heads = BinaryHeap::new();
    for (q, queue) in queues.iter().enumerate() {
        if let Some(r) = queue.front() {
            heads.push(Reverse((r.ts, q % n_topics, q / n_topics, q)));
        }
    }
    let mut out = Vec::new();
    while let Some(Reverse((_, _, partition, q))) = heads.pop() {
        let Some(record) = queues[q].pop_front() else {
            continue;
        };
        if let Some(next) = queues[q].front() {
            heads.push(Reverse((next.ts, q % n_topics, partition, q)));
        }
        let engine = &mut engines[partition];
        out.extend(apply_record(engine, &record, partition as u32));
        engine.flush()?;
    }
    Ok((out, engines))
}
