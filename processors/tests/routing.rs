//! Routing and the condition language (SPEC §4.1, §4.2, §4.5).

mod common;
use common::*;
use switchboard_processors::condition::{self, MessageFacts};
use switchboard_processors::state::SortedSet;
use switchboard_schemas::*;

const T0: &str = "2026-03-02T10:00";

fn routed_scenario(routes: Vec<Route>) -> Scenario {
    let t = utc(T0);
    let mut s = Scenario::new();
    for q in ["sales", "support", "vip"] {
        s.upsert_queue(t, queue(q));
    }
    for r in routes {
        s.upsert_route(t, 1, r);
    }
    s
}

/// R-ROUTE-1: routes are tried in their configured order and the first match wins.
#[test]
fn r_route_1_first_matching_route_in_order_wins() {
    let refund = leaf("content", Operator::Contains, "refund");
    let anything = leaf("channel", Operator::Exists, "");
    // Inserted out of order: `order` decides, not insertion.
    let mut s = routed_scenario(vec![
        route("catch-all", 20, anything, "support", Priority::Low),
        route("refunds", 10, refund, "sales", Priority::High),
    ]);
    let t = utc(T0) + 1000;
    s.sms(t, "m1", "+1", "I want a REFUND")
        .sms(t, "m2", "+2", "hello");
    let out = s.run();
    assert_eq!(
        out.routed(),
        vec![
            (
                1,
                "sales".to_string(),
                Priority::High,
                Some("refunds".to_string())
            ),
            (
                2,
                "support".to_string(),
                Priority::Low,
                Some("catch-all".to_string())
            ),
        ]
    );
}

/// R-ROUTE-1: a disabled route is skipped even when it comes first and matches.
#[test]
fn r_route_1_disabled_routes_are_skipped() {
    let mut first = route(
        "first",
        1,
        leaf("from", Operator::StartsWith, "+1"),
        "vip",
        Priority::Urgent,
    );
    first.enabled = false;
    let mut s = routed_scenario(vec![
        first,
        route(
            "second",
            2,
            leaf("from", Operator::StartsWith, "+1"),
            "sales",
            Priority::Normal,
        ),
    ]);
    s.sms(utc(T0) + 1, "m1", "+1555", "hi");
    assert_eq!(s.run().routed()[0].3.as_deref(), Some("second"));
}

/// R-ROUTE-1: no matching route: the Default queue with priority Normal; also a tenant with
/// no config at all.
#[test]
fn r_route_1_no_match_goes_to_default_queue_with_normal_priority() {
    let mut s = routed_scenario(vec![route(
        "vip",
        1,
        leaf("person.tags", Operator::Contains, "vip"),
        "vip",
        Priority::High,
    )]);
    s.sms(utc(T0) + 1, "m1", "+1", "hi");
    assert_eq!(
        s.run().routed(),
        vec![(1, "default".to_string(), Priority::Normal, None)]
    );
    let mut bare = Scenario::new();
    bare.sms(utc(T0), "m1", "+1", "hi");
    assert_eq!(
        bare.run().routed(),
        vec![(1, "default".to_string(), Priority::Normal, None)]
    );
}

fn rich_message() -> InboundMessage {
    let mut m = message(
        "m",
        Channel::Whatsapp,
        "+385911234567",
        "Where is my Invoice?",
    );
    m.person = Some(Person {
        id: Some("p1".into()),
        attributes: [
            ("city".to_string(), "Zagreb".to_string()),
            ("birth_date".to_string(), "1990-05-17".to_string()),
        ]
        .into(),
        custom: [("tier".to_string(), "Gold".to_string())].into(),
        tags: vec!["VIP".into(), "newsletter".into()],
    });
    m.email = Some(EmailHeaders {
        cc: vec!["boss@acme.test".into()],
        subject: "Invoice 42".into(),
        ..EmailHeaders::default()
    });
    m.custom = [("order".to_string(), "A-100".to_string())].into();
    m.is_visitor = true;
    m
}

fn eval(c: &Condition) -> bool {
    let m = rich_message();
    let tags: SortedSet<String> = ["urgent".to_string()].into_iter().collect();
    let facts = MessageFacts {
        message: &m,
        conversation_tags: &tags,
        sender_queues: vec!["sales".into()],
    };
    condition::validate(c, "c").unwrap_or_else(|e| panic!("invalid test condition {c:?}: {e:?}"));
    condition::eval(c, &facts)
}

fn list(attribute: &str, op: Operator, values: &[&str]) -> Condition {
    Condition {
        attribute: Some(attribute.into()),
        operator: Some(op),
        values: values.iter().map(|v| v.to_string()).collect(),
        ..Condition::default()
    }
}

/// R-ROUTE-2: every operator on a present attribute, case-insensitively.
#[test]
fn r_route_2_every_operator_on_a_present_attribute() {
    use Operator::*;
    let cases: Vec<(Condition, bool)> = vec![
        (leaf("channel", Is, "WHATSAPP"), true),
        (leaf("channel", Is, "sms"), false),
        (leaf("channel", IsNot, "sms"), true),
        (leaf("channel", IsNot, "WhatsApp"), false),
        (leaf("from", StartsWith, "+385"), true),
        (leaf("from", StartsWith, "+1"), false),
        (leaf("content", Contains, "invoice"), true),
        (leaf("content", Contains, "refund"), false),
        (leaf("content", DoesNotContain, "refund"), true),
        (leaf("content", DoesNotContain, "INVOICE"), false),
        (list("person.city", InList, &["Split", "zagreb"]), true),
        (list("person.city", InList, &["Split"]), false),
        (leaf("person.city", InList, "split, ZAGREB"), true),
        (list("person.city", NotInList, &["Split"]), true),
        (list("person.city", NotInList, &["ZAGREB"]), false),
        (leaf("person.birth_date", BeforeOrOn, "1990-05-17"), true),
        (leaf("person.birth_date", BeforeOrOn, "1990-05-16"), false),
        (leaf("person.birth_date", AfterOrOn, "1990-05-17"), true),
        (leaf("person.birth_date", AfterOrOn, "1990-05-18"), false),
        (leaf("person.custom.tier", Exists, ""), true),
        (leaf("person.custom.tier", NotExists, ""), false),
        (leaf("person.custom.tier", Is, "gold"), true),
        (leaf("custom.order", StartsWith, "a-"), true),
        (leaf("is_visitor", Is, "true"), true),
        (leaf("email.subject", Contains, "invoice"), true),
        (leaf("sender_queue", Is, "sales"), true),
    ];
    for (c, want) in cases {
        assert_eq!(eval(&c), want, "{c:?}");
    }
}

/// R-ROUTE-2: a missing attribute makes every operator false except is_not,
/// does_not_contain, not_in_list and not_exists, which hold.
#[test]
fn r_route_2_missing_attribute_rule_for_every_operator() {
    for op in Operator::ALL {
        let c = match op {
            Operator::InList | Operator::NotInList => list("company.name", op, &["Initech"]),
            Operator::BeforeOrOn | Operator::AfterOrOn => leaf("company.name", op, "2020-01-01"),
            _ => leaf("company.name", op, "Initech"),
        };
        let want = matches!(
            op,
            Operator::IsNot | Operator::DoesNotContain | Operator::NotInList | Operator::NotExists
        );
        assert_eq!(eval(&c), want, "{op:?} on a missing attribute");
        // An empty list attribute counts as missing too.
        let c = Condition {
            attribute: Some("email.bcc".into()),
            ..c
        };
        assert_eq!(eval(&c), want, "{op:?} on an empty list");
    }
}

/// R-ROUTE-2: list attributes (tags, recipients) match when any element does; negative
/// operators hold when no element matches.
#[test]
fn r_route_2_list_attributes_match_any_element() {
    assert!(eval(&leaf("person.tags", Operator::Is, "vip")));
    assert!(!eval(&leaf("person.tags", Operator::IsNot, "vip")));
    assert!(eval(&leaf("person.tags", Operator::IsNot, "blocked")));
    assert!(eval(&leaf("conversation.tags", Operator::Contains, "urg")));
    assert!(eval(&list(
        "email.cc",
        Operator::InList,
        &["BOSS@acme.test"]
    )));
}

/// R-ROUTE-2: nested all / any / not.
#[test]
fn r_route_2_nested_all_any_not() {
    use Operator::*;
    let whatsapp_vip_not_blocked = all(vec![
        leaf("channel", Is, "whatsapp"),
        any(vec![
            leaf("person.tags", Is, "gold"),
            leaf("person.custom.tier", Is, "gold"),
        ]),
        not(any(vec![
            leaf("person.tags", Is, "blocked"),
            leaf("from", StartsWith, "+1"),
        ])),
    ]);
    assert!(eval(&whatsapp_vip_not_blocked));
    let blocked = all(vec![
        leaf("channel", Is, "whatsapp"),
        not(leaf("person.tags", Is, "vip")),
    ]);
    assert!(!eval(&blocked));
    assert!(eval(&not(not(leaf("channel", Is, "whatsapp")))));
    assert!(eval(&any(vec![
        leaf("channel", Is, "sms"),
        all(vec![
            leaf("content", Contains, "where"),
            leaf("person.city", Is, "zagreb")
        ])
    ])));
}

/// R-ROUTE-2 and SPEC §2: a malformed condition is rejected naming the field; the previous
/// route stays in force.
#[test]
fn r_route_2_invalid_condition_rejected_naming_the_field() {
    let good = route(
        "r",
        1,
        leaf("content", Operator::Contains, "refund"),
        "sales",
        Priority::High,
    );
    let mut bad = good.clone();
    bad.queue_id = "support".into();
    bad.condition = all(vec![
        leaf("content", Operator::Contains, "x"),
        Condition {
            attribute: Some("channel".into()),
            ..Condition::default()
        },
    ]);
    let mut unknown = good.clone();
    unknown.condition = leaf("shoe_size", Operator::Is, "42");
    let mut s = routed_scenario(vec![good]);
    let t = utc(T0) + 1;
    s.upsert_route(t, 2, bad)
        .upsert_route(t, 3, unknown)
        .sms(t + 1, "m1", "+1", "refund please");
    let out = s.run();
    assert_eq!(
        out.rejected_fields(),
        vec![
            "route.condition.all[1].operator",
            "route.condition.attribute"
        ]
    );
    assert_eq!(
        out.routed()[0].1,
        "sales",
        "the old route is still in force"
    );
}

/// R-ROUTE-5: a route change does not move an already routed conversation; ChangeQueue does.
#[test]
fn r_route_5_routed_conversations_move_only_by_command() {
    let mut s = routed_scenario(vec![route(
        "r",
        1,
        leaf("content", Operator::Contains, "refund"),
        "sales",
        Priority::Normal,
    )]);
    let t = utc(T0) + 1;
    s.sms(t, "m1", "+1", "refund")
        .upsert_route(
            t + 1,
            2,
            route(
                "r",
                1,
                leaf("content", Operator::Contains, "refund"),
                "support",
                Priority::Normal,
            ),
        )
        .sms(t + 2, "m2", "+1", "refund again")
        .sms(t + 3, "m3", "+2", "refund too")
        .command(
            t + 4,
            "c1",
            "#1",
            CommandKind::ChangeQueue(ChangeQueue {
                queue_id: "vip".into(),
            }),
        )
        .command(
            t + 5,
            "c2",
            "#1",
            CommandKind::ChangeQueue(ChangeQueue {
                queue_id: "nowhere".into(),
            }),
        );
    let out = s.run();
    assert_eq!(
        out.routed()
            .iter()
            .map(|r| (r.0, r.1.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "sales"), (2, "support")]
    );
    let moves: Vec<_> = out
        .conversation_events()
        .into_iter()
        .filter_map(|e| match &e.event {
            ConversationEventKind::QueueChanged(q) => {
                Some((e.short_id, q.from_queue.clone(), q.to_queue.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(moves, vec![(1, "sales".to_string(), "vip".to_string())]);
    let dlq = out.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason, "unknown queue \"nowhere\"");
}

/// R-ROUTE-2: `sender_queue` is the set of queues whose senders include our `to` address.
#[test]
fn r_route_2_sender_queue_attribute() {
    let t = utc(T0);
    let mut s = Scenario::new();
    let mut sales = queue("sales");
    sales.senders = vec!["+100".into()];
    s.upsert_queue(t, sales).upsert_queue(t, queue("vip"));
    s.upsert_route(
        t,
        1,
        route(
            "by-sender",
            1,
            leaf("sender_queue", Operator::Is, "sales"),
            "vip",
            Priority::High,
        ),
    );
    let mut other = message("m2", Channel::Sms, "+2", "hi");
    other.to = "+999".into();
    s.sms(t + 1, "m1", "+1", "hi").inbound(t + 2, other);
    let out = s.run();
    assert_eq!(out.queue_of(1), "vip");
    assert_eq!(out.queue_of(2), "default");
}
