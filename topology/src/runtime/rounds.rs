//! A round's work on the partitions: processing each batch through its engine and encoding
//! the outputs, sending them, and sending the state changes, partitions side by side on up
//! to `engine.threads` threads ([`on_threads`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use super::{meta_bytes, run_lengths, Batch, Plan, RuntimeError, Staged, Task, CHECKPOINT_KEY};
use crate::kafka::{self, Producer_, SEQ_HEADER, SOURCE_HEADER};
use crate::metrics::{count_thread_cpu, Metrics};
use crate::registry::Wire;
use crate::state_store::Checkpoint;
use switchboard_schemas::Topic;

/// Process each plan's batch into its task's [`Batch`]: partitions side by side on up to
/// `threads` threads, each partition's records in order on one of them.
pub(super) fn process_plans(
    tasks: &mut BTreeMap<i32, Task>,
    plans: Vec<Plan>,
    threads: usize,
    emitter: &Emitter,
) -> Result<(), RuntimeError> {
    let processing = Instant::now();
    let mut plans: BTreeMap<i32, Plan> = plans.into_iter().map(|p| (p.partition, p)).collect();
    let jobs: Vec<(&mut Task, Plan)> = tasks
        .iter_mut()
        .filter_map(|(p, task)| plans.remove(p).map(|plan| (task, plan)))
        .collect();
    on_threads(
        jobs,
        threads,
        Some(&emitter.workers_cpu()),
        |(task, plan)| emitter.process(task, plan),
    )?;
    emitter
        .metrics
        .processing_seconds
        .observe(processing.elapsed().as_secs_f64());
    Ok(())
}

/// What a partition's batch needs to write its outputs and state changes: shared, read-only,
/// by the threads that process the partitions of a round.
pub(super) struct Emitter<'a> {
    pub(super) wire: &'a Wire,
    pub(super) producer: &'a Producer_,
    pub(super) output_names: &'a [String],
    pub(super) metrics: &'a Metrics,
    pub(super) changelog: &'a str,
    pub(super) source: &'a str,
}

impl Emitter<'_> {
    /// Where the threads that process and encode partitions count their CPU time.
    pub(super) fn workers_cpu(&self) -> prometheus::Counter {
        self.metrics
            .engine_cpu_seconds
            .with_label_values(&["workers"])
    }

    /// Run a partition's batch through its engine and encode the outputs, in order, each with
    /// the partition's next sequence number (skipping what a crashed run already wrote): the
    /// task's [`Batch`], sent with its round.
    pub(super) fn process(&self, task: &mut Task, plan: Plan) -> Result<(), RuntimeError> {
        let mut batch = Batch {
            order: run_lengths(&plan.records),
            intent_written: plan.intent_written,
            seq: task.checkpoint.seq,
            outputs: Vec::new(),
        };
        for (rank, rec) in plan.records {
            let topic = Topic::INPUTS[rank as usize];
            self.metrics
                .records_in
                .with_label_values(&[topic.name()])
                .inc();
            let emitted = task.apply(rec);
            for e in emitted {
                let seq = task.checkpoint.seq;
                task.checkpoint.seq += 1;
                let topic = e.output.topic();
                let name = &self.output_names[topic as usize];
                if task.skip.get(name).is_some_and(|&w| seq <= w) {
                    continue; // written before the crash
                }
                self.metrics.observe_output(&e.output);
                let value = self.wire.encode_output(&e.output).map_err(|err| {
                    RuntimeError::Other(format!("cannot encode an output: {err}"))
                })?;
                batch.outputs.push(Staged {
                    topic,
                    key: e.output.key().map(|k| k.as_bytes().to_vec()),
                    value,
                    ts: e.ts,
                    seq,
                });
            }
        }
        task.replay = None;
        task.skip.clear();
        let dups = task.engine.stats.duplicates;
        self.metrics.duplicates.inc_by(dups - task.duplicates_seen);
        task.duplicates_seen = dups;
        task.staged = Some(batch);
        Ok(())
    }

    /// Send a partition's processed batch; its partition.
    pub(super) fn send_batch(&self, task: &mut Task) -> Result<i32, RuntimeError> {
        let p = task.partition;
        let Some(batch) = task.staged.take() else {
            return Ok(p);
        };
        let source = format!("{}/{p}", self.source);
        for out in batch.outputs {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: SOURCE_HEADER,
                    value: Some(source.as_bytes()),
                })
                .insert(Header {
                    key: SEQ_HEADER,
                    value: Some(out.seq.to_string().as_bytes()),
                });
            send(
                self.producer,
                &self.output_names[out.topic as usize],
                p,
                out.key.as_deref(),
                Some(&out.value),
                Some(out.ts),
                Some(headers),
            )?;
        }
        Ok(p)
    }

    /// After the outputs are acknowledged: note where they ended, then send the partition's
    /// state changes and its checkpoint marker to the changelog. The changes wait in the
    /// store's `inflight` until the round is durable; the checkpoint they go with.
    pub(super) fn write_state(&self, task: &mut Task) -> Result<(i32, Checkpoint), RuntimeError> {
        let p = task.partition;
        for t in kafka::output_topics() {
            let name = &self.output_names[t as usize];
            if let Some(last) = self.producer.context().last_offset(name, p) {
                task.checkpoint.outputs.insert(name.clone(), last + 1);
            }
        }
        task.checkpoint_inputs();
        task.engine.flush()?;
        let round = task.engine.store_mut().take_round();
        let mut bytes = 0;
        for (k, v) in &round.writes {
            bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            send(
                self.producer,
                self.changelog,
                p,
                Some(k),
                v.as_deref(),
                None,
                None,
            )?;
        }
        let metrics = self.metrics;
        metrics.changelog_records.inc_by(round.writes.len() as u64);
        metrics.changelog_bytes.inc_by(bytes as u64);
        let marker = meta_bytes(&task.checkpoint)?;
        send(
            self.producer,
            self.changelog,
            p,
            Some(CHECKPOINT_KEY),
            Some(&marker),
            None,
            None,
        )?;
        Ok((p, task.checkpoint.clone()))
    }
}

/// Run `work` on every item, on up to `threads` scoped threads (items dealt round-robin, each
/// thread taking its items in order); inline when one thread would do. The results in the
/// items' order; the first error wins (the runtime is crash-only: a failed round or restore
/// ends it). Used by the rounds and by restores. Each thread it starts adds its CPU time to
/// `cpu`; work done inline is the calling thread's.
pub(super) fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    cpu: Option<&prometheus::Counter>,
    work: impl Fn(T) -> Result<R, RuntimeError> + Sync,
) -> Result<Vec<R>, RuntimeError> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let mut dealt: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        dealt[i % threads].push((i, item));
    }
    let work = &work;
    let mut done: Vec<(usize, R)> = Vec::new();
    std::thread::scope(|s| -> Result<(), RuntimeError> {
        let mut handles = Vec::with_capacity(dealt.len());
        for (n, share) in dealt.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("switchboard-{n}"))
                .spawn_scoped(s, move || {
                    count_thread_cpu(cpu, || {
                        share
                            .into_iter()
                            .map(|(i, item)| work(item).map(|r| (i, r)))
                            .collect::<Result<Vec<_>, RuntimeError>>()
                    })
                })
                .map_err(|e| RuntimeError::Other(format!("cannot start a thread: {e}")))?;
            handles.push(spawned);
        }
        for h in handles {
            let results = h
                .join()
                .map_err(|_| RuntimeError::Other("a worker thread panicked".into()))??;
            done.extend(results);
        }
        Ok(())
    })?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

/// Send one record, waiting for room in the producer's queue.
pub(crate) fn send(
    producer: &Producer_,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    ts: Option<i64>,
    headers: Option<OwnedHeaders>,
) -> Result<(), RuntimeError> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = payload {
        record = record.payload(v);
    }
    if let Some(ts) = ts {
        record = record.timestamp(ts);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{on_threads, RuntimeError};
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// Issue 12: a round's partitions processed side by side come back in the partitions'
    /// order, each exactly once, whatever the number of threads; every item is worked on
    /// by one thread, and more than one thread is used when asked.
    #[test]
    fn on_threads_keeps_the_order_and_uses_the_threads() {
        for threads in [0, 1, 2, 3, 8] {
            let seen = Mutex::new(HashSet::new());
            let items: Vec<u32> = (0..7).collect();
            let out = on_threads(items, threads, None, |i| {
                if let Ok(mut s) = seen.lock() {
                    s.insert(std::thread::current().id());
                }
                Ok(i * 10)
            })
            .unwrap_or_default();
            assert_eq!(out, vec![0, 10, 20, 30, 40, 50, 60], "threads {threads}");
            let used = seen.lock().map(|s| s.len()).unwrap_or(0);
            assert_eq!(used, threads.clamp(1, 7), "threads {threads}");
        }
    }

    /// A failed partition fails the round (the runtime is crash-only), with its own error.
    #[test]
    fn on_threads_returns_the_failure() {
        let result = on_threads((0..4).collect::<Vec<i32>>(), 2, None, |p| {
            if p == 2 {
                Err(RuntimeError::Partition {
                    partition: p,
                    reason: "broken".into(),
                })
            } else {
                Ok(p)
            }
        });
        match result {
            Err(RuntimeError::Partition { partition, .. }) => assert_eq!(partition, 2),
            other => panic!("expected partition 2's error, got {other:?}"),
        }
    }
}
