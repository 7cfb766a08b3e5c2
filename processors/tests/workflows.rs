//! Workflows (SPEC §10, R-FLOW): config validation, every event and time trigger, every
//! action, the order and cycle rule, and the bound on one record's cascade.

mod common;
use common::*;
use switchboard_schemas::*;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;

fn t(minute: i64) -> i64 {
    utc("2026-03-02T10:00") + minute * MIN
}

fn none() -> NoFields {
    NoFields {}
}

fn workflow(
    id: &str,
    order: i32,
    triggers: Vec<WorkflowTrigger>,
    actions: Vec<WorkflowAction>,
) -> Workflow {
    Workflow {
        id: id.into(),
        name: id.into(),
        order,
        enabled: true,
        triggers,
        condition: None,
        actions,
    }
}

fn note(text: &str) -> WorkflowAction {
    WorkflowAction::AddNote(AddNote { text: text.into() })
}

fn tag(tag: &str) -> WorkflowAction {
    WorkflowAction::ApplyTags(TagList {
        tags: vec![tag.into()],
    })
}

fn after(seconds: i64) -> AfterSeconds {
    AfterSeconds { seconds }
}

fn set_status(status: Status) -> CommandKind {
    CommandKind::SetStatus(SetStatus { status })
}

impl Scenario {
    fn upsert_workflow(&mut self, ts: i64, version: i64, w: Workflow) -> &mut Scenario {
        self.config(
            ts,
            version,
            ConfigChangeKind::UpsertWorkflow(UpsertWorkflow { workflow: w }),
        )
    }
}

impl Outcome {
    /// (short id, text) of every note a workflow added, in order.
    fn workflow_notes(&self) -> Vec<(i64, String)> {
        self.conversation_events()
            .into_iter()
            .filter_map(|e| match &e.event {
                ConversationEventKind::NoteAdded(n)
                    if n.by.as_deref().is_some_and(|b| b.starts_with("workflow:")) =>
                {
                    Some((e.short_id, n.text.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// (workflow, trigger) of every run, in order.
    fn runs(&self) -> Vec<(String, String)> {
        self.conversation_events()
            .into_iter()
            .filter_map(|e| match &e.event {
                ConversationEventKind::WorkflowRan(r) => {
                    Some((r.workflow_id.clone(), r.trigger.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// (short id, workflow, event time) of every run, in order.
    fn fired(&self) -> Vec<(i64, String, i64)> {
        self.emitted
            .iter()
            .filter_map(|e| match &e.output {
                Output::Conversation(ConversationEvent {
                    short_id,
                    event: ConversationEventKind::WorkflowRan(r),
                    ..
                }) => Some((*short_id, r.workflow_id.clone(), e.ts)),
                _ => None,
            })
            .collect()
    }

    fn tags_of(&self, short: i64) -> Vec<String> {
        self.conversation_events()
            .into_iter()
            .filter(|e| e.short_id == short)
            .filter_map(|e| match &e.event {
                ConversationEventKind::TagsChanged(t) => Some(t.tags.clone()),
                _ => None,
            })
            .next_back()
            .unwrap_or_default()
    }
}

/// R-FLOW-1: invalid workflows are rejected with the offending field named, and the previous
/// config stays in force.
#[test]
fn r_flow_1_invalid_workflows_are_rejected_with_the_field_named() {
    let ok = || {
        workflow(
            "w",
            1,
            vec![WorkflowTrigger::NoteCreated(none())],
            vec![note("x")],
        )
    };
    let cases: Vec<(Workflow, &str)> = vec![
        (
            Workflow {
                triggers: vec![],
                ..ok()
            },
            "workflow.triggers",
        ),
        (
            Workflow {
                triggers: vec![WorkflowTrigger::AgentDidNotReplyFor(after(5))],
                ..ok()
            },
            "workflow.triggers[0].seconds",
        ),
        (
            Workflow {
                triggers: vec![
                    WorkflowTrigger::NoteCreated(none()),
                    WorkflowTrigger::SolvedFor(after(91 * 86_400)),
                ],
                ..ok()
            },
            "workflow.triggers[1].seconds",
        ),
        (
            Workflow {
                triggers: vec![WorkflowTrigger::StatusChangedTo(StatusTrigger {
                    status: Status::Closed,
                })],
                ..ok()
            },
            "workflow.triggers[0].status",
        ),
        (
            Workflow {
                actions: vec![WorkflowAction::CloseConversation(none()), note("after")],
                ..ok()
            },
            "workflow.actions[0]",
        ),
        (
            Workflow {
                actions: vec![],
                ..ok()
            },
            "workflow.actions",
        ),
        (
            Workflow {
                condition: Some(leaf("conversation.colour", Operator::Is, "red")),
                ..ok()
            },
            "workflow.condition.attribute",
        ),
        (
            Workflow {
                condition: Some(all(vec![
                    leaf("conversation.status", Operator::Is, "open"),
                    leaf("conversation.queue", Operator::Is, "nowhere"),
                ])),
                ..ok()
            },
            "workflow.condition.all[1].value",
        ),
        (
            Workflow {
                condition: Some(leaf("conversation.agent_status", Operator::Is, "Napping")),
                ..ok()
            },
            "workflow.condition.value",
        ),
        (
            Workflow {
                actions: vec![WorkflowAction::SendMessage(MessageText {
                    content: "Hi {{customer.name}}".into(),
                })],
                ..ok()
            },
            "workflow.actions[0].content",
        ),
        (
            Workflow {
                actions: vec![WorkflowAction::ApplyTags(TagList {
                    tags: vec!["ok".into(), " ".into()],
                })],
                ..ok()
            },
            "workflow.actions[0].tags[1]",
        ),
        (
            Workflow {
                actions: vec![WorkflowAction::CallApi(CallApi {
                    method: "FETCH".into(),
                    url: "https://crm.example/x".into(),
                    content_type: "application/json".into(),
                    headers: Default::default(),
                    body: String::new(),
                })],
                ..ok()
            },
            "workflow.actions[0].method",
        ),
        (
            Workflow {
                actions: vec![WorkflowAction::CallApi(CallApi {
                    method: "POST".into(),
                    url: "ftp://crm.example/x".into(),
                    content_type: "application/json".into(),
                    headers: Default::default(),
                    body: String::new(),
                })],
                ..ok()
            },
            "workflow.actions[0].url",
        ),
    ];
    let mut s = Scenario::new();
    let expected: Vec<&str> = cases.iter().map(|(_, f)| *f).collect();
    for (i, (w, _)) in cases.into_iter().enumerate() {
        s.upsert_workflow(t(0), i as i64 + 1, w);
    }
    s.config(
        t(0),
        1,
        ConfigChangeKind::DeleteWorkflow(DeleteWorkflow {
            workflow_id: "ghost".into(),
        }),
    );
    s.upsert_workflow(t(0), 100, ok());
    s.config(
        t(0),
        1,
        ConfigChangeKind::ReorderWorkflows(ReorderWorkflows {
            workflow_ids: vec!["w".into(), "other".into()],
        }),
    );
    // A queue a workflow condition names cannot be deleted.
    s.upsert_queue(t(0), queue("vip")).upsert_workflow(
        t(0),
        101,
        Workflow {
            condition: Some(leaf("conversation.queue", Operator::Is, "vip")),
            ..ok()
        },
    );
    s.config(
        t(0),
        2,
        ConfigChangeKind::DeleteQueue(DeleteQueue {
            queue_id: "vip".into(),
        }),
    );
    let out = s.run();
    let mut want: Vec<&str> = expected;
    want.extend(["workflow_id", "workflow_ids", "queue_id"]);
    assert_eq!(out.rejected_fields(), want);
}

/// R-FLOW-1: a workflow record with a field the format does not know is not silently
/// accepted: it does not decode (the runtime dead-letters it with the field named).
#[test]
fn r_flow_1_an_unknown_field_does_not_decode() {
    let json = serde_json::json!({
        "id": "c1", "tenant": "acme", "version": 1,
        "change": {"UpsertWorkflow": {"workflow": {
            "id": "w", "order": 1, "triggers": [{"NoteCreated": {}}],
            "actions": [{"AddNote": {"text": "x"}}], "colour": "red"
        }}}
    });
    let err = Input::from_json(Topic::Config, json).expect_err("unknown field");
    assert!(err.contains("colour"), "{err}");
}

/// R-FLOW-2: every event trigger fires its workflow, and only its own.
#[test]
fn r_flow_2_every_event_trigger() {
    let mut s = Scenario::new();
    s.upsert_queue(t(0), queue("billing"));
    s.config(t(0), 1, surveys_on());
    let triggers: Vec<(&str, WorkflowTrigger)> = vec![
        ("note", WorkflowTrigger::NoteCreated(none())),
        (
            "solved",
            WorkflowTrigger::StatusChangedTo(StatusTrigger {
                status: Status::Solved,
            }),
        ),
        (
            "waiting",
            WorkflowTrigger::StatusChangedTo(StatusTrigger {
                status: Status::Waiting,
            }),
        ),
        ("queue", WorkflowTrigger::ConversationQueueChanged(none())),
        ("tags", WorkflowTrigger::ConversationTagsChanged(none())),
        ("inbound", WorkflowTrigger::InboundMessageReceived(none())),
        ("agent", WorkflowTrigger::AgentMessageSent(none())),
        (
            "unhappy",
            WorkflowTrigger::SurveyFeedbackReceived(ScoreTrigger {
                scores: vec![CsatScore::NotHappy],
            }),
        ),
        (
            "happy",
            WorkflowTrigger::SurveyFeedbackReceived(ScoreTrigger {
                scores: vec![CsatScore::Happy],
            }),
        ),
        (
            "order-form",
            WorkflowTrigger::ConversationFormFieldUpdated(FormTrigger {
                field: Some("order".into()),
            }),
        ),
        (
            "any-form",
            WorkflowTrigger::ConversationFormFieldUpdated(FormTrigger { field: None }),
        ),
    ];
    for (i, (id, trigger)) in triggers.into_iter().enumerate() {
        // Notes are the action: the note trigger comes first, so workflow notes (which
        // trigger only later workflows) never fire it.
        s.upsert_workflow(
            t(0),
            1,
            workflow(id, i as i32, vec![trigger], vec![note(id)]),
        );
    }
    let form = |field: &str| {
        CommandKind::SetFormField(SetFormField {
            field: field.into(),
            value: Some("1".into()),
        })
    };
    s.sms(t(1), "m1", "+1", "hello")
        .reply(t(2), "bot", "#1", true)
        .reply(t(3), "r1", "#1", false)
        .command(
            t(4),
            "n1",
            "#1",
            CommandKind::AddNote(AddNote { text: "hm".into() }),
        )
        .command(
            t(5),
            "q1",
            "#1",
            CommandKind::ChangeQueue(ChangeQueue {
                queue_id: "billing".into(),
            }),
        )
        .command(
            t(6),
            "tg",
            "#1",
            CommandKind::AddTags(TagList {
                tags: vec!["vip".into()],
            }),
        )
        .command(t(7), "f1", "#1", form("order"))
        .command(t(8), "f2", "#1", form("colour"))
        .command(t(9), "w1", "#1", set_status(Status::Waiting))
        .command(t(10), "s1", "#1", set_status(Status::Solved))
        .tick(t(11))
        .sms(t(12), "m2", "+1", "2");
    let out = s.run();
    let notes: Vec<String> = out.workflow_notes().into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        notes,
        vec![
            "inbound",    // m1
            "agent",      // r1 (the bot's reply is not an agent message)
            "note",       // n1
            "queue",      // q1
            "tags",       // tg
            "order-form", // f1
            "any-form",
            "any-form", // f2: another field
            "waiting",
            "solved",
            "unhappy", // "2" answers the survey: not happy, and is no new message
        ]
    );
}

/// R-FLOW-3: "agent did not reply for" counts from the first unanswered customer message; a
/// reply cancels it, and the next customer message starts it again.
#[test]
fn r_flow_3_agent_did_not_reply_for_is_cancelled_by_a_reply() {
    let mut s = Scenario::new();
    s.upsert_workflow(
        t(0),
        1,
        workflow(
            "nudge",
            1,
            vec![WorkflowTrigger::AgentDidNotReplyFor(after(300))],
            vec![note("no answer for 5 minutes")],
        ),
    );
    // Conversation 1: messages at 1 and 3, no reply: fires 5 minutes after the first.
    // Conversation 2: answered at 4, so nothing at 6; asks again at 7: fires at 12.
    s.sms(t(1), "a1", "+1", "hi")
        .sms(t(1), "b1", "+2", "hi")
        .sms(t(3), "a2", "+1", "hello?")
        .reply(t(4), "rb", "#2", false)
        .sms(t(7), "b2", "+2", "more")
        .tick(t(20));
    let out = s.run();
    let fired: Vec<(i64, i64)> = out.fired().into_iter().map(|(c, _, ts)| (c, ts)).collect();
    assert_eq!(fired, vec![(1, t(6)), (2, t(12))]);
    assert_eq!(
        out.runs(),
        vec![
            ("nudge".to_string(), "agent_did_not_reply_for".to_string()),
            ("nudge".to_string(), "agent_did_not_reply_for".to_string())
        ]
    );
}

/// R-FLOW-3: the other time triggers: customer did not reply, solved for, solved and
/// unmodified (a change while Solved restarts it), and waiting for.
#[test]
fn r_flow_3_time_triggers() {
    let mut s = Scenario::new();
    // The actions send a message: no change to the conversation, so "untouched" is not
    // restarted by the "solved" workflow's own run.
    let w = |id: &str, trigger| {
        workflow(
            id,
            1,
            vec![trigger],
            vec![WorkflowAction::SendMessage(MessageText {
                content: id.into(),
            })],
        )
    };
    s.upsert_workflow(
        t(0),
        1,
        w(
            "customer-silent",
            WorkflowTrigger::CustomerDidNotReplyFor(after(600)),
        ),
    )
    .upsert_workflow(
        t(0),
        1,
        w("solved", WorkflowTrigger::SolvedFor(after(1800))),
    )
    .upsert_workflow(
        t(0),
        1,
        w(
            "untouched",
            WorkflowTrigger::SolvedUnmodifiedFor(after(1800)),
        ),
    )
    .upsert_workflow(
        t(0),
        1,
        w("waiting", WorkflowTrigger::WaitingFor(after(900))),
    );
    // #1: answered at 1, the customer never replies: customer-silent at 11.
    // #2: answered at 1, the customer replies at 5: nothing.
    // #3: Solved at 2, tagged at 20: solved at 32, untouched at 50 (not 32).
    // #4: Waiting at 3, Open again at 10: nothing; Waiting at 12: waiting at 27.
    // (Records in time order: a topic is read in offset order.)
    s.sms(t(0), "a1", "+1", "hi")
        .sms(t(0), "b1", "+2", "hi")
        .sms(t(0), "c1", "+3", "hi")
        .sms(t(0), "d1", "+4", "hi")
        .reply(t(1), "ra", "#1", false)
        .reply(t(1), "rb", "#2", false)
        .command(t(2), "sc", "#3", set_status(Status::Solved))
        .command(t(3), "wd", "#4", set_status(Status::Waiting))
        .sms(t(5), "b2", "+2", "thanks")
        .command(t(10), "od", "#4", set_status(Status::Open))
        .command(t(12), "wd2", "#4", set_status(Status::Waiting))
        .command(
            t(20),
            "tc",
            "#3",
            CommandKind::AddTags(TagList {
                tags: vec!["x".into()],
            }),
        );
    s.tick(t(100));
    let out = s.run();
    let fired: Vec<(i64, String, i64)> = out
        .fired()
        .into_iter()
        .map(|(c, w, ts)| (c, w, (ts - t(0)) / MIN))
        .collect();
    assert_eq!(
        fired,
        vec![
            (1, "customer-silent".to_string(), 11),
            // #2's agent reply at 1 started it; #3 and #4 were never answered.
            (4, "waiting".to_string(), 27),
            (3, "solved".to_string(), 32),
            (3, "untouched".to_string(), 50),
        ]
    );
}

/// R-FLOW-3: a time trigger counts only from moments after its workflow was set up: a
/// conversation already waiting for an answer is not nudged by a workflow created later.
#[test]
fn r_flow_3_time_triggers_count_from_after_the_workflow_was_set_up() {
    let mut s = Scenario::new();
    s.upsert_workflow(
        t(0),
        1,
        workflow(
            "other",
            1,
            vec![WorkflowTrigger::AgentDidNotReplyFor(after(3600))],
            vec![note("other")],
        ),
    );
    s.sms(t(1), "a1", "+1", "hi");
    s.upsert_workflow(
        t(2),
        1,
        workflow(
            "late",
            2,
            vec![WorkflowTrigger::AgentDidNotReplyFor(after(600))],
            vec![note("late")],
        ),
    );
    s.sms(t(3), "b1", "+2", "hi").tick(t(200));
    let notes = s.run().workflow_notes();
    assert_eq!(
        notes,
        vec![
            (2, "late".to_string()),
            (1, "other".to_string()),
            (2, "other".to_string())
        ]
    );
}

/// R-FLOW-4: message, tag, status, priority and note actions, with placeholders filled in;
/// the message goes over the channel and to the address of the customer's last message.
#[test]
fn r_flow_4_conversation_actions() {
    let mut s = Scenario::new();
    s.upsert_workflow(
        t(0),
        1,
        workflow(
            "triage",
            1,
            vec![WorkflowTrigger::InboundMessageReceived(none())],
            vec![
                WorkflowAction::SendMessage(MessageText {
                    content: "Ticket #{{conversation.short_id}}: {{message.content}}".into(),
                }),
                tag("triaged"),
                WorkflowAction::RemoveTags(TagList {
                    tags: vec!["new".into()],
                }),
                WorkflowAction::SetConversationPriority(SetPriority {
                    priority: Priority::High,
                }),
                note("triaged by {{workflow.id}}"),
                WorkflowAction::SetSolved(none()),
            ],
        ),
    );
    s.command(
        t(1),
        "pre",
        "#1",
        CommandKind::AddTags(TagList {
            tags: vec!["new".into()],
        }),
    ); // unknown conversation: dead-lettered, no effect
    s.inbound(
        t(2),
        message("m1", Channel::Whatsapp, "+385", "refund please"),
    );
    let out = s.run();
    let sent: Vec<_> = out
        .outbound(OutboundKind::Workflow)
        .into_iter()
        .map(|m| (m.channel, m.to.clone(), m.content.clone()))
        .collect();
    assert_eq!(
        sent,
        vec![(
            Channel::Whatsapp,
            "+385".to_string(),
            "Ticket #1: refund please".to_string()
        )]
    );
    assert_eq!(out.tags_of(1), vec!["triaged".to_string()]);
    assert_eq!(
        out.workflow_notes(),
        vec![(1, "triaged by triage".to_string())]
    );
    assert!(out.conversation_events().iter().any(|e| matches!(
        &e.event,
        ConversationEventKind::PriorityChanged(p) if p.priority == Priority::High
    )));
    assert_eq!(
        out.status_changes(),
        vec![(1, Status::Open, Status::Solved, "workflow:triage".into())]
    );
}

/// R-FLOW-4: Call API writes a request to cc.actions with its placeholders filled in (JSON-
/// escaped in a JSON body, percent-encoded in the URL) and a deterministic idempotency key;
/// the same input gives the same request.
#[test]
fn r_flow_4_call_api_writes_an_action_request() {
    let mut s = Scenario::new();
    let mut headers = Map::new();
    headers.insert("X-Conversation".into(), "{{conversation.id}}".into());
    s.upsert_workflow(
        t(0),
        1,
        workflow(
            "crm",
            1,
            vec![WorkflowTrigger::InboundMessageReceived(none())],
            vec![WorkflowAction::CallApi(CallApi {
                method: "post".into(),
                url: "https://crm.example/people/{{message.from}}?c={{conversation.short_id}}"
                    .into(),
                content_type: "application/json".into(),
                headers,
                body: r#"{"text": "{{message.content}}"}"#.into(),
            })],
        ),
    );
    s.sms(t(1), "m1", "+1 555", "say \"hi\"");
    let requests = |out: &Outcome| -> Vec<ActionRequest> {
        out.outputs()
            .filter_map(|o| match o {
                Output::Action(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    };
    let out = s.run();
    let got = requests(&out);
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.workflow_id, "crm");
    assert!(
        r.idempotency_key.starts_with("sb-"),
        "{}",
        r.idempotency_key
    );
    let ActionKind::CallApi(call) = &r.action;
    assert_eq!(call.method, "POST");
    assert_eq!(call.url, "https://crm.example/people/%2B1%20555?c=1");
    assert_eq!(call.body, r#"{"text": "say \"hi\""}"#);
    let body: serde_json::Value = serde_json::from_str(&call.body).expect("valid JSON body");
    assert_eq!(body["text"], "say \"hi\"");
    assert_eq!(call.headers.get("X-Conversation"), Some(&r.conversation_id));
    assert_eq!(requests(&s.run()), got, "deterministic, key included");
}

/// R-FLOW-4, R-ASSIGN-5: the seed recipe. The first agent does not answer in time: the
/// workflow unassigns them, automatic assignment gives the conversation to another agent
/// (never the first again) and a note says why.
#[test]
fn r_flow_4_reassign_if_the_first_agent_does_not_answer() {
    let mut s = Scenario::new();
    s.auto_queue(t(0), DEFAULT_QUEUE_ID)
        .agent_setup(t(0), "ana", &[], &[])
        .agent_setup(t(0), "ben", &[], &[])
        .status(t(0), "ana", "Available")
        .status(t(0), "ben", "Available");
    s.upsert_workflow(
        t(0),
        1,
        Workflow {
            condition: Some(leaf("conversation.assignee", Operator::Exists, "")),
            ..workflow(
                "reassign",
                1,
                vec![WorkflowTrigger::AgentDidNotReplyFor(after(120))],
                vec![
                    note("{{conversation.assignee}} did not answer within 2 minutes"),
                    WorkflowAction::UnassignAgent(none()),
                ],
            )
        },
    );
    s.sms(t(1), "m1", "+1", "hello").tick(t(10));
    let out = s.run();
    let assigned = out.assigned_to();
    assert_eq!(assigned.len(), 2, "{assigned:?}");
    let first = assigned[0].1.clone();
    assert_ne!(assigned[1].1, first, "never the first agent again");
    assert_eq!(
        out.workflow_notes(),
        vec![(1, format!("{first} did not answer within 2 minutes"))]
    );
    assert_eq!(
        out.unassignments(),
        vec![(1, first, "workflow:reassign".to_string(), false)]
    );
}

const DEFAULT_QUEUE_ID: &str = "default";

/// R-FLOW-4: send survey and close conversation; close is the last thing a workflow does for
/// the conversation, and no workflow runs for it after.
#[test]
fn r_flow_4_survey_and_close() {
    let mut s = Scenario::new();
    s.config(t(0), 1, surveys_on());
    s.upsert_workflow(
        t(0),
        1,
        workflow(
            "wrap-up",
            1,
            vec![WorkflowTrigger::NoteCreated(none())],
            vec![
                WorkflowAction::SendSurvey(none()),
                WorkflowAction::CloseConversation(none()),
            ],
        ),
    )
    .upsert_workflow(
        t(0),
        1,
        workflow(
            "after-close",
            2,
            vec![WorkflowTrigger::NoteCreated(none())],
            vec![note("too late")],
        ),
    );
    s.sms(t(1), "m1", "+1", "hi").command(
        t(2),
        "n1",
        "#1",
        CommandKind::AddNote(AddNote {
            text: "done".into(),
        }),
    );
    let out = s.run();
    assert_eq!(out.outbound(OutboundKind::Survey).len(), 1);
    assert_eq!(
        out.status_changes(),
        vec![(1, Status::Open, Status::Closed, "workflow:wrap-up".into())]
    );
    assert_eq!(out.runs(), vec![("wrap-up".into(), "note_created".into())]);
    assert!(out.workflow_notes().is_empty());
}

/// R-FLOW-1: conditions read the conversation's fields (queue, tags, priority, agent...),
/// its form, and, for message triggers, the message.
#[test]
fn r_flow_1_conditions_read_conversation_fields() {
    let mut s = Scenario::new();
    s.upsert_queue(t(0), queue("billing"));
    s.upsert_route(
        t(0),
        1,
        route(
            "billing",
            1,
            leaf("content", Operator::Contains, "invoice"),
            "billing",
            Priority::High,
        ),
    );
    let w = |id: &str, condition: Condition| Workflow {
        condition: Some(condition),
        ..workflow(
            id,
            1,
            vec![WorkflowTrigger::InboundMessageReceived(none())],
            vec![note(id)],
        )
    };
    s.upsert_workflow(
        t(0),
        1,
        w(
            "billing-first",
            all(vec![
                leaf("conversation.queue", Operator::Is, "billing"),
                leaf("message.is_first", Operator::Is, "true"),
                leaf("conversation.priority", Operator::Is, "high"),
            ]),
        ),
    )
    .upsert_workflow(
        t(0),
        1,
        w("vip-form", leaf("form.tier", Operator::Is, "gold")),
    )
    .upsert_workflow(
        t(0),
        1,
        w(
            "unassigned",
            leaf("conversation.assignee", Operator::NotExists, ""),
        ),
    );
    s.sms(t(1), "m1", "+1", "my invoice")
        .sms(t(2), "m2", "+2", "hello")
        .command(
            t(3),
            "f",
            "#2",
            CommandKind::SetFormField(SetFormField {
                field: "tier".into(),
                value: Some("Gold".into()),
            }),
        )
        .sms(t(4), "m3", "+2", "again")
        .sms(t(5), "m4", "+1", "and again");
    let notes = s.run().workflow_notes();
    assert_eq!(
        notes,
        vec![
            (1, "billing-first".to_string()),
            (1, "unassigned".to_string()),
            (2, "unassigned".to_string()),
            (2, "unassigned".to_string()),
            (2, "vip-form".to_string()),
            (1, "unassigned".to_string()),
        ]
    );
}

/// R-FLOW-5: all actions of workflow 1, then of workflow 2; a workflow's changes trigger
/// later workflows, never earlier ones (no cycles).
#[test]
fn r_flow_5_changes_trigger_only_later_workflows() {
    let mut s = Scenario::new();
    let on_tags = || vec![WorkflowTrigger::ConversationTagsChanged(none())];
    s.upsert_workflow(t(0), 1, workflow("first", 1, on_tags(), vec![tag("first")]))
        .upsert_workflow(
            t(0),
            1,
            workflow("second", 2, on_tags(), vec![tag("second")]),
        )
        .upsert_workflow(
            t(0),
            1,
            workflow(
                "starter",
                0,
                vec![WorkflowTrigger::InboundMessageReceived(none())],
                vec![tag("start")],
            ),
        );
    s.sms(t(1), "m1", "+1", "hi");
    let out = s.run();
    let runs: Vec<String> = out.runs().into_iter().map(|(w, _)| w).collect();
    // starter tags → first and second; first's tag → second again; second's tags → nothing.
    assert_eq!(runs, vec!["starter", "first", "second", "second"]);
    assert_eq!(
        out.tags_of(1),
        vec![
            "first".to_string(),
            "second".to_string(),
            "start".to_string()
        ]
    );
}

/// R-FLOW-5: a cascade past the bound rejects the record to the dead-letter topic with the
/// workflow named, and nothing of the record remains.
#[test]
fn r_flow_5_a_cascade_past_the_bound_is_dead_lettered() {
    let mut s = Scenario::new();
    // Each workflow adds a note on every note: each note triggers all later workflows, so one
    // note causes 2^14 runs.
    for i in 0..14 {
        s.upsert_workflow(
            t(0),
            1,
            workflow(
                &format!("w{i:02}"),
                i,
                vec![WorkflowTrigger::NoteCreated(none())],
                vec![note(&format!("n{i:02}"))],
            ),
        );
    }
    let add_note = || CommandKind::AddNote(AddNote { text: "go".into() });
    s.sms(t(1), "m1", "+1", "hi")
        .command(t(2), "note", "#1", add_note())
        .command(
            t(3),
            "tag",
            "#1",
            CommandKind::AddTags(TagList {
                tags: vec!["fine".into()],
            }),
        );
    let out = s.run();
    let dlq = out.dead_letters();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert!(
        dlq[0].reason.contains("workflows ran more than 1000 times")
            && dlq[0].reason.contains("(workflow \"w"),
        "{}",
        dlq[0].reason
    );
    // Nothing of the rejected record was published; the next record applies as usual.
    assert!(out.runs().is_empty());
    assert!(out.workflow_notes().is_empty());
    assert_eq!(out.tags_of(1), vec!["fine".to_string()]);
}
