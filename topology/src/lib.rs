//! The runtime that wires Switchboard's processors to the outside world: the Kafka runtime
//! (consumer group, transactions or deduplicated delivery, RocksDB state with changelogs,
//! timers by stream time, the ticker), metrics and HTTP, the embedded `demo`, the file-driven
//! `simulate` command and the runtime configuration.

pub mod actions;
pub mod app;
pub mod bench;
pub mod config;
pub mod demo;
pub mod directory;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod produce;
pub mod registry;
pub mod runtime;
pub mod sentiment_cli;
pub mod simulate;
pub mod state_cli;
pub mod state_store;
pub mod workload;

/// A current-thread tokio runtime, for the few async pieces (HTTP, signals, admin calls).
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))
}

/// Run `future` to completion on a thread of its own, named `name`.
pub(crate) fn spawn_async<F>(name: &str, future: F) -> Result<(), String>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio_runtime()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(future))
        .map(|_| ())
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}
