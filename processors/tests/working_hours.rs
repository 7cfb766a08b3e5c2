//! Working hours and the away message (SPEC §4.3, §4.4).

mod common;
use common::*;
use switchboard_processors::calendar::Calendar;
use switchboard_schemas::*;

/// A scenario whose Default queue... no: whose `support` queue keeps `period`; every message
/// routes there.
fn with_period(period: WorkingHours) -> Scenario {
    let t = utc("2026-01-01T00:00");
    let mut s = Scenario::new();
    let mut q = queue("support");
    q.working_hours_id = Some(period.id.clone());
    s.upsert_period(t, period).upsert_queue(t, q);
    s.upsert_route(
        t,
        1,
        route(
            "all",
            1,
            leaf("channel", Operator::Exists, ""),
            "support",
            Priority::Normal,
        ),
    );
    s
}

/// R-ROUTE-3, R-ROUTE-4: a holiday is closed from 00:00 of its first day to 24:00 of its
/// last, on what would be working days.
#[test]
fn r_route_3_conversation_opened_on_a_holiday_gets_the_away_message() {
    let mut p = office("office", "Europe/Zagreb");
    p.holidays = vec![Holiday {
        name: "Easter".into(),
        start: "2026-04-06".into(),
        end: "2026-04-07".into(),
    }];
    let mut s = with_period(p);
    // Zagreb is UTC+2 in April. Monday 6th 10:00 local, Tuesday 7th 16:59 local: holiday.
    s.sms(utc("2026-04-06T08:00"), "m1", "+1", "hello");
    s.sms(utc("2026-04-07T14:59"), "m2", "+2", "hello");
    // Wednesday 8th 09:00 local: open again. Friday 3rd 10:00: open (before the holiday).
    s.sms(utc("2026-04-08T07:00"), "m3", "+3", "hello");
    s.sms(utc("2026-04-03T08:00"), "m4", "+4", "hello");
    let out = s.run();
    let away: Vec<&str> = out
        .outbound(OutboundKind::Away)
        .iter()
        .map(|m| m.to.as_str())
        .collect();
    assert_eq!(away, vec!["+1", "+2"]);
}

/// R-ROUTE-3: open on Saturday and Monday all day, closed on Sunday; at 23:59 and 00:00
/// local on both daylight-saving weekends, in a zone ahead of UTC (Zagreb) and one behind
/// (New York). The UTC instants were computed independently (Python's zoneinfo).
#[test]
fn r_route_3_midnight_across_daylight_saving_changes() {
    let all_day = interval("00:00", "24:00");
    let period = |zone: &str| WorkingHours {
        week: Week {
            saturday: all_day.clone(),
            monday: all_day.clone(),
            ..Week::default()
        },
        ..office("p", zone)
    };
    let cases: [(&str, &str, i64, bool); 16] = [
        (
            "Europe/Zagreb",
            "Sat 2026-03-28 23:59 CET",
            1774738740000,
            true,
        ),
        (
            "Europe/Zagreb",
            "Sun 2026-03-29 00:00 CET",
            1774738800000,
            false,
        ),
        (
            "Europe/Zagreb",
            "Sun 2026-03-29 23:59 CEST",
            1774821540000,
            false,
        ),
        (
            "Europe/Zagreb",
            "Mon 2026-03-30 00:00 CEST",
            1774821600000,
            true,
        ),
        (
            "Europe/Zagreb",
            "Sat 2026-10-24 23:59 CEST",
            1792879140000,
            true,
        ),
        (
            "Europe/Zagreb",
            "Sun 2026-10-25 00:00 CEST",
            1792879200000,
            false,
        ),
        (
            "Europe/Zagreb",
            "Sun 2026-10-25 23:59 CET",
            1792969140000,
            false,
        ),
        (
            "Europe/Zagreb",
            "Mon 2026-10-26 00:00 CET",
            1792969200000,
            true,
        ),
        (
            "America/New_York",
            "Sat 2026-03-07 23:59 EST",
            1772945940000,
            true,
        ),
        (
            "America/New_York",
            "Sun 2026-03-08 00:00 EST",
            1772946000000,
            false,
        ),
        (
            "America/New_York",
            "Sun 2026-03-08 23:59 EDT",
            1773028740000,
            false,
        ),
        (
            "America/New_York",
            "Mon 2026-03-09 00:00 EDT",
            1773028800000,
            true,
        ),
        (
            "America/New_York",
            "Sat 2026-10-31 23:59 EDT",
            1793505540000,
            true,
        ),
        (
            "America/New_York",
            "Sun 2026-11-01 00:00 EDT",
            1793505600000,
            false,
        ),
        (
            "America/New_York",
            "Sun 2026-11-01 23:59 EST",
            1793595540000,
            false,
        ),
        (
            "America/New_York",
            "Mon 2026-11-02 00:00 EST",
            1793595600000,
            true,
        ),
    ];
    for (zone, local, ms, open) in cases {
        let calendar = Calendar::parse(&period(zone)).expect("valid period");
        assert_eq!(calendar.is_open(ms), open, "{zone} {local}");
        // And end to end: a conversation opened then gets the away message only when closed.
        let mut s = with_period(period(zone));
        s.sms(ms, "m1", "+1", "hi");
        assert_eq!(
            s.run().outbound(OutboundKind::Away).len(),
            usize::from(!open),
            "{zone} {local}"
        );
    }
}

/// R-ROUTE-4: the away message goes once, over the channel the conversation came in on; a
/// reply to the open conversation outside hours gets none, and nothing is sent in hours.
#[test]
fn r_route_4_away_message_once_and_not_for_a_reply() {
    let mut s = with_period(office("office", "Europe/Zagreb"));
    let night = utc("2026-03-03T21:00"); // Tuesday 22:00 local
    s.inbound(night, message("m1", Channel::Telegram, "@jo", "hello?"));
    s.inbound(
        night + 60_000,
        message("m2", Channel::Telegram, "@jo", "anyone?"),
    );
    s.inbound(
        utc("2026-03-04T09:00"),
        message("m3", Channel::Telegram, "@jo", "good morning"),
    ); // in hours
    s.sms(utc("2026-03-04T10:00"), "m4", "+2", "hi"); // new conversation in hours
    let out = s.run();
    let away = out.outbound(OutboundKind::Away);
    assert_eq!(away.len(), 1);
    assert_eq!(
        (
            away[0].channel,
            away[0].to.as_str(),
            away[0].content.as_str()
        ),
        (Channel::Telegram, "@jo", "We are closed")
    );
    assert_eq!(
        out.short_id_of_message("m2"),
        1,
        "the reply joined the open conversation"
    );
    assert!(
        out.status_changes().is_empty(),
        "without close_after_away the conversation stays open"
    );
}

/// R-ROUTE-4: with close_after_away the conversation is Closed right after the away
/// message; the customer's next message opens a new conversation.
#[test]
fn r_route_4_close_after_away() {
    let mut p = office("office", "America/New_York");
    p.close_after_away = true;
    let mut s = with_period(p);
    let saturday = utc("2026-03-07T15:00");
    s.sms(saturday, "m1", "+1", "hi")
        .sms(saturday + 1000, "m2", "+1", "hello?");
    let out = s.run();
    assert_eq!(
        out.status_changes(),
        vec![
            (
                1,
                Status::Open,
                Status::Closed,
                "outside_working_hours".into()
            ),
            (
                2,
                Status::Open,
                Status::Closed,
                "outside_working_hours".into()
            )
        ]
    );
    assert_eq!(out.opened(), vec![1, 2]);
    assert_eq!(out.outbound(OutboundKind::Away).len(), 2);
}

/// R-ROUTE-3: the default period is given to queues created after it, not to earlier ones,
/// and `always` keeps a new queue open around the clock.
#[test]
fn r_route_3_default_period_goes_to_queues_created_later() {
    let t = utc("2026-01-01T00:00");
    let mut s = Scenario::new();
    s.upsert_queue(t, queue("early"));
    let mut p = office("office", "UTC");
    p.is_default = true;
    s.upsert_period(t + 1, p);
    s.upsert_queue(t + 2, queue("late"));
    let mut always = queue("always-open");
    always.working_hours_id = Some("always".into());
    s.upsert_queue(t + 3, always);
    for (i, q) in ["early", "late", "always-open"].iter().enumerate() {
        s.upsert_route(
            t + 4,
            1,
            route(
                q,
                i as i32,
                leaf("content", Operator::Is, q),
                q,
                Priority::Normal,
            ),
        );
    }
    let sunday = utc("2026-03-08T12:00");
    s.sms(sunday, "m1", "+1", "early")
        .sms(sunday, "m2", "+2", "late")
        .sms(sunday, "m3", "+3", "always-open");
    let away: Vec<String> = s
        .run()
        .outbound(OutboundKind::Away)
        .iter()
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(away, vec!["+2"]);
}

/// SPEC §2: working-hours validation names the field; close_after_away needs a message.
#[test]
fn invalid_periods_are_rejected_naming_the_field() {
    let t = utc("2026-01-01T00:00");
    let mut s = Scenario::new();
    s.upsert_period(
        t,
        WorkingHours {
            time_zone: "Mars/Olympus".into(),
            ..office("a", "UTC")
        },
    );
    s.upsert_period(
        t,
        WorkingHours {
            week: Week {
                friday: interval("17:00", "09:00"),
                ..Week::default()
            },
            ..office("b", "UTC")
        },
    );
    s.upsert_period(
        t,
        WorkingHours {
            week: Week {
                monday: interval("9:00", "17:00"),
                ..Week::default()
            },
            ..office("c", "UTC")
        },
    );
    s.upsert_period(
        t,
        WorkingHours {
            holidays: vec![Holiday {
                name: "x".into(),
                start: "2026-02-30".into(),
                end: "2026-03-01".into(),
            }],
            ..office("d", "UTC")
        },
    );
    s.upsert_period(
        t,
        WorkingHours {
            close_after_away: true,
            away_message: None,
            ..office("e", "UTC")
        },
    );
    let mut q = queue("q");
    q.working_hours_id = Some("a".into());
    s.upsert_queue(t, q);
    assert_eq!(
        s.run().rejected_fields(),
        vec![
            "period.time_zone",
            "period.week.friday[0].end",
            "period.week.monday[0].start",
            "period.holidays[0].start",
            "period.close_after_away",
            "queue.working_hours_id"
        ]
    );
}
