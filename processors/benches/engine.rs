//! The whole engine in process on the mixed contact-center workload of
//! `shared/bench/gen_workload.py` (100 tenants × 20 agents, 3 queues and routes, SLA, waiting
//! strategy, replies and solves; with and without sentiment), one partition on one core.
//!
//! Figures, each beside a baseline from the same run (docs/benchmarks.md):
//! - `parse`: the JSON-lines workload into decoded records (not part of the engine figures);
//! - `floor`: what a competent user would hand-write for the least of the job over the same
//!   decoded records: drop repeated ids, thread each message into its customer's
//!   conversation in a hash map, count it. The engine does that and everything else;
//! - `engine`: `simulation::run_streaming` (merge, timers, every processor, state flushed to
//!   the store at the end as the runtime does per round; each output handed on as it is
//!   made, as the runtime hands them to the producer).
//!
//! Workloads: `SWITCHBOARD_WORKLOAD` and `SWITCHBOARD_WORKLOAD_NO_SENTIMENT` name JSON-lines
//! files; otherwise they are generated with the generator at `SWITCHBOARD_WORKLOAD_GEN`
//! (default `../shared/bench/gen_workload.py` from the workspace) with
//! `--messages $SWITCHBOARD_BENCH_MESSAGES` (default 200,000) `--customers 500`.
//!
//! Run: `cargo bench -p switchboard-processors --bench engine`.

mod common;

/// The `switchboard` binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use switchboard_processors::simulation::{self, SourceRecord};
use switchboard_processors::{Engine, Settings};
use switchboard_schemas::Input;

const RUNS: usize = 5;
/// Runs with and without analytics, in alternating pairs: more than [`RUNS`], as the two
/// figures are close and the machine's noisy spells slow one side of a pair.
const PAIRS: usize = 7;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Records per second of `f` over `n` records, the median of [`RUNS`] runs.
fn rate(n: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        std::hint::black_box(f());
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}

/// The hand-written floor: dedup by id and thread by customer address in hash maps.
fn floor(records: &[SourceRecord]) -> usize {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut conversations: HashMap<(&str, &str), u64> = HashMap::new();
    for r in records {
        let Ok(input) = &r.decoded else { continue };
        let Some((tenant, id)) = input.tenant_and_id() else {
            continue;
        };
        if !seen.insert((tenant, id)) {
            continue;
        }
        if let Input::Inbound(m) = input {
            *conversations.entry((tenant, m.from.as_str())).or_default() += 1;
        }
    }
    conversations.len()
}

/// Run the engine over `records`, handing each output on as it is made (the runtime encodes
/// and produces them per round; holding a whole run's million outputs in one vector would
/// measure its growth, not the engine); the number of outputs.
fn outputs(records: Vec<SourceRecord>, settings: &Settings) -> usize {
    let mut n = 0;
    let run = simulation::run_streaming(
        records,
        1,
        settings,
        &switchboard_processors::standard_processors,
        &mut |e| {
            n += 1;
            drop(std::hint::black_box(e));
        },
    );
    if let Err(e) = run {
        eprintln!("engine: {e}");
        std::process::exit(1);
    }
    n
}

fn bench(name: &str, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let (records, _) = simulation::parse_jsonl(&bytes);
    let n = records.len();
    let parse = rate(n, || simulation::parse_jsonl(&bytes).0.len());
    let floor_rate = rate(n, || floor(&records));
    let settings = Settings::default();
    // The engine with and without the analytics windows (`engine.analytics = false`): what
    // they cost. The two alternate, run by run, so a noisy spell of the machine hits both;
    // the cost is the median of the pairs' ratios. The engine takes its records by value:
    // each run gets a copy made before its clock starts.
    let lean = Settings {
        analytics: false,
        ..settings.clone()
    };
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..PAIRS {
        let mut pair = [0.0f64; 2];
        // Which goes first alternates too, so neither always runs on the other's leftovers.
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = [&settings, &lean][i];
            let input = records.clone();
            let t = Instant::now();
            std::hint::black_box(outputs(input, s));
            pair[i] = n as f64 / t.elapsed().as_secs_f64();
        }
        with.push(pair[0]);
        without.push(pair[1]);
        ratios.push(pair[0] / pair[1]);
    }
    // Noise only ever slows a run down, so the fastest run of each is the other estimate.
    let best = |xs: &[f64]| xs.iter().copied().fold(0.0, f64::max);
    let best_ratio = best(&with) / best(&without);
    let (engine, no_analytics, ratio) = (median(with), median(without), median(ratios));
    // What the run leaves in the store (the changelog's size after compaction), and how long
    // an engine takes to open on it (a restart: every row read and decoded, the indexes
    // rebuilt; archived conversations are not loaded).
    let stores: Vec<_> = simulation::run_engines(records.clone(), 1, &settings)
        .map(|(_, engines)| engines.into_iter().map(|e| e.into_store()).collect())
        .unwrap_or_default();
    let (rows, bytes) = stores.iter().fold((0, 0), |(n, b), store| {
        (
            n + store.map.len(),
            b + store
                .map
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>(),
        )
    });
    let mut opens = Vec::new();
    for _ in 0..RUNS {
        let copies = stores.clone();
        let t = Instant::now();
        for store in copies {
            if let Err(e) = std::hint::black_box(Engine::open(store, settings.clone())) {
                eprintln!("open: {e}");
                std::process::exit(1);
            }
        }
        opens.push(t.elapsed().as_secs_f64());
    }
    let open = median(opens);
    println!("{name}: {n} records ({})", path.display());
    println!("  parse JSON lines      {parse:>12.0} records/s");
    println!("  floor (by hand)       {floor_rate:>12.0} records/s");
    println!(
        "  engine                {engine:>12.0} records/s   {:.3} of the floor",
        engine / floor_rate
    );
    println!(
        "  engine, no analytics  {no_analytics:>12.0} records/s   with / without {ratio:.2} (median of {PAIRS} alternating pairs; fastest runs {best_ratio:.2})"
    );
    println!(
        "  state at the end      {rows:>12} rows, {:.1} MB",
        bytes as f64 / 1e6
    );
    println!(
        "  open on that state    {:>12.0} ms ({:.0} rows/s)",
        open * 1e3,
        rows as f64 / open
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` builds benches and runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for (name, var, extra) in [
        ("mixed, with sentiment", "SWITCHBOARD_WORKLOAD", &[][..]),
        (
            "mixed, without sentiment",
            "SWITCHBOARD_WORKLOAD_NO_SENTIMENT",
            &["--no-sentiment"][..],
        ),
    ] {
        match common::workload(var, "SWITCHBOARD_BENCH_MESSAGES", "200000", extra) {
            Ok(path) => bench(name, &path),
            Err(e) => {
                eprintln!("workload: {e} (set {var} to a JSON-lines workload)");
                std::process::exit(1);
            }
        }
    }
}
