//! The engine's worst case per record within the input limits (docs/operations.md, "Limits";
//! docs/benchmarks.md, "Worst case per record"), each beside a typical record of the same
//! run:
//! - `typical`: a customer message and the agent's reply a minute later, with a
//!   working-hours SLA policy (µs per record);
//! - `sla-span`: the same conversation shape, opened at the earliest accepted time (1970) and
//!   answered at the latest (2199): the business-time walk spans 230 years; first with the
//!   calendar's per-year cache cold, then warm;
//! - `largest-text`: a message with the longest accepted text (256 KiB), sentiment on;
//! - `largest-config`: routing a message through routes that fill the tenant's config limit
//!   (768 KiB of conditions), and applying one more config change to that config.
//!
//! Run: `cargo bench -p switchboard-processors --bench worst_case`.

use serde_json::{json, Value};
use std::time::Instant;
use switchboard_processors::store::MemStore;
use switchboard_processors::{Engine, Settings};
use switchboard_schemas::limits::{MAX_TEXT_BYTES, MAX_TIMESTAMP_MS};
use switchboard_schemas::{Input, Topic};

const DAY: i64 = 86_400_000;

fn input(topic: Topic, value: Value) -> Input {
    match Input::from_json(topic, value) {
        Ok(i) => i,
        Err(e) => panic!("bench record: {e}"),
    }
}

fn config(id: &str, version: i64, change: Value) -> Input {
    input(
        Topic::Config,
        json!({"id": id, "tenant": "acme", "version": version, "change": change}),
    )
}

fn message(id: &str, from: &str, content: &str) -> Input {
    input(
        Topic::Inbound,
        json!({"id": id, "tenant": "acme", "channel": "sms", "from": from, "to": "+100", "content": content}),
    )
}

fn reply(id: &str, conversation: &str) -> Input {
    input(
        Topic::Commands,
        json!({"id": id, "tenant": "acme", "conversation_id": conversation, "by": "ana", "command": {"Reply": {"content": "done"}}}),
    )
}

/// An engine for tenant `acme` with office hours, a queue in them that every SMS is routed
/// to, an SLA policy counted in working hours, and sentiment on.
fn engine() -> Engine<MemStore> {
    let mut e = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let day = json!([{"start": "08:00", "end": "16:00"}]);
    let changes = [
        json!({"UpsertWorkingHours": {"period": {"id": "office", "name": "Office", "time_zone": "Europe/Zagreb", "is_default": true,
            "week": {"monday": day, "tuesday": day, "wednesday": day, "thursday": day, "friday": day},
            "holidays": [{"name": "New Year", "start": "2026-01-01", "end": "2026-01-01"}]}}}),
        json!({"UpsertSlaPolicy": {"policy": {"id": "standard", "name": "Standard", "order": 1, "default_severity": "normal",
            "severities": [{"name": "normal", "first_response_minutes": 15, "next_reply_minutes": 30, "resolution_minutes": 480, "counting": "working_hours"}]}}}),
        json!({"SetSentiment": {"enabled": true}}),
        json!({"UpsertQueue": {"queue": {"id": "support", "name": "Support"}}}),
        json!({"UpsertRoute": {"route": {"id": "sms", "order": 1000, "queue_id": "support",
            "condition": {"attribute": "channel", "operator": "is", "value": "sms"}}}}),
    ];
    for (i, c) in changes.into_iter().enumerate() {
        let step = e.process(0, &config(&format!("cfg-{i}"), 1, c));
        assert!(step.rejected.is_none(), "{:?}", step.rejected);
    }
    e
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn main() {
    // Typical: message + reply a minute later, many conversations.
    let mut e = engine();
    let n = 2_000;
    let t0 = 1_772_442_000_000;
    let started = Instant::now();
    for i in 0..n {
        let ts = t0 + i as i64 * 120_000;
        e.process(
            ts,
            &message(&format!("m{i}"), &format!("+{i}"), "where is my refund?"),
        );
        e.process(
            ts + 60_000,
            &reply(&format!("r{i}"), &format!("#{}", i + 1)),
        );
    }
    let typical = micros(started) / (2 * n) as f64;
    println!("typical record (message or reply, working-hours SLA): {typical:.1} µs");

    // SLA over the widest accepted span.
    let mut e = engine();
    e.process(0, &message("old-1", "+1", "hello"));
    e.process(1, &message("old-2", "+2", "hello"));
    let late = MAX_TIMESTAMP_MS - DAY;
    let t = Instant::now();
    let step = e.process(late, &reply("late-1", "#1"));
    let cold = micros(t);
    assert!(step.rejected.is_none(), "{:?}", step.rejected);
    let t = Instant::now();
    e.process(late + 1, &reply("late-2", "#2"));
    let warm = micros(t);
    println!(
        "sla-span (opened 1970, answered 2199): cold {:.0} µs ({:.0}× typical), warm {:.0} µs ({:.0}×)",
        cold,
        cold / typical,
        warm,
        warm / typical
    );

    // The longest accepted text, scored for sentiment.
    let mut e = engine();
    let text = "my order never arrived and nobody answers the phone. ".repeat(MAX_TEXT_BYTES / 53);
    let t = Instant::now();
    e.process(t0, &message("big", "+1", &text));
    let big = micros(t);
    println!(
        "largest-text ({} bytes, sentiment on): {:.0} µs ({:.0}× typical)",
        text.len(),
        big,
        big / typical
    );

    // Routes filling the config limit: 50-leaf `any` conditions that never match.
    let mut e = engine();
    let mut routes = 0;
    loop {
        let leaves: Vec<Value> = (0..50)
            .map(|j| json!({"attribute": "content", "operator": "contains", "value": format!("never-{routes}-{j}")}))
            .collect();
        let change = json!({"UpsertRoute": {"route": {"id": format!("r{routes}"), "order": routes, "condition": {"any": leaves}, "queue_id": "default"}}});
        let step = e.process(0, &config(&format!("route-{routes}"), 1, change));
        let applied = step.outputs.iter().any(|(_, o)| {
            matches!(o, switchboard_schemas::Output::Config(c)
                if matches!(c.event, switchboard_schemas::ConfigEventKind::ConfigApplied(_)))
        });
        if !applied {
            break;
        }
        routes += 1;
    }
    let t = Instant::now();
    let k = 20;
    for i in 0..k {
        e.process(
            t0,
            &message(&format!("rm{i}"), &format!("+{i}"), "hello there"),
        );
    }
    let route = micros(t) / k as f64;
    let change = json!({"SetSentiment": {"enabled": false}});
    let t = Instant::now();
    e.process(t0, &config("last", 2, change));
    let apply = micros(t);
    println!(
        "largest-config ({routes} routes of 50 leaves): routing a message {:.0} µs ({:.0}× typical); applying a change {:.0} µs ({:.0}×)",
        route,
        route / typical,
        apply,
        apply / typical
    );
}
