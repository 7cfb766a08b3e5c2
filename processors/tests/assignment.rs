//! Automatic agent assignment (SPEC §5, R-ASSIGN).

mod common;
use common::*;
use switchboard_processors::assignment::{weighted_sum, Candidate};
use switchboard_schemas::*;

const SEC: i64 = 1000;
const DAY: i64 = 24 * 3600 * SEC;

fn t0() -> i64 {
    utc("2026-03-02T10:00") // a Monday
}

fn status_cmd(status: Status) -> CommandKind {
    CommandKind::SetStatus(SetStatus { status })
}

/// R-ASSIGN-4: the seeds' worked example: 2/6 + 1/5 + 3/10 = 83% is not full; one more email
/// makes 33 + 20 + 40 = 93%, Full capacity (Busy); dropping back below 90 is Under capacity.
#[test]
fn r_assign_4_full_capacity_at_90_percent_worked_example() {
    let t = t0();
    let mut s = Scenario::new();
    s.agent_setup(
        t,
        "ana",
        &[],
        &[("live_messaging", 6), ("live_chat", 5), ("email", 10)],
    )
    .status(t, "ana", "Available");
    let channels = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::LiveChat,
        Channel::Email,
        Channel::Email,
        Channel::Email,
        Channel::Email,
    ];
    for (i, ch) in channels.iter().enumerate() {
        let n = i as i64 + 1;
        s.inbound(
            t + n * SEC,
            message(&format!("m{n}"), *ch, &format!("+{n}"), "hi"),
        );
        s.assign(t + n * SEC + 1, &format!("a{n}"), &format!("#{n}"), "ana");
    }
    s.command(t + 20 * SEC, "u1", "#7", CommandKind::Unassign(Unassign {}));
    let out = s.run();
    assert_eq!(
        out.capacity_changes(),
        vec![
            ("ana".to_string(), true, 93.33),
            ("ana".to_string(), false, 83.33)
        ]
    );
    let statuses: Vec<String> = out
        .outputs()
        .filter_map(|o| match o {
            Output::AgentState(AgentStateEvent {
                event: AgentStateEventKind::AgentStatus(s),
                ..
            }) => Some(format!("{}/{:?}", s.status, s.group)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            "Available/Available",
            "Full capacity/Busy",
            "Under capacity/Available"
        ]
    );
}

/// R-ASSIGN-6: the weighted-sum worked example: workloads 20, 35, 48 and unserved 10, 200,
/// 300 s score 0.517, 0.619, 0.708: Agent 3 wins (the rule, not the seed's prose).
#[test]
fn r_assign_6_weighted_sum_worked_example() {
    let c = |a: &str, w: f64, u: f64| Candidate {
        agent: a.into(),
        workload: w,
        unserved_seconds: u,
    };
    let ranked = weighted_sum(&[
        c("agent-1", 20.0, 10.0),
        c("agent-2", 35.0, 200.0),
        c("agent-3", 48.0, 300.0),
    ]);
    let rounded: Vec<(&str, f64)> = ranked
        .iter()
        .map(|(a, s)| (a.as_str(), (s * 1000.0).round() / 1000.0))
        .collect();
    assert_eq!(
        rounded,
        vec![("agent-3", 0.708), ("agent-2", 0.619), ("agent-1", 0.517)]
    );
}

/// R-ASSIGN-6: zero workload scores w = 1, a non-zero workload when the minimum is 0 scores
/// w = 0, a zero maximum unserved time scores u = 0; ties go to the larger unserved time, then
/// the smaller agent id.
#[test]
fn r_assign_6_weighted_sum_edge_cases_and_ties() {
    let c = |a: &str, w: f64, u: f64| Candidate {
        agent: a.into(),
        workload: w,
        unserved_seconds: u,
    };
    let ranked = weighted_sum(&[c("b", 0.0, 0.0), c("a", 40.0, 0.0)]);
    assert_eq!(ranked, vec![("b".to_string(), 0.5), ("a".to_string(), 0.0)]);
    // Equal scores (0.75 each): the larger unserved time wins.
    let ranked = weighted_sum(&[c("a", 20.0, 50.0), c("b", 40.0, 100.0)]);
    assert_eq!(ranked[0].1, ranked[1].1);
    assert_eq!(ranked[0].0, "b");
    // Equal scores and unserved times: the smaller id wins.
    let ranked = weighted_sum(&[c("z", 10.0, 5.0), c("m", 10.0, 5.0)]);
    assert_eq!(ranked[0].0, "m");
}

/// R-ASSIGN-6, end to end: agents whose workloads are 20, 35 and 48 and who were last
/// assigned 10, 200 and 300 s ago: the new conversation goes to agent 3 with score 0.708.
/// (LiveChat capacity 0 leaves it out of the mean, so the workload is LiveMessaging alone.)
#[test]
fn r_assign_6_weighted_sum_end_to_end() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t - 2000 * SEC, "sales").route_prefix(
        t - 2000 * SEC,
        "buy",
        "sales",
        Priority::Normal,
    );
    let agents = [
        ("agent-1", 5, 1, 10),
        ("agent-2", 20, 7, 200),
        ("agent-3", 25, 12, 300),
    ];
    for (a, cap, _, _) in agents {
        s.agent_setup(
            t - 1900 * SEC,
            a,
            &["sales"],
            &[("live_messaging", cap), ("live_chat", 0)],
        )
        .status(t - 1900 * SEC, a, "Available");
    }
    let mut n = 0;
    for (a, _, held, ago) in [agents[2], agents[1], agents[0]] {
        for _ in 0..held {
            n += 1;
            s.sms(t - ago * SEC, &format!("m{n}"), &format!("+{n}"), "hello");
            s.assign(t - ago * SEC + 1, &format!("a{n}"), &format!("#{n}"), a);
        }
    }
    s.sms(t, "new", "+999", "buy now");
    let out = s.run();
    let last = out.assigned().pop().expect("an assignment");
    assert_eq!(
        (last.0, last.1.as_str(), last.2),
        (n + 1, "agent-3", AssignMethod::Single)
    );
    assert_eq!((last.3.expect("score") * 1000.0).round() / 1000.0, 0.708);
}

/// Queue `q` (care) with agents Ana and Bo: Ana replies to customer +1 (#1), the
/// conversation is closed, and customer +2 writes (#2). With `by_hand`, both conversations
/// are assigned to Ana by command, so Ana holds #2 and the weighted sum alone would pick Bo;
/// without, the queue assigns them as it is configured.
fn ana_served_plus_1(s: &mut Scenario, t: i64, q: Queue, by_hand: bool) {
    s.upsert_queue(t, q)
        .route_prefix(t, "help", "care", Priority::Normal);
    for a in ["ana", "bo"] {
        s.agent_setup(t, a, &["care"], &[])
            .status(t, a, "Available");
    }
    s.sms(t + SEC, "m1", "+1", "help me");
    if by_hand {
        s.assign(t + SEC + 1, "a1", "#1", "ana");
    }
    s.command(
        t + 2 * SEC,
        "r1",
        "#1",
        CommandKind::Reply(Reply {
            content: "Sure".into(),
            automated: false,
        }),
    );
    s.command(t + 3 * SEC, "x1", "#1", status_cmd(Status::Closed));
    s.sms(t + 4 * SEC, "m2", "+2", "hello");
    if by_hand {
        s.assign(t + 4 * SEC + 1, "a2", "#2", "ana");
    }
}

/// R-ASSIGN-6: the sticky ("last interacted agent") mode inside and outside each lookback.
#[test]
fn r_assign_6_sticky_agent_inside_and_outside_each_lookback() {
    let cases = [
        (StickyLookback::Days30, 29 * DAY, true),
        (StickyLookback::Days30, 31 * DAY, false),
        (StickyLookback::Days60, 59 * DAY, true),
        (StickyLookback::Days60, 61 * DAY, false),
        (StickyLookback::Year1, 364 * DAY, true),
        (StickyLookback::Year1, 366 * DAY, false),
        (StickyLookback::Ever, 3000 * DAY, true),
    ];
    for (lookback, later, sticky) in cases {
        let t = t0();
        let mut s = Scenario::new();
        let mut q = queue("care");
        ana_served_plus_1(&mut s, t, q.clone(), true);
        q.auto_assign = true;
        q.sticky_lookback = Some(lookback);
        s.config(
            t + 5 * SEC,
            2,
            ConfigChangeKind::UpsertQueue(UpsertQueue { queue: q }),
        );
        s.sms(t + 2 * SEC + later, "m3", "+1", "help again");
        let out = s.run();
        let last = out.assigned_to().pop().expect("assigned");
        let want = if sticky {
            ("ana", AssignMethod::Sticky)
        } else {
            ("bo", AssignMethod::Single)
        };
        assert_eq!(
            (last.0, last.1.as_str(), last.2),
            (3, want.0, want.1),
            "{lookback:?} after {} days",
            later / DAY
        );
    }
}

/// R-ASSIGN-6 (issue 11, memory bounded by open work): a customer's own rows leave memory
/// once no conversation of theirs is held there (the store keeps them), and come back with
/// their next conversation. Run as the runtime runs, a flush after every record and a restart
/// while the rows are out of memory, the outputs are the very ones of a run where they
/// stayed: the customer returning after three days gets the agent who last replied.
#[test]
fn r_assign_6_sticky_agent_after_the_customer_left_memory() {
    use switchboard_processors::simulation::apply_record;
    use switchboard_processors::{Engine, MemStore, Settings};
    let t = t0();
    let mut s = Scenario::new();
    let mut q = queue("care");
    q.auto_assign = true;
    q.sticky_lookback = Some(StickyLookback::Ever);
    ana_served_plus_1(&mut s, t, q, false);
    // Two days on: the closed conversation is archived, its customer's rows leave memory.
    s.tick(t + 2 * DAY);
    s.sms(t + 3 * DAY, "m3", "+1", "help again");
    let stayed = s.run();
    let sticky = stayed.assigned_to().pop().expect("assigned");
    assert_eq!(
        (sticky.0, sticky.1.as_str(), sticky.2),
        (3, "ana", AssignMethod::Sticky)
    );

    let settings = Settings::default();
    let mut engine = Engine::open(MemStore::default(), settings.clone()).expect("open");
    let mut emitted = Vec::new();
    for r in &s.records {
        emitted.extend(apply_record(&mut engine, r, 0));
        engine.flush_into_store().expect("flush");
        if matches!(r.decoded, Ok(Input::Tick(_))) {
            let held =
                |e: &Engine<MemStore>| e.state().last_replier.get(TENANT, "addr:+1").cloned();
            assert_eq!(held(&engine), None, "the customer's row left memory");
            engine = Engine::open(engine.store().clone(), settings.clone()).expect("reopen");
            assert_eq!(
                held(&engine),
                None,
                "and stays out of memory after a restart"
            );
        }
    }
    let outputs = |e: &[switchboard_processors::simulation::Emitted]| {
        e.iter()
            .map(|e| format!("{:?}", e.output))
            .collect::<Vec<_>>()
    };
    assert_eq!(outputs(&emitted), outputs(&stayed.emitted));
    assert_eq!(
        engine
            .state()
            .last_replier
            .get(TENANT, "addr:+1")
            .map(|(agent, _)| &**agent),
        Some("ana"),
        "back in memory with the customer's new conversation"
    );
}

/// R-ASSIGN-7: when an agent becomes available, the waiting conversations of all their
/// auto-assigning queues are assigned to them by priority (Urgent first), then age, until they
/// are no longer eligible.
#[test]
fn r_assign_7_bulk_assignment_order() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t, "sales")
        .auto_queue(t, "vip")
        .auto_queue(t, "other");
    s.route_prefix(t, "sale", "sales", Priority::Normal);
    s.upsert_route(
        t,
        1,
        route(
            "vip",
            0,
            leaf("content", Operator::StartsWith, "vip"),
            "vip",
            Priority::High,
        ),
    );
    s.upsert_route(
        t,
        1,
        route(
            "urgent",
            -1,
            leaf("content", Operator::StartsWith, "urgent"),
            "sales",
            Priority::Urgent,
        ),
    );
    s.upsert_route(
        t,
        1,
        route(
            "other",
            2,
            leaf("content", Operator::StartsWith, "other"),
            "other",
            Priority::Urgent,
        ),
    );
    s.agent_setup(t, "ana", &["sales", "vip"], &[("live_messaging", 4)]);
    s.sms(t + SEC, "m1", "+1", "sale 1");
    s.sms(t + 2 * SEC, "m2", "+2", "vip 1");
    s.sms(t + 3 * SEC, "m3", "+3", "urgent 1");
    s.sms(t + 4 * SEC, "m4", "+4", "sale 2");
    s.sms(t + 5 * SEC, "m5", "+5", "other 1"); // a queue Ana is not in
    s.sms(t + 6 * SEC, "m6", "+6", "sale 3");
    s.status(t + 10 * SEC, "ana", "Available");
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    // Capacity 4 in live messaging: #3 (urgent), #2 (high), then #1 and #4 (normal, oldest
    // first); Ana is then full and #6 waits.
    assert_eq!(
        got,
        vec![
            (3, "ana", AssignMethod::Bulk),
            (2, "ana", AssignMethod::Bulk),
            (1, "ana", AssignMethod::Bulk),
            (4, "ana", AssignMethod::Bulk)
        ]
    );
    assert_eq!(
        out.capacity_changes(),
        vec![("ana".to_string(), true, 100.0)]
    );
}

/// R-ASSIGN-7: an occupancy drop (here a conversation closed) triggers bulk assignment for
/// that agent.
#[test]
fn r_assign_7_occupancy_drop_triggers_bulk() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t, "sales")
        .route_prefix(t, "sale", "sales", Priority::Normal);
    s.agent_setup(t, "ana", &["sales"], &[("live_messaging", 1)])
        .status(t, "ana", "Available");
    s.sms(t + SEC, "m1", "+1", "sale 1")
        .sms(t + 2 * SEC, "m2", "+2", "sale 2");
    s.command(t + 3 * SEC, "c1", "#1", status_cmd(Status::Closed));
    let out = s.run();
    let got: Vec<(i64, AssignMethod)> =
        out.assigned_to().iter().map(|(c, _, m)| (*c, *m)).collect();
    assert_eq!(
        got,
        vec![(1, AssignMethod::Single), (2, AssignMethod::Bulk)]
    );
}

/// R-ASSIGN-8: at the start of a queue's working hours its waiting conversations are
/// assigned in priority-then-age order, each by single assignment, at the opening instant.
#[test]
fn r_assign_8_working_hours_start() {
    let t = utc("2026-03-02T00:00");
    let mut s = Scenario::new();
    s.upsert_period(t, office("office", "Europe/Zagreb"));
    let mut q = queue("sales");
    q.auto_assign = true;
    q.working_hours_id = Some("office".into());
    s.upsert_queue(t, q)
        .route_prefix(t, "sale", "sales", Priority::Normal);
    s.upsert_route(
        t,
        1,
        route(
            "vip",
            0,
            leaf("content", Operator::StartsWith, "sale vip"),
            "sales",
            Priority::High,
        ),
    );
    for a in ["ana", "bo"] {
        s.agent_setup(t, a, &["sales"], &[])
            .status(t, a, "Available");
    }
    // Monday night in Zagreb (UTC+1): closed. The queue opens Tuesday 09:00 local = 08:00 UTC.
    s.sms(utc("2026-03-02T21:00"), "m1", "+1", "sale one");
    s.sms(utc("2026-03-02T22:00"), "m2", "+2", "sale vip two");
    s.sms(utc("2026-03-02T23:00"), "m3", "+3", "sale three");
    s.tick(utc("2026-03-03T08:30"));
    let out = s.run();
    let opening = utc("2026-03-03T08:00");
    let assigned: Vec<(i64, i64, AssignMethod)> = out
        .emitted
        .iter()
        .filter_map(|e| match &e.output {
            Output::Assignment(AssignmentEvent {
                conversation_id,
                event: AssignmentEventKind::Assigned(a),
                ..
            }) => Some((e.ts, out.short_ids()[conversation_id], a.method)),
            _ => None,
        })
        .collect();
    let want: Vec<(i64, i64, AssignMethod)> = [2, 1, 3]
        .iter()
        .map(|c| (opening, *c, AssignMethod::WorkingHoursStart))
        .collect();
    assert_eq!(assigned, want);
    // Single assignment spreads them: the second goes to the other agent.
    let agents: Vec<String> = out.assigned_to().into_iter().map(|a| a.1).collect();
    assert_ne!(agents[0], agents[1]);
}

/// R-ASSIGN-9: a queue change keeps the assignee when they are a member of the new queue;
/// otherwise they are unassigned and single assignment runs on the new queue.
#[test]
fn r_assign_9_queue_change_with_and_without_membership() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t, "sales")
        .auto_queue(t, "support")
        .auto_queue(t, "vip")
        .route_prefix(t, "sale", "sales", Priority::Normal);
    s.agent_setup(t, "ana", &["sales", "support"], &[])
        .status(t, "ana", "Available");
    s.agent_setup(t, "bo", &["vip"], &[])
        .status(t, "bo", "Available");
    s.sms(t + SEC, "m1", "+1", "sale");
    let to = |q: &str| CommandKind::ChangeQueue(ChangeQueue { queue_id: q.into() });
    s.command(t + 2 * SEC, "c1", "#1", to("support"))
        .command(t + 3 * SEC, "c2", "#1", to("vip"));
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "ana", AssignMethod::Single),
            (1, "bo", AssignMethod::Single)
        ]
    );
    assert_eq!(
        out.unassignments(),
        vec![(1, "ana".to_string(), "queue_changed".to_string(), false)]
    );
}

/// R-ASSIGN-2, R-ASSIGN-10: with Solved excluded from counted statuses, solving a
/// conversation frees capacity (and bulk-assigns the next one); with the default settings it
/// does not. A conversation in a status that is not counted is not auto-assigned.
#[test]
fn r_assign_2_counted_status_exclusions_change_eligibility() {
    for solved_counted in [true, false] {
        let t = t0();
        let mut s = Scenario::new();
        s.config(
            t,
            1,
            ConfigChangeKind::SetCountedStatuses(CountedStatuses {
                waiting: false,
                solved: solved_counted,
            }),
        );
        s.auto_queue(t, "sales")
            .route_prefix(t, "sale", "sales", Priority::Normal);
        s.agent_setup(t, "ana", &["sales"], &[("live_messaging", 1)])
            .status(t, "ana", "Available");
        s.sms(t + SEC, "m1", "+1", "sale one")
            .sms(t + 2 * SEC, "m2", "+2", "sale two");
        s.command(t + 3 * SEC, "c1", "#1", status_cmd(Status::Solved));
        // A waiting conversation (not counted) is left alone even when Bo comes.
        s.sms(t + 4 * SEC, "m3", "+3", "sale three").command(
            t + 4 * SEC + 1,
            "c3",
            "#3",
            status_cmd(Status::Waiting),
        );
        s.agent_setup(t + 5 * SEC, "bo", &["sales"], &[])
            .status(t + 5 * SEC, "bo", "Available");
        let out = s.run();
        let assigned = out.assigned_to();
        let got: Vec<(i64, &str)> = assigned.iter().map(|(c, a, _)| (*c, a.as_str())).collect();
        if solved_counted {
            assert_eq!(
                got,
                vec![(1, "ana"), (2, "bo")],
                "Solved still occupies Ana"
            );
        } else {
            assert_eq!(got, vec![(1, "ana"), (2, "ana")], "solving #1 freed Ana");
        }
    }
}

/// R-ASSIGN-11: two manual assigns racing on one conversation: the second is rejected with
/// `already_assigned`, never silently overwritten; a transfer (only_if_unassigned false)
/// unassigns the holder first.
#[test]
fn r_assign_11_racing_manual_assigns() {
    let t = t0();
    let mut s = Scenario::new();
    for a in ["ana", "bo", "cy"] {
        s.status(t, a, "Busy");
    }
    s.status(t, "dee", "Offline");
    s.sms(t + SEC, "m1", "+1", "hi");
    s.assign(t + 2 * SEC, "a1", "#1", "ana")
        .assign(t + 2 * SEC, "a2", "#1", "bo");
    s.command(
        t + 3 * SEC,
        "a3",
        "#1",
        CommandKind::Assign(Assign {
            agent_id: "cy".into(),
            only_if_unassigned: false,
        }),
    );
    s.assign(t + 4 * SEC, "a4", "#1", "dee")
        .assign(t + 4 * SEC, "a5", "#1", "nobody");
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "ana", AssignMethod::Manual),
            (1, "cy", AssignMethod::Manual)
        ]
    );
    assert_eq!(
        out.unassignments(),
        vec![
            (1, "bo".to_string(), "already_assigned".to_string(), true),
            (1, "ana".to_string(), "transferred".to_string(), false),
            (1, "dee".to_string(), "agent_unavailable".to_string(), true),
            (1, "nobody".to_string(), "unknown_agent".to_string(), true),
        ]
    );
}

/// R-ASSIGN-5: an unassigned conversation never goes back to an agent who had it; Busy and
/// Away agents get no new conversations; custom statuses take their group.
#[test]
fn r_assign_5_eligibility_never_back_and_status_groups() {
    let t = t0();
    let mut s = Scenario::new();
    s.config(
        t,
        1,
        ConfigChangeKind::UpsertAgentStatus(AgentStatusDef {
            name: "Coaching".into(),
            group: StatusGroup::Away,
        }),
    );
    s.config(
        t,
        1,
        ConfigChangeKind::UpsertAgentStatus(AgentStatusDef {
            name: "Ready".into(),
            group: StatusGroup::Available,
        }),
    );
    s.auto_queue(t, "sales")
        .route_prefix(t, "sale", "sales", Priority::Normal);
    for a in ["ana", "bo", "cy", "dee"] {
        s.agent_setup(t, a, &["sales"], &[]);
    }
    s.status(t, "ana", "Available")
        .status(t, "bo", "Busy")
        .status(t, "cy", "Coaching")
        .status(t, "dee", "Offline");
    s.sms(t + SEC, "m1", "+1", "sale");
    s.command(t + 2 * SEC, "u1", "#1", CommandKind::Unassign(Unassign {}));
    s.status(t + 3 * SEC, "bo", "Ready");
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    // Ana gets it; after the unassign nobody else is Available, and Ana never gets it back;
    // Bo in the custom Available-group status "Ready" picks it up.
    assert_eq!(
        got,
        vec![
            (1, "ana", AssignMethod::Single),
            (1, "bo", AssignMethod::Bulk)
        ]
    );
}

/// R-ASSIGN-1: a call occupies voice capacity (always 1) only while it is in progress.
#[test]
fn r_assign_1_calls_occupy_voice_capacity_while_in_progress() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t, "calls").upsert_route(
        t,
        1,
        route(
            "voice",
            1,
            leaf("channel", Operator::Is, "voice"),
            "calls",
            Priority::Normal,
        ),
    );
    s.agent_setup(t, "ana", &["calls"], &[])
        .status(t, "ana", "Available");
    s.agent(
        t + SEC,
        "ana",
        AgentEventKind::CallStarted(CallRef {
            call_id: "call-1".into(),
        }),
    );
    s.inbound(t + 2 * SEC, message("v1", Channel::Voice, "+1", ""));
    s.agent(
        t + 3 * SEC,
        "ana",
        AgentEventKind::CallEnded(CallRef {
            call_id: "call-1".into(),
        }),
    );
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    assert_eq!(
        got,
        vec![(1, "ana", AssignMethod::Bulk)],
        "assigned once the call ended"
    );
}

/// R-ASSIGN-1: voice capacity cannot be configured; a bad capacity is dead-lettered naming it.
#[test]
fn r_assign_1_voice_capacity_is_not_configurable() {
    let mut s = Scenario::new();
    s.agent_setup(t0(), "ana", &[], &[("voice", 2)]);
    s.agent_setup(t0(), "bo", &[], &[("email", -1)]);
    let reasons: Vec<String> = s
        .run()
        .dead_letters()
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(
        reasons,
        vec![
            "capacity.voice: voice capacity is always 1",
            "capacity.email: -1 is not between 0 and 1000"
        ]
    );
}

/// R-ASSIGN-5: a disabled agent gets no conversations; enabled again, they take the waiting
/// ones by bulk assignment.
#[test]
fn r_assign_5_disabled_agents_get_nothing_until_enabled() {
    let t = t0();
    let mut s = Scenario::new();
    s.auto_queue(t, "sales")
        .route_prefix(t, "sale", "sales", Priority::Normal);
    s.agent_setup(t, "ana", &["sales"], &[])
        .status(t, "ana", "Available");
    let enabled = |on: bool| {
        AgentEventKind::AgentUpdated(AgentUpdate {
            enabled: Some(on),
            queues: None,
            capacity: None,
        })
    };
    s.agent(t + SEC, "ana", enabled(false));
    s.sms(t + 2 * SEC, "m1", "+1", "sale");
    s.agent(t + 3 * SEC, "ana", enabled(true));
    let out = s.run();
    let assigned = out.assigned_to();
    let got: Vec<(i64, &str, AssignMethod)> = assigned
        .iter()
        .map(|(c, a, m)| (*c, a.as_str(), *m))
        .collect();
    assert_eq!(got, vec![(1, "ana", AssignMethod::Bulk)]);
}
