//! `switchboard state`: inspect one partition's local state store and delete a row that
//! cannot be read, without wiping the partition (docs/operations.md, "Repairing state").
//!
//! The engine must be stopped on this host (RocksDB's lock refuses a second opener). A
//! deletion is written to the partition's changelog topic too, as a tombstone followed by a
//! copy of the local checkpoint marker, so a later restore from the changelog (on another
//! instance, or after the state directory is lost) does not bring the row back.

use rdkafka::producer::Producer;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_processors::state::State;
use switchboard_processors::Store;

use crate::config::Config;
use crate::kafka;
use crate::runtime::{send, CHECKPOINT_KEY};
use crate::state_store::RocksStore;

/// Where partition `partition`'s store lives: `<state.dir>/<application id>/partition-<n>`.
pub fn partition_dir(config: &Config, partition: i32) -> PathBuf {
    Path::new(&config.state.dir)
        .join(&config.kafka.application_id)
        .join(format!("partition-{partition}"))
}

fn open(config: &Config, partition: i32) -> Result<RocksStore, String> {
    let dir = partition_dir(config, partition);
    if !dir.join("CURRENT").exists() {
        return Err(format!(
            "no state store for partition {partition} at {} (state.dir, kafka.application_id)",
            dir.display()
        ));
    }
    RocksStore::open(&dir).map_err(|e| {
        format!(
            "cannot open the state store at {} (is the engine still running?): {e}",
            dir.display()
        )
    })
}

/// A key as typed on the command line: the text `list` prints, or `hex:` and hex digits.
pub fn parse_key(key: &str) -> Result<Vec<u8>, String> {
    match key.strip_prefix("hex:") {
        None => Ok(key.as_bytes().to_vec()),
        Some(hex) if hex.len() % 2 == 0 => (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| format!("--key: {key:?} is not hex"))
            })
            .collect(),
        Some(_) => Err(format!("--key: {key:?} has an odd number of hex digits")),
    }
}

/// A key as `list` prints it: its text when it is printable, else `hex:…`.
pub fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_string(),
        _ => format!(
            "hex:{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// One line per row: whether it can be read, its size and its key (and why not).
pub fn list(config: &Config, partition: i32, unreadable_only: bool) -> Result<String, String> {
    let store = open(config, partition)?;
    let entries = store.entries().map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut bad = 0;
    for (k, v) in &entries {
        match State::inspect_row(k, v) {
            Ok(_) if unreadable_only => {}
            Ok(_) => out.push_str(&format!("ok          {:>8}  {}\n", v.len(), show_key(k))),
            Err(e) => {
                bad += 1;
                out.push_str(&format!(
                    "UNREADABLE  {:>8}  {}  ({e})\n",
                    v.len(),
                    show_key(k)
                ));
            }
        }
    }
    let checkpoint = store.checkpoint().map_err(|e| e.to_string())?;
    out.push_str(&format!(
        "{} rows, {bad} unreadable; checkpoint at changelog offset {}\n",
        entries.len(),
        checkpoint.map_or("none".to_string(), |c| c.changelog_offset.to_string())
    ));
    Ok(out)
}

/// One row decoded, as JSON.
pub fn show(config: &Config, partition: i32, key: &[u8]) -> Result<String, String> {
    let store = open(config, partition)?;
    let value = store
        .get(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no row {} in partition {partition}", show_key(key)))?;
    let json = State::inspect_row(key, &value).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&json)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// Delete one row: locally, and (unless `local_only`) in the changelog, so no restore brings
/// it back.
pub fn delete(
    config: &Config,
    partition: i32,
    key: &[u8],
    local_only: bool,
) -> Result<String, String> {
    let mut store = open(config, partition)?;
    if store.get(key).map_err(|e| e.to_string())?.is_none() {
        return Err(format!("no row {} in partition {partition}", show_key(key)));
    }
    let mut checkpoint = store
        .checkpoint()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("partition {partition}'s store has no checkpoint yet: start the engine once so it restores, then retry")
        })?;
    let mut note = String::from("deleted locally");
    if !local_only {
        let producer = kafka::idempotent_producer(config)
            .map_err(|e| format!("cannot create a Kafka producer: {e}"))?;
        let changelog = kafka::changelog_topic(&config.kafka.application_id);
        let marker = serde_json::to_vec(&checkpoint).map_err(|e| e.to_string())?;
        send(
            &producer,
            &changelog,
            partition,
            Some(key),
            None,
            None,
            None,
        )
        .map_err(|e| e.to_string())?;
        send(
            &producer,
            &changelog,
            partition,
            Some(CHECKPOINT_KEY),
            Some(&marker),
            None,
            None,
        )
        .map_err(|e| e.to_string())?;
        kafka::flush(&producer, Duration::from_secs(30))
            .map_err(|e| format!("writing to {changelog}: {e}"))?;
        checkpoint.changelog_offset = producer
            .context()
            .last_offset(&changelog, partition)
            .ok_or_else(|| format!("{changelog}: no delivery report for the checkpoint"))?;
        note = format!(
            "deleted locally and in {changelog} (checkpoint at offset {})",
            checkpoint.changelog_offset
        );
    }
    store
        .commit(&[(key.to_vec(), None)], &checkpoint)
        .map_err(|e| e.to_string())?;
    Ok(format!("{}: {note}\n", show_key(key)))
}
