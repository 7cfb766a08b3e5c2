//! Time, ordering, idempotency and state (SPEC §1, R-TIME), and the partitioner.

mod common;
use common::*;
use switchboard_processors::partition::{murmur2, partition_of};
use switchboard_processors::state::{Timer, TimerKind};
use switchboard_processors::{Ctx, Engine, Handled, MemStore, Processor, Rejection, Settings};
use switchboard_schemas::*;

const DAY: i64 = 24 * 3600 * 1000;

/// R-TIME-1: a record whose id was already processed is dropped and counted, never applied
/// twice; ids are remembered for the dedup retention (7 days of stream time).
#[test]
fn r_time_1_duplicate_record_ids_are_dropped() {
    let t0 = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.sms(t0, "m1", "+1", "hello")
        .sms(t0 + 1, "m1", "+1", "hello")
        .sms(t0 + 2, "m1", "+2", "same id, other text");
    s.command(
        t0 + 3,
        "c1",
        "#1",
        CommandKind::AddNote(AddNote { text: "n".into() }),
    );
    s.command(
        t0 + 4,
        "c1",
        "#1",
        CommandKind::AddNote(AddNote { text: "n".into() }),
    );
    // After the retention the id is forgotten: the same id is a new record again.
    s.tick(t0 + 8 * DAY)
        .sms(t0 + 8 * DAY + 1, "m1", "+3", "a week later");
    let out = s.run();
    let received: Vec<_> = out
        .conversation_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e.event,
                ConversationEventKind::MessageReceived(_) | ConversationEventKind::NoteAdded(_)
            )
        })
        .map(|e| e.short_id)
        .collect();
    assert_eq!(received, vec![1, 1, 2]);

    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let m = Input::Inbound(message("m1", Channel::Sms, "+1", "hi"));
    assert!(!engine.process(t0, &m).outputs.is_empty());
    let again = engine.process(t0, &m);
    assert!(again.duplicate && again.outputs.is_empty());
    assert_eq!(engine.stats.duplicates, 1);
}

/// R-TIME-3: records of the input topics are merged in timestamp order, ties broken
/// config < agent-events < commands < inbound < ticks, whatever order they were written in.
#[test]
fn r_time_3_timestamp_merge_and_tie_order() {
    let t0 = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    // Inbound written first, config at the same instant written later: config applies first.
    s.sms(t0, "m1", "+1", "refund");
    s.upsert_queue(t0, queue("billing"));
    s.upsert_route(
        t0,
        1,
        route(
            "r",
            1,
            leaf("content", Operator::Is, "refund"),
            "billing",
            Priority::High,
        ),
    );
    // A command for conversation #1 written before the message that opens it, same instant
    // as that message: commands sort before inbound, so it is dead-lettered.
    s.command(
        t0 + 5,
        "c1",
        "#2",
        CommandKind::AddNote(AddNote {
            text: "early".into(),
        }),
    );
    s.sms(t0 + 5, "m2", "+2", "hi");
    // Within one topic, offset order rules (as in Kafka Streams): an earlier timestamp
    // written last is still processed after the records before it in that topic...
    s.sms(t0 - 1, "m0", "+0", "late arrival");
    // ...while across topics the head with the smaller timestamp goes first: this command,
    // written last but stamped before m2, sees only conversation #1.
    s.command(
        t0 + 4,
        "c2",
        "#1",
        CommandKind::AddTags(TagList {
            tags: vec!["early".into()],
        }),
    );
    let out = s.run();
    assert_eq!(out.short_id_of_message("m0"), 3);
    let tagged: Vec<i64> = out
        .conversation_events()
        .into_iter()
        .filter(|e| matches!(e.event, ConversationEventKind::TagsChanged(_)))
        .map(|e| e.short_id)
        .collect();
    assert_eq!(tagged, vec![1]);
    let order: Vec<&str> = out
        .emitted
        .iter()
        .filter_map(|e| match &e.output {
            Output::Conversation(ConversationEvent {
                event: ConversationEventKind::TagsChanged(_),
                ..
            }) => Some("c2"),
            Output::Conversation(ConversationEvent {
                event: ConversationEventKind::MessageReceived(m),
                ..
            }) => Some(m.message_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["m1", "c2", "m2", "m0"]);
    assert_eq!(
        out.routed()[0],
        (
            1,
            "billing".to_string(),
            Priority::High,
            Some("r".to_string())
        ),
        "config before inbound at a tie"
    );
    assert_eq!(out.dead_letters().len(), 1);
}

/// A test processor that schedules timers and reports each firing as an output.
struct Alarm;

impl Processor for Alarm {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        if let Input::Inbound(m) = input {
            if m.content == "schedule" {
                for (due, id) in [
                    (cx.now + 10, "b"),
                    (cx.now + 10, "a"),
                    (cx.now + 5, "c"),
                    (cx.now + 50, "late"),
                ] {
                    cx.schedule(
                        due,
                        id.into(),
                        TimerKind::Wake {
                            purpose: "alarm".into(),
                            subject: id.into(),
                        },
                    );
                }
                cx.state.cancel("late");
            }
        }
        Ok(Handled::Yes)
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { subject, .. } = &timer.kind {
            let id = cx.next_id();
            let entity = format!("{subject}@{}", cx.now);
            cx.emit(Output::Config(ConfigEvent {
                id,
                tenant: cx.tenant.into(),
                version: 0,
                event: ConfigEventKind::ConfigApplied(ConfigApplied { entity }),
            }));
        }
    }
}

/// R-TIME-4: timers fire when stream time reaches them, in (due, id) order, each with
/// now = its due time, before the record that advanced stream time; a cancelled timer never
/// fires.
#[test]
fn r_time_4_timers_fire_in_due_then_id_order_before_the_advancing_record() {
    let mut engine = Engine::with_processors(
        MemStore::default(),
        Settings::default(),
        vec![Box::new(Alarm)],
    )
    .expect("engine");
    let schedule = Input::Inbound(message("m1", Channel::Sms, "+1", "schedule"));
    assert!(engine.process(1_000, &schedule).outputs.is_empty());
    assert!(
        engine
            .process(1_004, &Input::Tick(Tick::default()))
            .outputs
            .is_empty(),
        "nothing due yet"
    );
    let step = engine.process(
        1_100,
        &Input::Inbound(message("m2", Channel::Sms, "+1", "later")),
    );
    let fired: Vec<(i64, String)> = step
        .outputs
        .iter()
        .map(|(ts, o)| match o {
            Output::Config(ConfigEvent {
                event: ConfigEventKind::ConfigApplied(a),
                ..
            }) => (*ts, a.entity.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            (1_005, "c@1005".to_string()),
            (1_010, "a@1010".to_string()),
            (1_010, "b@1010".to_string())
        ]
    );
}

/// R-RUN-2 (the processor side): state written to the store and reopened gives exactly the
/// outputs an uninterrupted run gives.
#[test]
fn reopened_state_continues_exactly() {
    let t0 = utc("2026-03-02T10:00");
    let mut inputs: Vec<(i64, Input)> = vec![
        (
            t0,
            Input::Config(ConfigChange {
                id: "q".into(),
                tenant: TENANT.into(),
                version: 1,
                change: ConfigChangeKind::UpsertQueue(UpsertQueue {
                    queue: queue("vip"),
                }),
            }),
        ),
        (
            t0,
            Input::Config(ConfigChange {
                id: "r".into(),
                tenant: TENANT.into(),
                version: 1,
                change: ConfigChangeKind::UpsertRoute(UpsertRoute {
                    route: route(
                        "r",
                        1,
                        leaf("from", Operator::Is, "+2"),
                        "vip",
                        Priority::Urgent,
                    ),
                }),
            }),
        ),
    ];
    for i in 0..40 {
        let from = format!("+{}", i % 5);
        inputs.push((
            t0 + i * 1000,
            Input::Inbound(message(&format!("m{i}"), Channel::Sms, &from, "hi")),
        ));
        if i % 7 == 3 {
            let kind = CommandKind::SetStatus(SetStatus {
                status: if i % 2 == 0 {
                    Status::Solved
                } else {
                    Status::Closed
                },
            });
            inputs.push((
                t0 + i * 1000 + 1,
                Input::Command(Command {
                    id: format!("c{i}"),
                    tenant: TENANT.into(),
                    conversation_id: format!("#{}", i % 4 + 1),
                    by: None,
                    command: kind,
                }),
            ));
        }
    }
    let run = |engine: &mut Engine<MemStore>, inputs: &[(i64, Input)]| -> Vec<(i64, Output)> {
        inputs
            .iter()
            .flat_map(|(ts, i)| engine.process(*ts, i).outputs)
            .collect()
    };
    let mut straight = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let expected = run(&mut straight, &inputs);

    let (first, second) = inputs.split_at(inputs.len() / 2);
    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let mut got = run(&mut engine, first);
    engine.flush().expect("flush");
    let store = engine.into_store();
    assert!(!store.map.is_empty());
    let mut reopened = Engine::open(store, Settings::default()).expect("reopen");
    got.extend(run(&mut reopened, second));
    assert_eq!(got, expected);
}

/// R-TIME-2: the partitioner is Kafka's murmur2 (test vectors from the Java client's
/// UtilsTest), so Java and librdkafka producers agree with the engine on a tenant's partition.
#[test]
fn r_time_2_murmur2_matches_the_java_client() {
    let vectors: [(&str, i32); 6] = [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];
    for (key, want) in vectors {
        assert_eq!(murmur2(key.as_bytes()), want, "{key}");
    }
    assert_eq!(
        partition_of("foobar", 4),
        ((-790332482i32 & 0x7fffffff) % 4) as u32
    );
}

/// R-TOPIC (bad input), atomic records: a record whose outputs pass `max_outputs_per_record` is rejected after the
/// processors changed the state, and none of those changes remain: no conversation, no short
/// id used, no remembered id, nothing written but stream time.
#[test]
fn a_record_over_the_output_bound_leaves_no_state_behind() {
    let settings = Settings {
        max_outputs_per_record: 2,
        ..Settings::default()
    };
    let mut engine = Engine::open(MemStore::default(), settings).expect("engine");
    let t0 = utc("2026-03-02T10:00");
    let m = Input::Inbound(message("m1", Channel::Sms, "+1", "hello"));
    let step = engine.process(t0, &m);
    let reason = step.rejected.expect("rejected").0;
    assert!(reason.contains("more than 2 outputs"), "{reason}");
    assert!(step.outputs.is_empty());
    assert!(engine.state().conversations.is_empty());
    assert!(engine.state().short_id_counters.is_empty());
    assert!(engine.state().dedup.is_empty());
    let written = engine.flush().expect("flush");
    assert_eq!(written.len(), 1, "only stream time is written: {written:?}");
    // The same id again is not a duplicate: it was never applied.
    assert!(!engine.process(t0 + 1, &m).duplicate);
}

const HOUR: i64 = 3600 * 1000;

fn note(text: &str) -> CommandKind {
    CommandKind::AddNote(AddNote { text: text.into() })
}

fn command(id: &str, conversation: &str, kind: CommandKind) -> Input {
    Input::Command(Command {
        id: id.into(),
        tenant: "acme".into(),
        conversation_id: conversation.into(),
        by: Some("ana".into()),
        command: kind,
    })
}

fn close(id: &str, conversation: &str) -> Input {
    command(
        id,
        conversation,
        CommandKind::SetStatus(SetStatus {
            status: Status::Closed,
        }),
    )
}

fn tick() -> Input {
    Input::Tick(Tick::default())
}

/// State bounded by open work (R-RUN-2, issue 11): an hour after a conversation is Closed
/// its rows leave memory for the store's archive; a command that names it (by id or short
/// id), a merge that names it, and a query of it see it exactly as if it had stayed, before
/// and after a restart from the store.
#[test]
fn closed_conversations_leave_memory_and_come_back_when_named() {
    let t0 = utc("2026-03-02T10:00");
    let keep = Settings {
        archive_closed_after_ms: None,
        ..Settings::default()
    };
    let mut archiving = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let mut keeping = Engine::open(MemStore::default(), keep.clone()).expect("engine");
    let sms = |id: &str, from: &str| Input::Inbound(message(id, Channel::Sms, from, "hello"));
    let t = std::cell::Cell::new(t0);
    let both = |a: &mut Engine<MemStore>, k: &mut Engine<MemStore>, input: Input| {
        t.set(t.get() + 1000);
        let (x, y) = (a.process(t.get(), &input), k.process(t.get(), &input));
        assert_eq!(x, y, "{input:?}");
        x
    };
    let config = Input::Config(ConfigChange {
        id: "q1".into(),
        tenant: "acme".into(),
        version: 1,
        change: ConfigChangeKind::UpsertQueue(UpsertQueue {
            queue: queue("billing"),
        }),
    });
    both(&mut archiving, &mut keeping, config);
    for (i, from) in ["+1", "+2", "+3"].iter().enumerate() {
        both(&mut archiving, &mut keeping, sms(&format!("m{i}"), from));
    }
    both(&mut archiving, &mut keeping, close("c1", "#1"));
    both(&mut archiving, &mut keeping, close("c2", "#2"));
    let id1 = archiving
        .state()
        .resolve_conversation("acme", "#1")
        .expect("#1");
    // Two hours on: the Closed ones leave memory, the open one stays.
    t.set(t.get() + 2 * HOUR);
    both(&mut archiving, &mut keeping, tick());
    assert!(archiving.state().conversation("acme", &id1).is_none());
    assert!(archiving
        .state()
        .resolve_conversation("acme", "#2")
        .is_none());
    assert!(archiving
        .state()
        .resolve_conversation("acme", "#3")
        .is_some());
    assert_eq!(archiving.state().conversations.len(), 1);
    assert_eq!(keeping.state().conversations.len(), 3);
    // Queries answer the same.
    for reference in ["#1", id1.as_str(), "#3"] {
        let q = switchboard_processors::query::Query::Conversation {
            tenant: "acme".into(),
            reference: reference.into(),
        };
        assert_eq!(archiving.answer(&q), keeping.answer(&q), "{reference}");
    }
    // Named before any flush (the archive row not in the store yet), it comes back too.
    let noted = both(
        &mut archiving,
        &mut keeping,
        command("n0", "#2", note("before flush")),
    );
    assert!(noted.rejected.is_none() && !noted.outputs.is_empty());
    t.set(t.get() + 2 * HOUR);
    both(&mut archiving, &mut keeping, tick());
    archiving.flush().expect("flush");

    // A restart from the store: the archive is not loaded, and still answers.
    let store = archiving.into_store();
    let mut archiving = Engine::open(store, Settings::default()).expect("reopen");
    assert_eq!(archiving.state().conversations.len(), 1);
    let noted = both(
        &mut archiving,
        &mut keeping,
        command("n1", "#1", note("called back")),
    );
    assert!(noted.rejected.is_none() && !noted.outputs.is_empty());
    assert!(archiving.state().conversation("acme", &id1).is_some());
    // Closed stays final for everything else, with the same reasons.
    let again = both(&mut archiving, &mut keeping, close("c3", "#2"));
    assert!(again.rejected.is_some());
    let merge = CommandKind::Merge(Merge {
        source_conversation_id: "#1".into(),
    });
    assert!(
        both(&mut archiving, &mut keeping, command("g1", "#3", merge))
            .rejected
            .is_some()
    );
    // The customer's next message opens a new conversation, as after any close.
    both(&mut archiving, &mut keeping, sms("m9", "+1"));
    // Named again, it leaves memory again an hour later.
    t.set(t.get() + 2 * HOUR);
    both(&mut archiving, &mut keeping, tick());
    assert!(archiving.state().conversation("acme", &id1).is_none());
}

/// Archiving changes no output: the quickstart scenario through `simulate` with Closed
/// conversations archived a millisecond after closing equals the run that keeps them.
#[test]
fn archiving_changes_no_output_of_the_quickstart() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.jsonl");
    let bytes = std::fs::read(path).expect("examples/quickstart.jsonl");
    let (records, _) = switchboard_processors::simulation::parse_jsonl(&bytes);
    let run = |archive| {
        let settings = Settings {
            archive_closed_after_ms: archive,
            ..Settings::default()
        };
        switchboard_processors::simulation::run(records.clone(), 4, &settings).expect("run")
    };
    let kept = run(None);
    assert!(kept.len() > 50);
    assert_eq!(run(Some(1)), kept);
}

/// R-TIME-3: the merge rule shared by `simulate` and the runtime: earliest timestamp first,
/// ties to the earlier topic, and a topic that may still deliver an earlier record holds the
/// merge back.
#[test]
fn r_time_3_merge_rule_picks_the_earliest_and_waits_for_a_topic_still_coming() {
    use switchboard_processors::simulation::{next_in_merge, Head};
    assert_eq!(next_in_merge([Head::Record(5), Head::Record(5)]), Some(0));
    assert_eq!(
        next_in_merge([Head::Done, Head::Record(7), Head::Record(3)]),
        Some(2)
    );
    assert_eq!(next_in_merge([Head::Record(5), Head::Waiting]), None);
    assert_eq!(next_in_merge([Head::Done, Head::Done]), None);
}
