//! Avro encoding of the engine's outputs: straight from the Rust records (what the runtime
//! does) against the baseline of building each record's JSON mirror (`serde_json::Value`)
//! and writing Avro from it by walking the schema (what the runtime did until 2026-12-01,
//! itself 2.4× faster than apache-avro's `to_avro_datum` on these records, benchmarks.md).
//! Both write the same bytes; the bench checks that for every output before timing.
//!
//! And Avro decoding of the inputs: straight into the Rust records (what the runtime does)
//! against the baseline of reading each into its JSON mirror, checking the limits on it and
//! deserializing the record from it (what the runtime did until 2026-12-01). Both give the
//! same records; the bench checks that for every input before timing.
//!
//! Records: the workload of `switchboard bench` (`SWITCHBOARD_CODEC_BENCH_MESSAGES`, default
//! 20,000 messages, 20 tenants) and the engine's outputs for it.
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
    let inputs: Vec<Input> = sources
        .iter()
        .filter_map(|s| s.decoded.as_ref().ok().cloned())
        .collect();
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
    decoding(&codec, &inputs);
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

/// Inputs decoded through the JSON mirror against straight into their types.
fn decoding(codec: &Codec, inputs: &[Input]) {
    let encoded: Vec<(Topic, Vec<u8>)> = inputs
        .iter()
        .filter_map(|i| i.encode(codec).ok().map(|b| (i.topic(), b)))
        .collect();
    let mirror = |topic: Topic, bytes: &[u8]| {
        codec
            .schema(topic)
            .decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|json| Input::from_json(topic, json))
    };
    let typed = |topic: Topic, bytes: &[u8]| Input::decode(codec, topic, bytes);
    for (input, (topic, bytes)) in inputs.iter().zip(&encoded) {
        let via_mirror = mirror(*topic, bytes);
        let straight = typed(*topic, bytes);
        let schema = codec.schema(*topic);
        if via_mirror.as_ref().ok() != Some(input)
            || straight.as_ref().ok() != Some(input)
            || Input::decode_typed(*topic, schema, &bytes[10..]).is_none()
        {
            eprintln!("{topic}: the two decodings differ or the typed path was not taken");
            std::process::exit(1);
        }
    }
    let mut by_topic: BTreeMap<String, Vec<&(Topic, Vec<u8>)>> = BTreeMap::new();
    for e in &encoded {
        by_topic.entry(e.0.to_string()).or_default().push(e);
    }
    println!(
        "decoding: {} inputs, µs per record (median of {RUNS} passes)",
        encoded.len()
    );
    println!(
        "  {:<24} {:>8} {:>14} {:>8} {:>8}",
        "topic", "records", "JSON mirror", "typed", "speedup"
    );
    let all: Vec<&(Topic, Vec<u8>)> = encoded.iter().collect();
    for (topic, es) in by_topic.iter().chain([(&"all inputs".to_string(), &all)]) {
        let n = es.len() as f64;
        let m = time(|| es.iter().filter(|(t, b)| mirror(*t, b).is_ok()).count());
        let t = time(|| es.iter().filter(|(t, b)| typed(*t, b).is_ok()).count());
        println!(
            "  {topic:<24} {:>8} {:>14.2} {:>8.2} {:>7.1}×",
            es.len(),
            m / n * 1e6,
            t / n * 1e6,
            m / t
        );
    }
}
