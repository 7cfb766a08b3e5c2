//! Assignment throughput with 5,000 agents and 50,000 waiting conversations in one tenant.
//!
//! `cargo bench -p switchboard-processors --bench assignment`
//!
//! Prints, from one run on one machine:
//! - baseline: inbound messages/s through threading and routing into a queue without
//!   automatic assignment (the engine's per-message floor);
//! - single: new conversations/s that each take a weighted-sum decision over 5,000 available
//!   agents;
//! - bulk: conversations/s assigned by bulk assignment out of a 50,000-deep waiting list;
//!
//! and each as a ratio to the baseline, since absolute figures vary between machines.

use std::time::Instant;
use switchboard_processors::assignment::weighted_choice;
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::*;

const TENANT: &str = "bench";
const AGENTS: usize = 5_000;
const WAITING: usize = 50_000;

struct Feed {
    engine: Engine<MemStore>,
    ts: i64,
    n: u64,
}

impl Feed {
    fn send(&mut self, input: Input) {
        self.ts += 1;
        let step = self.engine.process(self.ts, &input);
        assert!(step.rejected.is_none(), "{:?}", step.rejected);
    }

    fn id(&mut self) -> String {
        self.n += 1;
        format!("r{}", self.n)
    }

    fn config(&mut self, change: ConfigChangeKind) {
        let id = self.id();
        self.send(Input::Config(ConfigChange {
            id,
            tenant: TENANT.into(),
            version: 1,
            change,
        }));
    }

    fn agent(&mut self, agent: &str, event: AgentEventKind) {
        let id = self.id();
        self.send(Input::Agent(AgentEvent {
            id,
            tenant: TENANT.into(),
            agent_id: agent.into(),
            event,
        }));
    }

    fn message(&mut self, from: usize, content: &str) {
        let id = self.id();
        self.send(Input::Inbound(InboundMessage::text(
            &id,
            TENANT,
            Channel::Whatsapp,
            &format!("+{from}"),
            "+1",
            content,
        )));
    }
}

fn queue(id: &str, auto_assign: bool) -> ConfigChangeKind {
    ConfigChangeKind::UpsertQueue(UpsertQueue {
        queue: Queue {
            id: id.into(),
            name: id.into(),
            working_hours_id: None,
            senders: vec![],
            auto_assign,
            bot: false,
            sticky_lookback: None,
        },
    })
}

fn route(id: &str, word: &str, queue: &str) -> ConfigChangeKind {
    let condition = Condition {
        attribute: Some("content".into()),
        operator: Some(Operator::Is),
        value: Some(word.into()),
        ..Condition::default()
    };
    ConfigChangeKind::UpsertRoute(UpsertRoute {
        route: Route {
            id: id.into(),
            name: id.into(),
            order: 1,
            enabled: true,
            condition,
            queue_id: queue.into(),
            priority: Priority::Normal,
        },
    })
}

fn per_second(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let mut f = Feed {
        engine: Engine::open(MemStore::default(), Settings::default()).expect("engine"),
        ts: 1_772_445_600_000,
        n: 0,
    };
    f.config(queue("sales", true));
    f.config(queue("backlog", true));
    f.config(queue("manual", false));
    f.config(route("sales", "buy", "sales"));
    f.config(route("backlog", "later", "backlog"));
    f.config(route("manual", "note", "manual"));

    // 50,000 conversations wait in the backlog queue, which no agent is in yet.
    let started = Instant::now();
    for i in 0..WAITING {
        f.message(i, "later");
    }
    let setup = started.elapsed();

    // 5,000 agents in the sales queue, available, with room for plenty of conversations.
    let capacity: std::collections::BTreeMap<String, i32> =
        [("live_messaging".to_string(), 1000)].into();
    for a in 0..AGENTS {
        let name = format!("agent-{a:05}");
        f.agent(
            &name,
            AgentEventKind::AgentUpdated(AgentUpdate {
                enabled: Some(true),
                queues: Some(vec!["sales".into()]),
                capacity: Some(capacity.clone()),
            }),
        );
        f.agent(
            &name,
            AgentEventKind::AgentStatusChanged(AgentStatusChange {
                status: "Available".into(),
            }),
        );
    }

    // Baseline: messages into a queue without automatic assignment.
    let n = 5_000;
    let started = Instant::now();
    for i in 0..n {
        f.message(1_000_000 + i, "note");
    }
    let baseline = per_second(n, started);

    // Single: each new conversation in sales is one weighted-sum decision over 5,000 agents.
    let n = 2_000;
    let started = Instant::now();
    for i in 0..n {
        f.message(2_000_000 + i, "buy");
    }
    let single = per_second(n, started);

    // Decisions alone: the weighted-sum choice for those conversations, over the same 5,000
    // agents (whose loads now differ), with 50,000 conversations waiting elsewhere.
    let now = f.ts;
    let ids: Vec<String> = (1..=n as i64 + WAITING as i64 + 5_000)
        .filter_map(|short| {
            f.engine
                .state()
                .resolve_conversation(TENANT, &format!("#{short}"))
        })
        .filter(|id| {
            f.engine
                .state()
                .conversation(TENANT, id)
                .is_some_and(|c| c.queue_id.as_deref() == Some("sales"))
        })
        .collect();
    let rounds = 50;
    let started = Instant::now();
    let mut picked = 0usize;
    for _ in 0..rounds {
        for id in &ids {
            picked += usize::from(weighted_choice(f.engine.state(), TENANT, id, now).is_some());
        }
    }
    let decisions = per_second(rounds * ids.len(), started);
    assert_eq!(
        picked,
        rounds * ids.len(),
        "every conversation has a choice"
    );

    // Baseline for the decision: the scan a competent user writes (and the engine did before
    // its bucketed index): every agent's workload and unserved time, then the best score.
    let state = f.engine.state();
    // The pool is resolved once (as the engine's roster holds it): the scan walks loads only.
    let pool: Vec<&switchboard_processors::assignment::Load> = (0..AGENTS)
        .filter_map(|a| state.assign.load(TENANT, &format!("agent-{a:05}")))
        .collect();
    let linear = |now: i64| -> Option<String> {
        let loads: Vec<(&str, f64, f64)> = pool
            .iter()
            .filter(|l| l.has_room(Category::LiveMessaging))
            .map(|l| {
                let unserved = (now - l.since.unwrap_or(now)).max(0) as f64 / 1000.0;
                (&*l.id, l.weighted_workload(), unserved)
            })
            .collect();
        let min_w = loads.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
        let max_u = loads.iter().map(|l| l.2).fold(0.0, f64::max);
        let score = |w: f64, u: f64| {
            let w = if w == 0.0 {
                1.0
            } else if min_w == 0.0 {
                0.0
            } else {
                min_w / w
            };
            let u = if max_u == 0.0 { 0.0 } else { u / max_u };
            0.5 * w + 0.5 * u
        };
        loads
            .iter()
            .map(|(id, w, u)| (score(*w, *u), *u, *id))
            .min_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then(b.1.total_cmp(&a.1))
                    .then(a.2.cmp(b.2))
            })
            .map(|(_, _, id)| id.to_string())
    };
    let n_linear = 2_000;
    let started = Instant::now();
    for _ in 0..n_linear {
        std::hint::black_box(linear(now));
    }
    let scan = per_second(n_linear, started);
    assert_eq!(
        linear(now),
        weighted_choice(state, TENANT, &ids[0], now).map(|(a, _)| a),
        "the index and the scan agree"
    );

    // Bulk: agents join the backlog queue one by one (capacity 50 each) and take conversations
    // out of the 50,000-deep waiting list until they are at Full capacity.
    let joiners = 200;
    let capacity: std::collections::BTreeMap<String, i32> =
        [("live_messaging".to_string(), 50)].into();
    let started = Instant::now();
    for a in 0..joiners {
        let name = format!("bulk-{a:04}");
        f.agent(
            &name,
            AgentEventKind::AgentUpdated(AgentUpdate {
                enabled: Some(true),
                queues: Some(vec!["backlog".into()]),
                capacity: Some(capacity.clone()),
            }),
        );
        f.agent(
            &name,
            AgentEventKind::AgentStatusChanged(AgentStatusChange {
                status: "Available".into(),
            }),
        );
    }
    // At 45 of 50 (90% workload) an agent enters Full capacity and stops taking work.
    let bulk_assigned = joiners * 45;
    let bulk = per_second(bulk_assigned, started);

    let waiting_left = f
        .engine
        .state()
        .assign
        .waiting(TENANT, "backlog", Category::LiveMessaging)
        .len();
    assert_eq!(
        waiting_left,
        WAITING - bulk_assigned,
        "bulk assignment took the expected conversations"
    );

    println!("setup: {WAITING} waiting conversations in {:.2?}", setup);
    println!("baseline  threading+routing, no assignment : {baseline:>10.0} messages/s   (1.00x)");
    println!("single    weighted sum over {AGENTS} agents  : {single:>10.0} conversations/s ({:.2}x baseline)", single / baseline);
    println!("decision  scan of {AGENTS} agents (baseline)  : {scan:>10.0} decisions/s  (1.00x)");
    println!("decision  bucketed index, {AGENTS} agents    : {decisions:>10.0} decisions/s  ({:.1}x the scan)", decisions / scan);
    println!(
        "bulk      from {WAITING} waiting            : {bulk:>10.0} assigned/s   ({:.2}x baseline)",
        bulk / baseline
    );
}
