//! SLA breach detection in business time (SPEC §7, R-SLA).

mod common;
use common::*;
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::*;

const MIN: i64 = 60_000;

fn with_office(s: &mut Scenario, t: i64, holidays: Vec<Holiday>) {
    let mut p = office("office", "Europe/Zagreb");
    p.holidays = holidays;
    s.upsert_period(t, p);
    let mut q = queue("support");
    q.working_hours_id = Some("office".into());
    s.upsert_queue(t, q)
        .route_prefix(t, "help", "support", Priority::Normal);
}

/// R-SLA-2, R-SLA-6, R-SLA-7: a first-response breach in a working-hours severity falls over
/// a weekend and a holiday: only working time counts. The same policy counting `always` is
/// due two hours after the message.
#[test]
fn r_sla_7_first_response_breach_over_a_weekend_and_a_holiday() {
    for counting in [Counting::WorkingHours, Counting::Always] {
        let t = utc("2026-01-01T00:00");
        let mut s = Scenario::new();
        // Monday 12 January 2026 is a holiday; Zagreb is UTC+1 in winter; office 09–17.
        with_office(
            &mut s,
            t,
            vec![Holiday {
                name: "x".into(),
                start: "2026-01-12".into(),
                end: "2026-01-12".into(),
            }],
        );
        s.upsert_policy(t, 1, sla_policy("p", 1, Some(120), None, None, counting));
        // Friday 9 January 16:30 local = 15:30 UTC: 30 minutes left that day.
        let opened = utc("2026-01-09T15:30");
        s.sms(opened, "m1", "+1", "help me")
            .tick(utc("2026-01-14T12:00"));
        let out = s.run();
        let due = match counting {
            // 30 min Friday, then Tuesday 13th from 09:00 local: 90 min → 10:30 local = 09:30 UTC.
            Counting::WorkingHours => utc("2026-01-13T09:30"),
            Counting::Always => opened + 120 * MIN,
        };
        let applied: Vec<Option<i64>> = out
            .sla_events()
            .into_iter()
            .filter_map(|e| {
                if let SlaEventKind::SlaApplied(a) = e {
                    Some(a.first_response_due)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(applied, vec![Some(due)], "{counting:?}");
        assert_eq!(
            out.breaches(),
            vec![(SlaMetric::FirstResponse, due, due)],
            "{counting:?}"
        );
    }
}

/// R-SLA-3: next reply runs from each customer message that follows an agent response to the
/// next response; later customer messages do not restart it.
#[test]
fn r_sla_3_next_reply_per_customer_message_after_a_reply() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.upsert_policy(
        t - MIN,
        1,
        sla_policy("p", 1, Some(15), Some(30), None, Counting::Always),
    );
    s.sms(t, "m1", "+1", "hi")
        .reply(t + 10 * MIN, "r1", "#1", false);
    s.sms(t + 20 * MIN, "m2", "+1", "and?")
        .sms(t + 25 * MIN, "m3", "+1", "hello??");
    s.reply(t + 45 * MIN, "r2", "#1", false);
    s.sms(t + 60 * MIN, "m4", "+1", "one more thing")
        .tick(t + 200 * MIN);
    let out = s.run();
    assert_eq!(
        out.met(),
        vec![
            (SlaMetric::FirstResponse, 10 * MIN),
            (SlaMetric::NextReply, 25 * MIN)
        ]
    );
    assert_eq!(
        out.breaches(),
        vec![(SlaMetric::NextReply, t + 90 * MIN, t + 90 * MIN)]
    );
}

/// R-SLA-5: while Solved, the clocks are paused; a reopen resumes them; closing stops them.
#[test]
fn r_sla_5_resolution_paused_while_solved_and_resumed_on_reopen() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.upsert_policy(
        t - MIN,
        1,
        sla_policy("p", 1, None, None, Some(60), Counting::Always),
    );
    s.sms(t, "m1", "+1", "hi");
    s.command(
        t + 20 * MIN,
        "x1",
        "#1",
        CommandKind::SetStatus(SetStatus {
            status: Status::Solved,
        }),
    );
    // Solved for 100 minutes: nothing breaches meanwhile.
    s.tick(t + 100 * MIN);
    s.sms(t + 120 * MIN, "m2", "+1", "it broke again")
        .tick(t + 300 * MIN);
    let out = s.run();
    assert_eq!(out.met(), vec![(SlaMetric::Resolution, 20 * MIN)]);
    // 20 minutes before solving + 40 after the reopen.
    assert_eq!(
        out.breaches(),
        vec![(SlaMetric::Resolution, t + 160 * MIN, t + 160 * MIN)]
    );

    let mut closed = Scenario::new();
    closed.upsert_policy(
        t - MIN,
        1,
        sla_policy("p", 1, Some(5), None, Some(60), Counting::Always),
    );
    closed
        .sms(t, "m1", "+1", "hi")
        .command(
            t + MIN,
            "x1",
            "#1",
            CommandKind::SetStatus(SetStatus {
                status: Status::Closed,
            }),
        )
        .tick(t + 300 * MIN);
    assert!(
        closed.run().breaches().is_empty(),
        "closing stops SLA tracking"
    );
}

fn two_queue_policies(s: &mut Scenario, t: i64) {
    s.upsert_queue(t, queue("sales"))
        .upsert_queue(t, queue("support"))
        .route_prefix(t, "buy", "sales", Priority::Normal);
    let mut slow = sla_policy("slow", 1, Some(60), None, None, Counting::Always);
    slow.queue_filter = QueueFilter::Apply;
    slow.queue_ids = vec!["sales".into()];
    let mut fast = sla_policy("fast", 2, Some(10), None, None, Counting::Always);
    fast.queue_filter = QueueFilter::Ignore;
    fast.queue_ids = vec!["sales".into()];
    s.upsert_policy(t, 1, slow).upsert_policy(t, 1, fast);
}

/// R-SLA-1: a queue transfer selects the policy of the new queue and recalculates the due
/// times with it.
#[test]
fn r_sla_1_queue_transfer_switches_policy_and_recalculates() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    two_queue_policies(&mut s, t - MIN);
    s.sms(t, "m1", "+1", "buy");
    s.command(
        t + 5 * MIN,
        "c1",
        "#1",
        CommandKind::ChangeQueue(ChangeQueue {
            queue_id: "support".into(),
        }),
    );
    s.tick(t + 100 * MIN);
    let out = s.run();
    let announced: Vec<(String, Option<i64>)> = out
        .sla_events()
        .into_iter()
        .filter_map(|e| match e {
            SlaEventKind::SlaApplied(a) => Some((a.policy_id.clone(), a.first_response_due)),
            SlaEventKind::SlaRecalculated(r) => Some((
                r.policy_id.clone().unwrap_or_default(),
                r.first_response_due,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        announced,
        vec![
            ("slow".to_string(), Some(t + 60 * MIN)),
            ("fast".to_string(), Some(t + 10 * MIN))
        ]
    );
    assert_eq!(
        out.breaches(),
        vec![(SlaMetric::FirstResponse, t + 10 * MIN, t + 10 * MIN)]
    );
}

/// R-SLA-1: reordering policies re-selects the policy of open conversations.
#[test]
fn r_sla_1_reordering_policies_reselects() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.upsert_policy(
        t - MIN,
        1,
        sla_policy("relaxed", 1, Some(60), None, None, Counting::Always),
    );
    s.upsert_policy(
        t - MIN,
        1,
        sla_policy("strict", 2, Some(5), None, None, Counting::Always),
    );
    s.sms(t, "m1", "+1", "hi");
    s.config(
        t + 2 * MIN,
        1,
        ConfigChangeKind::ReorderSlaPolicies(ReorderSlaPolicies {
            policy_ids: vec!["strict".into(), "relaxed".into()],
        }),
    );
    s.config(
        t + 2 * MIN,
        2,
        ConfigChangeKind::ReorderSlaPolicies(ReorderSlaPolicies {
            policy_ids: vec!["strict".into()],
        }),
    );
    s.tick(t + 100 * MIN);
    let out = s.run();
    assert_eq!(
        out.breaches(),
        vec![(SlaMetric::FirstResponse, t + 5 * MIN, t + 5 * MIN)]
    );
    assert_eq!(out.rejected_fields(), vec!["policy_ids"]);
}

/// R-SLA-4: excluding automated messages, a bot's replies do not count and the clocks start at
/// the hand-over to an agent queue; without the flag the bot's reply is the first response.
#[test]
fn r_sla_4_exclude_automated_with_a_bot_hand_over() {
    for exclude in [true, false] {
        let t = utc("2026-03-02T10:00");
        let mut s = Scenario::new();
        let mut bot = queue("bot");
        bot.bot = true;
        s.upsert_queue(t - MIN, bot)
            .upsert_queue(t - MIN, queue("agents"))
            .route_prefix(t - MIN, "hi", "bot", Priority::Normal);
        let mut p = sla_policy("p", 1, Some(10), None, None, Counting::Always);
        p.exclude_automated = exclude;
        s.upsert_policy(t - MIN, 1, p);
        s.sms(t, "m1", "+1", "hi").reply(t + MIN, "b1", "#1", true);
        s.command(
            t + 30 * MIN,
            "h1",
            "#1",
            CommandKind::ChangeQueue(ChangeQueue {
                queue_id: "agents".into(),
            }),
        );
        s.reply(t + 35 * MIN, "r1", "#1", false).tick(t + 100 * MIN);
        let out = s.run();
        if exclude {
            assert_eq!(out.met(), vec![(SlaMetric::FirstResponse, 5 * MIN)]);
        } else {
            assert_eq!(out.met(), vec![(SlaMetric::FirstResponse, MIN)]);
        }
        assert!(out.breaches().is_empty());
    }
}

/// R-SLA-7: a breach due exactly at a daylight-saving change, in both directions: business
/// time is real elapsed time inside open hours, whatever the clocks on the wall do.
#[test]
fn r_sla_7_breach_due_exactly_at_a_daylight_saving_change() {
    // Europe/Zagreb: 2026-03-29 02:00 CET → 03:00 CEST at 01:00 UTC;
    // 2026-10-25 03:00 CEST → 02:00 CET at 01:00 UTC.
    for (opened, transition) in [
        (utc("2026-03-29T00:00"), utc("2026-03-29T01:00")),
        (utc("2026-10-25T00:00"), utc("2026-10-25T01:00")),
    ] {
        let t = utc("2026-01-01T00:00");
        let mut s = Scenario::new();
        let all_day = interval("00:00", "24:00");
        let p = WorkingHours {
            week: Week {
                sunday: all_day.clone(),
                saturday: all_day,
                ..Week::default()
            },
            ..office("office", "Europe/Zagreb")
        };
        s.upsert_period(t, p);
        let mut q = queue("support");
        q.working_hours_id = Some("office".into());
        s.upsert_queue(t, q)
            .route_prefix(t, "help", "support", Priority::Normal);
        s.upsert_policy(
            t,
            1,
            sla_policy("p", 1, Some(60), None, None, Counting::WorkingHours),
        );
        s.sms(opened, "m1", "+1", "help")
            .tick(transition - 1)
            .tick(transition + 1);
        let out = s.run();
        assert_eq!(
            out.breaches(),
            vec![(SlaMetric::FirstResponse, transition, transition)]
        );
    }
}

/// R-SLA-6, R-TIME-6: each breach is emitted once: not again when the same records are
/// delivered again, nor after the state is reopened from the store, nor in a replay.
#[test]
fn r_sla_6_no_breach_emitted_twice_after_a_replay() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.upsert_policy(
        t - MIN,
        1,
        sla_policy("p", 1, Some(5), None, Some(30), Counting::Always),
    );
    s.sms(t, "m1", "+1", "hi")
        .tick(t + 10 * MIN)
        .tick(t + 60 * MIN);
    let inputs: Vec<(i64, Input)> = s
        .records
        .iter()
        .map(|r| (r.ts, r.decoded.clone().expect("valid")))
        .collect();
    let breaches = |outputs: &[Output]| {
        outputs
            .iter()
            .filter(|o| {
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

    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let first: Vec<Output> = inputs
        .iter()
        .flat_map(|(ts, i)| engine.process(*ts, i).outputs)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(breaches(&first), 2, "first response and resolution");
    engine.flush().expect("flush");
    let mut reopened = Engine::open(engine.into_store(), Settings::default()).expect("reopen");
    let again: Vec<Output> = inputs
        .iter()
        .flat_map(|(ts, i)| reopened.process(*ts + 1, i).outputs)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        breaches(&again),
        0,
        "redelivered records and later ticks breach nothing again"
    );

    let mut fresh = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let replay: Vec<Output> = inputs
        .iter()
        .flat_map(|(ts, i)| fresh.process(*ts, i).outputs)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        replay, first,
        "a replay into fresh state gives the same outputs"
    );
}

/// R-SLA-2: SetSeverity changes the severity and recalculates; an unknown severity, or a
/// conversation without a policy, is dead-lettered.
#[test]
fn r_sla_2_set_severity_recalculates() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    let mut p = sla_policy("p", 1, Some(60), None, None, Counting::Always);
    p.severities.push(Severity {
        name: "critical".into(),
        first_response_minutes: Some(5),
        next_reply_minutes: None,
        resolution_minutes: None,
        counting: Counting::Always,
    });
    s.upsert_policy(t - MIN, 1, p);
    s.sms(t, "m1", "+1", "hi");
    s.command(
        t + MIN,
        "s1",
        "#1",
        CommandKind::SetSeverity(SetSeverity {
            severity: "critical".into(),
        }),
    );
    s.command(
        t + MIN,
        "s2",
        "#1",
        CommandKind::SetSeverity(SetSeverity {
            severity: "apocalyptic".into(),
        }),
    );
    s.tick(t + 100 * MIN);
    let out = s.run();
    let recalculated: Vec<(Option<String>, Option<i64>)> = out
        .sla_events()
        .into_iter()
        .filter_map(|e| {
            if let SlaEventKind::SlaRecalculated(r) = e {
                Some((r.severity.clone(), r.first_response_due))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        recalculated,
        vec![(Some("critical".to_string()), Some(t + 5 * MIN))]
    );
    assert_eq!(
        out.breaches(),
        vec![(SlaMetric::FirstResponse, t + 5 * MIN, t + 5 * MIN)]
    );
    assert_eq!(
        out.dead_letters()[0].reason,
        "SLA policy \"p\" has no severity \"apocalyptic\""
    );
}

/// R-SLA-1, SPEC §2: policy validation names the field.
#[test]
fn invalid_policies_are_rejected_naming_the_field() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    let mut no_target = sla_policy("a", 1, None, None, None, Counting::Always);
    no_target.id = "a".into();
    let mut bad_default = sla_policy("b", 1, Some(5), None, None, Counting::Always);
    bad_default.default_severity = "nope".into();
    let mut bad_queue = sla_policy("c", 1, Some(5), None, None, Counting::Always);
    bad_queue.queue_filter = QueueFilter::Apply;
    bad_queue.queue_ids = vec!["ghost".into()];
    let mut no_sev = sla_policy("d", 1, Some(5), None, None, Counting::Always);
    no_sev.severities.clear();
    for p in [no_target, bad_default, bad_queue, no_sev] {
        s.upsert_policy(t, 1, p);
    }
    assert_eq!(
        s.run().rejected_fields(),
        vec![
            "policy.severities[0]",
            "policy.default_severity",
            "policy.queue_ids[0]",
            "policy.severities"
        ]
    );
}

/// R-SLA-1: a policy outside its validity period, disabled, or whose condition does not hold
/// is skipped for the next one in order; a new policy applies to open conversations.
#[test]
fn r_sla_1_validity_condition_and_enabled_flag_select_the_policy() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    let mut expired = sla_policy("expired", 1, Some(1), None, None, Counting::Always);
    expired.valid_to = Some(t - MIN);
    let mut future = sla_policy("future", 2, Some(2), None, None, Counting::Always);
    future.valid_from = Some(t + 24 * 60 * MIN);
    let mut off = sla_policy("off", 3, Some(3), None, None, Counting::Always);
    off.enabled = false;
    let mut vip = sla_policy("vip", 4, Some(4), None, None, Counting::Always);
    vip.condition = Some(leaf("content", Operator::Contains, "vip"));
    for p in [expired, future, off, vip] {
        s.upsert_policy(t - MIN, 1, p);
    }
    s.sms(t, "m1", "+1", "I am VIP").sms(t, "m2", "+2", "hello");
    // A catch-all created later applies to the open conversation that had none.
    s.upsert_policy(
        t + MIN,
        1,
        sla_policy("all", 9, Some(30), None, None, Counting::Always),
    );
    let out = s.run();
    let applied: Vec<String> = out
        .sla_events()
        .into_iter()
        .filter_map(|e| {
            if let SlaEventKind::SlaApplied(a) = e {
                Some(a.policy_id.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(applied, vec!["vip", "all"]);
}
