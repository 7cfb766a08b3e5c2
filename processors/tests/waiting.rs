//! Waiting strategies for messaging (SPEC §6, R-WAIT).

mod common;
use common::*;
use switchboard_schemas::*;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;

fn strategy(
    welcome: bool,
    announcement: Option<(i32, i32)>,
    max_wait: Option<i32>,
) -> WaitingStrategy {
    WaitingStrategy {
        id: "ws".into(),
        sender: "+100".into(),
        welcome: welcome.then(|| "Welcome!".to_string()),
        announcement: announcement.map(|(interval_seconds, max_count)| Announcement {
            text: "Still there?".into(),
            interval_seconds,
            max_count,
        }),
        max_wait: max_wait.map(|after_seconds| MaxWait {
            text: "Sorry, try later.".into(),
            after_seconds,
        }),
    }
}

fn scenario(w: WaitingStrategy) -> (Scenario, i64) {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(
        t - MIN,
        1,
        ConfigChangeKind::UpsertWaitingStrategy(UpsertWaitingStrategy { strategy: w }),
    );
    (s, t)
}

/// (kind, minutes after t) of every waiting-strategy message.
fn sent(out: &Outcome, t: i64) -> Vec<(OutboundKind, i64)> {
    out.emitted
        .iter()
        .filter_map(|e| match &e.output {
            Output::Outbound(m)
                if matches!(
                    m.kind,
                    OutboundKind::Welcome | OutboundKind::Announcement | OutboundKind::MaxWait
                ) =>
            {
                Some((m.kind, (e.ts - t) / MIN))
            }
            _ => None,
        })
        .collect()
}

/// R-WAIT-1, R-WAIT-2, R-WAIT-4: the welcome goes once, on entry, over the customer's channel;
/// a follow-up message in the same conversation does not repeat it.
#[test]
fn r_wait_2_welcome_once() {
    let (mut s, t) = scenario(strategy(true, None, None));
    s.inbound(t, message("m1", Channel::Viber, "+1", "hi"))
        .inbound(t + MIN, message("m2", Channel::Viber, "+1", "hello?"));
    let out = s.run();
    assert_eq!(sent(&out, t), vec![(OutboundKind::Welcome, 0)]);
    assert_eq!(
        out.outbound(OutboundKind::Welcome)[0].channel,
        Channel::Viber
    );
}

/// R-WAIT-2: announcements every interval, at most max_count of them, never after one hour.
#[test]
fn r_wait_2_announcement_count_interval_and_one_hour_horizon() {
    let (mut s, t) = scenario(strategy(false, Some((120, 3)), None));
    s.sms(t, "m1", "+1", "hi").tick(t + 120 * MIN);
    assert_eq!(
        sent(&s.run(), t),
        vec![
            (OutboundKind::Announcement, 2),
            (OutboundKind::Announcement, 4),
            (OutboundKind::Announcement, 6)
        ]
    );

    let (mut s, t) = scenario(strategy(false, Some((25 * 60, 60)), None));
    s.sms(t, "m1", "+1", "hi").tick(t + 180 * MIN);
    assert_eq!(
        sent(&s.run(), t),
        vec![
            (OutboundKind::Announcement, 25),
            (OutboundKind::Announcement, 50)
        ],
        "none after one hour"
    );
}

/// R-WAIT-2, R-WAIT-3: at the maximum wait the message goes out and the conversation is
/// Closed (reason max_wait); nothing follows.
#[test]
fn r_wait_2_max_wait_closes_the_conversation() {
    let (mut s, t) = scenario(strategy(true, Some((60, 60)), Some(150)));
    s.sms(t, "m1", "+1", "hi").tick(t + 30 * MIN);
    let out = s.run();
    assert_eq!(
        sent(&out, t),
        vec![
            (OutboundKind::Welcome, 0),
            (OutboundKind::Announcement, 1),
            (OutboundKind::Announcement, 2),
            (OutboundKind::MaxWait, 2)
        ]
    );
    assert_eq!(
        out.status_changes(),
        vec![(1, Status::Open, Status::Closed, "max_wait".into())]
    );
}

/// R-WAIT-3: the strategy ends when the conversation is assigned.
#[test]
fn r_wait_3_strategy_ended_by_assignment() {
    let (mut s, t) = scenario(strategy(false, Some((60, 10)), Some(1800)));
    let mut q = queue("default");
    q.auto_assign = true;
    s.upsert_queue(t - MIN, q);
    s.sms(t, "m1", "+1", "hi");
    s.agent_setup(t + 3 * MIN + SEC, "ana", &[], &[])
        .status(t + 3 * MIN + SEC, "ana", "Available");
    s.tick(t + 60 * MIN);
    let out = s.run();
    assert_eq!(
        sent(&out, t),
        vec![
            (OutboundKind::Announcement, 1),
            (OutboundKind::Announcement, 2),
            (OutboundKind::Announcement, 3)
        ]
    );
    assert_eq!(out.assigned_to().len(), 1);
    assert!(
        out.status_changes().is_empty(),
        "no max-wait close after assignment"
    );
}

/// R-WAIT-1: nothing is sent while the queue is outside working hours, and a conversation
/// assigned at once never starts a strategy.
#[test]
fn r_wait_1_nothing_sent_while_the_queue_is_closed_or_when_assigned() {
    let (mut s, t) = scenario(strategy(true, Some((60, 5)), Some(600)));
    let mut p = office("office", "Europe/Zagreb");
    p.away_message = None;
    s.upsert_period(t - MIN, p);
    let mut q = queue("support");
    q.working_hours_id = Some("office".into());
    s.upsert_queue(t - MIN, q)
        .route_prefix(t - MIN, "night", "support", Priority::Normal);
    s.sms(utc("2026-03-02T22:00"), "m1", "+1", "night owl")
        .tick(utc("2026-03-03T00:00"));
    let out = s.run();
    assert!(sent(&out, t).is_empty());

    let (mut s, t) = scenario(strategy(true, None, None));
    let mut q = queue("default");
    q.auto_assign = true;
    s.upsert_queue(t - MIN, q)
        .status(t - MIN, "ana", "Available")
        .sms(t, "m1", "+1", "hi");
    assert!(sent(&s.run(), t).is_empty());
}

/// R-WAIT-2, SPEC §2: invalid strategies are rejected naming the field.
#[test]
fn invalid_strategies_are_rejected_naming_the_field() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    let upsert = |w: WaitingStrategy| {
        ConfigChangeKind::UpsertWaitingStrategy(UpsertWaitingStrategy { strategy: w })
    };
    s.config(t, 1, upsert(strategy(false, None, None)));
    s.config(t, 1, upsert(strategy(false, Some((30, 5)), None)));
    s.config(t, 1, upsert(strategy(false, Some((60, 61)), None)));
    s.config(t, 1, upsert(strategy(false, None, Some(3601))));
    s.config(t, 1, upsert(strategy(true, None, None)));
    let mut twin = strategy(true, None, None);
    twin.id = "other".into();
    s.config(t, 1, upsert(twin));
    assert_eq!(
        s.run().rejected_fields(),
        vec![
            "strategy",
            "strategy.announcement.interval_seconds",
            "strategy.announcement.max_count",
            "strategy.max_wait.after_seconds",
            "strategy.sender"
        ]
    );
}
