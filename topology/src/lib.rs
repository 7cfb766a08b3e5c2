//! The runtime that wires Switchboard's processors to the outside world. For now: the
//! file-driven `simulate` command; the Kafka runtime (consumers, transactional producers,
//! RocksDB stores with changelogs) lands here next.

pub mod sentiment_cli;
pub mod simulate;
