//! Avro encoding of the engine's outputs: straight from the Rust records (what the runtime
//! does) against the baseline of building each record's JSON mirror (`serde_json::Value`)
//! and writing Avro from it by walking the schema (what the runtime did until 2026-12-01,
//! itself 2.4× faster than apache-avro's `to_avro_datum` on these records, benchmarks.md).
//! Both write the same bytes; the bench checks that for every output before timing.
//!
//! Outputs: the engine's, over `switchboard bench`'s generated workload
//! (`SWITCHBOARD_CODEC_BENCH_MESSAGES`, default 20,000 messages, 20 tenants).
//!
//! Run: `cargo bench --bench codec`.

use std::collections::BTreeMap;
use std::time::Instant;
use switchboard::workload;
use switchboard_processors::simulation;
use switchboard_processors::Settings;
use switchboard_schemas::*;

const RUNS: usize = 5;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Seconds per pass of `f` over the outputs, the median of [`RUNS`].
fn time(mut f: impl FnMut() -> usize) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let messages = std::env::var("SWITCHBOARD_CODEC_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sources = workload::contact_center_sources(20, messages);
    let outputs: Vec<Output> = match simulation::run(sources, 4, &Settings::default()) {
        Ok(out) => out.into_iter().map(|e| e.output).collect(),
        Err(e) => {
            eprintln!("engine: {e}");
            std::process::exit(1);
        }
    };
    let codec = match Codec::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("schemas: {e}");
            std::process::exit(1);
        }
    };
    let mirror = |o: &Output| codec.schema(o.topic()).encode(&o.to_json());
    let typed = |o: &Output| o.encode(&codec);
    for o in &outputs {
        match (mirror(o), typed(o)) {
            (Ok(a), Ok(b)) if a == b => {}
            (a, b) => {
                eprintln!("{:?}: the two encodings differ: {a:?} / {b:?}", o.topic());
                std::process::exit(1);
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<&Output>> = BTreeMap::new();
    for o in &outputs {
        by_topic.entry(o.topic().to_string()).or_default().push(o);
    }
    println!(
        "codec: {} outputs of {messages} messages, µs per record (median of {RUNS} passes)",
        outputs.len()
    );
    println!(
        "  {:<24} {:>8} {:>14} {:>8} {:>8}",
        "topic", "records", "JSON mirror", "typed", "speedup"
    );
    let pass = |os: &[&Output], f: &dyn Fn(&Output) -> Result<Vec<u8>, CodecError>| {
        time(|| os.iter().map(|o| f(o).map_or(0, |b| b.len())).sum())
    };
    for (topic, os) in by_topic
        .iter()
        .chain([(&"all outputs".to_string(), &outputs.iter().collect())])
    {
        let n = os.len() as f64;
        let (m, t) = (pass(os, &mirror), pass(os, &typed));
        println!(
            "  {topic:<24} {:>8} {:>14.2} {:>8.2} {:>7.1}×",
            os.len(),
            m / n * 1e6,
            t / n * 1e6,
            m / t
        );
    }
}
