//! R-TOPIC: every record type, and every branch of every union, round-trips through Avro
//! single-object bytes and through the JSON mirror unchanged, so a schema in `schemas/avro/`
//! and its Rust type cannot drift apart without this test failing.

use std::collections::BTreeMap;
use switchboard_schemas::*;

fn map(pairs: &[(&str, &str)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn inputs() -> Vec<Input> {
    let cmd = |kind: CommandKind| {
        Input::Command(Command {
            id: "c1".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            by: Some("agent-7".into()),
            command: kind,
        })
    };
    let cfg = |change: ConfigChangeKind| {
        Input::Config(ConfigChange {
            id: "cfg-1".into(),
            tenant: "acme".into(),
            version: 3,
            change,
        })
    };
    let agent = |event: AgentEventKind| {
        Input::Agent(AgentEvent {
            id: "a1".into(),
            tenant: "acme".into(),
            agent_id: "ana".into(),
            event,
        })
    };
    let leaf = |attr: &str, op: Operator, value: &str| Condition {
        attribute: Some(attr.into()),
        operator: Some(op),
        value: Some(value.into()),
        ..Condition::default()
    };
    vec![
        Input::Inbound(InboundMessage {
            id: "m1".into(),
            tenant: "acme".into(),
            channel: Channel::Whatsapp,
            from: "+385911234567".into(),
            to: "+38516000000".into(),
            content: "Still waiting for my refund 😡".into(),
            person: Some(Person {
                id: Some("p-1".into()),
                attributes: map(&[("city", "Zagreb"), ("country", "HR")]),
                custom: map(&[("tier", "gold")]),
                tags: vec!["vip".into()],
            }),
            company: Some(Company {
                attributes: map(&[("name", "Initech")]),
                custom: map(&[]),
            }),
            email: Some(EmailHeaders {
                from: "a@b.c".into(),
                to: vec!["support@acme.test".into()],
                cc: vec!["x@y.z".into()],
                bcc: vec![],
                subject: "Refund".into(),
                routed_to: vec!["support@acme.test".into()],
            }),
            custom: map(&[("order", "A-1")]),
            ivr: map(&[("lang", "en")]),
            is_visitor: true,
        }),
        Input::Inbound(InboundMessage {
            id: "m2".into(),
            tenant: "acme".into(),
            channel: Channel::LiveChat,
            from: "visitor-1".into(),
            to: "widget-1".into(),
            content: String::new(),
            person: None,
            company: None,
            email: None,
            custom: Map::new(),
            ivr: Map::new(),
            is_visitor: false,
        }),
        agent(AgentEventKind::AgentStatusChanged(AgentStatusChange {
            status: "Available".into(),
        })),
        agent(AgentEventKind::AgentUpdated(AgentUpdate {
            enabled: Some(true),
            queues: Some(vec!["billing".into()]),
            capacity: Some(BTreeMap::from([("email".to_string(), 10)])),
        })),
        agent(AgentEventKind::AgentUpdated(AgentUpdate::default())),
        agent(AgentEventKind::CallStarted(CallRef {
            call_id: "call-1".into(),
        })),
        agent(AgentEventKind::CallEnded(CallRef {
            call_id: "call-1".into(),
        })),
        cmd(CommandKind::Reply(Reply {
            content: "Hello".into(),
            automated: true,
        })),
        cmd(CommandKind::SetStatus(SetStatus {
            status: Status::Solved,
        })),
        cmd(CommandKind::Assign(Assign {
            agent_id: "ana".into(),
            only_if_unassigned: false,
        })),
        cmd(CommandKind::Unassign(Unassign {})),
        cmd(CommandKind::ChangeQueue(ChangeQueue {
            queue_id: "billing".into(),
        })),
        cmd(CommandKind::SetPriority(SetPriority {
            priority: Priority::Urgent,
        })),
        cmd(CommandKind::SetSeverity(SetSeverity {
            severity: "high".into(),
        })),
        cmd(CommandKind::AddTags(TagList {
            tags: vec!["refund".into()],
        })),
        cmd(CommandKind::RemoveTags(TagList {
            tags: vec!["refund".into()],
        })),
        cmd(CommandKind::Merge(Merge {
            source_conversation_id: "conv-2".into(),
        })),
        cmd(CommandKind::AddNote(AddNote {
            text: "called back".into(),
        })),
        cmd(CommandKind::SetFormField(SetFormField {
            field: "order_number".into(),
            value: Some("A-1001".into()),
        })),
        cfg(ConfigChangeKind::UpsertQueue(UpsertQueue {
            queue: Queue {
                id: "billing".into(),
                name: "Billing".into(),
                working_hours_id: Some("office".into()),
                senders: vec!["+38516000000".into()],
                auto_assign: true,
                bot: false,
                sticky_lookback: Some(StickyLookback::Days60),
            },
        })),
        cfg(ConfigChangeKind::DeleteQueue(DeleteQueue {
            queue_id: "billing".into(),
        })),
        cfg(ConfigChangeKind::UpsertRoute(UpsertRoute {
            route: Route {
                id: "r1".into(),
                name: "VIP WhatsApp".into(),
                order: 1,
                enabled: false,
                condition: Condition {
                    all: vec![
                        leaf("channel", Operator::Is, "whatsapp"),
                        Condition {
                            any: vec![
                                leaf("person.tags", Operator::Contains, "vip"),
                                Condition {
                                    not: Some(Box::new(leaf("from", Operator::StartsWith, "+1"))),
                                    ..Condition::default()
                                },
                            ],
                            ..Condition::default()
                        },
                        Condition {
                            attribute: Some("person.country".into()),
                            operator: Some(Operator::InList),
                            values: vec!["HR".into(), "SI".into()],
                            ..Condition::default()
                        },
                    ],
                    ..Condition::default()
                },
                queue_id: "billing".into(),
                priority: Priority::High,
            },
        })),
        cfg(ConfigChangeKind::DeleteRoute(DeleteRoute {
            route_id: "r1".into(),
        })),
        cfg(ConfigChangeKind::UpsertWorkingHours(UpsertWorkingHours {
            period: WorkingHours {
                id: "office".into(),
                name: "Office".into(),
                time_zone: "Europe/Zagreb".into(),
                is_default: true,
                week: Week {
                    monday: vec![Interval {
                        start: "08:00".into(),
                        end: "16:00".into(),
                    }],
                    saturday: vec![Interval {
                        start: "09:00".into(),
                        end: "12:00".into(),
                    }],
                    ..Week::default()
                },
                holidays: vec![Holiday {
                    name: "Xmas".into(),
                    start: "2026-12-24".into(),
                    end: "2026-12-26".into(),
                }],
                away_message: Some("We are closed".into()),
                close_after_away: true,
            },
        })),
        cfg(ConfigChangeKind::DeleteWorkingHours(DeleteWorkingHours {
            period_id: "office".into(),
        })),
        cfg(ConfigChangeKind::SetCapacityDefaults(CapacityDefaults {
            live_messaging: 6,
            live_chat: 5,
            email: 10,
        })),
        cfg(ConfigChangeKind::SetCountedStatuses(CountedStatuses {
            waiting: false,
            solved: true,
        })),
        cfg(ConfigChangeKind::UpsertSlaPolicy(UpsertSlaPolicy {
            policy: SlaPolicy {
                id: "gold".into(),
                name: "Gold customers".into(),
                order: 1,
                enabled: true,
                valid_from: Some(1_767_225_600_000),
                valid_to: None,
                condition: Some(leaf("person.custom.tier", Operator::Is, "gold")),
                queue_filter: QueueFilter::Ignore,
                queue_ids: vec!["spam".into()],
                exclude_automated: true,
                default_severity: "normal".into(),
                severities: vec![
                    Severity {
                        name: "normal".into(),
                        first_response_minutes: Some(60),
                        next_reply_minutes: Some(120),
                        resolution_minutes: Some(1440),
                        counting: Counting::WorkingHours,
                    },
                    Severity {
                        name: "critical".into(),
                        first_response_minutes: Some(5),
                        next_reply_minutes: None,
                        resolution_minutes: None,
                        counting: Counting::Always,
                    },
                ],
            },
        })),
        cfg(ConfigChangeKind::DeleteSlaPolicy(DeleteSlaPolicy {
            policy_id: "gold".into(),
        })),
        cfg(ConfigChangeKind::ReorderSlaPolicies(ReorderSlaPolicies {
            policy_ids: vec!["b".into(), "a".into()],
        })),
        cfg(ConfigChangeKind::UpsertWaitingStrategy(
            UpsertWaitingStrategy {
                strategy: WaitingStrategy {
                    id: "ws".into(),
                    sender: "+38516000000".into(),
                    welcome: Some("Hi! An agent will be with you shortly.".into()),
                    announcement: Some(Announcement {
                        text: "Thanks for waiting.".into(),
                        interval_seconds: 120,
                        max_count: 5,
                    }),
                    max_wait: Some(MaxWait {
                        text: "Sorry, please call us.".into(),
                        after_seconds: 1800,
                    }),
                },
            },
        )),
        cfg(ConfigChangeKind::SetSurveySettings(SurveySettings {
            enabled: true,
            delay_seconds: 60,
            minimum_span_hours: 24,
            answer_window_hours: 48,
            question: "Happy? 1 yes, 2 no".into(),
            follow_up: Some("Tell us more?".into()),
        })),
        cfg(ConfigChangeKind::SetSentiment(SetSentiment {
            enabled: true,
        })),
        cfg(ConfigChangeKind::DeleteWaitingStrategy(
            DeleteWaitingStrategy {
                strategy_id: "ws".into(),
            },
        )),
        cfg(ConfigChangeKind::UpsertAgentStatus(AgentStatusDef {
            name: "Training".into(),
            group: StatusGroup::Away,
        })),
        cfg(ConfigChangeKind::UpsertWorkflow(UpsertWorkflow {
            workflow: every_trigger_and_action(),
        })),
        cfg(ConfigChangeKind::DeleteWorkflow(DeleteWorkflow {
            workflow_id: "wf".into(),
        })),
        cfg(ConfigChangeKind::ReorderWorkflows(ReorderWorkflows {
            workflow_ids: vec!["wf-2".into(), "wf".into()],
        })),
        Input::Tick(Tick::default()),
    ]
}

/// A workflow with one of every trigger and every action (SPEC §10).
fn every_trigger_and_action() -> Workflow {
    let after = |seconds| AfterSeconds { seconds };
    Workflow {
        id: "wf".into(),
        name: "Everything".into(),
        order: 1,
        enabled: true,
        triggers: vec![
            WorkflowTrigger::StatusChangedTo(StatusTrigger {
                status: Status::Solved,
            }),
            WorkflowTrigger::ConversationQueueChanged(NoFields {}),
            WorkflowTrigger::ConversationTagsChanged(NoFields {}),
            WorkflowTrigger::InboundMessageReceived(NoFields {}),
            WorkflowTrigger::AgentMessageSent(NoFields {}),
            WorkflowTrigger::SurveyFeedbackReceived(ScoreTrigger {
                scores: vec![CsatScore::NotHappy],
            }),
            WorkflowTrigger::NoteCreated(NoFields {}),
            WorkflowTrigger::ConversationFormFieldUpdated(FormTrigger {
                field: Some("order_number".into()),
            }),
            WorkflowTrigger::CustomerDidNotReplyFor(after(600)),
            WorkflowTrigger::AgentDidNotReplyFor(after(300)),
            WorkflowTrigger::SolvedUnmodifiedFor(after(86_400)),
            WorkflowTrigger::SolvedFor(after(3_600)),
            WorkflowTrigger::WaitingFor(after(7_200)),
        ],
        condition: Some(Condition {
            attribute: Some("conversation.queue".into()),
            operator: Some(Operator::Is),
            value: Some("billing".into()),
            ..Condition::default()
        }),
        actions: vec![
            WorkflowAction::SendMessage(MessageText {
                content: "About #{{conversation.short_id}}".into(),
            }),
            WorkflowAction::ApplyTags(TagList {
                tags: vec!["late".into()],
            }),
            WorkflowAction::RemoveTags(TagList {
                tags: vec!["new".into()],
            }),
            WorkflowAction::SetSolved(NoFields {}),
            WorkflowAction::SetConversationPriority(SetPriority {
                priority: Priority::High,
            }),
            WorkflowAction::UnassignAgent(NoFields {}),
            WorkflowAction::SendSurvey(NoFields {}),
            WorkflowAction::AddNote(AddNote {
                text: "reassigned".into(),
            }),
            WorkflowAction::CallApi(CallApi {
                method: "POST".into(),
                url: "https://crm.example/hook".into(),
                content_type: "application/json".into(),
                headers: map(&[("X-Key", "1")]),
                body: "{}".into(),
            }),
            WorkflowAction::CloseConversation(NoFields {}),
        ],
    }
}

fn outputs() -> Vec<Output> {
    let conv = |event: ConversationEventKind| {
        Output::Conversation(ConversationEvent {
            id: "m1#0".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            short_id: 42,
            event,
        })
    };
    let asg = |event: AssignmentEventKind| {
        Output::Assignment(AssignmentEvent {
            id: "x#1".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            event,
        })
    };
    let sla = |event: SlaEventKind| {
        Output::Sla(SlaEvent {
            id: "x#2".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            event,
        })
    };
    let sent = |event: SentimentEventKind| {
        Output::Sentiment(SentimentEvent {
            id: "x#3".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            event,
        })
    };
    let csat = |event: CsatEventKind| {
        Output::Csat(CsatEvent {
            id: "x#4".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            event,
        })
    };
    let agent = |event: AgentStateEventKind| {
        Output::AgentState(AgentStateEvent {
            id: "x#5".into(),
            tenant: "acme".into(),
            agent_id: "ana".into(),
            event,
        })
    };
    let cfg = |event: ConfigEventKind| {
        Output::Config(ConfigEvent {
            id: "cfg-1#0".into(),
            tenant: "acme".into(),
            version: 7,
            event,
        })
    };
    vec![
        conv(ConversationEventKind::Opened(Opened {
            channel: Channel::Sms,
            from: "+1555".into(),
            to: "+1666".into(),
            direction: Direction::Inbound,
            person_id: Some("p-1".into()),
        })),
        conv(ConversationEventKind::MessageReceived(MessageReceived {
            message_id: "m1".into(),
            channel: Channel::Sms,
            from: "+1555".into(),
            content: "hi".into(),
        })),
        conv(ConversationEventKind::Routed(Routed {
            queue_id: "default".into(),
            priority: Priority::Normal,
            route_id: None,
        })),
        conv(ConversationEventKind::StatusChanged(StatusChanged {
            from: Status::Solved,
            to: Status::Open,
            reason: Some("reopened".into()),
        })),
        conv(ConversationEventKind::Merged(Merged {
            source_conversation_id: "conv-2".into(),
            tags: vec!["a".into()],
        })),
        conv(ConversationEventKind::TagsChanged(TagList { tags: vec![] })),
        conv(ConversationEventKind::PriorityChanged(SetPriority {
            priority: Priority::Low,
        })),
        conv(ConversationEventKind::QueueChanged(QueueChanged {
            from_queue: "default".into(),
            to_queue: "billing".into(),
        })),
        conv(ConversationEventKind::NoteAdded(NoteAdded {
            text: "n".into(),
            by: None,
        })),
        conv(ConversationEventKind::AgentReplied(AgentReplied {
            message_id: "c1".into(),
            by: Some("ana".into()),
            automated: false,
        })),
        conv(ConversationEventKind::FormFieldUpdated(FormFieldUpdated {
            field: "order_number".into(),
            value: None,
            by: Some("ana".into()),
        })),
        conv(ConversationEventKind::WorkflowRan(WorkflowRan {
            workflow_id: "wf".into(),
            trigger: "agent_did_not_reply_for".into(),
            actions: vec!["add_note".into(), "unassign_agent".into()],
        })),
        Output::Outbound(OutboundMessage {
            id: "m1#3".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            channel: Channel::Email,
            from: "support@acme.test".into(),
            to: "c@d.e".into(),
            kind: OutboundKind::Away,
            content: "We are closed".into(),
        }),
        asg(AssignmentEventKind::Assigned(Assigned {
            agent_id: "ana".into(),
            method: AssignMethod::Single,
            score: Some(0.708),
        })),
        asg(AssignmentEventKind::Unassigned(AgentReason {
            agent_id: "ana".into(),
            reason: "queue_changed".into(),
        })),
        asg(AssignmentEventKind::AssignmentRejected(AgentReason {
            agent_id: "bo".into(),
            reason: "already_assigned".into(),
        })),
        sla(SlaEventKind::SlaApplied(SlaApplied {
            policy_id: "p".into(),
            severity: "high".into(),
            first_response_due: Some(1_700_000_000_000),
            next_reply_due: None,
            resolution_due: Some(1_800_000_000_000),
        })),
        sla(SlaEventKind::SlaBreached(SlaBreached {
            metric: SlaMetric::FirstResponse,
            due_at: 1,
            breached_at: 2,
        })),
        sla(SlaEventKind::SlaMet(SlaMet {
            metric: SlaMetric::Resolution,
            elapsed_business_ms: 60_000,
        })),
        sla(SlaEventKind::SlaRecalculated(SlaRecalculated {
            policy_id: None,
            severity: None,
            first_response_due: None,
            next_reply_due: Some(5),
            resolution_due: None,
        })),
        sent(SentimentEventKind::MessageSentiment(MessageSentiment {
            message_id: "m1".into(),
            score: -0.62,
            label: SentimentLabel::Negative,
            model: Some("lr19-0a1b2c3d".into()),
            language: None,
        })),
        sent(SentimentEventKind::ConversationSentiment(
            ConversationSentiment {
                score: 0.1,
                label: SentimentLabel::Neutral,
                messages: 3,
            },
        )),
        csat(CsatEventKind::SurveySent(SurveySent {
            channel: Channel::Telegram,
            to: "@c".into(),
        })),
        csat(CsatEventKind::SurveySuppressed(SurveySuppressed {
            reason: "minimum_span".into(),
        })),
        csat(CsatEventKind::SurveyFeedback(SurveyFeedback {
            score: Some(CsatScore::NotHappy),
            comment: Some("slow".into()),
            queue_id: Some("billing".into()),
            agent_id: None,
        })),
        agent(AgentStateEventKind::AgentStatus(AgentStatus {
            status: "Full capacity".into(),
            group: StatusGroup::Busy,
        })),
        agent(AgentStateEventKind::AgentCapacityChanged(
            AgentCapacityChanged {
                full: true,
                workload_percent: 93.33,
            },
        )),
        Output::Action(ActionRequest {
            id: "x#6".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            workflow_id: "wf".into(),
            idempotency_key: "sb-0123456789abcdef".into(),
            action: ActionKind::CallApi(CallApi {
                method: "POST".into(),
                url: "https://crm.example/hook".into(),
                content_type: "application/json".into(),
                headers: map(&[("X-Key", "1")]),
                body: "{\"id\": \"{{conversation.short_id}}\"}".into(),
            }),
        }),
        Output::ActionOutcome(ActionOutcome {
            id: "x#6".into(),
            tenant: "acme".into(),
            conversation_id: "conv-1".into(),
            workflow_id: "crm".into(),
            idempotency_key: "sb-0123456789abcdef".into(),
            outcome: ActionResult::Failed,
            status: Some(503),
            attempts: 5,
            error: Some("HTTP 503 Service Unavailable".into()),
            latency_ms: 31_250,
        }),
        Output::Analytics(AnalyticsWindow {
            id: "acme/analytics/1772442000000@1772442090000#0".into(),
            tenant: "acme".into(),
            dimension: AnalyticsDimension::Queue,
            key: "billing".into(),
            window_start: 1_772_442_000_000,
            window_end: 1_772_442_060_000,
            correction: false,
            offered: 12,
            assigned: 10,
            abandoned: 1,
            solved: 7,
            time_to_assign: Distribution {
                count: 10,
                sum_ms: 95_000,
                max_ms: 30_000,
                p50_ms: Some(8_100),
                p90_ms: Some(21_000),
            },
            first_response: Distribution::default(),
            handling: Distribution::default(),
            sla_met: SlaCounts {
                first_response: 6,
                next_reply: 2,
                resolution: 0,
            },
            sla_breached: SlaCounts::default(),
            csat_happy: 3,
            csat_not_happy: 1,
            sentiment_positive: 4,
            sentiment_neutral: 6,
            sentiment_negative: 2,
        }),
        Output::DeadLetter(DeadLetter {
            id: "dlq-1".into(),
            source_topic: "cc.inbound".into(),
            source_partition: Some(2),
            source_offset: Some(99),
            source_line: None,
            key: Some("acme".into()),
            value: Bytes(vec![0, 1, 0xC3, 0xFF, b'{']),
            reason: "not Avro".into(),
        }),
        cfg(ConfigEventKind::ConfigApplied(ConfigApplied {
            entity: "queue/billing".into(),
        })),
        cfg(ConfigEventKind::ConfigRejected(ConfigRejected {
            entity: "route/r1".into(),
            field: "route.condition.operator".into(),
            reason: "missing".into(),
        })),
    ]
}

#[test]
fn every_input_record_round_trips_through_avro_and_json() {
    let codec = Codec::new().expect("schemas parse");
    for input in inputs() {
        let bytes = codec
            .schema(input.topic())
            .encode(&input.to_json())
            .unwrap_or_else(|e| panic!("encode {input:?}: {e}"));
        assert_eq!(&bytes[..2], &[0xC3, 0x01], "single-object marker");
        let back = Input::decode(&codec, input.topic(), &bytes)
            .unwrap_or_else(|e| panic!("decode {input:?}: {e}"));
        assert_eq!(back, input);
        let text = serde_json::to_string(&input.to_json()).expect("json");
        let again = Input::from_json(input.topic(), serde_json::from_str(&text).expect("parse"))
            .expect("json mirror");
        assert_eq!(again, input);
    }
}

#[test]
fn every_output_record_round_trips_through_avro_and_json() {
    let codec = Codec::new().expect("schemas parse");
    for output in outputs() {
        let bytes = output
            .encode(&codec)
            .unwrap_or_else(|e| panic!("encode {output:?}: {e}"));
        let json = codec
            .schema(output.topic())
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("decode {output:?}: {e}"));
        let back = Output::from_json(output.topic(), json).expect("typed");
        assert_eq!(back, output);
        let text = serde_json::to_string(&output.to_json()).expect("json");
        let again = Output::from_json(output.topic(), serde_json::from_str(&text).expect("parse"))
            .expect("json mirror");
        assert_eq!(again, output);
    }
}

/// Outputs are encoded straight from their types (no JSON mirror): every sample output (and
/// input) takes that path, and it writes byte for byte what the mirror path writes.
#[test]
fn the_typed_encoder_writes_what_the_mirror_writes() {
    let codec = Codec::new().expect("codec");
    let samples: Vec<(Topic, serde_json::Value, Option<Vec<u8>>)> = inputs()
        .iter()
        .map(|i| {
            let typed = match i {
                Input::Config(r) => codec.schema(i.topic()).encode_typed(r),
                Input::Agent(r) => codec.schema(i.topic()).encode_typed(r),
                Input::Command(r) => codec.schema(i.topic()).encode_typed(r),
                Input::Inbound(r) => codec.schema(i.topic()).encode_typed(r),
                Input::Tick(r) => codec.schema(i.topic()).encode_typed(r),
            };
            (i.topic(), i.to_json(), typed)
        })
        .chain(outputs().iter().map(|o| {
            let typed = codec.schema(o.topic()).encode_typed(&o.value());
            (o.topic(), o.to_json(), typed)
        }))
        .collect();
    assert!(samples.len() > 50, "{}", samples.len());
    for (topic, json, typed) in samples {
        let mirror = codec.schema(topic).encode(&json).expect("mirror encodes");
        let typed = typed.unwrap_or_else(|| panic!("{topic}: typed path refused {json}"));
        assert_eq!(typed, mirror, "{topic}: {json}");
    }
}

/// Every union branch of every schema is exercised by the samples above.
#[test]
fn samples_cover_every_union_branch() {
    let mut seen = std::collections::BTreeSet::new();
    for v in inputs()
        .iter()
        .map(Input::to_json)
        .chain(outputs().iter().map(Output::to_json))
    {
        for key in ["command", "change", "event", "action"] {
            if let Some(obj) = v.get(key).and_then(|b| b.as_object()) {
                seen.extend(obj.keys().cloned());
            }
        }
    }
    for topic in Topic::ALL {
        let schema: serde_json::Value =
            serde_json::from_str(topic.schema_text()).expect("valid JSON");
        for field in schema["fields"].as_array().expect("fields") {
            if let Some(branches) = field["type"]
                .as_array()
                .filter(|b| !b.contains(&serde_json::json!("null")))
            {
                for b in branches.iter().filter_map(|b| b["name"].as_str()) {
                    assert!(seen.contains(b), "{topic}: no sample of union branch {b}");
                }
            }
        }
    }
}

/// A named type defined in several schema files (Channel, Status, Priority...) is defined the
/// same way everywhere.
#[test]
fn shared_named_types_agree_across_schema_files() {
    let codec = Codec::new().expect("schemas parse");
    let mut defs: BTreeMap<String, (Topic, String)> = BTreeMap::new();
    for topic in Topic::ALL {
        for (name, canonical) in codec.schema(topic).named_types() {
            if let Some((first, seen)) = defs.get(&name) {
                assert_eq!(
                    seen, &canonical,
                    "{name} differs between {first} and {topic}"
                );
            } else {
                defs.insert(name, (topic, canonical));
            }
        }
    }
}

#[test]
fn decoding_rejects_bad_bytes_with_a_reason() {
    let codec = Codec::new().expect("schemas parse");
    let inbound = codec.schema(Topic::Inbound);
    assert_eq!(
        inbound.decode(b"{\"id\":1}"),
        Err(CodecError::UnknownFraming)
    );
    assert_eq!(
        inbound.decode(&[0xC3, 0x01, 7]),
        Err(CodecError::NotSingleObject)
    );
    assert_eq!(
        inbound.decode(&[0, 0, 0, 0, 42, 2]),
        Err(CodecError::NeedsRegistry(42))
    );
    let tick = codec
        .encode(Topic::Ticks, &Tick::default())
        .expect("encode");
    assert!(matches!(
        inbound.decode(&tick),
        Err(CodecError::UnknownSchema(_))
    ));
    let good = codec
        .encode(Topic::Inbound, &inputs()[0].to_json())
        .expect("encode");
    assert!(matches!(
        inbound.decode(&good[..good.len() - 3]),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn json_mirror_errors_name_the_field() {
    let codec = Codec::new().expect("schemas parse");
    let bad =
        serde_json::json!({"id": "m", "tenant": "t", "channel": "pigeon", "from": "a", "to": "b"});
    let err = codec
        .schema(Topic::Inbound)
        .encode(&bad)
        .expect_err("bad channel");
    assert!(
        err.to_string()
            .starts_with("channel: \"pigeon\" is not one of sms"),
        "{err}"
    );
    let extra = serde_json::json!({"id": "m", "tenant": "t", "channel": "sms", "from": "a", "to": "b", "colour": 1});
    let err = codec
        .schema(Topic::Inbound)
        .encode(&extra)
        .expect_err("unknown field");
    assert_eq!(err.to_string(), "colour: unknown field of InboundMessage");
}

/// The encoder writes Avro's binary encoding straight from the JSON mirror: its bytes are
/// exactly what apache-avro writes for the same value (decoded by apache-avro and written
/// again by it), for every sample record of every topic; for records holding a map, whose
/// entries apache-avro writes in no fixed order, the same value in the same number of bytes.
#[test]
fn the_direct_encoder_writes_what_apache_avro_writes() {
    let codec = Codec::new().expect("codec");
    let mut checked = 0;
    let samples: Vec<(Topic, Vec<u8>)> = inputs()
        .iter()
        .map(|i| (i.topic(), i.encode(&codec).expect("encode")))
        .chain(
            outputs()
                .iter()
                .map(|o| (o.topic(), o.encode(&codec).expect("encode"))),
        )
        .collect();
    for (topic, bytes) in samples {
        let schema = codec.schema(topic).schema();
        let mut datum = &bytes[10..];
        let value =
            apache_avro::from_avro_datum(schema, &mut datum, None).expect("apache reads it");
        assert!(datum.is_empty(), "{topic}: trailing bytes");
        let again = apache_avro::to_avro_datum(schema, value.clone()).expect("apache writes it");
        // apache-avro keeps a map in a HashMap, so it writes map entries in no fixed order
        // (the direct encoder writes them in the mirror's key order): compare what the bytes
        // say, and their length, rather than the bytes of records that hold maps.
        let reread =
            apache_avro::from_avro_datum(schema, &mut &again[..], None).expect("apache rereads");
        assert_eq!(reread, value, "{topic}");
        assert_eq!(again.len(), bytes.len() - 10, "{topic}");
        if !format!("{value:?}").contains("Map(") {
            assert_eq!(again, &bytes[10..], "{topic}");
        }
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
}

/// A record written with a topic's earlier schema (`schemas/avro/history/`) still decodes:
/// with its writer schema, and fields added since take their defaults. Upgrading the engine
/// never turns the records already in a topic into dead letters.
#[test]
fn records_written_with_an_earlier_schema_still_decode() {
    let codec = Codec::new().expect("schemas parse");
    let mut checked = 0;
    for topic in Topic::ALL {
        for old_text in topic.previous_schema_texts() {
            let old = TopicSchema::parse(old_text).expect("old schema");
            assert_ne!(
                old.fingerprint(),
                codec.schema(topic).fingerprint(),
                "{topic}"
            );
            let old_json: serde_json::Value = serde_json::from_str(old_text).expect("json");
            let samples: Vec<serde_json::Value> = inputs()
                .iter()
                .filter(|i| i.topic() == topic)
                .map(Input::to_json)
                .chain(
                    outputs()
                        .iter()
                        .filter(|o| o.topic() == topic)
                        .map(Output::to_json),
                )
                .collect();
            for mut json in samples {
                // What a producer of the old schema wrote: the same record without the fields
                // and branches added since.
                if let Some(obj) = json.as_object_mut() {
                    let known: Vec<&str> = old_json["fields"]
                        .as_array()
                        .expect("fields")
                        .iter()
                        .filter_map(|f| f["name"].as_str())
                        .collect();
                    obj.retain(|k, _| known.contains(&k.as_str()));
                }
                let Ok(bytes) = old.encode(&json) else {
                    continue; // a branch the old schema did not have
                };
                let decoded = if topic.is_input() {
                    Input::decode(&codec, topic, &bytes).map(|i| i.to_json())
                } else {
                    codec
                        .schema(topic)
                        .decode(&bytes)
                        .and_then(|j| Output::from_json(topic, j).map_err(CodecError::Json))
                        .map(|o| o.to_json())
                };
                let decoded = decoded.unwrap_or_else(|e| panic!("{topic}: {e}"));
                for (k, v) in json.as_object().expect("record") {
                    assert_eq!(&decoded[k], v, "{topic}: field {k}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

/// R-TOPIC: inputs read straight into their types (no JSON mirror) give exactly what the
/// mirror path gives: every sample record, and thousands of corrupted variants of them
/// (bytes flipped, cut short, lengthened), where both accept the same records with the same
/// values and refuse the same ones. Limits hold on the typed path too: an identifier over
/// 256 bytes and a nesting past the limit are refused by both.
#[test]
fn the_typed_decoder_reads_what_the_mirror_reads() {
    let codec = Codec::new().expect("schemas parse");
    let mirror = |topic: Topic, datum: &[u8]| {
        let schema = codec.schema(topic);
        schema
            .read_datum(schema, datum)
            .ok()
            .and_then(|j| Input::from_json(topic, j).ok())
    };
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut agreed, mut accepted) = (0, 0);
    for input in inputs() {
        let topic = input.topic();
        let schema = codec.schema(topic);
        let bytes = input.encode(&codec).expect("encode");
        let datum = &bytes[10..];
        let typed = Input::decode_typed(topic, schema, datum);
        assert_eq!(
            typed.as_ref(),
            Some(&input),
            "{topic}: the typed path is taken"
        );
        for _ in 0..300 {
            let mut m = datum.to_vec();
            match next() % 4 {
                0 | 1 => {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                2 => m.truncate((next() as usize) % m.len()),
                _ => {
                    let i = (next() as usize) % m.len();
                    m.insert(i, next() as u8);
                }
            }
            let typed = Input::decode_typed(topic, schema, &m);
            assert_eq!(typed, mirror(topic, &m), "{topic}: {m:?}");
            agreed += 1;
            accepted += usize::from(typed.is_some());
        }
    }
    assert!(agreed > 10_000 && accepted > 500, "{agreed} {accepted}");

    // Limits: an identifier one byte too long, and conditions nested past the limit.
    let mut long_id = inputs()
        .into_iter()
        .find(|i| i.topic() == Topic::Inbound)
        .expect("an inbound sample")
        .to_json();
    long_id["id"] = serde_json::json!("x".repeat(257));
    let bytes = codec
        .schema(Topic::Inbound)
        .encode(&long_id)
        .expect("encode");
    assert_eq!(
        Input::decode_typed(Topic::Inbound, codec.schema(Topic::Inbound), &bytes[10..]),
        None
    );
    assert_eq!(mirror(Topic::Inbound, &bytes[10..]), None);
    long_id["id"] = serde_json::json!("x".repeat(256));
    let bytes = codec
        .schema(Topic::Inbound)
        .encode(&long_id)
        .expect("encode");
    assert!(
        Input::decode_typed(Topic::Inbound, codec.schema(Topic::Inbound), &bytes[10..]).is_some()
    );

    // A condition nested `levels` deep in the first config sample that has one.
    fn put_condition(v: &mut serde_json::Value, condition: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(c) = o.get_mut("condition") {
                    *c = condition.clone();
                    return true;
                }
                o.values_mut().any(|x| put_condition(x, condition))
            }
            serde_json::Value::Array(a) => a.iter_mut().any(|x| put_condition(x, condition)),
            _ => false,
        }
    }
    let nested = |levels: usize| {
        let mut c = serde_json::json!({"attribute": "channel", "operator": "is", "value": "sms"});
        for _ in 0..levels {
            c = serde_json::json!({ "all": [c] });
        }
        let mut config = inputs()
            .into_iter()
            .filter(|i| i.topic() == Topic::Config)
            .map(|i| i.to_json())
            .find(|j| j.to_string().contains("\"condition\":{"))
            .expect("a config sample with a condition");
        assert!(put_condition(&mut config, &c));
        let bytes = codec.schema(Topic::Config).encode(&config).expect("encode");
        bytes[10..].to_vec()
    };
    let (shallow, deep) = (nested(5), nested(30));
    let schema = codec.schema(Topic::Config);
    assert!(Input::decode_typed(Topic::Config, schema, &shallow).is_some());
    assert_eq!(
        Input::decode_typed(Topic::Config, schema, &shallow),
        mirror(Topic::Config, &shallow)
    );
    assert_eq!(Input::decode_typed(Topic::Config, schema, &deep), None);
    assert_eq!(mirror(Topic::Config, &deep), None);
}
