//! SLA timer throughput: due-time computations and fired SLA timers per second.
//!
//! `cargo bench -p switchboard-processors --bench sla`
//!
//! Prints, from one run on one machine, each with its baseline from the same run:
//! - due-time computations in business time (a working-hours calendar with a holiday, budgets
//!   of 1 minute to 3 days, starts spread over a year) against the cheapest question asked of
//!   the same calendar: "is it open at this instant?" (one time-zone conversion);
//! - conversations whose SLA timers fire (a breach each) against the same conversations
//!   without an SLA policy (threading and routing only).

use std::time::Instant;
use switchboard_processors::calendar::{BusinessTime, Calendar};
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::*;

const TENANT: &str = "bench";
const MIN: i64 = 60_000;

fn office() -> WorkingHours {
    let day = vec![Interval {
        start: "09:00".into(),
        end: "17:00".into(),
    }];
    WorkingHours {
        id: "office".into(),
        name: String::new(),
        time_zone: "Europe/Zagreb".into(),
        is_default: false,
        week: Week {
            monday: day.clone(),
            tuesday: day.clone(),
            wednesday: day.clone(),
            thursday: day.clone(),
            friday: day,
            ..Week::default()
        },
        holidays: vec![Holiday {
            name: "x".into(),
            start: "2026-12-24".into(),
            end: "2026-12-26".into(),
        }],
        away_message: None,
        close_after_away: false,
    }
}

fn per_second(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

/// Run `n` conversations through an engine, with or without an SLA policy, then one tick that
/// fires every due timer. Returns conversations per second and the breaches seen.
fn conversations(n: usize, with_policy: bool) -> (f64, usize) {
    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let t0 = 1_772_445_600_000;
    if with_policy {
        let policy = SlaPolicy {
            id: "p".into(),
            name: String::new(),
            order: 1,
            enabled: true,
            valid_from: None,
            valid_to: None,
            condition: None,
            queue_filter: QueueFilter::All,
            queue_ids: vec![],
            exclude_automated: false,
            default_severity: "normal".into(),
            severities: vec![Severity {
                name: "normal".into(),
                first_response_minutes: Some(5),
                next_reply_minutes: None,
                resolution_minutes: Some(60),
                counting: Counting::Always,
            }],
        };
        let change = ConfigChangeKind::UpsertSlaPolicy(UpsertSlaPolicy { policy });
        engine.process(
            t0,
            &Input::Config(ConfigChange {
                id: "p".into(),
                tenant: TENANT.into(),
                version: 1,
                change,
            }),
        );
    }
    let started = Instant::now();
    let mut breaches = 0;
    let mut count = |outputs: Vec<(i64, Output)>| {
        breaches += outputs
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o,
                    Output::Sla(SlaEvent {
                        event: SlaEventKind::SlaBreached(_),
                        ..
                    })
                )
            })
            .count()
    };
    for i in 0..n {
        let m = InboundMessage::text(
            &format!("m{i}"),
            TENANT,
            Channel::Sms,
            &format!("+{i}"),
            "+1",
            "help",
        );
        count(engine.process(t0 + i as i64, &Input::Inbound(m)).outputs);
    }
    count(
        engine
            .process(t0 + 120 * MIN, &Input::Tick(Tick::default()))
            .outputs,
    );
    (per_second(n, started), breaches)
}

fn main() {
    // Due-time computations.
    let parsed = Calendar::parse(&office()).expect("valid");
    let calendar = BusinessTime::Hours(&parsed);
    let starts: Vec<(i64, i64)> = (0..200_000i64)
        .map(|i| {
            (
                1_767_225_600_000 + (i * 7_919 * MIN) % (365 * 24 * 60 * MIN),
                (1 + (i * 37) % (3 * 24 * 60)) * MIN,
            )
        })
        .collect();
    let run = |clock: &BusinessTime| {
        let started = Instant::now();
        let mut sum = 0i64;
        for (from, budget) in &starts {
            sum = sum.wrapping_add(clock.add(*from, *budget).unwrap_or(0));
        }
        (per_second(starts.len(), started), sum)
    };
    let started = Instant::now();
    let open = starts
        .iter()
        .filter(|(from, _)| parsed.is_open(*from))
        .count();
    let lookups = per_second(starts.len(), started);
    assert!(open > 0);
    let (business, checksum) = run(&calendar);
    assert_ne!(checksum, 0);

    // Fired timers, end to end.
    let n = 20_000;
    let (baseline, none) = conversations(n, false);
    let (with_sla, breaches) = conversations(n, true);
    assert_eq!(none, 0);
    assert_eq!(
        breaches,
        2 * n,
        "every conversation breaches first response and resolution"
    );

    println!("calendar   is_open lookups              : {lookups:>12.0} /s   (1.00x)");
    println!(
        "due times  working hours + holiday      : {business:>12.0} /s   ({:.3}x)",
        business / lookups
    );
    println!("engine     conversations, no SLA policy : {baseline:>12.0} /s   (1.00x)");
    println!("engine     conversations with 2 SLA timers fired (2 breaches each): {with_sla:>8.0} /s   ({:.2}x), {:.0} timers fired/s", with_sla / baseline, with_sla * 2.0);
}
