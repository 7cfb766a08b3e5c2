//! Property tests of automatic assignment over random event streams (R-ASSIGN), checked
//! after every record against occupancy recounted from the conversations themselves.

mod common;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use switchboard_processors::assignment::{capacity, counted};
use switchboard_processors::routing::queue_open;
use switchboard_processors::state::State;
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::*;

const AGENTS: [&str; 5] = ["a1", "a2", "a3", "a4", "a5"];
const QUEUES: [&str; 3] = ["q1", "q2", "q3"];
const STATUSES: [&str; 5] = ["Available", "Busy", "Away", "Offline", "Available"];
const CHANNELS: [Channel; 5] = [
    Channel::Sms,
    Channel::Whatsapp,
    Channel::LiveChat,
    Channel::Email,
    Channel::Voice,
];

#[derive(Debug, Clone)]
enum Op {
    Message {
        address: u8,
        channel: usize,
        queue: usize,
    },
    Status {
        agent: usize,
        status: usize,
    },
    SetStatus {
        short: u8,
        status: usize,
    },
    Unassign {
        short: u8,
    },
    ChangeQueue {
        short: u8,
        queue: usize,
    },
    Merge {
        short: u8,
        source: u8,
    },
    Call {
        agent: usize,
        start: bool,
    },
    Assign {
        short: u8,
        agent: usize,
        transfer: bool,
    },
    Capacity {
        agent: usize,
        lm: i32,
        email: i32,
    },
    Counted {
        waiting: bool,
        solved: bool,
    },
    Tick,
}

fn op(manual: bool) -> impl Strategy<Value = Op> {
    let short = 1..12u8;
    let base = prop_oneof![
        6 => (0..10u8, 0..CHANNELS.len(), 0..QUEUES.len()).prop_map(|(address, channel, queue)| Op::Message { address, channel, queue }),
        4 => (0..AGENTS.len(), 0..STATUSES.len()).prop_map(|(agent, status)| Op::Status { agent, status }),
        3 => (short.clone(), 0..4usize).prop_map(|(short, status)| Op::SetStatus { short, status }),
        1 => short.clone().prop_map(|short| Op::Unassign { short }),
        1 => (short.clone(), 0..QUEUES.len()).prop_map(|(short, queue)| Op::ChangeQueue { short, queue }),
        1 => (short.clone(), short.clone()).prop_map(|(short, source)| Op::Merge { short, source }),
        1 => (0..AGENTS.len(), proptest::arbitrary::any::<bool>()).prop_map(|(agent, start)| Op::Call { agent, start }),
        1 => Just(Op::Tick),
    ];
    let manual_ops = prop_oneof![
        2 => (short, 0..AGENTS.len(), proptest::arbitrary::any::<bool>()).prop_map(|(short, agent, transfer)| Op::Assign { short, agent, transfer }),
        1 => (0..AGENTS.len(), 0..4i32, 0..4i32).prop_map(|(agent, lm, email)| Op::Capacity { agent, lm, email }),
        1 => (proptest::arbitrary::any::<bool>(), proptest::arbitrary::any::<bool>()).prop_map(|(waiting, solved)| Op::Counted { waiting, solved }),
    ];
    if manual {
        prop_oneof![4 => base, 1 => manual_ops].boxed()
    } else {
        base.boxed()
    }
}

/// Fixed setup: three queues (q3 with office hours), routes by content, five agents with
/// random memberships and capacities.
#[derive(Debug, Clone)]
struct Setup {
    auto: [bool; 3],
    members: Vec<[bool; 3]>,
    capacities: Vec<(i32, i32, i32)>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        proptest::array::uniform3(proptest::bool::weighted(0.8)),
        proptest::collection::vec(
            proptest::array::uniform3(proptest::arbitrary::any::<bool>()),
            5,
        ),
        proptest::collection::vec((0..4i32, 0..3i32, 0..3i32), 5),
    )
        .prop_map(|(auto, members, capacities)| Setup {
            auto,
            members,
            capacities,
        })
}

fn inputs(setup: &Setup, ops: &[Op]) -> Vec<(i64, Input)> {
    let t0 = utc("2026-03-02T07:30"); // Monday, before the office opens in Zagreb
    let mut out = Vec::new();
    let mut n = 0;
    let mut id = |p: &str| {
        n += 1;
        format!("{p}{n}")
    };
    let cfg = |id: String, change| {
        Input::Config(ConfigChange {
            id,
            tenant: TENANT.into(),
            version: 1,
            change,
        })
    };
    out.push((
        t0,
        cfg(
            id("c"),
            ConfigChangeKind::UpsertWorkingHours(UpsertWorkingHours {
                period: office("office", "Europe/Zagreb"),
            }),
        ),
    ));
    for (i, q) in QUEUES.iter().enumerate() {
        let mut queue = queue(q);
        queue.auto_assign = setup.auto[i];
        queue.working_hours_id = (i == 2).then(|| "office".to_string());
        out.push((
            t0,
            cfg(
                id("c"),
                ConfigChangeKind::UpsertQueue(UpsertQueue { queue }),
            ),
        ));
        let r = route(
            q,
            i as i32,
            leaf("content", Operator::Is, q),
            q,
            [Priority::Normal, Priority::High, Priority::Urgent][i],
        );
        out.push((
            t0,
            cfg(
                id("c"),
                ConfigChangeKind::UpsertRoute(UpsertRoute { route: r }),
            ),
        ));
    }
    for (i, a) in AGENTS.iter().enumerate() {
        let queues = QUEUES
            .iter()
            .zip(setup.members[i])
            .filter(|(_, m)| *m)
            .map(|(q, _)| q.to_string())
            .collect();
        let (lm, lc, em) = setup.capacities[i];
        let capacity = [("live_messaging", lm), ("live_chat", lc), ("email", em)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let update = AgentUpdate {
            enabled: Some(true),
            queues: Some(queues),
            capacity: Some(capacity),
        };
        out.push((
            t0,
            Input::Agent(AgentEvent {
                id: id("g"),
                tenant: TENANT.into(),
                agent_id: a.to_string(),
                event: AgentEventKind::AgentUpdated(update),
            }),
        ));
    }
    let mut ts = t0;
    for o in ops {
        ts += 7 * 60 * 1000;
        let cmd = |id: String, short: u8, command| {
            Input::Command(Command {
                id,
                tenant: TENANT.into(),
                conversation_id: format!("#{short}"),
                by: Some("sup".into()),
                command,
            })
        };
        let agent = |id: String, a: usize, event| {
            Input::Agent(AgentEvent {
                id,
                tenant: TENANT.into(),
                agent_id: AGENTS[a].into(),
                event,
            })
        };
        let input = match o {
            Op::Message {
                address,
                channel,
                queue,
            } => Input::Inbound(message(
                &id("m"),
                CHANNELS[*channel],
                &format!("+{address}"),
                QUEUES[*queue],
            )),
            Op::Status { agent: a, status } => agent(
                id("g"),
                *a,
                AgentEventKind::AgentStatusChanged(AgentStatusChange {
                    status: STATUSES[*status].into(),
                }),
            ),
            Op::SetStatus { short, status } => {
                let status = [
                    Status::Open,
                    Status::Waiting,
                    Status::Solved,
                    Status::Closed,
                ][*status];
                cmd(
                    id("x"),
                    *short,
                    CommandKind::SetStatus(SetStatus { status }),
                )
            }
            Op::Unassign { short } => cmd(id("x"), *short, CommandKind::Unassign(Unassign {})),
            Op::ChangeQueue { short, queue } => cmd(
                id("x"),
                *short,
                CommandKind::ChangeQueue(ChangeQueue {
                    queue_id: QUEUES[*queue].into(),
                }),
            ),
            Op::Merge { short, source } => cmd(
                id("x"),
                *short,
                CommandKind::Merge(Merge {
                    source_conversation_id: format!("#{source}"),
                }),
            ),
            Op::Call { agent: a, start } => {
                let call = CallRef {
                    call_id: format!("call-{a}"),
                };
                agent(
                    id("g"),
                    *a,
                    if *start {
                        AgentEventKind::CallStarted(call)
                    } else {
                        AgentEventKind::CallEnded(call)
                    },
                )
            }
            Op::Assign {
                short,
                agent: a,
                transfer,
            } => cmd(
                id("x"),
                *short,
                CommandKind::Assign(Assign {
                    agent_id: AGENTS[*a].into(),
                    only_if_unassigned: !transfer,
                }),
            ),
            Op::Capacity {
                agent: a,
                lm,
                email,
            } => {
                let capacity = [("live_messaging", *lm), ("email", *email)]
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect();
                agent(
                    id("g"),
                    *a,
                    AgentEventKind::AgentUpdated(AgentUpdate {
                        enabled: None,
                        queues: None,
                        capacity: Some(capacity),
                    }),
                )
            }
            Op::Counted { waiting, solved } => cfg(
                id("c"),
                ConfigChangeKind::SetCountedStatuses(CountedStatuses {
                    waiting: *waiting,
                    solved: *solved,
                }),
            ),
            Op::Tick => Input::Tick(Tick::default()),
        };
        out.push((ts, input));
    }
    // Config versions must grow per entity: renumber repeated counted-status changes.
    let mut version = 1;
    for (_, i) in out.iter_mut() {
        if let Input::Config(c) = i {
            if matches!(c.change, ConfigChangeKind::SetCountedStatuses(_)) {
                version += 1;
                c.version = version;
            }
        }
    }
    out
}

/// Occupancy recounted from the conversation rows: (agent, category) → counted conversations.
fn recount(state: &State) -> BTreeMap<(String, Category), i64> {
    let config = state.config(TENANT);
    let mut occ = BTreeMap::new();
    for (_, c) in state.conversations.iter() {
        if let (Some(a), true) = (&c.assignee, counted(&config, c.status)) {
            if c.category != Category::Voice {
                *occ.entry((a.to_string(), c.category)).or_insert(0) += 1;
            }
        }
    }
    occ
}

fn used(state: &State, occ: &BTreeMap<(String, Category), i64>, agent: &str, k: Category) -> i64 {
    if k == Category::Voice {
        state
            .agents
            .get(TENANT, agent)
            .map_or(0, |a| a.calls.len() as i64)
    } else {
        occ.get(&(agent.to_string(), k)).copied().unwrap_or(0)
    }
}

/// After each record: no unassigned conversation waits in an auto-assigning open queue while
/// an eligible agent exists, and an agent in the Available group is under 90% workload.
fn check_no_idle_eligible_agent(state: &State, now: i64) -> Result<(), TestCaseError> {
    let config = state.config(TENANT);
    let occ = recount(state);
    for (_, a) in state.agents.iter() {
        if a.group == StatusGroup::Available {
            let full: f64 = [Category::LiveMessaging, Category::LiveChat, Category::Email]
                .into_iter()
                .filter(|k| capacity(&config, a, *k) > 0)
                .map(|k| {
                    used(state, &occ, &a.id, k) as f64 / f64::from(capacity(&config, a, k)) * 100.0
                })
                .sum();
            prop_assert!(full < 90.0, "{} is Available at {full}% workload", a.id);
        }
    }
    for (_, c) in state.conversations.iter() {
        let Some(q) = c.queue_id.as_deref() else {
            continue;
        };
        let auto = config.queue(q).is_some_and(|q| q.auto_assign);
        if c.assignee.is_some()
            || !counted(&config, c.status)
            || !auto
            || !queue_open(&config, q, now)
        {
            continue;
        }
        for (_, a) in state.agents.iter() {
            let eligible = a.enabled
                && a.group == StatusGroup::Available
                && a.in_queue(q)
                && !c.previous_assignees.contains(&a.id)
                && used(state, &occ, &a.id, c.category)
                    < i64::from(capacity(&config, a, c.category));
            prop_assert!(
                !eligible,
                "#{} waits in {q} while {} is eligible",
                c.short_id,
                a.id
            );
        }
    }
    Ok(())
}

fn run(
    inputs: &[(i64, Input)],
    mut each: impl FnMut(&State, i64, &[Output]) -> Result<(), TestCaseError>,
) -> Result<Vec<Output>, TestCaseError> {
    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let mut all = Vec::new();
    for (ts, input) in inputs {
        let step = engine.process(*ts, input);
        let outputs: Vec<Output> = step.outputs.into_iter().map(|(_, o)| o).collect();
        each(engine.state(), engine.stream_time(), &outputs)?;
        all.extend(outputs);
    }
    Ok(all)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// R-ASSIGN-1, R-ASSIGN-5: through automatic assignment no agent ever holds more counted
    /// conversations in a category than their capacity (no manual assigns or capacity cuts in
    /// these streams, so nothing else can push an agent over).
    #[test]
    fn automatic_assignment_never_exceeds_capacity(setup in setup(), ops in proptest::collection::vec(op(false), 1..70)) {
        run(&inputs(&setup, &ops), |state, now, _| {
            let config = state.config(TENANT);
            let occ = recount(state);
            for ((agent, k), n) in &occ {
                let a = state.agents.get(TENANT, agent).expect("assignee is an agent");
                prop_assert!(*n <= i64::from(capacity(&config, a, *k)), "{agent} holds {n} in {k:?}");
            }
            check_no_idle_eligible_agent(state, now)
        })?;
    }

    /// R-ASSIGN-5, R-ASSIGN-7, R-ASSIGN-11, R-TIME-6: with manual assigns, capacity and
    /// counted-status changes too: a conversation is never held by two agents (every Assigned
    /// follows the previous holder's Unassigned), an unassigned conversation never waits in an
    /// auto-assigning open queue while an eligible agent exists, and replay is deterministic.
    #[test]
    fn one_holder_no_idle_eligible_agent_and_deterministic(setup in setup(), ops in proptest::collection::vec(op(true), 1..70)) {
        let inputs = inputs(&setup, &ops);
        let mut holder: BTreeMap<String, String> = BTreeMap::new();
        let first = run(&inputs, |state, now, outputs| {
            for o in outputs {
                if let Output::Assignment(e) = o {
                    match &e.event {
                        AssignmentEventKind::Assigned(a) => {
                            prop_assert!(!holder.contains_key(&e.conversation_id), "{} assigned while held", e.conversation_id);
                            holder.insert(e.conversation_id.clone(), a.agent_id.clone());
                        }
                        AssignmentEventKind::Unassigned(u) => {
                            prop_assert_eq!(holder.remove(&e.conversation_id), Some(u.agent_id.clone()));
                        }
                        AssignmentEventKind::AssignmentRejected(_) => {}
                    }
                }
            }
            for (_, c) in state.conversations.iter() {
                prop_assert_eq!(holder.get(&*c.id).map(String::as_str), c.assignee.as_deref(), "#{} holder", c.short_id);
            }
            check_no_idle_eligible_agent(state, now)
        })?;
        let second = run(&inputs, |_, _, _| Ok(()))?;
        prop_assert_eq!(first, second);
    }
}
