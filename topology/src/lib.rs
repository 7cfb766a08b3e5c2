//! The runtime that wires Switchboard's processors to the outside world: the Kafka runtime
//! (consumer group, transactions or deduplicated delivery, RocksDB state with changelogs,
//! timers by stream time, the ticker), metrics and HTTP, the embedded `demo`, the file-driven
//! `simulate` command and the runtime configuration.

pub mod app;
pub mod bench;
pub mod config;
pub mod demo;
pub mod kafka;
pub mod metrics;
pub mod runtime;
pub mod sentiment_cli;
pub mod simulate;
pub mod state_store;
pub mod workload;
