//! CSAT surveys (SPEC §9, R-CSAT).

mod common;
use common::*;
use switchboard_processors::csat::recognise;
use switchboard_schemas::*;

const SEC: i64 = 1000;
const HOUR: i64 = 3600 * SEC;

fn settings(min_span_hours: i32, follow_up: Option<&str>) -> ConfigChangeKind {
    ConfigChangeKind::SetSurveySettings(SurveySettings {
        enabled: true,
        delay_seconds: 30,
        minimum_span_hours: min_span_hours,
        answer_window_hours: 24,
        question: "Happy? 1 yes, 2 no".into(),
        follow_up: follow_up.map(str::to_string),
    })
}

fn solve(s: &mut Scenario, ts: i64, id: &str, conv: &str) {
    s.command(
        ts,
        id,
        conv,
        CommandKind::SetStatus(SetStatus {
            status: Status::Solved,
        }),
    );
}

fn csat_events(out: &Outcome) -> Vec<(i64, CsatEventKind)> {
    out.emitted
        .iter()
        .filter_map(|e| match &e.output {
            Output::Csat(c) => Some((e.ts, c.event.clone())),
            _ => None,
        })
        .collect()
}

fn feedback(out: &Outcome) -> Vec<(Option<CsatScore>, Option<String>)> {
    csat_events(out)
        .into_iter()
        .filter_map(|(_, e)| match e {
            CsatEventKind::SurveyFeedback(f) => Some((f.score, f.comment)),
            _ => None,
        })
        .collect()
}

/// R-CSAT-1: on Solved, the survey goes out after the delay over the channel of the
/// customer's last inbound message; a reopen before the delay cancels it.
#[test]
fn r_csat_1_survey_after_the_delay_over_the_last_channel() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(0, None));
    s.sms(t, "m1", "+1", "hi").inbound(
        t + SEC,
        message("m2", Channel::Whatsapp, "+1", "here on WhatsApp now"),
    );
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    s.tick(t + 60 * SEC);
    // Another customer: solved, then reopened within the delay.
    s.sms(t + 100 * SEC, "m3", "+2", "hello");
    solve(&mut s, t + 110 * SEC, "x2", "#2");
    s.sms(t + 120 * SEC, "m4", "+2", "wait, one more thing")
        .tick(t + 300 * SEC);
    let out = s.run();
    let sent: Vec<(i64, Channel, String)> = csat_events(&out)
        .into_iter()
        .filter_map(|(ts, e)| {
            if let CsatEventKind::SurveySent(x) = e {
                Some((ts, x.channel, x.to))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        sent,
        vec![(t + 40 * SEC, Channel::Whatsapp, "+1".to_string())]
    );
    let question = out.outbound(OutboundKind::Survey);
    assert_eq!(
        (
            question.len(),
            question[0].channel,
            question[0].content.as_str()
        ),
        (1, Channel::Whatsapp, "Happy? 1 yes, 2 no")
    );
}

/// R-CSAT-1: two Solved events within the minimum span: the second survey is suppressed.
#[test]
fn r_csat_1_minimum_span_suppresses_a_second_survey() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(48, None));
    s.sms(t, "m1", "+1", "first issue");
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    // Closing a solved conversation keeps its pending survey.
    s.command(
        t + 20 * SEC,
        "c1",
        "#1",
        CommandKind::SetStatus(SetStatus {
            status: Status::Closed,
        }),
    );
    s.sms(t + HOUR, "m2", "+1", "second issue");
    solve(&mut s, t + HOUR + 10 * SEC, "x2", "#2");
    s.tick(t + 2 * HOUR);
    let out = s.run();
    let kinds: Vec<&str> = csat_events(&out)
        .iter()
        .map(|(_, e)| match e {
            CsatEventKind::SurveySent(_) => "sent",
            CsatEventKind::SurveySuppressed(r) if r.reason == "minimum_span" => "suppressed",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["sent", "suppressed"]);
}

/// R-CSAT-2: answers are recognised from digits, words and emoji.
#[test]
fn r_csat_2_answer_recognition() {
    for happy in [
        "1",
        "Yes",
        "yes!",
        "yeah",
        "Happy",
        "good",
        "Very good.",
        "👍",
        "🙂",
        "😀",
    ] {
        assert_eq!(recognise(happy), Some(CsatScore::Happy), "{happy}");
    }
    for unhappy in [
        "2",
        "No",
        "nope",
        "not happy",
        "NOT HAPPY!",
        "unhappy",
        "bad",
        "👎",
        "🙁",
        "😠",
        "☹️",
    ] {
        assert_eq!(recognise(unhappy), Some(CsatScore::NotHappy), "{unhappy}");
    }
    for other in ["12", "yes but the app is broken", "where is my order", ""] {
        assert_eq!(recognise(other), None, "{other}");
    }
}

/// R-CSAT-3, R-CSAT-4: an answer is consumed by the survey: no reopen, no new conversation;
/// the feedback names the queue and agent and counts towards the CSAT ratios.
#[test]
fn r_csat_3_answers_are_consumed_and_counted() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(0, None));
    s.auto_queue(t - SEC, "care")
        .route_prefix(t - SEC, "help", "care", Priority::Normal);
    s.status(t - SEC, "ana", "Available");
    s.agent_setup(t - SEC, "ana", &["care"], &[]);
    s.sms(t, "m1", "+1", "help please");
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    s.sms(t + 5 * 60 * SEC, "m2", "+1", "👍");
    let out = s.run();
    assert_eq!(feedback(&out), vec![(Some(CsatScore::Happy), None)]);
    let f = csat_events(&out)
        .into_iter()
        .find_map(|(_, e)| {
            if let CsatEventKind::SurveyFeedback(f) = e {
                Some(f)
            } else {
                None
            }
        })
        .expect("feedback");
    assert_eq!(
        (f.queue_id.as_deref(), f.agent_id.as_deref()),
        (Some("care"), Some("ana"))
    );
    assert_eq!(out.opened(), vec![1], "no new conversation");
    assert_eq!(
        out.status_changes().len(),
        1,
        "only the Solved change: no reopen"
    );
    assert!(!out.conversation_events().iter().any(
        |e| matches!(&e.event, ConversationEventKind::MessageReceived(m) if m.message_id == "m2")
    ));
}

/// R-CSAT-2: an answer after the window is an ordinary message: it reopens the conversation.
#[test]
fn r_csat_2_answer_after_the_window_is_an_ordinary_message() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(0, None));
    s.sms(t, "m1", "+1", "hi");
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    s.sms(t + 25 * HOUR, "m2", "+1", "1");
    let out = s.run();
    assert!(feedback(&out).is_empty());
    assert_eq!(
        out.status_changes().last().map(|c| (c.2, c.3.as_str())),
        Some((Status::Open, "reopened"))
    );
}

/// R-CSAT-2: with a follow-up question the next message after the score is the comment; the
/// feedback waits for it, or for the window to end.
#[test]
fn r_csat_2_follow_up_comment() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(0, Some("What could we do better?")));
    s.sms(t, "m1", "+1", "hi").sms(t, "m2", "+2", "hello");
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    solve(&mut s, t + 10 * SEC, "x2", "#2");
    s.sms(t + 60 * SEC, "a1", "+1", "2")
        .sms(t + 90 * SEC, "a2", "+1", "The wait was too long");
    s.sms(t + 60 * SEC, "b1", "+2", "yes").tick(t + 30 * HOUR);
    let out = s.run();
    assert_eq!(
        feedback(&out),
        vec![
            (
                Some(CsatScore::NotHappy),
                Some("The wait was too long".to_string())
            ),
            (Some(CsatScore::Happy), None)
        ]
    );
    let questions: Vec<&str> = out
        .outbound(OutboundKind::Survey)
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        questions
            .iter()
            .filter(|q| **q == "What could we do better?")
            .count(),
        2
    );
    assert_eq!(out.opened(), vec![1, 2]);
}

/// R-CSAT, R-THREAD-3: a merge keeps the most recent survey; answers go to it.
#[test]
fn r_csat_merge_keeps_the_most_recent_survey() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(t - SEC, 1, settings(0, None));
    s.sms(t, "m1", "+1", "hi").sms(t, "m2", "+2", "hello");
    solve(&mut s, t + 10 * SEC, "x1", "#1");
    solve(&mut s, t + 20 * SEC, "x2", "#2");
    // Both surveys are out (at +40 s and +50 s); #2's is the more recent.
    s.command(
        t + 60 * SEC,
        "mg",
        "#1",
        CommandKind::Merge(Merge {
            source_conversation_id: "#2".into(),
        }),
    );
    s.sms(t + 70 * SEC, "a1", "+2", "1");
    let out = s.run();
    let shorts = out.short_ids();
    let fed: Vec<i64> = out
        .outputs()
        .filter_map(|o| match o {
            Output::Csat(CsatEvent {
                conversation_id,
                event: CsatEventKind::SurveyFeedback(_),
                ..
            }) => Some(shorts[conversation_id]),
            _ => None,
        })
        .collect();
    assert_eq!(
        fed,
        vec![1],
        "the answer to #2's survey lands on #1, which kept it"
    );
}

/// SPEC §2: survey settings are validated naming the field.
#[test]
fn invalid_survey_settings_are_rejected() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    let bad = |f: fn(&mut SurveySettings)| {
        let mut x = SurveySettings {
            enabled: true,
            delay_seconds: 30,
            minimum_span_hours: 0,
            answer_window_hours: 24,
            question: "q".into(),
            follow_up: None,
        };
        f(&mut x);
        ConfigChangeKind::SetSurveySettings(x)
    };
    s.config(t, 1, bad(|x| x.delay_seconds = -1));
    s.config(t, 1, bad(|x| x.answer_window_hours = 0));
    s.config(t, 1, bad(|x| x.question = " ".into()));
    assert_eq!(
        s.run().rejected_fields(),
        vec!["delay_seconds", "answer_window_hours", "question"]
    );
}
