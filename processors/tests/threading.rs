//! Threading, reopen, merge and conversation commands (SPEC §3), and config versioning (§2).

mod common;
use common::*;
use switchboard_schemas::*;

fn t(minute: i64) -> i64 {
    utc("2026-03-02T10:00") + minute * 60_000
}

fn set_status(status: Status) -> CommandKind {
    CommandKind::SetStatus(SetStatus { status })
}

/// R-THREAD-1: messages from one address join its conversation until it is Closed; other
/// addresses open their own; short ids count 1, 2, 3… per tenant.
#[test]
fn r_thread_1_messages_join_the_open_conversation_of_their_address() {
    let mut s = Scenario::new();
    s.sms(t(0), "m1", "+1", "a")
        .sms(t(1), "m2", "+2", "b")
        .sms(t(2), "m3", "+1", "c");
    s.command(t(3), "c1", "#1", set_status(Status::Closed))
        .sms(t(4), "m4", "+1", "d");
    let mut other = message("o1", Channel::Sms, "+1", "other tenant");
    other.tenant = "globex".into();
    s.inbound(t(5), other);
    let out = s.run();
    let ids: Vec<i64> = ["m1", "m2", "m3", "m4"]
        .iter()
        .map(|m| out.short_id_of_message(m))
        .collect();
    assert_eq!(ids, vec![1, 2, 1, 3]);
    let globex: Vec<_> = out
        .conversation_events()
        .into_iter()
        .filter(|e| e.tenant == "globex")
        .map(|e| e.short_id)
        .collect();
    assert_eq!(
        globex,
        vec![1, 1, 1],
        "another tenant counts from 1 (Opened, MessageReceived, Routed)"
    );
}

/// R-THREAD-1: a message on another channel from an address linked to the same person joins
/// the open conversation.
#[test]
fn r_thread_1_same_person_on_another_channel_joins() {
    let with_person = |id: &str, channel: Channel, from: &str| {
        let mut m = message(id, channel, from, "hi");
        m.person = Some(Person {
            id: Some("person-1".into()),
            ..Person::default()
        });
        m
    };
    let mut s = Scenario::new();
    s.inbound(t(0), with_person("m1", Channel::Whatsapp, "+1"));
    s.inbound(t(1), with_person("m2", Channel::Email, "jo@example.com"));
    // The e-mail address is now linked: a later e-mail without person data joins too.
    s.inbound(
        t(2),
        message("m3", Channel::Email, "JO@example.com", "again"),
    );
    let out = s.run();
    assert_eq!(out.opened(), vec![1]);
    assert_eq!(out.short_id_of_message("m3"), 1);
}

/// R-THREAD-1, R-CSAT-1, R-FLOW-4: a customer who wrote by e-mail and then on Telegram (the
/// same person) is answered on Telegram at their Telegram address, from the sender they wrote
/// to: the agent's reply and the survey both go to the last inbound message's channel and
/// address, never to the e-mail address over Telegram.
#[test]
fn r_thread_1_messages_to_the_customer_go_to_their_last_address() {
    let with_person = |id: &str, channel: Channel, from: &str, to: &str| {
        let mut m = message(id, channel, from, "hi");
        m.to = to.into();
        m.person = Some(Person {
            id: Some("person-c".into()),
            ..Person::default()
        });
        m
    };
    let mut s = Scenario::new();
    s.config(t(0), 1, surveys_on());
    s.inbound(
        t(1),
        with_person("m1", Channel::Email, "c@example.com", "support@acme.test"),
    );
    s.reply(t(2), "r1", "#1", false);
    s.inbound(
        t(3),
        with_person("m2", Channel::Telegram, "@c_user", "acme_bot"),
    );
    s.reply(t(4), "r2", "#1", false)
        .command(t(5), "c1", "#1", set_status(Status::Solved))
        .tick(t(7));
    let out = s.run();
    let to = |kind| {
        out.outbound(kind)
            .into_iter()
            .map(|m| (m.channel, m.to.clone(), m.from.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        to(OutboundKind::Agent),
        vec![
            (
                Channel::Email,
                "c@example.com".to_string(),
                "support@acme.test".to_string()
            ),
            (
                Channel::Telegram,
                "@c_user".to_string(),
                "acme_bot".to_string()
            ),
        ]
    );
    assert_eq!(
        to(OutboundKind::Survey),
        vec![(
            Channel::Telegram,
            "@c_user".to_string(),
            "acme_bot".to_string()
        )]
    );
    let sent: Vec<_> = out
        .outputs()
        .filter_map(|o| match o {
            Output::Csat(CsatEvent {
                event: CsatEventKind::SurveySent(s),
                ..
            }) => Some((s.channel, s.to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![(Channel::Telegram, "@c_user".to_string())]);
}

/// R-THREAD-2: an inbound message on a Solved conversation reopens it; on a Closed one it
/// opens a new conversation.
#[test]
fn r_thread_2_reply_reopens_a_solved_conversation() {
    let mut s = Scenario::new();
    s.sms(t(0), "m1", "+1", "help")
        .command(t(1), "c1", "#1", set_status(Status::Solved))
        .sms(t(2), "m2", "+1", "still broken");
    let out = s.run();
    assert_eq!(
        out.status_changes(),
        vec![
            (1, Status::Open, Status::Solved, "command".into()),
            (1, Status::Solved, Status::Open, "reopened".into())
        ]
    );
    assert_eq!(out.opened(), vec![1]);
    assert_eq!(out.short_id_of_message("m2"), 1);
}

/// R-THREAD-3: merging B into A: A keeps its queue and priority, tags are united, B is
/// Closed with reason `merged`, and B's address now threads into A.
#[test]
fn r_thread_3_merge() {
    let mut s = Scenario::new();
    s.upsert_queue(t(0), queue("vip"));
    s.upsert_route(
        t(0),
        1,
        route(
            "vip",
            1,
            leaf("from", Operator::Is, "+1"),
            "vip",
            Priority::High,
        ),
    );
    s.sms(t(1), "m1", "+1", "a")
        .inbound(t(2), message("m2", Channel::LiveChat, "visitor-9", "b"));
    s.command(
        t(3),
        "c1",
        "#1",
        CommandKind::AddTags(TagList {
            tags: vec!["billing".into()],
        }),
    );
    s.command(
        t(3),
        "c2",
        "#2",
        CommandKind::AddTags(TagList {
            tags: vec!["web".into(), "billing".into()],
        }),
    );
    s.command(
        t(4),
        "c3",
        "#1",
        CommandKind::Merge(Merge {
            source_conversation_id: "#2".into(),
        }),
    );
    s.inbound(
        t(5),
        message("m3", Channel::LiveChat, "visitor-9", "me again"),
    );
    s.command(
        t(6),
        "c4",
        "#1",
        CommandKind::Merge(Merge {
            source_conversation_id: "#1".into(),
        }),
    );
    s.command(
        t(7),
        "c5",
        "#2",
        CommandKind::Reply(Reply {
            content: "x".into(),
            automated: false,
        }),
    );
    let out = s.run();
    let merged: Vec<_> = out
        .conversation_events()
        .into_iter()
        .filter_map(|e| match &e.event {
            ConversationEventKind::Merged(m) => Some((e.short_id, m.tags.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        merged,
        vec![(1, vec!["billing".to_string(), "web".to_string()])]
    );
    assert_eq!(
        out.status_changes(),
        vec![(2, Status::Open, Status::Closed, "merged".into())]
    );
    assert_eq!(
        out.short_id_of_message("m3"),
        1,
        "B's address now leads to A"
    );
    assert_eq!(out.queue_of(1), "vip");
    let reasons: Vec<&str> = out
        .dead_letters()
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons[0].contains("cannot be merged into itself"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("is closed"), "{reasons:?}");
}

/// R-TOPIC, SPEC §11: a command on an unknown conversation goes to the dead-letter topic with
/// the reason and its source, and the stream keeps flowing.
#[test]
fn command_on_unknown_conversation_is_dead_lettered() {
    let mut s = Scenario::new();
    s.command(t(0), "c1", "cv-nope", set_status(Status::Solved))
        .sms(t(1), "m1", "+1", "hi");
    let out = s.run();
    let dlq = out.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].source_topic.as_str(), dlq[0].reason.as_str()),
        ("cc.commands", "unknown conversation \"cv-nope\"")
    );
    assert_eq!(out.opened(), vec![1]);
}

/// R-THREAD: replies go out over the channel of the customer's last inbound message.
#[test]
fn reply_goes_over_the_last_inbound_channel() {
    let mut s = Scenario::new();
    let mut m = message("m2", Channel::Whatsapp, "+1", "switching to WhatsApp");
    m.to = "+200".into();
    s.sms(t(0), "m1", "+1", "hi").inbound(t(1), m);
    s.command(
        t(2),
        "c1",
        "#1",
        CommandKind::Reply(Reply {
            content: "Hello!".into(),
            automated: false,
        }),
    );
    let out = s.run();
    let sent = out.outbound(OutboundKind::Agent);
    assert_eq!(
        (sent[0].channel, sent[0].from.as_str(), sent[0].to.as_str()),
        (Channel::Whatsapp, "+200", "+1")
    );
}

/// SPEC §2: a rejected config change (invalid or stale) leaves the previous config in force.
#[test]
fn rejected_config_change_leaves_old_config_in_force() {
    let mut s = Scenario::new();
    s.upsert_queue(t(0), queue("sales"));
    s.upsert_route(
        t(0),
        5,
        route(
            "r",
            1,
            leaf("content", Operator::Contains, "buy"),
            "sales",
            Priority::High,
        ),
    );
    // Invalid: unknown queue. Stale: version 4 < 5. Deleting the Default queue.
    s.upsert_route(
        t(1),
        6,
        route(
            "r",
            1,
            leaf("content", Operator::Contains, "buy"),
            "ghost",
            Priority::Low,
        ),
    );
    s.upsert_route(
        t(1),
        4,
        route(
            "r",
            1,
            leaf("content", Operator::Contains, "nothing"),
            "sales",
            Priority::Low,
        ),
    );
    s.config(
        t(1),
        1,
        ConfigChangeKind::DeleteQueue(DeleteQueue {
            queue_id: "default".into(),
        }),
    );
    // A queue a route leads to cannot be deleted (version 2: after the queue's upsert).
    s.config(
        t(1),
        2,
        ConfigChangeKind::DeleteQueue(DeleteQueue {
            queue_id: "sales".into(),
        }),
    );
    s.sms(t(2), "m1", "+1", "I want to buy");
    let out = s.run();
    assert_eq!(
        out.rejected_fields(),
        vec!["route.queue_id", "version", "queue_id", "queue_id"]
    );
    assert_eq!(
        out.routed()[0],
        (
            1,
            "sales".to_string(),
            Priority::High,
            Some("r".to_string())
        )
    );
}
