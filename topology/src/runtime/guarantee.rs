//! The two delivery guarantees (docs/guarantees.md) behind one trait: what differs between
//! them when a round becomes durable and when a partition is restored. The round itself
//! (process, send the outputs, flush, send the state changes and the checkpoint, flush,
//! commit, catch the local store up) is the same for both.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    meta_bytes, run_lengths, send, GroupContext, Intent, Plan, RuntimeError, Task, FLUSH_TIMEOUT,
    INTENT_KEY,
};
use crate::config::{Config, Guarantee};
use crate::kafka::{self, Deliveries, Producer_};

/// How a round becomes durable under one guarantee.
pub(super) trait Durability: Send + Sync {
    /// The guarantee's name in the configuration and the metrics' labels.
    fn label(&self) -> &'static str;
    /// The producer the guarantee writes with.
    fn producer(&self, config: &Config) -> Result<Producer_, RuntimeError>;
    /// How restores read the changelog and the output topics.
    fn isolation(&self) -> &'static str;
    /// Whether a restore re-runs an unfinished batch from its intent, skipping the outputs
    /// it already wrote.
    fn replays_intents(&self) -> bool;
    /// Before any of the round's outputs is sent: the round is the tasks' processed batches.
    fn begin_round(
        &self,
        producer: &Producer_,
        changelog: &str,
        tasks: &BTreeMap<i32, Task>,
    ) -> Result<(), RuntimeError>;
    /// The next round's batches are planned, and this round's state changes and checkpoints
    /// sent: what the next round may write now, to be made durable by this round's commit.
    fn write_intents_ahead(
        &self,
        _producer: &Producer_,
        _changelog: &str,
        _plans: &mut [Plan],
        _tasks: &BTreeMap<i32, Task>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// The round's outputs are sent; its state changes and checkpoints come next.
    fn after_outputs(&self, producer: &Producer_) -> Result<(), RuntimeError>;
    /// The round's outputs, state changes and checkpoints are sent: make the round durable
    /// with the input offsets it consumed up to. When this returns, every record of the
    /// round is acknowledged and its delivery report served (the checkpoints' offsets).
    fn commit_round(
        &self,
        producer: &Producer_,
        consumer: &BaseConsumer<GroupContext>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RuntimeError>;
    /// The local stores have caught up with the round.
    fn after_round(&self, consumer: &BaseConsumer<GroupContext>, offsets: &TopicPartitionList);
    /// The round failed before it was durable (the runtime then stops: crash-only).
    fn abort_round(&self, producer: &Producer_);
}

/// The guarantee `guarantee` names.
pub(super) fn of(guarantee: Guarantee) -> Box<dyn Durability> {
    match guarantee {
        Guarantee::ExactlyOnce => Box::new(ExactlyOnce),
        Guarantee::Deduplicated => Box::new(Deduplicated),
    }
}

/// `exactly_once`: a round's outputs, changelog records and input offsets in one Kafka
/// transaction; a restore reads committed records only.
struct ExactlyOnce;

impl Durability for ExactlyOnce {
    fn label(&self) -> &'static str {
        "exactly_once"
    }

    fn producer(&self, config: &Config) -> Result<Producer_, RuntimeError> {
        let mut pc = kafka::client_config(config);
        let txid = format!("{}-{}", config.kafka.application_id, config.instance_id());
        pc.set("transactional.id", txid)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        let p: Producer_ = pc.create_with_context(Deliveries::default())?;
        p.init_transactions(Duration::from_secs(30))?;
        Ok(p)
    }

    fn isolation(&self) -> &'static str {
        "read_committed"
    }

    fn replays_intents(&self) -> bool {
        false // an aborted transaction leaves nothing to replay
    }

    fn begin_round(
        &self,
        producer: &Producer_,
        _: &str,
        _: &BTreeMap<i32, Task>,
    ) -> Result<(), RuntimeError> {
        Ok(producer.begin_transaction()?)
    }

    /// Nothing to wait for: the outputs, state changes and checkpoints are one transaction,
    /// and the checkpoint needs no output offsets (restores replay no intent).
    fn after_outputs(&self, _: &Producer_) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Wait for the round's records (serving their delivery reports in short polls: left
    /// to `commit_transaction`, the same wait took twice as long here), then commit the
    /// transaction with the offsets.
    fn commit_round(
        &self,
        producer: &Producer_,
        consumer: &BaseConsumer<GroupContext>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        kafka::flush(producer, FLUSH_TIMEOUT).map_err(RuntimeError::Other)?;
        let group = consumer
            .group_metadata()
            .ok_or_else(|| RuntimeError::Other("no consumer group metadata".into()))?;
        producer.send_offsets_to_transaction(offsets, &group, Duration::from_secs(30))?;
        producer.commit_transaction(Duration::from_secs(60))?;
        Ok(())
    }

    fn after_round(&self, _: &BaseConsumer<GroupContext>, _: &TopicPartitionList) {}

    fn abort_round(&self, producer: &Producer_) {
        let _ = producer.abort_transaction(Duration::from_secs(30));
    }
}

/// Send the intent of partition `p`'s next batch: where it starts (the checkpoint's input and
/// output offsets, and the sequence number `seq`) and its records' topics in merge order.
fn write_intent(
    producer: &Producer_,
    changelog: &str,
    p: i32,
    task: &Task,
    order: Vec<(u8, u32)>,
    seq: u64,
) -> Result<(), RuntimeError> {
    let intent = Intent {
        inputs: task.checkpoint.inputs.clone(),
        order,
        seq,
        outputs: task.checkpoint.outputs.clone(),
    };
    let bytes = meta_bytes(&intent)?;
    send(
        producer,
        changelog,
        p,
        Some(INTENT_KEY),
        Some(&bytes),
        None,
        None,
    )
}

/// `deduplicated`: no transactions. A round first writes each partition's *intent* (its
/// input records in merge order) to the changelog, then its outputs with per-partition
/// sequence numbers, then its state changes and a checkpoint marker. A restore replays an
/// unfinished intent in the same order and skips what already reached the output topics.
struct Deduplicated;

impl Durability for Deduplicated {
    fn label(&self) -> &'static str {
        "deduplicated"
    }

    fn producer(&self, config: &Config) -> Result<Producer_, RuntimeError> {
        Ok(kafka::idempotent_producer(config)?)
    }

    fn isolation(&self) -> &'static str {
        "read_uncommitted"
    }

    fn replays_intents(&self) -> bool {
        true
    }

    /// The intents: the merge order, durable before any output. Those written ahead are
    /// durable already (with the previous round).
    fn begin_round(
        &self,
        producer: &Producer_,
        changelog: &str,
        tasks: &BTreeMap<i32, Task>,
    ) -> Result<(), RuntimeError> {
        let mut written = false;
        for (&p, task) in tasks {
            let Some(batch) = &task.staged else {
                continue;
            };
            if batch.intent_written {
                continue;
            }
            // The batch was processed ahead: its intent is what it started from (the
            // checkpoint moves on only when the batch's state is written).
            write_intent(producer, changelog, p, task, batch.order.clone(), batch.seq)?;
            written = true;
        }
        match written {
            true => kafka::flush(producer, FLUSH_TIMEOUT).map_err(RuntimeError::Other),
            false => Ok(()),
        }
    }

    /// The next batches' intents go out behind this round's checkpoint markers, in the
    /// same changelog partitions, so the commit's wait makes them durable: the next round
    /// begins without a wait of its own. The producer is gapless (a record lost behind an
    /// acknowledged one is a fatal error), so a durable intent always follows its
    /// partition's durable marker, as when it was written after the commit.
    fn write_intents_ahead(
        &self,
        producer: &Producer_,
        changelog: &str,
        plans: &mut [Plan],
        tasks: &BTreeMap<i32, Task>,
    ) -> Result<(), RuntimeError> {
        for plan in plans.iter_mut().filter(|plan| !plan.intent_written) {
            let Some(task) = tasks.get(&plan.partition) else {
                continue;
            };
            let order = run_lengths(&plan.records);
            write_intent(
                producer,
                changelog,
                plan.partition,
                task,
                order,
                task.checkpoint.seq,
            )?;
            plan.intent_written = true;
        }
        Ok(())
    }

    /// The outputs acknowledged before the state changes and checkpoints are sent: a
    /// checkpoint records where they ended, and a checkpoint durable before an output
    /// would let a restart skip it.
    fn after_outputs(&self, producer: &Producer_) -> Result<(), RuntimeError> {
        kafka::flush(producer, FLUSH_TIMEOUT).map_err(RuntimeError::Other)
    }

    /// Durable once the state changes and checkpoint markers are acknowledged.
    fn commit_round(
        &self,
        producer: &Producer_,
        _: &BaseConsumer<GroupContext>,
        _: &TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        kafka::flush(producer, FLUSH_TIMEOUT).map_err(RuntimeError::Other)
    }

    /// The group's offsets, for lag tools only: restarts resume from the checkpoints.
    fn after_round(&self, consumer: &BaseConsumer<GroupContext>, offsets: &TopicPartitionList) {
        if let Err(e) = consumer.commit(offsets, CommitMode::Async) {
            tracing::warn!(error = %e, "committing group offsets failed");
        }
    }

    fn abort_round(&self, _: &Producer_) {}
}
