//! Interactive queries (R-RUN-5): read-only answers over one partition's state, for the
//! runtime's HTTP endpoints and for tests that compare them with `simulate`.
//!
//! An answer is the JSON a supervisor's tool reads: a conversation with its SLA clocks,
//! waiting position, mood and survey; a queue's waiting list in assignment order with the
//! queue's agents; an agent's row with occupancy and capacity per channel category. Answers
//! are a pure function of the state, so the same input gives the same answer on any run.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard_schemas::{Category, Priority, Status, StatusGroup};

use crate::csat::Survey;
use crate::sentiment::ConversationMood;
use crate::sla::SlaState;
use crate::state::{Archived, Conversation, State, DEFAULT_QUEUE};

/// One question about a tenant's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// A conversation by id or by `#<short id>`.
    Conversation { tenant: String, reference: String },
    /// A queue and its waiting list.
    Queue { tenant: String, queue: String },
    /// An agent's status and load.
    Agent { tenant: String, agent: String },
}

/// One tenant's live figures, for the metrics (R-RUN-4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantFigures {
    /// Conversations that are not Closed.
    pub open_conversations: u64,
    /// Queue → (conversations waiting in it unassigned, the stream time since which the
    /// longest-waiting one waits; `i64::MAX` when nobody waits), for every configured queue
    /// and the Default queue.
    pub queues: BTreeMap<String, (u64, i64)>,
    /// Enabled agents per status group: available, busy, away, unavailable.
    pub agents: [u64; 4],
}

/// The status groups in [`TenantFigures::agents`] order, with their label values.
pub const GROUPS: [(StatusGroup, &str); 4] = [
    (StatusGroup::Available, "available"),
    (StatusGroup::Busy, "busy"),
    (StatusGroup::Away, "away"),
    (StatusGroup::Unavailable, "unavailable"),
];

/// Every tenant's live figures on this partition: one pass over the conversations and the
/// agents, and the queues' waiting lists.
pub fn live_figures(state: &State) -> BTreeMap<String, TenantFigures> {
    let mut out: BTreeMap<String, TenantFigures> = BTreeMap::new();
    fn of<'a>(out: &'a mut BTreeMap<String, TenantFigures>, tenant: &str) -> &'a mut TenantFigures {
        if !out.contains_key(tenant) {
            out.insert(tenant.to_string(), TenantFigures::default());
        }
        out.get_mut(tenant)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }
    for ((tenant, _), conv) in state.conversations.iter() {
        if conv.status != Status::Closed {
            of(&mut out, tenant).open_conversations += 1;
        }
    }
    for ((tenant, _), agent) in state.agents.iter() {
        if !agent.enabled {
            continue;
        }
        let g = GROUPS
            .iter()
            .position(|(g, _)| *g == agent.group)
            .unwrap_or(3);
        of(&mut out, tenant).agents[g] += 1;
    }
    // Every configured queue has a figure, 0 waiting when nobody waits (since: never).
    for (tenant, row) in state.tenants.iter() {
        let figures = of(&mut out, tenant);
        for queue in row
            .config
            .queues
            .keys()
            .map(String::as_str)
            .chain([DEFAULT_QUEUE])
        {
            figures
                .queues
                .entry(queue.to_string())
                .or_insert((0, i64::MAX));
        }
    }
    for tenant in state.conversations.tenants() {
        for (queue, waiting, since) in state.assign.queue_figures(tenant) {
            of(&mut out, tenant)
                .queues
                .insert(queue.to_string(), (waiting as u64, since));
        }
    }
    out
}

/// The answer: the JSON document, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Found(Value),
    NotFound(String),
}

const CATEGORIES: [Category; 4] = [
    Category::LiveMessaging,
    Category::LiveChat,
    Category::Email,
    Category::Voice,
];

impl Query {
    pub fn tenant(&self) -> &str {
        match self {
            Query::Conversation { tenant, .. }
            | Query::Queue { tenant, .. }
            | Query::Agent { tenant, .. } => tenant,
        }
    }

    /// Answer from the state of the partition that holds the tenant.
    pub fn answer(&self, state: &State) -> Answer {
        let tenant = self.tenant();
        if !knows_tenant(state, tenant) {
            return Answer::NotFound(format!("no tenant {tenant:?} on this partition"));
        }
        match self {
            Query::Conversation { reference, .. } => conversation(state, tenant, reference),
            Query::Queue { queue, .. } => queue_answer(state, tenant, queue),
            Query::Agent { agent, .. } => agent_answer(state, tenant, agent),
        }
    }
}

/// Whether the partition holds the tenant: its config or an agent of it.
pub fn knows_tenant(state: &State, tenant: &str) -> bool {
    state.tenant(tenant).is_some() || has_agents(state, tenant)
}

fn has_agents(state: &State, tenant: &str) -> bool {
    state.agents.count_of(tenant) > 0
}

fn agents_of<'a>(
    state: &'a State,
    tenant: &'a str,
) -> impl Iterator<Item = &'a crate::state::Agent> + 'a {
    state.agents.rows_of(tenant).into_iter().map(|(_, a)| a)
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn priority_name(p: Priority) -> Value {
    to_value(&p)
}

/// Survey answers counted for `scope` (`queue/<id>`, `agent/<id>`): happy, not happy and
/// CSAT = happy / answered (null before the first answer).
fn csat(state: &State, tenant: &str, scope: &str) -> Value {
    let (happy, not_happy) = state.csat.get(tenant, scope).copied().unwrap_or((0, 0));
    let answered = happy + not_happy;
    let ratio = (answered > 0).then(|| happy as f64 / answered as f64);
    json!({"happy": happy, "not_happy": not_happy, "csat": ratio})
}

fn conversation(state: &State, tenant: &str, reference: &str) -> Answer {
    let Some(id) = state.resolve_conversation(tenant, reference) else {
        return Answer::NotFound(format!(
            "no conversation {reference:?} in tenant {tenant:?}"
        ));
    };
    let Some(conv) = state.conversation(tenant, &id) else {
        return Answer::NotFound(format!(
            "no conversation {reference:?} in tenant {tenant:?}"
        ));
    };
    let waiting = conv.queue_id.as_deref().and_then(|queue| {
        state
            .assign
            .waiting_entries(tenant, queue, conv.category)
            .position(|k| *k.2 == *id)
            .map(|i| json!({"queue": queue, "category": conv.category, "position": i + 1}))
    });
    conversation_answer(
        tenant,
        conv,
        waiting,
        state.sla.get(tenant, id.as_str()),
        state.moods.get(tenant, id.as_str()),
        state.surveys.get(tenant, id.as_str()),
    )
}

/// The answer for an archived conversation (Closed, its work over): as it was archived.
pub fn archived_answer(tenant: &str, archived: &Archived) -> Answer {
    conversation_answer(
        tenant,
        &archived.conversation,
        None,
        archived.sla.as_ref(),
        archived.mood.as_ref(),
        None,
    )
}

fn conversation_answer(
    tenant: &str,
    conv: &Conversation,
    waiting: Option<Value>,
    sla: Option<&SlaState>,
    mood: Option<&ConversationMood>,
    survey: Option<&Survey>,
) -> Answer {
    let sla = sla.map(|s| {
        let (first_response, next_reply, resolution) = s.announced;
        json!({
            "policy": s.policy,
            "severity": s.severity,
            "first_response_due": first_response,
            "next_reply_due": next_reply,
            "resolution_due": resolution,
            "breached": s.breached.iter().map(|(m, n)| json!({"metric": m, "n": n})).collect::<Vec<_>>(),
            "met": s.met.iter().map(|(m, n)| json!({"metric": m, "n": n})).collect::<Vec<_>>(),
        })
    });
    let sentiment = mood.map(|m| {
        let mean = if m.weights > 0.0 {
            m.weighted_sum / m.weights
        } else {
            0.0
        };
        json!({"mean": mean, "messages": m.messages})
    });
    Answer::Found(json!({
        "tenant": tenant,
        "conversation": to_value(conv),
        "waiting": waiting,
        "sla": sla,
        "sentiment": sentiment,
        "survey": survey.map(to_value),
    }))
}

fn queue_answer(state: &State, tenant: &str, queue: &str) -> Answer {
    let config = state.config(tenant);
    let Some(q) = config.queue(queue) else {
        return Answer::NotFound(format!("no queue {queue:?} in tenant {tenant:?}"));
    };
    let mut waiting = Vec::new();
    for category in CATEGORIES {
        for (i, (priority, created_at, id)) in state
            .assign
            .waiting_entries(tenant, queue, category)
            .enumerate()
        {
            waiting.push(json!({
                "conversation": id,
                "category": category,
                "position": i + 1,
                "priority": priority_name(priority.0),
                "created_at": created_at,
            }));
        }
    }
    let agents: Vec<Value> = agents_of(state, tenant)
        .filter(|a| a.enabled && a.in_queue(queue))
        .map(|a| json!({"agent": a.id, "status": a.status, "group": a.group}))
        .collect();
    Answer::Found(json!({
        "tenant": tenant,
        "queue": to_value(&q),
        "waiting_count": waiting.len(),
        "waiting": waiting,
        "agents": agents,
        "csat": csat(state, tenant, &format!("queue/{queue}")),
    }))
}

fn agent_answer(state: &State, tenant: &str, agent: &str) -> Answer {
    let Some(row) = state.agents.get(tenant, agent) else {
        return Answer::NotFound(format!("no agent {agent:?} in tenant {tenant:?}"));
    };
    let load = state.assign.load(tenant, agent).map(|l| {
        let categories: serde_json::Map<String, Value> = l
            .by_category()
            .iter()
            .map(|(k, occupancy, capacity)| {
                let name = to_value(k).as_str().unwrap_or_default().to_string();
                (name, json!({"occupancy": occupancy, "capacity": capacity}))
            })
            .collect();
        json!({
            "categories": categories,
            "full_workload": l.full_workload(),
            "weighted_workload": l.weighted_workload(),
            "since": l.since,
        })
    });
    Answer::Found(json!({
        "tenant": tenant,
        "agent": to_value(row),
        "load": load,
        "csat": csat(state, tenant, &format!("agent/{agent}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Settings};
    use crate::store::MemStore;
    use switchboard_schemas::{Input, Topic};

    const T0: i64 = 1_772_442_000_000; // Monday 2026-03-02 09:00 UTC

    fn input(topic: Topic, value: Value) -> Input {
        Input::from_json(topic, value).expect("valid input")
    }

    /// A tenant with a Billing queue (automatic assignment), one agent with capacity 1 in
    /// live messaging, and three customers on SMS: the first is assigned, two wait.
    fn engine() -> Engine<MemStore> {
        let mut e = Engine::open(MemStore::default(), Settings::default()).expect("engine");
        let records = [
            (
                Topic::Config,
                json!({"id": "c1", "tenant": "acme", "version": 1, "change": {"UpsertQueue": {"queue": {"id": "billing", "name": "Billing", "auto_assign": true}}}}),
            ),
            (
                Topic::Config,
                json!({"id": "c2", "tenant": "acme", "version": 1, "change": {"UpsertRoute": {"route": {"id": "all", "order": 1, "condition": {"attribute": "content", "operator": "contains", "value": "bill"}, "queue_id": "billing"}}}}),
            ),
            (
                Topic::AgentEvents,
                json!({"id": "a1", "tenant": "acme", "agent_id": "ana", "event": {"AgentUpdated": {"queues": ["billing"], "capacity": {"live_messaging": 1}}}}),
            ),
            (
                Topic::AgentEvents,
                json!({"id": "a2", "tenant": "acme", "agent_id": "ana", "event": {"AgentStatusChanged": {"status": "Available"}}}),
            ),
        ];
        for (i, (topic, value)) in records.into_iter().enumerate() {
            let step = e.process(T0 + i as i64, &input(topic, value));
            assert!(step.rejected.is_none(), "{:?}", step.rejected);
        }
        for (i, from) in ["+1001", "+1002", "+1003"].iter().enumerate() {
            let msg = json!({"id": format!("m{i}"), "tenant": "acme", "channel": "sms", "from": from, "to": "+2000", "content": "my bill is wrong"});
            let step = e.process(T0 + 1000 * (i as i64 + 1), &input(Topic::Inbound, msg));
            assert!(step.rejected.is_none(), "{:?}", step.rejected);
        }
        e
    }

    fn found(a: Answer) -> Value {
        match a {
            Answer::Found(v) => v,
            Answer::NotFound(why) => panic!("expected an answer, got: {why}"),
        }
    }

    fn q_conv(reference: &str) -> Query {
        Query::Conversation {
            tenant: "acme".into(),
            reference: reference.into(),
        }
    }

    /// R-RUN-4: the live figures: three open conversations, two waiting in Billing since the
    /// second customer wrote, one agent Busy (at full capacity with the first); closing a
    /// waiting conversation and the agent going Away change them as a supervisor expects.
    #[test]
    fn r_run_4_live_figures_count_open_work_waiting_and_agents() {
        let mut e = engine();
        let figures = e.live_figures();
        let acme = &figures["acme"];
        assert_eq!(acme.open_conversations, 3);
        assert_eq!(acme.queues.get("billing"), Some(&(2, T0 + 2000)));
        assert_eq!(acme.agents, [0, 1, 0, 0]);
        let close = json!({"id": "x1", "tenant": "acme", "conversation_id": "#2", "command": {"SetStatus": {"status": "closed"}}});
        let step = e.process(T0 + 10_000, &input(Topic::Commands, close));
        assert!(step.rejected.is_none(), "{:?}", step.rejected);
        let away = json!({"id": "a3", "tenant": "acme", "agent_id": "ana", "event": {"AgentStatusChanged": {"status": "Away"}}});
        let step = e.process(T0 + 11_000, &input(Topic::AgentEvents, away));
        assert!(step.rejected.is_none(), "{:?}", step.rejected);
        let acme = e.live_figures().remove("acme").expect("acme");
        assert_eq!(acme.open_conversations, 2);
        assert_eq!(acme.queues.get("billing"), Some(&(1, T0 + 3000)));
        assert_eq!(
            acme.queues.get("default"),
            Some(&(0, i64::MAX)),
            "nobody waits"
        );
        assert_eq!(acme.agents, [0, 0, 1, 0]);
    }

    /// R-RUN-5: a conversation by short id shows its queue, assignee and SLA; a waiting one
    /// shows its position in the queue's waiting list.
    #[test]
    fn r_run_5_conversation_answer_shows_assignee_and_waiting_position() {
        let e = engine();
        let first = found(q_conv("#1").answer(e.state()));
        assert_eq!(first["conversation"]["queue_id"], "billing");
        assert_eq!(first["conversation"]["assignee"], "ana");
        assert_eq!(
            first["waiting"],
            Value::Null,
            "an assigned one is not waiting"
        );
        let third = found(q_conv("#3").answer(e.state()));
        assert_eq!(third["conversation"]["assignee"], Value::Null);
        assert_eq!(third["waiting"]["position"], 2);
        assert_eq!(third["waiting"]["queue"], "billing");
        // The same conversation by its id.
        let id = third["conversation"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        assert_eq!(found(q_conv(&id).answer(e.state())), third);
    }

    /// R-RUN-5: a queue's waiting list in assignment order (oldest first at equal priority),
    /// with its agents.
    #[test]
    fn r_run_5_queue_answer_lists_waiting_in_assignment_order() {
        let e = engine();
        let q = Query::Queue {
            tenant: "acme".into(),
            queue: "billing".into(),
        };
        let v = found(q.answer(e.state()));
        assert_eq!(v["waiting_count"], 2);
        let ids: Vec<String> = v["waiting"]
            .as_array()
            .expect("list")
            .iter()
            .map(|w| w["conversation"].as_str().expect("id").to_string())
            .collect();
        let second = found(q_conv("#2").answer(e.state()));
        let third = found(q_conv("#3").answer(e.state()));
        assert_eq!(
            ids,
            [
                second["conversation"]["id"].as_str().expect("id"),
                third["conversation"]["id"].as_str().expect("id")
            ]
        );
        assert_eq!(v["waiting"][0]["category"], "live_messaging");
        assert_eq!(v["agents"][0]["agent"], "ana");
        assert_eq!(
            v["agents"][0]["group"], "busy",
            "at capacity: Full capacity"
        );
    }

    /// R-RUN-5: an agent's load: occupancy against capacity per category and the workload.
    #[test]
    fn r_run_5_agent_answer_shows_occupancy_and_capacity() {
        let e = engine();
        let q = Query::Agent {
            tenant: "acme".into(),
            agent: "ana".into(),
        };
        let v = found(q.answer(e.state()));
        let lm = &v["load"]["categories"]["live_messaging"];
        assert_eq!(
            (lm["occupancy"].as_i64(), lm["capacity"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["load"]["full_workload"].as_f64(), Some(100.0));
        assert_eq!(v["agent"]["queues"], json!(["billing"]));
    }

    /// R-RUN-5, R-CSAT: the queue and the agent show the survey answers counted for them.
    #[test]
    fn r_run_5_queue_and_agent_answers_show_csat() {
        let mut e = engine();
        let settings = json!({"id": "c3", "tenant": "acme", "version": 1, "change": {"SetSurveySettings": {"enabled": true, "delay_seconds": 30, "question": "Happy? Reply 1 or 2"}}});
        let t = T0 + 10_000;
        let solve = json!({"id": "k1", "tenant": "acme", "conversation_id": "#1", "by": "ana", "command": {"SetStatus": {"status": "solved"}}});
        let tick = json!({"source": "test"});
        let answer = json!({"id": "m9", "tenant": "acme", "channel": "sms", "from": "+1001", "to": "+2000", "content": "1"});
        for (ts, topic, value) in [
            (t, Topic::Config, settings),
            (t + 1, Topic::Commands, solve),
            (t + 60_000, Topic::Ticks, tick),
        ] {
            let step = e.process(ts, &input(topic, value));
            assert!(step.rejected.is_none(), "{:?}", step.rejected);
        }
        // The survey went out 30 s after Solved and waits for the answer.
        let conv = found(q_conv("#1").answer(e.state()));
        assert_eq!(conv["survey"]["sent_at"], t + 1 + 30_000, "{conv}");
        let step = e.process(t + 70_000, &input(Topic::Inbound, answer));
        assert!(step.rejected.is_none(), "{:?}", step.rejected);
        let queue = found(
            Query::Queue {
                tenant: "acme".into(),
                queue: "billing".into(),
            }
            .answer(e.state()),
        );
        assert_eq!(
            queue["csat"],
            json!({"happy": 1, "not_happy": 0, "csat": 1.0})
        );
        let agent = found(
            Query::Agent {
                tenant: "acme".into(),
                agent: "ana".into(),
            }
            .answer(e.state()),
        );
        assert_eq!(
            agent["csat"],
            json!({"happy": 1, "not_happy": 0, "csat": 1.0})
        );
        let other = found(
            Query::Queue {
                tenant: "acme".into(),
                queue: "default".into(),
            }
            .answer(e.state()),
        );
        assert_eq!(
            other["csat"],
            json!({"happy": 0, "not_happy": 0, "csat": null})
        );
    }

    /// R-RUN-5: unknown tenants, conversations, queues and agents are "not found" with the
    /// name in the reason.
    #[test]
    fn r_run_5_unknown_things_are_not_found_with_a_reason() {
        let e = engine();
        let cases = [
            (q_conv("#99"), "\"#99\""),
            (
                Query::Queue {
                    tenant: "acme".into(),
                    queue: "nowhere".into(),
                },
                "\"nowhere\"",
            ),
            (
                Query::Agent {
                    tenant: "acme".into(),
                    agent: "zed".into(),
                },
                "\"zed\"",
            ),
            (
                Query::Agent {
                    tenant: "globex".into(),
                    agent: "ana".into(),
                },
                "\"globex\"",
            ),
        ];
        for (q, name) in cases {
            match q.answer(e.state()) {
                Answer::NotFound(why) => assert!(why.contains(name), "{why}"),
                Answer::Found(v) => panic!("{q:?} found {v}"),
            }
        }
    }
}
