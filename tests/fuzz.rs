//! Fuzzing on stable Rust (issue 14): four targets, each fed for a time budget with inputs
//! mutated from a corpus of valid and hostile records (`tests/fuzz-corpus/` plus the
//! quickstart scenario):
//!
//! - `avro_decoder`: bytes → `Input::decode` (every input topic);
//! - `json_decoder`: JSON-lines bytes → `simulation::parse_jsonl`;
//! - `condition`: random condition trees → config validation, then evaluation of those it
//!   accepts;
//! - `engine`: batches of mutated records → the whole engine (`simulation::run`).
//!
//! A target fails on a panic, an abort (stack overflow) or, for the engine, a record that a
//! processor panicked on (the engine catches it and dead-letters it as an internal error).
//! The mutations are structural (a JSON node replaced by a random value: deep nesting, long
//! strings and lists, extreme numbers, arrays for objects) and byte-level (bit flips,
//! truncation, splicing, varint extremes).
//!
//! `FUZZ_SECONDS` sets each target's budget (default 20; the documented long run is 600,
//! see docs/operations.md), `FUZZ_SEED` the starting seed (printed, so a failure reproduces).
//! A failing input is written to `tests/fuzz-corpus/found-<target>-<seed>.bin` to keep as a
//! regression seed.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchboard_processors::condition::{self, Attr, Attributes};
use switchboard_processors::simulation;
use switchboard_processors::Settings;
use switchboard_schemas::{Codec, Condition, Input, Output, Topic};

/// xorshift64*: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

fn seed(target: &str) -> u64 {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0000_0000_0001);
    eprintln!("fuzz {target}: FUZZ_SEED={seed}, {:?}", budget());
    seed
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// The seed records: the quickstart scenario and every corpus file, as JSON lines.
fn seed_lines() -> Vec<String> {
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.jsonl")];
    if let Ok(dir) = std::fs::read_dir(corpus_dir()) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut lines = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for line in bytes.split(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(line).trim().to_string();
            if !text.is_empty() && !text.starts_with('#') {
                lines.push(text);
            }
        }
    }
    lines
}

/// Seed records that decode, as (topic, key, ts, value).
fn seed_records() -> Vec<(Topic, Option<String>, i64, Value)> {
    seed_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let topic = Topic::from_name(v["topic"].as_str()?)?;
            Input::from_json(topic, v["value"].clone()).ok()?;
            Some((
                topic,
                v["key"].as_str().map(str::to_string),
                v["ts"].as_i64()?,
                v["value"].clone(),
            ))
        })
        .collect()
}

/// A random JSON value of a hostile shape.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 8 } else { 12 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!([i64::MIN, i64::MAX, -1, 0, 1, 1 << 53, i32::MAX as i64][rng.below(7)]),
        3 => json!([f64::MAX, -0.0, 1e-300, 0.5][rng.below(4)]),
        4 => json!("x".repeat([0, 1, 255, 257, 70_000][rng.below(5)])),
        5 => json!(
            [
                "",
                "#1",
                "#0",
                "#-1",
                "acme",
                "ac/me",
                "sms",
                "Available",
                "\u{0}",
                "é"
            ][rng.below(10)]
        ),
        6 => json!(u64::MAX),
        7 => json!("2026-13-45"),
        8 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        9 => {
            let mut obj = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                let key = ["id", "tenant", "text", "status", "not", "all", "x"][rng.below(7)];
                obj.insert(key.to_string(), random_value(rng, depth + 1));
            }
            Value::Object(obj)
        }
        10 => {
            // Deep nesting, around the decoders' limits.
            let mut v = json!(1);
            for _ in 0..[10, 63, 64, 65, 127, 129][rng.below(6)] {
                v = if rng.chance(50) {
                    json!([v])
                } else {
                    json!({ "not": v })
                };
            }
            v
        }
        _ => Value::Array(vec![json!("s"); [1_000, 1_001][rng.below(2)]]),
    }
}

/// Replace a random node of `v` with a random value (or, sometimes, remove an object key).
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let go_down = rng.chance(70);
    match v {
        Value::Object(map) if go_down && !map.is_empty() => {
            let i = rng.below(map.len());
            if rng.chance(10) {
                let key = map.keys().nth(i).cloned().unwrap_or_default();
                map.remove(&key);
            } else if let Some(child) = map.values_mut().nth(i) {
                mutate_value(rng, child);
            }
        }
        Value::Array(items) if go_down && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i]);
        }
        _ => *v = random_value(rng, 0),
    }
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe][rng.below(6)];
            }
            2 => {
                let i = rng.below(len + 1);
                let junk: &[u8] =
                    [&[0xff; 10][..], &[0x80; 9], &[0x01], &[0x02, 0x02]][rng.below(4)];
                bytes.splice(i..i, junk.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                bytes.truncate(i);
            }
            4 if len > 1 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a);
                bytes.drain(a..b);
            }
            5 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let a = rng.below(other.len());
                bytes.truncate(i);
                bytes.extend_from_slice(&other[a..]);
            }
            _ if len > 0 => {
                let a = rng.below(len);
                let piece = bytes[a..(a + 16).min(len)].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
}

/// Run `one` on inputs from `make` until the budget is spent; a panic names the seed and
/// keeps the input.
///
/// Runs on a thread with the main thread's 8 MB stack: the engine decodes and processes on
/// the main thread (test threads have 2 MB).
fn fuzz(
    target: &'static str,
    make: impl FnMut(&mut Rng) -> Vec<u8> + Send + 'static,
    one: impl Fn(&[u8]) + Send + 'static,
) {
    let outcome = std::thread::Builder::new()
        .name(target.into())
        .stack_size(8 << 20)
        .spawn(move || fuzz_here(target, make, one))
        .expect("spawn")
        .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn fuzz_here(target: &str, mut make: impl FnMut(&mut Rng) -> Vec<u8>, one: impl Fn(&[u8])) {
    let start = seed(target);
    let deadline = Instant::now() + budget();
    let mut rng = Rng(start);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let seed = rng.next() | 1;
        let mut case = Rng(seed);
        let input = make(&mut case);
        if let Ok(path) = std::env::var("FUZZ_LAST") {
            // Kept before the run: an abort (stack overflow) cannot be caught.
            let _ = std::fs::write(path, &input);
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(&input)));
        if outcome.is_err() {
            let path = corpus_dir().join(format!("found-{target}-{seed}.bin"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "fuzz {target}: case seed {seed} failed; input kept in {}",
                path.display()
            );
        }
        runs += 1;
    }
    eprintln!("fuzz {target}: {runs} inputs, no failure");
    assert!(runs > 0);
}

/// Avro decoding of every input topic never panics or overflows the stack.
#[test]
fn fuzz_avro_decoder() {
    let codec = std::sync::Arc::new(Codec::new().expect("codec"));
    let decoder = codec.clone();
    let seeds: Vec<(Topic, Vec<u8>)> = seed_records()
        .into_iter()
        .filter_map(|(t, _, _, v)| Some((t, codec.schema(t).encode(&v).ok()?)))
        .collect();
    assert!(seeds.len() > 20);
    fuzz(
        "avro_decoder",
        move |rng| {
            let (topic, bytes) = &seeds[rng.below(seeds.len())];
            let mut out = vec![topic.merge_rank()];
            let mut body = bytes.clone();
            if rng.chance(50) {
                // Structural: re-encode a mutated record, then perhaps damage the bytes.
                if let Ok(mut v) = codec.schema(*topic).decode(bytes) {
                    mutate_value(rng, &mut v);
                    // The encoder recurses: only values within the limits are encoded here
                    // (deeper ones are made by the byte mutations below).
                    if switchboard_schemas::limits::check_value(&v).is_ok() {
                        if let Ok(b) = codec.schema(*topic).encode(&v) {
                            body = b;
                        }
                    }
                }
            }
            if rng.chance(70) {
                let other = &seeds[rng.below(seeds.len())].1;
                let header = body.len().min(10);
                let mut datum = body.split_off(header);
                mutate_bytes(rng, &mut datum, &other[other.len().min(10)..]);
                body.extend(datum);
            }
            out.extend(body);
            out
        },
        move |input| {
            let topic = Topic::INPUTS[input[0] as usize % Topic::INPUTS.len()];
            let _ = Input::decode(&decoder, topic, &input[1..]);
        },
    );
}

/// JSON-lines decoding (envelope, strict record decoding, limits) never panics, and every
/// line it cannot use becomes a dead letter.
#[test]
fn fuzz_json_decoder() {
    let lines = seed_lines();
    fuzz(
        "json_decoder",
        move |rng| {
            let mut text = lines[rng.below(lines.len())].clone().into_bytes();
            if let Ok(mut v) = serde_json::from_slice::<Value>(&text) {
                if rng.chance(80) {
                    mutate_value(rng, &mut v);
                    text = v.to_string().into_bytes();
                }
            }
            if rng.chance(30) {
                let other = lines[rng.below(lines.len())].as_bytes();
                mutate_bytes(rng, &mut text, other);
            }
            text.retain(|b| *b != b'\n');
            text
        },
        |input| {
            let (records, broken) = simulation::parse_jsonl(input);
            // One record or one dead letter per line; blank lines and `#` comments are none.
            // (A line that is not UTF-8 is a dead letter even when it starts with `#`.)
            let skipped = std::str::from_utf8(input)
                .is_ok_and(|t| t.trim().is_empty() || t.trim().starts_with('#'));
            assert_eq!(records.len() + broken.len(), usize::from(!skipped));
        },
    );
}

struct Facts;

impl Attributes for Facts {
    fn get(&self, attribute: &str) -> Attr<'_> {
        match attribute {
            "channel" => Attr::One("sms".into()),
            "content" => Attr::One("where is my refund".into()),
            "conversation.tags" => Attr::Many(vec!["vip".into(), "web".into()]),
            _ => Attr::Missing,
        }
    }
}

fn random_condition(rng: &mut Rng, depth: usize) -> Value {
    let attributes = [
        "channel",
        "content",
        "from",
        "conversation.tags",
        "person.created_at",
        "nope",
    ];
    let operators = [
        "is",
        "is_not",
        "starts_with",
        "contains",
        "does_not_contain",
        "in_list",
        "not_in_list",
        "before_or_on",
        "after_or_on",
        "exists",
        "not_exists",
    ];
    let leaf = |rng: &mut Rng| {
        let mut c =
            json!({"attribute": attributes[rng.below(6)], "operator": operators[rng.below(11)]});
        if rng.chance(70) {
            c["value"] = json!(["sms", "2026-01-01", "", "refund", "2026-02-30"][rng.below(5)]);
        }
        if rng.chance(30) {
            c["values"] = json!(["vip", "sms"]);
        }
        c
    };
    if depth > 40 || rng.chance(30) {
        return leaf(rng);
    }
    match rng.below(4) {
        0 => {
            json!({"all": (0..rng.below(4)).map(|_| random_condition(rng, depth + 1)).collect::<Vec<_>>()})
        }
        1 => {
            json!({"any": (0..rng.below(4)).map(|_| random_condition(rng, depth + 1)).collect::<Vec<_>>()})
        }
        2 => json!({"not": random_condition(rng, depth + 1)}),
        _ => {
            let mut both = leaf(rng);
            both["not"] = random_condition(rng, depth + 1);
            both
        }
    }
}

/// Condition validation never panics, and evaluating any condition it accepts never panics.
#[test]
fn fuzz_condition() {
    fuzz(
        "condition",
        |rng| random_condition(rng, 0).to_string().into_bytes(),
        |input| {
            let Ok(v) = serde_json::from_slice::<Value>(input) else {
                return;
            };
            let Ok(c) = switchboard_schemas::strict::from_value::<Condition>(v) else {
                return;
            };
            if condition::validate(&c, "condition").is_ok() {
                condition::eval(&c, &Facts);
            }
        },
    );
}

/// The engine over batches of mutated records: no processor ever panics (the engine would
/// catch it and dead-letter the record as an internal error), whatever the records.
#[test]
fn fuzz_engine() {
    let seeds = seed_records();
    fuzz(
        "engine",
        move |rng| {
            let mut lines = Vec::new();
            // Start from a coherent stretch of the scenario, then mutate some records.
            let start = rng.below(seeds.len());
            for i in 0..40 {
                let (topic, key, ts, value) = &seeds[(start + i) % seeds.len()];
                let mut value = value.clone();
                if rng.chance(30) {
                    mutate_value(rng, &mut value);
                }
                let ts = if rng.chance(5) {
                    ts.saturating_add(rng.below(10_000_000) as i64)
                } else {
                    *ts
                };
                lines.push(
                    json!({"topic": topic.name(), "key": key, "ts": ts, "value": value})
                        .to_string(),
                );
            }
            lines.join("\n").into_bytes()
        },
        |input| {
            let (records, _) = simulation::parse_jsonl(input);
            let out = simulation::run(records, 2, &Settings::default()).expect("run");
            for e in out {
                if let Output::DeadLetter(d) = &e.output {
                    assert!(!d.reason.contains("internal error"), "{}", d.reason);
                }
            }
        },
    );
}
