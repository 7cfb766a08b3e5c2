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
    /// The tenants held here (the runtime merges the answers of its partitions).
    Tenants,
    /// Every queue of a tenant with its waiting count, longest wait, agents and CSAT.
    Queues { tenant: String },
    /// Every agent of a tenant with status, group and workload.
    Agents { tenant: String },
    /// A tenant's waiting conversations in assignment order, queue by queue (or one queue's),
    /// one page of them.
    Waiting {
        tenant: String,
        queue: Option<String>,
        page: Page,
    },
    /// What the supervisor wallboard shows of a tenant.
    Wallboard { tenant: String },
}

/// A page of a list: skip `offset` items, show at most `limit` (at most [`MAX_PAGE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

/// The default and the largest page of a list answer.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

impl Default for Page {
    fn default() -> Page {
        Page {
            offset: 0,
            limit: DEFAULT_PAGE,
        }
    }
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
    /// The tenant asked about; `None` for [`Query::Tenants`], which every partition answers.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Query::Conversation { tenant, .. }
            | Query::Queue { tenant, .. }
            | Query::Agent { tenant, .. }
            | Query::Queues { tenant }
            | Query::Agents { tenant }
            | Query::Waiting { tenant, .. }
            | Query::Wallboard { tenant } => Some(tenant),
            Query::Tenants => None,
        }
    }

    /// Answer from the state of the partition that holds the tenant. Times come as epoch
    /// milliseconds with an ISO-8601 twin, and ratios rounded ([`present`]).
    pub fn answer(&self, state: &State) -> Answer {
        let mut answer = self.answer_raw(state);
        if let Answer::Found(v) = &mut answer {
            present(v);
        }
        answer
    }

    fn answer_raw(&self, state: &State) -> Answer {
        let Some(tenant) = self.tenant() else {
            return Answer::Found(json!({ "tenants": tenants(state) }));
        };
        if !knows_tenant(state, tenant) {
            return Answer::NotFound(format!("no tenant {tenant:?} on this partition"));
        }
        match self {
            Query::Conversation { reference, .. } => conversation(state, tenant, reference),
            Query::Queue { queue, .. } => queue_answer(state, tenant, queue),
            Query::Agent { agent, .. } => agent_answer(state, tenant, agent),
            Query::Queues { .. } => Answer::Found(json!({
                "tenant": tenant,
                "queues": queue_summaries(state, tenant),
            })),
            Query::Agents { .. } => Answer::Found(json!({
                "tenant": tenant,
                "agents": agent_summaries(state, tenant),
            })),
            Query::Waiting { queue, page, .. } => {
                waiting_page(state, tenant, queue.as_deref(), *page)
            }
            Query::Wallboard { .. } => Answer::Found(wallboard(state, tenant)),
            Query::Tenants => unreachable!("answered above"),
        }
    }
}

/// The tenants on this partition: those with a config or agents, by name.
pub fn tenants(state: &State) -> Vec<String> {
    let mut names: Vec<String> = state
        .tenants
        .iter()
        .map(|(t, _)| t.clone())
        .chain(state.agents.tenants().into_iter().map(str::to_string))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Every queue of the tenant (configured ones and the Default queue): id, name, waiting
/// count, the stream time the longest-waiting conversation has waited since, enabled agents
/// by status group, CSAT.
fn queue_summaries(state: &State, tenant: &str) -> Vec<Value> {
    let config = state.config(tenant);
    let now = state.stream_time();
    let waiting: BTreeMap<&str, (usize, i64)> = state
        .assign
        .queue_figures(tenant)
        .into_iter()
        .map(|(q, n, since)| (q, (n, since)))
        .collect();
    let agents: Vec<&crate::state::Agent> =
        agents_of(state, tenant).filter(|a| a.enabled).collect();
    let mut ids: Vec<&str> = config.queues.keys().map(String::as_str).collect();
    ids.push(DEFAULT_QUEUE);
    ids.into_iter()
        .map(|id| {
            let name = config.queue(id).map(|q| q.name.clone());
            let (count, since) = waiting.get(id).copied().unwrap_or((0, i64::MAX));
            let groups = by_group(agents.iter().copied().filter(|a| a.in_queue(id)));
            let longest = (count > 0).then(|| now.saturating_sub(since).max(0));
            json!({
                "queue": id,
                "name": name,
                "waiting_count": count,
                "longest_wait_ms": longest,
                "agents": groups,
                "csat": csat(state, tenant, &format!("queue/{id}")),
            })
        })
        .collect()
}

/// How many of `agents` are in each status group, by group label.
fn by_group<'a>(agents: impl Iterator<Item = &'a crate::state::Agent>) -> Value {
    let mut counts = [0u64; 4];
    for a in agents {
        if let Some(i) = GROUPS.iter().position(|(g, _)| *g == a.group) {
            counts[i] += 1;
        }
    }
    let groups: serde_json::Map<String, Value> = GROUPS
        .iter()
        .zip(counts)
        .map(|((_, label), n)| (label.to_string(), json!(n)))
        .collect();
    Value::Object(groups)
}

/// Every agent of the tenant: id, status, group, enabled, and workload.
fn agent_summaries(state: &State, tenant: &str) -> Vec<Value> {
    agents_of(state, tenant)
        .map(|a| {
            let load = state.assign.load(tenant, &a.id);
            json!({
                "agent": a.id,
                "enabled": a.enabled,
                "status": a.status,
                "group": a.group,
                "queues": a.queues,
                "full_workload": load.map(|l| l.full_workload()),
                "weighted_workload": load.map(|l| l.weighted_workload()),
            })
        })
        .collect()
}

/// One page of the tenant's waiting conversations: queue by queue (by id), each queue's
/// list in assignment order, with the total and the offset of the next page.
fn waiting_page(state: &State, tenant: &str, queue: Option<&str>, page: Page) -> Answer {
    let config = state.config(tenant);
    let queues: Vec<String> = match queue {
        Some(q) if q != DEFAULT_QUEUE && config.queue(q).is_none() => {
            return Answer::NotFound(format!("no queue {q:?} in tenant {tenant:?}"));
        }
        Some(q) => vec![q.to_string()],
        None => {
            let mut all: Vec<String> = config.queues.keys().cloned().collect();
            all.push(DEFAULT_QUEUE.to_string());
            all.sort();
            all
        }
    };
    let limit = page.limit.clamp(1, MAX_PAGE);
    let now = state.stream_time();
    let mut total = 0usize;
    let mut items = Vec::new();
    for q in &queues {
        for category in CATEGORIES {
            for (i, (priority, since, id)) in state
                .assign
                .waiting_entries(tenant, q, category)
                .enumerate()
            {
                if total >= page.offset && items.len() < limit {
                    items.push(json!({
                        "conversation": id,
                        "queue": q,
                        "category": category,
                        "position": i + 1,
                        "priority": priority_name(priority.0),
                        "waiting_since": since,
                        "waiting_ms": now.saturating_sub(*since).max(0),
                    }));
                }
                total += 1;
            }
        }
    }
    let next = (page.offset.saturating_add(limit) < total).then(|| page.offset + limit);
    Answer::Found(json!({
        "tenant": tenant,
        "queue": queue,
        "total": total,
        "offset": page.offset,
        "limit": limit,
        "next_offset": next,
        "items": items,
    }))
}

/// The wallboard of a tenant: its queues (waiting, longest wait, agents by group, SLA
/// attainment and CSAT over the last hour of closed analytics windows), agents by status
/// group, open conversations, and the latest breaches and negative-sentiment conversations.
pub fn wallboard(state: &State, tenant: &str) -> Value {
    let now = state.stream_time();
    let since = now.saturating_sub(crate::analytics::HOUR_MS);
    let mut queues = queue_summaries(state, tenant);
    for q in &mut queues {
        let id = q["queue"].as_str().unwrap_or_default().to_string();
        let [met, breached, happy, not_happy] = state
            .queue_hours
            .get(tenant, id.as_str())
            .map(|h| h.totals(since))
            .unwrap_or_default();
        let ratio = |a: u64, b: u64| (a + b > 0).then(|| a as f64 / (a + b) as f64);
        q["last_hour"] = json!({
            "sla_met": met,
            "sla_breached": breached,
            "sla_attainment": ratio(met, breached),
            "csat_happy": happy,
            "csat_not_happy": not_happy,
            "csat": ratio(happy, not_happy),
        });
    }
    let groups = by_group(agents_of(state, tenant).filter(|a| a.enabled));
    let open = state
        .conversations
        .rows_of(tenant)
        .iter()
        .filter(|(_, c)| c.status != Status::Closed)
        .count();
    let notable = |list: &str| -> Vec<Value> {
        state
            .notable
            .get(tenant, list)
            .map(|rows| rows.iter().map(to_value).collect())
            .unwrap_or_default()
    };
    json!({
        "tenant": tenant,
        "stream_time": now,
        "open_conversations": open,
        "agents": groups,
        "queues": queues,
        "latest_breaches": notable(crate::analytics::BREACHES),
        "latest_negative": notable(crate::analytics::NEGATIVE),
    })
}

/// Make an answer easy to read, in place: beside every time in epoch milliseconds (a key
/// ending in `_at`, `_due` or `_since`, or named `at`, `since` or `stream_time`) an ISO-8601
/// UTC twin (`<key>_iso`); beside every duration in milliseconds (`<name>_ms`) an ISO-8601
/// duration (`<name>_iso`); every fraction rounded to 4 decimals.
pub fn present(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mut twins = Vec::new();
            for (k, val) in map.iter_mut() {
                present(val);
                let Some(ms) = val.as_i64() else { continue };
                if is_time_key(k) {
                    if let Some(iso) = iso_time(ms) {
                        twins.push((format!("{k}_iso"), Value::String(iso)));
                    }
                } else if let Some(name) = k.strip_suffix("_ms") {
                    twins.push((format!("{name}_iso"), Value::String(iso_duration(ms))));
                }
            }
            for (k, val) in twins {
                map.entry(k).or_insert(val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(present),
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                let r = (f * 10_000.0).round() / 10_000.0;
                if let Some(r) = serde_json::Number::from_f64(r) {
                    *n = r;
                }
            }
        }
        _ => {}
    }
}

fn is_time_key(k: &str) -> bool {
    matches!(k, "at" | "since" | "stream_time")
        || k.ends_with("_at")
        || k.ends_with("_due")
        || k.ends_with("_since")
}

/// Epoch milliseconds as ISO-8601 UTC with milliseconds; none outside the accepted years.
pub fn iso_time(ms: i64) -> Option<String> {
    if !(0..=7_258_118_400_000).contains(&ms) {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Milliseconds as an ISO-8601 duration: `PT1H2M3.5S`, `P2DT4H`, `PT0S`.
pub fn iso_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (h, m) = (rest / 3_600_000, rest % 3_600_000 / 60_000);
    let (s, milli) = (rest % 60_000 / 1000, rest % 1000);
    let mut out = format!("{sign}P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if rest > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || milli > 0 || (h == 0 && m == 0) {
            match milli {
                0 => out.push_str(&format!("{s}S")),
                _ => out.push_str(&format!(
                    "{s}.{}S",
                    format!("{milli:03}").trim_end_matches('0')
                )),
            }
        }
    }
    out
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
    let mut answer = conversation_answer(
        tenant,
        &archived.conversation,
        None,
        archived.sla.as_ref(),
        archived.mood.as_ref(),
        None,
    );
    if let Answer::Found(v) = &mut answer {
        present(v);
    }
    answer
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
        let (first_response, next_reply, resolution) = crate::sla::announced(s);
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

    /// R-RUN-5: the list answers: the tenants here, every queue with its waiting count and
    /// longest wait (as milliseconds and as an ISO-8601 duration), every agent with status
    /// and workload.
    #[test]
    fn r_run_5_lists_of_tenants_queues_and_agents() {
        let e = engine();
        assert_eq!(
            found(Query::Tenants.answer(e.state()))["tenants"],
            json!(["acme"])
        );
        let queues = found(
            Query::Queues {
                tenant: "acme".into(),
            }
            .answer(e.state()),
        );
        let billing = &queues["queues"][0];
        assert_eq!(billing["queue"], "billing");
        assert_eq!(billing["waiting_count"], 2);
        // The second customer wrote at T0 + 2 s, stream time is T0 + 3 s.
        assert_eq!(billing["longest_wait_ms"], 1000);
        assert_eq!(billing["longest_wait_iso"], "PT1S");
        assert_eq!(billing["agents"]["busy"], 1);
        assert_eq!(queues["queues"][1]["queue"], DEFAULT_QUEUE);
        assert_eq!(queues["queues"][1]["longest_wait_ms"], Value::Null);
        let agents = found(
            Query::Agents {
                tenant: "acme".into(),
            }
            .answer(e.state()),
        );
        assert_eq!(agents["agents"][0]["agent"], "ana");
        assert_eq!(agents["agents"][0]["status"], "Full capacity");
        assert_eq!(agents["agents"][0]["full_workload"], json!(100.0));
    }

    /// R-RUN-5: the waiting list pages: a page of one shows the first waiting conversation
    /// and where the next page starts; the last page has no next; an unknown queue is 404.
    #[test]
    fn r_run_5_waiting_conversations_page() {
        let e = engine();
        let page = |offset, limit, queue: Option<&str>| {
            Query::Waiting {
                tenant: "acme".into(),
                queue: queue.map(str::to_string),
                page: Page { offset, limit },
            }
            .answer(e.state())
        };
        let first = found(page(0, 1, None));
        assert_eq!(first["total"], 2);
        assert_eq!(first["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(first["items"][0]["position"], 1);
        assert_eq!(first["items"][0]["waiting_since"], T0 + 2000);
        assert_eq!(
            first["items"][0]["waiting_since_iso"],
            "2026-03-02T09:00:02.000Z"
        );
        assert_eq!(first["next_offset"], 1);
        let second = found(page(1, 1, Some("billing")));
        assert_eq!(second["items"][0]["position"], 2);
        assert_eq!(second["next_offset"], Value::Null);
        assert!(matches!(page(0, 10, Some("nope")), Answer::NotFound(_)));
    }

    /// R-RUN-4: the wallboard of a tenant shows its queues, agents by status group, open
    /// conversations, and (with nothing breached yet) empty lists of the latest breaches.
    #[test]
    fn r_run_4_wallboard_shows_queues_agents_and_latest() {
        let e = engine();
        let board = found(
            Query::Wallboard {
                tenant: "acme".into(),
            }
            .answer(e.state()),
        );
        assert_eq!(board["open_conversations"], 3);
        assert_eq!(board["agents"]["busy"], 1);
        assert_eq!(board["queues"][0]["waiting_count"], 2);
        assert_eq!(
            board["queues"][0]["last_hour"]["sla_attainment"],
            Value::Null
        );
        assert_eq!(board["latest_breaches"], json!([]));
        assert_eq!(board["stream_time_iso"], "2026-03-02T09:00:03.000Z");
    }

    /// R-RUN-5: answers are readable: ISO-8601 twins for times and durations, fractions
    /// rounded to 4 decimals, existing keys never overwritten.
    #[test]
    fn r_run_5_answers_carry_iso_times_and_rounded_figures() {
        let mut v = json!({"created_at": T0, "handling_ms": 3_723_500, "csat": 2.0 / 3.0,
            "nested": [{"due": 5, "resolution_due": T0 + 86_400_000}], "at": -5});
        present(&mut v);
        assert_eq!(v["created_at_iso"], "2026-03-02T09:00:00.000Z");
        assert_eq!(v["handling_iso"], "PT1H2M3.5S");
        assert_eq!(v["csat"], json!(0.6667));
        assert_eq!(
            v["nested"][0]["resolution_due_iso"],
            "2026-03-03T09:00:00.000Z"
        );
        assert!(v["nested"][0].get("due_iso").is_none(), "not a time key");
        assert!(v.get("at_iso").is_none(), "out of range");
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(2 * 86_400_000 + 4 * 3_600_000), "P2DT4H");
        assert_eq!(iso_duration(-90_000), "-PT1M30S");
    }
}
