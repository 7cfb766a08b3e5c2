//! Engine memory on the workload of `shared/bench/gen_workload.py`, counted by the allocator
//! (live heap bytes, exact and free of the machine's noise), one partition.
//!
//! The workload streams through one engine record by record (the file is read a line at a
//! time, so only the engine's own memory grows). Every `SWITCHBOARD_MEMORY_EVERY` records
//! (default 100,000) it prints the live heap beside the conversations that are open (not
//! Closed), the Closed ones still in state, and the record ids in the dedup window. A second
//! run with a 1 ms dedup window tells the window's share: at the end it prints bytes per
//! conversation held without the window, and bytes per remembered id.
//!
//! Workload: `SWITCHBOARD_MEMORY_WORKLOAD` names a JSON-lines file; otherwise it is generated
//! with `SWITCHBOARD_WORKLOAD_GEN` (default `../shared/bench/gen_workload.py`) with
//! `--messages $SWITCHBOARD_MEMORY_MESSAGES` (default 1,000,000) `--customers 500`.
//!
//! Run: `cargo bench -p switchboard-processors --bench memory`.

mod common;
#[path = "common/counting.rs"]
mod counting;

use std::io::BufRead;
use std::path::Path;

use switchboard_processors::simulation::{self, apply_record};
use switchboard_processors::state::State;
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::Status;

/// (open conversations, Closed conversations still held).
fn conversations(state: &State) -> (usize, usize) {
    state
        .conversations
        .iter()
        .fold((0, 0), |(open, closed), (_, c)| {
            if c.status == Status::Closed {
                (open, closed + 1)
            } else {
                (open + 1, closed)
            }
        })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let path = match common::workload(
        "SWITCHBOARD_MEMORY_WORKLOAD",
        "SWITCHBOARD_MEMORY_MESSAGES",
        "1000000",
        &[],
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("workload: {e} (set SWITCHBOARD_MEMORY_WORKLOAD)");
            std::process::exit(1);
        }
    };
    let every: usize = std::env::var("SWITCHBOARD_MEMORY_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("{} ({every} records a sample)", path.display());
    let with_ids = run(&path, every, Settings::default(), true);
    let without_ids = run(
        &path,
        every,
        Settings {
            dedup_retention_ms: 1,
            ..Settings::default()
        },
        false,
    );
    // The runtime's layout: the window's ids looked up in the store (RocksDB there).
    let in_store = run(
        &path,
        every,
        Settings {
            dedup_in_store: true,
            ..Settings::default()
        },
        false,
    );
    let (Some(with), Some(without), Some(in_store)) = (with_ids, without_ids, in_store) else {
        return;
    };
    let ids = with.3.max(1) as f64;
    println!(
        "at the end: {:.0} bytes per conversation held (open {}, Closed {}), without the dedup window; {:.0} bytes per remembered record id ({} ids)",
        without.0 as f64 / (without.1 + without.2).max(1) as f64,
        without.1,
        without.2,
        with.0.saturating_sub(without.0) as f64 / ids,
        with.3
    );
    println!(
        "with the window in the store (the runtime): {:.1} MB live, {:.2} bytes of memory per remembered record id ({} ids)",
        in_store.0 as f64 / 1e6,
        in_store.0.saturating_sub(without.0) as f64 / in_store.3.max(1) as f64,
        in_store.3
    );
}

/// Stream the workload through one engine; print samples when `print`; the last sample:
/// (live bytes, open, Closed, remembered ids).
fn run(
    path: &Path,
    every: usize,
    settings: Settings,
    print: bool,
) -> Option<(usize, usize, usize, usize)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let start = counting::live();
    let mut engine = match Engine::open(MemStore::default(), settings) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engine: {e}");
            std::process::exit(1);
        }
    };
    if print {
        println!(
            "{:>10} {:>12} {:>8} {:>8} {:>9} {:>12}",
            "records", "live MB", "open", "closed", "ids", "bytes/conv"
        );
    }
    let mut last = None;
    let mut n = 0usize;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let Ok(line) = line else { break };
        let (records, _) = simulation::parse_jsonl(&line);
        for r in &records {
            std::hint::black_box(apply_record(&mut engine, r, 0));
            n += 1;
            if n % every == 0 {
                // The store is a copy of the state for tests and `simulate`; the runtime's is
                // RocksDB, on disk. Flushed and emptied so only the engine's memory counts (a
                // command naming a conversation archived before then finds no archive row, a
                // repeated id whose index row went is not recognised; it changes a few
                // outputs, not the memory figures).
                let _ = engine.flush();
                engine.store_mut().map.clear();
                let live = counting::live().saturating_sub(start);
                let (open, closed) = conversations(engine.state());
                let ids = engine.state().dedup.len();
                if print {
                    println!(
                        "{n:>10} {:>12.1} {open:>8} {closed:>8} {ids:>9} {:>12.0}",
                        live as f64 / 1e6,
                        live as f64 / (open + closed).max(1) as f64
                    );
                }
                last = Some((live, open, closed, ids));
            }
        }
    }
    if print {
        breakdown(engine.into_state());
    }
    last
}

/// Where the memory is: the live bytes each table frees when it is dropped (its capacity
/// included), per conversation held. A string shared between tables (a conversation's id) is
/// freed with the last of them, so it counts in the table dropped last that holds it: the
/// tables go in the order below, and the conversations, which every other table names, last.
fn breakdown(mut state: State) {
    let (open, closed) = conversations(&state);
    let held = (open + closed).max(1) as f64;
    println!("{:>16} {:>10} {:>12}", "table", "MB", "bytes/conv");
    macro_rules! tables {
        ($($table:ident),*) => {$({
            let before = counting::live();
            drop(std::mem::take(&mut state.$table));
            let bytes = before.saturating_sub(counting::live());
            println!(
                "{:>16} {:>10.1} {:>12.0}",
                stringify!($table),
                bytes as f64 / 1e6,
                bytes as f64 / held
            );
        })*};
    }
    tables!(
        dedup,
        sla,
        timers,
        assign,
        threads,
        waits,
        moods,
        short_ids,
        last_replier,
        conv_facts,
        agents,
        surveys,
        last_survey,
        analytics,
        tenants,
        conversations
    );
    let before = counting::live();
    drop(state);
    let rest = before.saturating_sub(counting::live());
    println!(
        "{:>16} {:>10.1} {:>12.0}",
        "the rest",
        rest as f64 / 1e6,
        rest as f64 / held
    );
}
