//! Property tests of workflows over random workflow sets and random streams (R-FLOW-5):
//! workflows never loop (every record finishes, and a cascade too wide is rejected by the
//! workflow bound, never by the engine's output bound), nothing a workflow does happens to a
//! conversation after it is Closed, and the output is the same on every run.

mod common;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use switchboard_schemas::*;

const ADDRESSES: [&str; 3] = ["+1", "+2", "+3"];
const TAGS: [&str; 3] = ["a", "b", "c"];

fn trigger() -> impl Strategy<Value = WorkflowTrigger> {
    let none = || NoFields {};
    prop_oneof![
        Just(WorkflowTrigger::InboundMessageReceived(none())),
        Just(WorkflowTrigger::ConversationTagsChanged(none())),
        Just(WorkflowTrigger::NoteCreated(none())),
        Just(WorkflowTrigger::AgentMessageSent(none())),
        prop_oneof![
            Just(Status::Open),
            Just(Status::Waiting),
            Just(Status::Solved)
        ]
        .prop_map(|status| WorkflowTrigger::StatusChangedTo(StatusTrigger { status })),
        (10i64..600)
            .prop_map(|seconds| WorkflowTrigger::AgentDidNotReplyFor(AfterSeconds { seconds })),
        (10i64..600).prop_map(|seconds| WorkflowTrigger::SolvedFor(AfterSeconds { seconds })),
        (10i64..600).prop_map(|seconds| WorkflowTrigger::WaitingFor(AfterSeconds { seconds })),
    ]
}

fn action() -> impl Strategy<Value = WorkflowAction> {
    let none = || NoFields {};
    prop_oneof![
        (0..TAGS.len()).prop_map(|i| WorkflowAction::ApplyTags(TagList {
            tags: vec![TAGS[i].into()]
        })),
        (0..TAGS.len()).prop_map(|i| WorkflowAction::RemoveTags(TagList {
            tags: vec![TAGS[i].into()]
        })),
        Just(WorkflowAction::AddNote(AddNote { text: "n".into() })),
        Just(WorkflowAction::SendMessage(MessageText {
            content: "m {{conversation.short_id}}".into()
        })),
        Just(WorkflowAction::SetSolved(none())),
        Just(WorkflowAction::SetConversationPriority(SetPriority {
            priority: Priority::High
        })),
        Just(WorkflowAction::UnassignAgent(none())),
    ]
}

fn workflows() -> impl Strategy<Value = Vec<Workflow>> {
    prop::collection::vec(
        (
            prop::collection::vec(trigger(), 1..3),
            prop::collection::vec(action(), 1..4),
            proptest::bool::ANY,
            proptest::bool::ANY,
        ),
        1..8,
    )
    .prop_map(|ws| {
        ws.into_iter()
            .enumerate()
            .map(|(i, (triggers, mut actions, close, only_tagged))| {
                if close {
                    actions.push(WorkflowAction::CloseConversation(NoFields {}));
                }
                Workflow {
                    id: format!("w{i}"),
                    name: String::new(),
                    order: (i % 3) as i32,
                    enabled: true,
                    triggers,
                    condition: only_tagged.then(|| leaf("conversation.tags", Operator::Is, "a")),
                    actions,
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Message(usize),
    Reply(u8),
    Tag(u8, usize),
    Note(u8),
    Status(u8, Status),
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..ADDRESSES.len()).prop_map(Op::Message),
        (1u8..6).prop_map(Op::Reply),
        (1u8..6, 0..TAGS.len()).prop_map(|(c, t)| Op::Tag(c, t)),
        (1u8..6).prop_map(Op::Note),
        (
            1u8..6,
            prop_oneof![
                Just(Status::Open),
                Just(Status::Waiting),
                Just(Status::Solved),
                Just(Status::Closed)
            ]
        )
            .prop_map(|(c, s)| Op::Status(c, s)),
        (1i64..900).prop_map(Op::Wait),
    ]
}

fn scenario(ws: &[Workflow], ops: &[Op]) -> Scenario {
    let mut s = Scenario::new();
    let mut now = utc("2026-03-02T10:00");
    s.upsert_queue(now, {
        let mut q = queue("default");
        q.auto_assign = true;
        q
    });
    for a in ["ana", "ben"] {
        s.agent_setup(now, a, &[], &[]).status(now, a, "Available");
    }
    for w in ws {
        s.config(
            now,
            1,
            ConfigChangeKind::UpsertWorkflow(UpsertWorkflow {
                workflow: w.clone(),
            }),
        );
    }
    for (i, op) in ops.iter().enumerate() {
        now += 1000;
        let id = format!("r{i}");
        let conv = |c: &u8| format!("#{c}");
        match op {
            Op::Message(a) => {
                s.sms(now, &id, ADDRESSES[*a], "hello");
            }
            Op::Reply(c) => {
                s.reply(now, &id, &conv(c), false);
            }
            Op::Tag(c, t) => {
                s.command(
                    now,
                    &id,
                    &conv(c),
                    CommandKind::AddTags(TagList {
                        tags: vec![TAGS[*t].into()],
                    }),
                );
            }
            Op::Note(c) => {
                s.command(
                    now,
                    &id,
                    &conv(c),
                    CommandKind::AddNote(AddNote { text: "n".into() }),
                );
            }
            Op::Status(c, status) => {
                s.command(
                    now,
                    &id,
                    &conv(c),
                    CommandKind::SetStatus(SetStatus { status: *status }),
                );
            }
            Op::Wait(seconds) => {
                now += seconds * 1000;
                s.tick(now);
            }
        }
    }
    s.tick(now + 3_600_000);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// R-FLOW-5: random workflow sets over random streams never loop, never act on a Closed
    /// conversation, and give the same output on every run.
    #[test]
    fn r_flow_5_random_workflows_never_loop_nor_act_after_close(
        ws in workflows(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let s = scenario(&ws, &ops);
        let out = s.run();
        for d in out.dead_letters() {
            prop_assert!(
                !d.reason.contains("processors are looping"),
                "the engine's output bound was hit: {}", d.reason
            );
        }
        let mut closed = BTreeSet::new();
        for o in out.outputs() {
            match o {
                Output::Conversation(e) => {
                    let by_workflow = match &e.event {
                        ConversationEventKind::WorkflowRan(_) => true,
                        ConversationEventKind::NoteAdded(n) => {
                            n.by.as_deref().is_some_and(|b| b.starts_with("workflow:"))
                        }
                        _ => false,
                    };
                    prop_assert!(
                        !(by_workflow && closed.contains(&e.conversation_id)),
                        "workflow output after Close: {e:?}"
                    );
                    if let ConversationEventKind::StatusChanged(c) = &e.event {
                        if c.to == Status::Closed {
                            closed.insert(e.conversation_id.clone());
                        }
                    }
                }
                Output::Outbound(m) if m.kind == OutboundKind::Workflow => {
                    prop_assert!(
                        !closed.contains(&m.conversation_id),
                        "workflow message after Close: {m:?}"
                    );
                }
                _ => {}
            }
        }
        prop_assert_eq!(&out.emitted, &s.run().emitted, "deterministic");
    }
}
