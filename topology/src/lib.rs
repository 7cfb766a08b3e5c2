//! The runtime that wires Switchboard's processors to the outside world: the file-driven
//! `simulate` command, the runtime configuration, and the RocksDB state stores. The Kafka
//! runtime (consumers, transactional producers, changelogs) builds on these.

pub mod config;
pub mod sentiment_cli;
pub mod simulate;
pub mod state_store;
