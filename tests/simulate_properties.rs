//! Property tests over random streams of inbound messages, config changes and commands run
//! through `simulate` (R-TIME-6 determinism, R-ROUTE-1 every conversation in exactly one
//! queue, R-TIME-2 partitioning by tenant).

use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard::simulate::{simulate_into, simulate_text};
use switchboard_processors::simulation::{self, Emitted, SourceRecord};
use switchboard_processors::{standard_processors, Ctx, Handled, Processor, Rejection, Settings};
use switchboard_schemas::{Input, Output};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const QUEUES: [&str; 4] = ["default", "sales", "support", "vip"];
const WORDS: [&str; 5] = ["refund", "invoice", "hello", "VIP help", "thanks"];
const CHANNELS: [&str; 5] = ["sms", "whatsapp", "email", "live_chat", "telegram"];
const OPERATORS: [&str; 11] = [
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

#[derive(Debug, Clone)]
enum Op {
    Message {
        tenant: usize,
        address: usize,
        channel: usize,
        word: usize,
        person: Option<usize>,
    },
    Queue {
        tenant: usize,
        queue: usize,
        version: i64,
        office: bool,
    },
    DeleteQueue {
        tenant: usize,
        queue: usize,
        version: i64,
    },
    Route {
        tenant: usize,
        id: usize,
        order: i32,
        attribute: usize,
        operator: usize,
        word: usize,
        queue: usize,
        enabled: bool,
        version: i64,
    },
    DeleteRoute {
        tenant: usize,
        id: usize,
        version: i64,
    },
    Status {
        tenant: usize,
        short: usize,
        status: usize,
    },
    ChangeQueue {
        tenant: usize,
        short: usize,
        queue: usize,
    },
    Merge {
        tenant: usize,
        short: usize,
        source: usize,
    },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TENANTS.len();
    prop_oneof![
        6 => (t.clone(), 0..6usize, 0..CHANNELS.len(), 0..WORDS.len(), proptest::option::of(0..3usize))
            .prop_map(|(tenant, address, channel, word, person)| Op::Message { tenant, address, channel, word, person }),
        1 => (t.clone(), 1..QUEUES.len(), 1..4i64, any::<bool>()).prop_map(|(tenant, queue, version, office)| Op::Queue { tenant, queue, version, office }),
        1 => (t.clone(), 0..QUEUES.len(), 1..6i64).prop_map(|(tenant, queue, version)| Op::DeleteQueue { tenant, queue, version }),
        2 => (t.clone(), 0..4usize, -2..3i32, 0..3usize, 0..OPERATORS.len(), 0..WORDS.len(), 0..QUEUES.len(), any::<bool>(), 1..6i64)
            .prop_map(|(tenant, id, order, attribute, operator, word, queue, enabled, version)| Op::Route { tenant, id, order, attribute, operator, word, queue, enabled, version }),
        1 => (t.clone(), 0..4usize, 1..6i64).prop_map(|(tenant, id, version)| Op::DeleteRoute { tenant, id, version }),
        1 => (t.clone(), 1..8usize, 0..4usize).prop_map(|(tenant, short, status)| Op::Status { tenant, short, status }),
        1 => (t.clone(), 1..8usize, 0..QUEUES.len()).prop_map(|(tenant, short, queue)| Op::ChangeQueue { tenant, short, queue }),
        1 => (t, 1..8usize, 1..8usize).prop_map(|(tenant, short, source)| Op::Merge { tenant, short, source }),
        1 => Just(Op::Tick),
    ]
}

fn line(topic: &str, key: Option<String>, ts: i64, value: Value) -> String {
    let mut obj = json!({"topic": topic, "ts": ts, "value": value});
    if let Some(k) = key {
        obj["key"] = json!(k);
    }
    obj.to_string()
}

/// A cc.commands line for conversation `#short` of a tenant.
fn command(tenant: usize, id: &str, ts: i64, short: usize, kind: Value) -> String {
    let t = TENANTS[tenant];
    let value =
        json!({"id": id, "tenant": t, "conversation_id": format!("#{short}"), "command": kind});
    line("cc.commands", Some(t.into()), ts, value)
}

/// Render ops as a JSON-lines simulate input; `jitter` moves some timestamps backwards.
fn render(ops: &[(Op, i64)]) -> String {
    let base = 1_772_445_600_000i64; // 2026-03-02T10:00Z, a Monday
    let mut ts = base;
    let mut out = Vec::new();
    for (i, (op, step)) in ops.iter().enumerate() {
        ts += step;
        let id = format!("r{i}");
        let l = match op {
            Op::Message {
                tenant,
                address,
                channel,
                word,
                person,
            } => {
                let t = TENANTS[*tenant];
                let mut v = json!({"id": id, "tenant": t, "channel": CHANNELS[*channel], "from": format!("+{address}"), "to": "+100", "content": WORDS[*word]});
                if let Some(p) = person {
                    v["person"] = json!({"id": format!("p{p}"), "tags": [WORDS[*word]]});
                }
                line("cc.inbound", Some(t.into()), ts, v)
            }
            Op::Queue {
                tenant,
                queue,
                version,
                office,
            } => {
                let t = TENANTS[*tenant];
                let mut changes = Vec::new();
                if *office {
                    let day = json!([{"start": "09:00", "end": "17:00"}]);
                    let period = json!({"id": "office", "time_zone": "Europe/Zagreb", "week": {"monday": day, "tuesday": day}, "away_message": "closed", "close_after_away": version % 2 == 0});
                    changes.push((
                        "working_hours/office".to_string(),
                        json!({"UpsertWorkingHours": {"period": period}}),
                    ));
                }
                let hours = if *office {
                    json!("office")
                } else {
                    Value::Null
                };
                changes.push((format!("queue/{}", QUEUES[*queue]), json!({"UpsertQueue": {"queue": {"id": QUEUES[*queue], "working_hours_id": hours}}})));
                let lines: Vec<String> = changes
                    .into_iter()
                    .enumerate()
                    .map(|(j, (entity, change))| line("cc.config", Some(format!("{t}/{entity}")), ts, json!({"id": format!("{id}-{j}"), "tenant": t, "version": version, "change": change})))
                    .collect();
                lines.join("\n")
            }
            Op::DeleteQueue {
                tenant,
                queue,
                version,
            } => {
                let t = TENANTS[*tenant];
                line(
                    "cc.config",
                    Some(format!("{t}/queue/{}", QUEUES[*queue])),
                    ts,
                    json!({"id": id, "tenant": t, "version": version, "change": {"DeleteQueue": {"queue_id": QUEUES[*queue]}}}),
                )
            }
            Op::Route {
                tenant,
                id: rid,
                order,
                attribute,
                operator,
                word,
                queue,
                enabled,
                version,
            } => {
                let t = TENANTS[*tenant];
                let attr = ["content", "channel", "person.tags"][*attribute];
                let condition = json!({"attribute": attr, "operator": OPERATORS[*operator], "value": WORDS[*word]});
                let priority = ["low", "normal", "high", "urgent"][*rid];
                let route = json!({"id": format!("r{rid}"), "order": order, "enabled": enabled, "condition": condition, "queue_id": QUEUES[*queue], "priority": priority});
                line(
                    "cc.config",
                    Some(format!("{t}/route/r{rid}")),
                    ts,
                    json!({"id": id, "tenant": t, "version": version, "change": {"UpsertRoute": {"route": route}}}),
                )
            }
            Op::DeleteRoute {
                tenant,
                id: rid,
                version,
            } => {
                let t = TENANTS[*tenant];
                line(
                    "cc.config",
                    Some(format!("{t}/route/r{rid}")),
                    ts,
                    json!({"id": id, "tenant": t, "version": version, "change": {"DeleteRoute": {"route_id": format!("r{rid}")}}}),
                )
            }
            Op::Status {
                tenant,
                short,
                status,
            } => {
                let status = ["open", "waiting", "solved", "closed"][*status];
                command(
                    *tenant,
                    &id,
                    ts,
                    *short,
                    json!({"SetStatus": {"status": status}}),
                )
            }
            Op::ChangeQueue {
                tenant,
                short,
                queue,
            } => command(
                *tenant,
                &id,
                ts,
                *short,
                json!({"ChangeQueue": {"queue_id": QUEUES[*queue]}}),
            ),
            Op::Merge {
                tenant,
                short,
                source,
            } => {
                let source = format!("#{source}");
                command(
                    *tenant,
                    &id,
                    ts,
                    *short,
                    json!({"Merge": {"source_conversation_id": source}}),
                )
            }
            Op::Tick => line("cc.ticks", None, ts, json!({})),
        };
        out.push(l);
    }
    out.join("\n")
}

fn outputs(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("output lines are JSON"))
        .collect()
}

/// Per tenant, the output values in order.
fn by_tenant(text: &str) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in outputs(text) {
        let tenant = o["value"]["tenant"].as_str().unwrap_or("-").to_string();
        map.entry(tenant).or_default().push(o["value"].clone());
    }
    map
}

/// Every conversation gets exactly one Routed event, after its Opened event, and every later
/// queue move starts from the queue it is in, so it is in exactly one queue at every moment.
fn check_one_queue_each(text: &str) -> Result<(), TestCaseError> {
    let mut queue_of: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut opened: BTreeMap<(String, String), bool> = BTreeMap::new();
    for o in outputs(text) {
        if o["topic"] != "cc.conversation-events" {
            continue;
        }
        let v = &o["value"];
        let key = (
            v["tenant"].as_str().unwrap_or("").to_string(),
            v["conversation_id"].as_str().unwrap_or("").to_string(),
        );
        let event = &v["event"];
        if event.get("Opened").is_some() {
            prop_assert!(
                opened.insert(key.clone(), true).is_none(),
                "opened twice: {key:?}"
            );
        } else if let Some(r) = event.get("Routed") {
            prop_assert!(opened.contains_key(&key), "routed before opened: {key:?}");
            let q = r["queue_id"].as_str().unwrap_or("").to_string();
            prop_assert!(QUEUES.contains(&q.as_str()), "routed to unknown queue {q}");
            prop_assert!(
                queue_of.insert(key.clone(), q).is_none(),
                "routed twice: {key:?}"
            );
        } else if let Some(c) = event.get("QueueChanged") {
            let current = queue_of.get(&key).cloned();
            prop_assert_eq!(
                current.as_deref(),
                c["from_queue"].as_str(),
                "move from the wrong queue: {:?}",
                key
            );
            queue_of.insert(key, c["to_queue"].as_str().unwrap_or("").to_string());
        }
    }
    for key in opened.keys() {
        prop_assert!(queue_of.contains_key(key), "never routed: {key:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// R-TIME-6, R-ROUTE-1: simulate is byte-for-byte deterministic, even with timestamps out
    /// of order, and every conversation is in exactly one queue.
    #[test]
    fn simulate_is_deterministic_and_each_conversation_has_one_queue(
        ops in proptest::collection::vec((op(), -30_000i64..120_000), 1..80)
    ) {
        let input = render(&ops);
        let settings = Settings::default();
        let first = simulate_text(&input, 4, &settings).expect("simulate");
        let second = simulate_text(&input, 4, &settings).expect("simulate");
        prop_assert_eq!(&first, &second);
        check_one_queue_each(&first)?;
        let mut ids = std::collections::BTreeSet::new();
        for o in outputs(&first) {
            let id = o["value"]["id"].as_str().unwrap_or_default().to_string();
            prop_assert!(ids.insert(id.clone()), "duplicate output id {}", id);
        }
        // Nothing is lost: every input record is either applied, a duplicate, or dead-lettered;
        // an input line never disappears into a parse failure here.
        prop_assert!(!first.contains("not valid JSON") && !first.contains("invalid cc."), "generator made a bad record");
        if ops.iter().any(|(o, _)| matches!(o, Op::Message { .. })) {
            prop_assert!(first.contains("\"Opened\""));
        }
    }

    /// R-TIME-6: `simulate` spreads partitions over threads, and its output does not depend
    /// on how many: the same bytes in the same order with one thread, two, or as many as
    /// partitions, out-of-order timestamps and bad lines included.
    #[test]
    fn simulate_output_does_not_depend_on_threads(
        ops in proptest::collection::vec((op(), -30_000i64..120_000), 1..80),
        partitions in 2u32..6,
    ) {
        let mut input = render(&ops).into_bytes();
        input.extend_from_slice(b"\nnot json\n");
        let settings = Settings::default();
        let run = |threads: usize| {
            let mut out = Vec::new();
            let counts = simulate_into(&input, partitions, threads, &settings, &mut out).expect("simulate");
            (counts, out)
        };
        let one = run(1);
        prop_assert!(one.0 .1 > 0);
        for threads in [2, 3, partitions as usize] {
            let other = run(threads);
            prop_assert_eq!(one.0, other.0);
            prop_assert!(one.1 == other.1, "{} threads: the output differs", threads);
        }
    }

    /// R-TIME-2: tenants are independent: with in-order timestamps, each tenant's outputs are
    /// the same whether the tenants share one partition or are spread over several. Stream
    /// time is per partition (R-TIME-3), so what timers emit (analytics windows, SLA
    /// breaches) depends on when each partition's stream time passes them: the stream ends
    /// with a tick on every partition (as the ticker writes), after which every timer has
    /// fired everywhere.
    #[test]
    fn tenant_outputs_do_not_depend_on_partitioning(
        ops in proptest::collection::vec((op(), 0i64..120_000), 1..60)
    ) {
        let mut input = render(&ops);
        input.push_str(&format!("\n{}", line("cc.ticks", None, 1_900_000_000_000, json!({}))));
        let settings = Settings::default();
        let one = simulate_text(&input, 1, &settings).expect("simulate");
        let many = simulate_text(&input, 7, &settings).expect("simulate");
        let strip = |m: BTreeMap<String, Vec<Value>>| -> BTreeMap<String, Vec<Value>> {
            m.into_iter().map(|(t, vs)| (t, vs.into_iter().map(|mut v| { if v.get("source_partition").is_some() { v["source_partition"] = Value::Null; } v }).collect())).collect()
        };
        prop_assert_eq!(strip(by_tenant(&one)), strip(by_tenant(&many)));
    }
}

/// A processor that rejects one record by id, from its place in the pipeline, after the
/// processors before it have changed the state; it notes whether it saw the record.
struct Reject {
    id: String,
    fired: Arc<AtomicBool>,
}

impl Processor for Reject {
    fn on_input(&mut self, _: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        if input.tenant_and_id().is_some_and(|(_, id)| id == self.id) {
            self.fired.store(true, Ordering::Relaxed);
            return Err(Rejection::new("injected"));
        }
        Ok(Handled::No)
    }
}

/// Run `records` on one partition (the `reject` processor at `at`, if any): the outputs
/// without `skip_line`'s dead letter, and the final store.
fn run_one(
    records: &[SourceRecord],
    reject: Option<(usize, &str, Arc<AtomicBool>)>,
    skip_line: Option<i64>,
) -> (Vec<Emitted>, BTreeMap<Vec<u8>, Vec<u8>>) {
    let make = || {
        let mut ps = standard_processors();
        if let Some((at, id, fired)) = &reject {
            let at = (*at).min(ps.len());
            ps.insert(
                at,
                Box::new(Reject {
                    id: id.to_string(),
                    fired: fired.clone(),
                }),
            );
        }
        ps
    };
    let (out, engines) =
        simulation::run_engines_with(records.to_vec(), 1, &Settings::default(), &make)
            .expect("run");
    let out = out
        .into_iter()
        .filter(|e| !matches!(&e.output, Output::DeadLetter(d) if d.source_line.is_some() && d.source_line == skip_line))
        .collect();
    let store = engines
        .into_iter()
        .next()
        .expect("one engine")
        .into_store()
        .map;
    (out, store)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Atomic records (R-TOPIC bad input, R-TIME-6): a record rejected at any point of the
    /// pipeline, after earlier processors changed state, leaves no trace: the outputs (but for
    /// its dead letter) and the final state equal those of the same stream without it.
    #[test]
    fn a_rejected_record_leaves_no_trace(
        ops in proptest::collection::vec((op(), 1i64..120_000), 2..50),
        victim in any::<proptest::sample::Index>(),
        at in 0usize..9,
    ) {
        let mut input = render(&ops);
        // A last tick, so stream time ends the same whether or not the victim is applied.
        input.push_str(&format!("\n{}", line("cc.ticks", None, 1_900_000_000_000, json!({}))));
        let (records, broken) = simulation::parse_jsonl(input.as_bytes());
        prop_assert!(broken.is_empty());
        let candidates: Vec<&SourceRecord> = records
            .iter()
            .filter(|r| r.decoded.as_ref().is_ok_and(|i| i.tenant_and_id().is_some()))
            .collect();
        prop_assume!(!candidates.is_empty());
        let victim = candidates[victim.index(candidates.len())];
        let id = victim.decoded.as_ref().ok().and_then(|i| i.tenant_and_id()).map(|(_, id)| id.to_string()).unwrap_or_default();
        let fired = Arc::new(AtomicBool::new(false));
        let (rejected, rejected_state) =
            run_one(&records, Some((at, &id, fired.clone())), victim.line);
        let expected = if fired.load(Ordering::Relaxed) {
            let without: Vec<SourceRecord> =
                records.iter().filter(|r| r.line != victim.line).cloned().collect();
            run_one(&without, None, None)
        } else {
            // Consumed (a survey answer) or rejected by a processor before the injected one:
            // applied, or dead-lettered, as usual.
            run_one(&records, None, victim.line)
        };
        prop_assert_eq!(&rejected, &expected.0);
        prop_assert!(rejected_state == expected.1, "the final state differs");
    }
}

/// R-TIME-7: every output record of the example scenario has its own id, so consumers can use
/// ids as a dedup key (timers that fire again get new ids).
#[test]
fn output_ids_are_unique() {
    let input = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.jsonl"
    ))
    .expect("example");
    let out = simulate_text(&input, 4, &Settings::default()).expect("simulate");
    let mut seen = std::collections::BTreeSet::new();
    for o in outputs(&out) {
        let id = o["value"]["id"].as_str().expect("id").to_string();
        assert!(seen.insert(id.clone()), "duplicate output id {id}");
    }
    assert!(seen.len() > 40);
}

/// R-TOPIC bad input: a line that is not UTF-8 becomes a dead letter with its line number,
/// and the lines after it are processed as usual.
#[test]
fn a_line_that_is_not_utf8_is_dead_lettered_and_processing_continues() {
    let good = |id: &str, ts: i64| {
        line(
            "cc.inbound",
            Some("acme".into()),
            ts,
            json!({"id": id, "tenant": "acme", "channel": "sms", "from": "+1", "to": "+100", "content": "hello"}),
        )
    };
    let mut input = good("m1", 1_772_445_600_000).into_bytes();
    input.extend_from_slice(b"\n{\"topic\": \"cc.inbound\", \"ts\": 1, \"value\": \"\xff\xfe\"}\n");
    input.extend_from_slice(good("m2", 1_772_445_600_001).as_bytes());
    let mut out = Vec::new();
    let (records, lines) =
        switchboard::simulate::simulate_into(&input, 1, 1, &Settings::default(), &mut out)
            .expect("simulate");
    assert_eq!(records, 3);
    let text = String::from_utf8(out).expect("output is UTF-8");
    let lines_written = lines;
    let lines = outputs(&text);
    assert_eq!(lines.len(), lines_written);
    let dead: Vec<&Value> = lines.iter().filter(|o| o["topic"] == "cc.dlq").collect();
    assert_eq!(dead.len(), 1, "{text}");
    assert_eq!(dead[0]["value"]["source_line"], 2);
    assert!(dead[0]["value"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("line 2: not valid UTF-8")));
    let received = lines
        .iter()
        .filter(|o| o["value"]["event"].get("MessageReceived").is_some())
        .count();
    assert_eq!(received, 2, "both valid messages are processed");
}
