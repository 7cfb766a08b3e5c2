//! Hostile input never stops a partition (issue 14): each finding of the hostile-input
//! review as a regression test through `simulate`, the engine's limits (docs/operations.md,
//! "Limits"), poison records, and a generated corpus of bad records of many kinds
//! interleaved with the quickstart scenario.
//!
//! SPEC: R-TIME-3 (bad input goes to the dead-letter topic with a reason and processing
//! continues), R-TIME-1 (dedup), R-CONF (config rejected with the field named).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use switchboard::simulate::simulate_text;
use switchboard_processors::simulation;
use switchboard_processors::{standard_processors, Ctx, Handled, Processor, Rejection, Settings};
use switchboard_schemas::limits::{MAX_RECORD_BYTES, MAX_TIMESTAMP_MS};
use switchboard_schemas::{Codec, Input, Output, Topic};

const T0: i64 = 1_772_442_000_000;

fn line(topic: &str, key: Option<&str>, ts: i64, value: Value) -> String {
    json!({"topic": topic, "key": key, "ts": ts, "value": value}).to_string()
}

fn inbound(id: &str, ts: i64, from: &str, content: &str) -> String {
    line(
        "cc.inbound",
        Some("acme"),
        ts,
        json!({"id": id, "tenant": "acme", "channel": "sms", "from": from, "to": "+100", "content": content}),
    )
}

fn command(id: &str, ts: i64, conversation: &str, command: Value) -> String {
    line(
        "cc.commands",
        Some("acme"),
        ts,
        json!({"id": id, "tenant": "acme", "conversation_id": conversation, "by": "ana", "command": command}),
    )
}

fn route_with(condition: Value, version: i64) -> String {
    line(
        "cc.config",
        Some("acme/route/deep"),
        T0,
        json!({"id": format!("cfg-deep-{version}"), "tenant": "acme", "version": version, "change": {"UpsertRoute": {"route": {
            "id": "deep", "order": 1, "condition": condition, "queue_id": "default"}}}}),
    )
}

/// A condition of `depth` levels: `not` around `not` … around one leaf.
fn nested_not(depth: usize) -> Value {
    let mut c = json!({"attribute": "channel", "operator": "is", "value": "sms"});
    for _ in 1..depth {
        c = json!({ "not": c });
    }
    c
}

fn simulate(lines: &[String]) -> Vec<Value> {
    let out = simulate_text(&lines.join("\n"), 4, &Settings::default()).expect("simulate");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("output line is JSON"))
        .collect()
}

fn dead_letters(out: &[Value]) -> Vec<&Value> {
    out.iter().filter(|o| o["topic"] == "cc.dlq").collect()
}

fn reasons(out: &[Value]) -> Vec<String> {
    dead_letters(out)
        .iter()
        .map(|d| d["value"]["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

fn opened(out: &[Value]) -> usize {
    out.iter()
        .filter(|o| {
            o["topic"] == "cc.conversation-events" && o["value"]["event"].get("Opened").is_some()
        })
        .count()
}

/// Finding 1: a route condition nested 5,000 deep is a dead letter (in JSON and in Avro,
/// where the decoder would otherwise recurse once per level and overflow the stack), and the
/// records after it are processed.
#[test]
fn finding_1_a_condition_nested_5000_deep_is_dead_lettered_and_processing_goes_on() {
    // Built and encoded on a thread with room for the recursion of building it.
    let (json_line, avro) = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(|| {
            let condition = nested_not(5_000);
            let record = json!({"id": "cfg-deep", "tenant": "acme", "version": 1, "change": {"UpsertRoute": {"route": {
                "id": "deep", "order": 1, "condition": condition, "queue_id": "default"}}}});
            let codec = Codec::new().expect("codec");
            let avro = codec.schema(Topic::Config).encode(&record).expect("encode");
            let line = line("cc.config", Some("acme/route/deep"), T0, record);
            (line, avro)
        })
        .expect("spawn")
        .join()
        .expect("build the deep record");
    assert!(json_line.len() < 50_000, "{} bytes", json_line.len());
    let out = simulate(&[json_line, inbound("m1", T0 + 1, "+1", "hello")]);
    assert_eq!(dead_letters(&out).len(), 1, "{out:?}");
    assert_eq!(
        opened(&out),
        1,
        "the message after the poison record is processed"
    );

    let codec = Codec::new().expect("codec");
    let err = Input::decode(&codec, Topic::Config, &avro).expect_err("too deep");
    assert!(
        err.to_string().contains("nested deeper than the limit"),
        "{err}"
    );
}

/// Finding 1: a condition deeper than config accepts (but small enough to decode) is
/// `ConfigRejected` naming the field; the deepest accepted one applies and routes.
#[test]
fn finding_1_a_condition_beyond_the_config_limit_is_rejected_naming_the_field() {
    let max = switchboard_processors::condition::MAX_CONDITION_DEPTH;
    let out = simulate(&[
        route_with(nested_not(max + 1), 1),
        route_with(nested_not(max), 2),
    ]);
    let events: Vec<&Value> = out
        .iter()
        .filter(|o| o["topic"] == "cc.config-events")
        .collect();
    assert_eq!(events.len(), 2, "{out:?}");
    let rejected = &events[0]["value"]["event"]["ConfigRejected"];
    assert_eq!(rejected["field"], "route.condition", "{rejected}");
    assert!(rejected["reason"]
        .as_str()
        .unwrap_or("")
        .contains("deeper than the limit"));
    assert!(
        events[1]["value"]["event"].get("ConfigApplied").is_some(),
        "{:?}",
        events[1]
    );
}

/// Finding 2: an undecodable record with a late timestamp does not hold back the valid
/// records behind it on its topic: the command on the conversation they open is applied.
#[test]
fn finding_2_an_undecodable_record_takes_no_part_in_the_merge() {
    let out = simulate(&[
        line(
            "cc.inbound",
            Some("acme"),
            1_000,
            json!(["not", "a", "record"]),
        ),
        inbound("m1", 10, "+1", "hello"),
        command("c1", 20, "#1", json!({"AddNote": {"text": "seen"}})),
    ]);
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 1, "only the undecodable record: {reasons:?}");
    assert!(!reasons[0].contains("unknown conversation"), "{reasons:?}");
    assert!(
        out.iter()
            .any(|o| o["value"]["event"].get("NoteAdded").is_some()),
        "the note is applied: {out:?}"
    );
}

/// Finding 3: records are JSON objects: an array in place of a record, of a command's body or
/// of a tick is a dead letter, never applied.
#[test]
fn finding_3_json_arrays_do_not_pass_as_records() {
    let out = simulate(&[
        inbound("m1", T0, "+1", "hello"),
        line(
            "cc.inbound",
            Some("acme"),
            T0 + 1,
            json!(["m2", "acme", "sms", "+2", "+100", "hi", null, null]),
        ),
        command("c1", T0 + 2, "#1", json!({"AddNote": ["x"]})),
        command("c2", T0 + 3, "#1", json!({"Unassign": []})),
        line("cc.ticks", None, T0 + 4, json!([])),
    ]);
    assert_eq!(opened(&out), 1, "{out:?}");
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for r in &reasons {
        assert!(
            r.contains("expected an object") || r.contains("invalid type"),
            "{r}"
        );
    }
}

/// Finding 4: timestamps outside 1970..2200 are dead letters: nothing comes out with a
/// negative timestamp, and a resend of the same id a millisecond later is not processed
/// twice.
#[test]
fn finding_4_timestamps_near_i64_max_are_dead_letters() {
    let out = simulate(&[
        inbound("m1", i64::MAX - 1, "+1", "hello"),
        inbound("m1", i64::MAX, "+1", "hello"),
        inbound("m2", MAX_TIMESTAMP_MS, "+2", "hello"),
        inbound("m3", MAX_TIMESTAMP_MS - 1, "+3", "hello"),
        inbound("m3", MAX_TIMESTAMP_MS - 1, "+3", "hello"),
    ]);
    assert!(
        out.iter().all(|o| o["ts"].as_i64().is_some_and(|t| t >= 0)),
        "{out:?}"
    );
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("outside the accepted range")),
        "{reasons:?}"
    );
    assert_eq!(opened(&out), 1, "m3 once, its resend dropped");
}

/// Finding 5: one record cannot make unbounded work: a message beyond the record size limit
/// is a dead letter (and costs no more than reading it).
#[test]
fn finding_5_an_oversized_message_is_a_dead_letter() {
    let big = "x".repeat(MAX_RECORD_BYTES + 1);
    let out = simulate(&[
        inbound("m1", T0, "+1", &big),
        inbound("m2", T0 + 1, "+2", "hello"),
    ]);
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("exceeds the limit"), "{reasons:?}");
    assert_eq!(opened(&out), 1);
}

/// Finding 8: a broken tick without a partition is one dead letter (not one per
/// partition); a tick for a partition that does not exist is a dead letter, not wrapped onto
/// one that does; a config key naming another entity than its change is a dead letter.
#[test]
fn finding_8_ticks_partitions_and_config_keys() {
    let out = simulate(&[
        line("cc.ticks", None, T0, json!({"bogus": 1})),
        json!({"topic": "cc.ticks", "ts": T0, "partition": 4_000_000_001u64, "value": {"source": "ticker"}}).to_string(),
        line(
            "cc.config",
            Some("acme/queue/sales"),
            T0,
            json!({"id": "cfg-1", "tenant": "acme", "version": 1, "change": {"UpsertRoute": {"route": {
                "id": "vip", "order": 1, "condition": {"attribute": "channel", "operator": "is", "value": "sms"}, "queue_id": "default"}}}}),
        ),
    ]);
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("unknown field") || reasons[1].contains("unknown field"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("partition 4000000001 does not exist")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("names entity \"queue/sales\"")),
        "{reasons:?}"
    );
    let ids: BTreeSet<&str> = dead_letters(&out)
        .iter()
        .filter_map(|d| d["value"]["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "dead-letter ids are unique");
}

/// A processor that panics on one record's content: a bug that hostile input could hit.
struct PanicOn(&'static str);

impl Processor for PanicOn {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        if let Input::Inbound(m) = input {
            // Change state first, so the test sees that the change is undone.
            let _ = cx.state.next_short_id(cx.tenant);
            if m.content == self.0 {
                panic!("boom on {:?}", m.id);
            }
        }
        Ok(Handled::No)
    }
}

/// A panic while processing one record is caught: the record is dead-lettered with the
/// panic's message, the state is as before it, and the partition goes on; the outputs are
/// those of the run without the record.
#[test]
fn a_panic_in_a_processor_dead_letters_the_record_and_processing_goes_on() {
    let lines = [
        inbound("m1", T0, "+1", "hello"),
        inbound("m2", T0 + 1, "+2", "poison"),
        inbound("m3", T0 + 2, "+3", "hello again"),
        command(
            "c1",
            T0 + 3,
            "#2",
            json!({"AddNote": {"text": "second conversation"}}),
        ),
    ];
    let run = |lines: &[String]| {
        let (records, broken) = simulation::parse_jsonl(lines.join("\n").as_bytes());
        assert!(broken.is_empty());
        let processors = || {
            let mut p = vec![Box::new(PanicOn("poison")) as Box<dyn Processor>];
            p.extend(standard_processors());
            p
        };
        let (out, _) = simulation::run_engines_with(records, 4, &Settings::default(), &processors)
            .expect("run");
        out
    };
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let with_poison = run(&lines);
    std::panic::set_hook(quiet);
    let without: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("poison"))
        .cloned()
        .collect();
    let clean = run(&without);
    let (dead, rest): (Vec<_>, Vec<_>) = with_poison
        .into_iter()
        .partition(|e| matches!(e.output, Output::DeadLetter(_)));
    assert_eq!(dead.len(), 1);
    let Output::DeadLetter(d) = &dead[0].output else {
        unreachable!()
    };
    assert!(d.reason.contains("boom on \"m2\""), "{}", d.reason);
    // Conversation #2 is m3's: the panicking record's short id was given back.
    assert_eq!(rest, clean);
}

// ---- the corpus: bad records of many kinds among the quickstart scenario ----

/// One bad line of kind `kind` (`n` makes ids unique), with timestamp `ts`.
fn bad_line(kind: usize, n: usize, ts: i64) -> String {
    let id = format!("bad-{n}");
    let msg = |extra: (&str, Value)| {
        let mut v = json!({"id": id, "tenant": "acme", "channel": "sms", "from": "+1", "to": "+2", "content": "x"});
        if extra.0 == "-" {
            v.as_object_mut().map(|o| o.remove("from"));
        } else if !extra.0.is_empty() {
            v[extra.0] = extra.1;
        }
        v
    };
    let cmd = |conversation: &str, body: Value| json!({"id": id, "tenant": "acme", "conversation_id": conversation, "by": "ana", "command": body});
    let cfg = |key: &str, change: Value| {
        line(
            "cc.config",
            Some(key),
            ts,
            json!({"id": id, "tenant": "acme", "version": 1_000_000 + n as i64, "change": change}),
        )
    };
    let long = |n: usize| "y".repeat(n);
    match kind {
        0 => "{{{ not json".to_string(),
        1 => "[1, 2, 3]".to_string(),
        2 => "\"just a string\"".to_string(),
        3 => json!({"key": "acme", "ts": ts, "value": msg(("", json!(null)))}).to_string(),
        4 => json!({"topic": "cc.nope", "key": "acme", "ts": ts, "value": {}}).to_string(),
        5 => json!({"topic": "cc.assignments", "key": "acme", "ts": ts, "value": {}}).to_string(),
        6 => json!({"topic": "cc.inbound", "key": "acme", "value": msg(("", json!(null)))}).to_string(),
        7 => json!({"topic": "cc.inbound", "key": "acme", "ts": -5, "value": msg(("", json!(null)))}).to_string(),
        8 => json!({"topic": "cc.inbound", "key": "acme", "ts": "soon", "value": msg(("", json!(null)))}).to_string(),
        9 => json!({"topic": "cc.inbound", "key": "acme", "ts": 9_000_000_000_000_000_000i64, "value": msg(("", json!(null)))}).to_string(),
        10 => json!({"topic": "cc.inbound", "key": "acme", "ts": 1.5, "value": msg(("", json!(null)))}).to_string(),
        11 => json!({"topic": "cc.inbound", "key": "acme", "ts": ts, "colour": "red", "value": msg(("", json!(null)))}).to_string(),
        12 => json!({"topic": "cc.inbound", "key": 42, "ts": ts, "value": msg(("", json!(null)))}).to_string(),
        13 => json!({"topic": "cc.inbound", "key": "acme", "ts": ts, "partition": -1, "value": msg(("", json!(null)))}).to_string(),
        14 => json!({"topic": "cc.inbound", "key": "acme", "ts": ts, "partition": "two", "value": msg(("", json!(null)))}).to_string(),
        15 => json!({"topic": "cc.inbound", "key": "acme", "ts": ts}).to_string(),
        17 => line("cc.inbound", Some("acme"), ts, json!([id, "acme", "sms", "+1", "+2", "x"])),
        18 => line("cc.ticks", None, ts, json!([])),
        19 => line("cc.inbound", Some("acme"), ts, json!(null)),
        20 => line("cc.inbound", Some("acme"), ts, json!("a message")),
        21 => line("cc.inbound", Some("acme"), ts, msg(("-", json!(null)))),
        22 => line("cc.inbound", Some("acme"), ts, msg(("mood", json!("happy")))),
        23 => line("cc.inbound", Some("acme"), ts, msg(("channel", json!(7)))),
        24 => line("cc.inbound", Some("acme"), ts, msg(("channel", json!("pigeon")))),
        25 => line("cc.commands", Some("acme"), ts, cmd("#1", json!({"AddNote": ["x"]}))),
        26 => line("cc.commands", Some("acme"), ts, cmd("#1", json!({"Unassign": []}))),
        27 => line("cc.commands", Some("acme"), ts, cmd("#1", json!({"Teleport": {}}))),
        28 => line("cc.commands", Some("acme"), ts, cmd("#1", json!({"AddNote": {"text": "a"}, "Unassign": {}}))),
        29 => route_line(ts, &id, nested_not(70)),
        // Written as text: a `Value` this deep would overflow the test's stack when dropped.
        30 => route_line(ts, &id, json!("LEAF")).replace(
            "\"LEAF\"",
            &format!(
                "{}{{\"attribute\": \"channel\", \"operator\": \"is\", \"value\": \"sms\"}}{}",
                "{\"not\": ".repeat(5_000),
                "}".repeat(5_000)
            ),
        ),
        31 => line("cc.inbound", Some("acme"), ts, msg(("id", json!(long(300))))),
        32 => line("cc.inbound", Some("acme"), ts, msg(("content", json!(long(300 * 1024))))),
        33 => line("cc.commands", Some("acme"), ts, cmd("#1", json!({"AddTags": {"tags": vec!["t"; 1_001]}}))),
        34 => line("cc.inbound", Some("globex"), ts, msg(("", json!(null)))),
        35 => line("cc.inbound", None, ts, msg(("", json!(null)))),
        36 => cfg("acme/queue/sales", json!({"DeleteRoute": {"route_id": "vip"}})),
        37 => line("cc.inbound", Some("ac/me"), ts, msg(("tenant", json!("ac/me")))),
        38 => line("cc.inbound", Some(""), ts, msg(("tenant", json!("")))),
        39 => json!({"topic": "cc.ticks", "ts": ts, "partition": 7, "value": {"source": "ticker"}}).to_string(),
        40 => line("cc.ticks", None, ts, json!({"bogus": true})),
        41 => line("cc.commands", Some("acme"), ts, cmd("#999", json!({"AddNote": {"text": "nobody"}}))),
        42 => line(
            "cc.agent-events",
            Some("acme"),
            ts,
            json!({"id": id, "tenant": "acme", "agent_id": "zed", "event": {"AgentStatusChanged": {"status": "Dancing"}}}),
        ),
        43 => line(
            "cc.agent-events",
            Some("acme"),
            ts,
            json!({"id": id, "tenant": "acme", "agent_id": "zed", "event": {"AgentUpdated": {"capacity": {"email": 5000}}}}),
        ),
        44 => line("cc.inbound", Some("acme"), ts, msg(("", json!(null)))).replacen("\"value\"", "\"value\":{},\"value2\"", 1),
        _ => format!("{{\"topic\": \"cc.inbound\", \"ts\": {ts}, \"value\": {}}}", "[".repeat(200)),
    }
}

const KINDS: usize = 46;

fn route_line(ts: i64, id: &str, condition: Value) -> String {
    line(
        "cc.config",
        Some("acme/route/deep"),
        ts,
        json!({"id": id, "tenant": "acme", "version": 1, "change": {"UpsertRoute": {"route": {
            "id": "deep", "order": 1, "condition": condition, "queue_id": "default"}}}}),
    )
}

/// The hostile-input corpus: 2,300 bad records of 46 kinds interleaved with the quickstart
/// scenario. Every bad record yields exactly one dead letter with a reason, and the
/// scenario's outputs are exactly those of its valid lines alone.
#[test]
fn hostile_corpus_every_bad_record_is_one_dead_letter_and_the_valid_outputs_are_unchanged() {
    let quickstart = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.jsonl"),
    )
    .expect("read quickstart");
    let valid: Vec<&str> = quickstart
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // The scenario's own deliberately broken line is left out: only ours are counted.
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .collect();
    let per_line = 2_300 / valid.len() + 1;
    // Bytes, since one kind is not UTF-8.
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut bad_lines = BTreeSet::new();
    let mut kinds_used = BTreeSet::new();
    let mut n = 0;
    for v in &valid {
        corpus.push(v.as_bytes().to_vec());
        // Bad records carry the timestamp of the valid line before them, so even those
        // that reach the processors (and are rejected there) cannot move stream time.
        let ts = serde_json::from_str::<Value>(v).expect("json")["ts"]
            .as_i64()
            .expect("ts");
        for _ in 0..per_line {
            let kind = n % KINDS;
            let bytes = match kind {
                16 => b"{\"topic\": \"cc.inbound\", \"ts\": 1, \"value\": \"\xff\xfe\"}".to_vec(),
                _ => bad_line(kind, n, ts).into_bytes(),
            };
            corpus.push(bytes);
            bad_lines.insert(corpus.len() as i64);
            kinds_used.insert(kind);
            n += 1;
        }
    }
    assert!(
        n >= 2_000 && kinds_used.len() >= 40,
        "{n} bad records of {} kinds",
        kinds_used.len()
    );

    let run = |input: &[u8]| {
        let (records, broken) = simulation::parse_jsonl(input);
        let mut out = broken;
        out.extend(simulation::run(records, 4, &Settings::default()).expect("run"));
        out
    };
    let all = run(&corpus.join(&b"\n"[..]));
    let clean = run(valid.join("\n").as_bytes());

    let mut dead_by_line = std::collections::BTreeMap::new();
    let mut rest = Vec::new();
    for e in all {
        match &e.output {
            Output::DeadLetter(d) => {
                assert!(!d.reason.is_empty());
                *dead_by_line.entry(d.source_line.unwrap_or(-1)).or_insert(0) += 1;
            }
            _ => rest.push(e),
        }
    }
    let missing: Vec<_> = bad_lines
        .iter()
        .filter(|l| !dead_by_line.contains_key(l))
        .collect();
    assert!(
        missing.is_empty(),
        "bad lines without a dead letter: {missing:?}"
    );
    let twice: Vec<_> = dead_by_line.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "lines with more than one dead letter: {twice:?}"
    );
    // The scenario rejects two of its own records on purpose; those are its dead letters.
    let (clean_dead, clean_rest): (Vec<_>, Vec<_>) = clean
        .into_iter()
        .partition(|e| matches!(e.output, Output::DeadLetter(_)));
    assert_eq!(
        dead_by_line.len(),
        bad_lines.len() + clean_dead.len(),
        "dead letters only for bad lines and the scenario's own"
    );
    assert_eq!(rest.len(), clean_rest.len());
    assert!(rest == clean_rest, "the valid scenario's outputs changed");
}

/// Issue 13: a record given a partition that is not its tenant's is a dead letter naming the
/// right one, never applied (as on Kafka, where a producer's partitioner may disagree).
#[test]
fn a_record_on_the_wrong_partition_is_a_dead_letter_naming_the_right_one() {
    let right = switchboard_processors::partition::partition_of("acme", 4);
    let wrong = (right + 1) % 4;
    let mut misplaced: Value =
        serde_json::from_str(&inbound("m1", T0, "+1", "hello")).expect("json");
    misplaced["partition"] = json!(wrong);
    let out = simulate(&[misplaced.to_string(), inbound("m2", T0 + 1, "+2", "hello")]);
    let reasons = reasons(&out);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains(&format!(
            "on partition {wrong}: it belongs on partition {right}"
        )),
        "{reasons:?}"
    );
    assert_eq!(opened(&out), 1, "only m2 opens a conversation");
}
