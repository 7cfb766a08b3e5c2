//! Helpers shared by the processor tests: build a stream of input records, run it through
//! the same simulation `switchboard simulate` uses, and pick outputs apart.
#![allow(dead_code)]

use switchboard_processors::simulation::{self, Emitted, SourceRecord};
use switchboard_processors::Settings;
use switchboard_schemas::*;

pub const TENANT: &str = "acme";

/// Unix ms of a UTC date-time `YYYY-MM-DDTHH:MM`.
pub fn utc(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .unwrap_or_else(|e| panic!("bad time {s}: {e}"))
        .and_utc()
        .timestamp_millis()
}

pub fn leaf(attribute: &str, operator: Operator, value: &str) -> Condition {
    Condition {
        attribute: Some(attribute.into()),
        operator: Some(operator),
        value: Some(value.into()),
        ..Condition::default()
    }
}

pub fn all(children: Vec<Condition>) -> Condition {
    Condition {
        all: children,
        ..Condition::default()
    }
}

pub fn any(children: Vec<Condition>) -> Condition {
    Condition {
        any: children,
        ..Condition::default()
    }
}

pub fn not(child: Condition) -> Condition {
    Condition {
        not: Some(Box::new(child)),
        ..Condition::default()
    }
}

pub fn message(id: &str, channel: Channel, from: &str, content: &str) -> InboundMessage {
    InboundMessage::text(id, TENANT, channel, from, "+100", content)
}

/// Surveys on: 30 s after Solved, no minimum span, a 24-hour answer window.
pub fn surveys_on() -> ConfigChangeKind {
    ConfigChangeKind::SetSurveySettings(SurveySettings {
        enabled: true,
        delay_seconds: 30,
        minimum_span_hours: 0,
        answer_window_hours: 24,
        question: "Happy?".into(),
        follow_up: None,
    })
}

pub fn queue(id: &str) -> Queue {
    Queue {
        id: id.into(),
        name: id.into(),
        working_hours_id: None,
        senders: vec![],
        auto_assign: false,
        bot: false,
        sticky_lookback: None,
    }
}

pub fn route(
    id: &str,
    order: i32,
    condition: Condition,
    queue_id: &str,
    priority: Priority,
) -> Route {
    Route {
        id: id.into(),
        name: id.into(),
        order,
        enabled: true,
        condition,
        queue_id: queue_id.into(),
        priority,
    }
}

pub fn interval(start: &str, end: &str) -> Vec<Interval> {
    vec![Interval {
        start: start.into(),
        end: end.into(),
    }]
}

/// A period open 09:00–17:00 Monday to Friday in `zone`.
pub fn office(id: &str, zone: &str) -> WorkingHours {
    let day = interval("09:00", "17:00");
    WorkingHours {
        id: id.into(),
        name: id.into(),
        time_zone: zone.into(),
        is_default: false,
        week: Week {
            monday: day.clone(),
            tuesday: day.clone(),
            wednesday: day.clone(),
            thursday: day.clone(),
            friday: day,
            ..Week::default()
        },
        holidays: vec![],
        away_message: Some("We are closed".into()),
        close_after_away: false,
    }
}

#[derive(Default)]
pub struct Scenario {
    pub records: Vec<SourceRecord>,
    n: u64,
    pub partitions: u32,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario {
            partitions: 1,
            ..Scenario::default()
        }
    }

    pub fn push(&mut self, ts: i64, input: Input) -> &mut Scenario {
        let topic = input.topic();
        let key = match &input {
            Input::Config(c) => Some(format!(
                "{}/{}",
                c.tenant,
                switchboard_processors::config::entity_of(&c.change)
            )),
            other => other.tenant_and_id().map(|(t, _)| t.to_string()),
        };
        let raw = serde_json::to_vec(&input.to_json()).unwrap_or_default();
        self.records.push(SourceRecord {
            topic,
            key,
            ts,
            partition: None,
            line: None,
            offset: Some(self.records.len() as i64),
            raw,
            decoded: Ok(input),
        });
        self
    }

    pub fn config(&mut self, ts: i64, version: i64, change: ConfigChangeKind) -> &mut Scenario {
        self.n += 1;
        let id = format!("cfg-{}", self.n);
        self.push(
            ts,
            Input::Config(ConfigChange {
                id,
                tenant: TENANT.into(),
                version,
                change,
            }),
        )
    }

    pub fn upsert_queue(&mut self, ts: i64, q: Queue) -> &mut Scenario {
        self.config(
            ts,
            1,
            ConfigChangeKind::UpsertQueue(UpsertQueue { queue: q }),
        )
    }

    pub fn upsert_route(&mut self, ts: i64, version: i64, r: Route) -> &mut Scenario {
        self.config(
            ts,
            version,
            ConfigChangeKind::UpsertRoute(UpsertRoute { route: r }),
        )
    }

    pub fn upsert_period(&mut self, ts: i64, p: WorkingHours) -> &mut Scenario {
        self.config(
            ts,
            1,
            ConfigChangeKind::UpsertWorkingHours(UpsertWorkingHours { period: p }),
        )
    }

    pub fn inbound(&mut self, ts: i64, m: InboundMessage) -> &mut Scenario {
        self.push(ts, Input::Inbound(m))
    }

    /// A plain SMS from `from`.
    pub fn sms(&mut self, ts: i64, id: &str, from: &str, content: &str) -> &mut Scenario {
        self.inbound(ts, message(id, Channel::Sms, from, content))
    }

    pub fn command(
        &mut self,
        ts: i64,
        id: &str,
        conversation: &str,
        kind: CommandKind,
    ) -> &mut Scenario {
        let c = Command {
            id: id.into(),
            tenant: TENANT.into(),
            conversation_id: conversation.into(),
            by: Some("ana".into()),
            command: kind,
        };
        self.push(ts, Input::Command(c))
    }

    pub fn tick(&mut self, ts: i64) -> &mut Scenario {
        let raw = b"{}".to_vec();
        self.records.push(SourceRecord {
            topic: Topic::Ticks,
            key: None,
            ts,
            partition: None,
            line: None,
            offset: Some(self.records.len() as i64),
            raw,
            decoded: Ok(Input::Tick(Tick::default())),
        });
        self
    }

    pub fn run(&self) -> Outcome {
        self.run_with(&Settings::default())
    }

    pub fn run_with(&self, settings: &Settings) -> Outcome {
        let emitted = simulation::run(self.records.clone(), self.partitions, settings)
            .expect("in-memory store");
        Outcome { emitted }
    }
}

pub struct Outcome {
    pub emitted: Vec<Emitted>,
}

impl Outcome {
    pub fn outputs(&self) -> impl Iterator<Item = &Output> {
        self.emitted.iter().map(|e| &e.output)
    }

    pub fn conversation_events(&self) -> Vec<&ConversationEvent> {
        self.outputs()
            .filter_map(|o| {
                if let Output::Conversation(e) = o {
                    Some(e)
                } else {
                    None
                }
            })
            .collect()
    }

    /// (short id, queue, priority, route) of every Routed event.
    pub fn routed(&self) -> Vec<(i64, String, Priority, Option<String>)> {
        self.conversation_events()
            .into_iter()
            .filter_map(|e| match &e.event {
                ConversationEventKind::Routed(r) => Some((
                    e.short_id,
                    r.queue_id.clone(),
                    r.priority,
                    r.route_id.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The queue the conversation with `short_id` was routed to.
    pub fn queue_of(&self, short_id: i64) -> String {
        self.routed()
            .into_iter()
            .find(|r| r.0 == short_id)
            .map(|r| r.1)
            .unwrap_or_else(|| panic!("#{short_id} was not routed"))
    }

    pub fn opened(&self) -> Vec<i64> {
        self.conversation_events()
            .into_iter()
            .filter(|e| matches!(e.event, ConversationEventKind::Opened(_)))
            .map(|e| e.short_id)
            .collect()
    }

    /// (short id, from, to, reason) of every status change.
    pub fn status_changes(&self) -> Vec<(i64, Status, Status, String)> {
        self.conversation_events()
            .into_iter()
            .filter_map(|e| match &e.event {
                ConversationEventKind::StatusChanged(s) => Some((
                    e.short_id,
                    s.from,
                    s.to,
                    s.reason.clone().unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }

    pub fn short_id_of_message(&self, message_id: &str) -> i64 {
        self.conversation_events()
            .into_iter()
            .find(|e| matches!(&e.event, ConversationEventKind::MessageReceived(m) if m.message_id == message_id))
            .map(|e| e.short_id)
            .unwrap_or_else(|| panic!("message {message_id} was not threaded"))
    }

    pub fn outbound(&self, kind: OutboundKind) -> Vec<&OutboundMessage> {
        self.outputs()
            .filter_map(|o| match o {
                Output::Outbound(m) if m.kind == kind => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn dead_letters(&self) -> Vec<&DeadLetter> {
        self.outputs()
            .filter_map(|o| {
                if let Output::DeadLetter(d) = o {
                    Some(d)
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn config_events(&self) -> Vec<&ConfigEvent> {
        self.outputs()
            .filter_map(|o| {
                if let Output::Config(c) = o {
                    Some(c)
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn rejected_fields(&self) -> Vec<String> {
        self.config_events()
            .into_iter()
            .filter_map(|c| match &c.event {
                ConfigEventKind::ConfigRejected(r) => Some(r.field.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Scenario {
    pub fn agent(&mut self, ts: i64, agent: &str, event: AgentEventKind) -> &mut Scenario {
        self.n += 1;
        let id = format!("ag-{}", self.n);
        self.push(
            ts,
            Input::Agent(AgentEvent {
                id,
                tenant: TENANT.into(),
                agent_id: agent.into(),
                event,
            }),
        )
    }

    pub fn status(&mut self, ts: i64, agent: &str, status: &str) -> &mut Scenario {
        self.agent(
            ts,
            agent,
            AgentEventKind::AgentStatusChanged(AgentStatusChange {
                status: status.into(),
            }),
        )
    }

    /// Set an agent's queues and capacity overrides (`live_messaging`, `live_chat`, `email`).
    pub fn agent_setup(
        &mut self,
        ts: i64,
        agent: &str,
        queues: &[&str],
        capacity: &[(&str, i32)],
    ) -> &mut Scenario {
        let update = AgentUpdate {
            enabled: Some(true),
            queues: Some(queues.iter().map(|q| q.to_string()).collect()),
            capacity: Some(capacity.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        };
        self.agent(ts, agent, AgentEventKind::AgentUpdated(update))
    }

    pub fn assign(&mut self, ts: i64, id: &str, conversation: &str, agent: &str) -> &mut Scenario {
        self.command(
            ts,
            id,
            conversation,
            CommandKind::Assign(Assign {
                agent_id: agent.into(),
                only_if_unassigned: true,
            }),
        )
    }

    /// A queue with automatic assignment on.
    pub fn auto_queue(&mut self, ts: i64, id: &str) -> &mut Scenario {
        let mut q = queue(id);
        q.auto_assign = true;
        self.upsert_queue(ts, q)
    }

    /// Route every message whose content starts with `prefix` to `queue`.
    pub fn route_prefix(
        &mut self,
        ts: i64,
        prefix: &str,
        queue: &str,
        priority: Priority,
    ) -> &mut Scenario {
        let r = route(
            &format!("to-{queue}-{prefix}"),
            1,
            leaf("content", Operator::StartsWith, prefix),
            queue,
            priority,
        );
        self.upsert_route(ts, 1, r)
    }
}

impl Outcome {
    /// Conversation id → short id, from the conversation events.
    pub fn short_ids(&self) -> std::collections::BTreeMap<String, i64> {
        self.conversation_events()
            .into_iter()
            .map(|e| (e.conversation_id.clone(), e.short_id))
            .collect()
    }

    /// (short id, agent, method, score) of every Assigned event, in order.
    pub fn assigned(&self) -> Vec<(i64, String, AssignMethod, Option<f64>)> {
        let shorts = self.short_ids();
        self.outputs()
            .filter_map(|o| match o {
                Output::Assignment(AssignmentEvent {
                    conversation_id,
                    event: AssignmentEventKind::Assigned(a),
                    ..
                }) => Some((
                    shorts.get(conversation_id).copied().unwrap_or(-1),
                    a.agent_id.clone(),
                    a.method,
                    a.score,
                )),
                _ => None,
            })
            .collect()
    }

    /// (short id, agent) of automatic assignments only, with their method.
    pub fn assigned_to(&self) -> Vec<(i64, String, AssignMethod)> {
        self.assigned()
            .into_iter()
            .map(|(s, a, m, _)| (s, a, m))
            .collect()
    }

    /// Unassigned and AssignmentRejected events: (short id, agent, reason, rejected?).
    pub fn unassignments(&self) -> Vec<(i64, String, String, bool)> {
        let shorts = self.short_ids();
        self.outputs()
            .filter_map(|o| match o {
                Output::Assignment(AssignmentEvent {
                    conversation_id,
                    event: AssignmentEventKind::Unassigned(r),
                    ..
                }) => Some((
                    shorts.get(conversation_id).copied().unwrap_or(-1),
                    r.agent_id.clone(),
                    r.reason.clone(),
                    false,
                )),
                Output::Assignment(AssignmentEvent {
                    conversation_id,
                    event: AssignmentEventKind::AssignmentRejected(r),
                    ..
                }) => Some((
                    shorts.get(conversation_id).copied().unwrap_or(-1),
                    r.agent_id.clone(),
                    r.reason.clone(),
                    true,
                )),
                _ => None,
            })
            .collect()
    }

    /// (agent, full, workload %) of every AgentCapacityChanged.
    pub fn capacity_changes(&self) -> Vec<(String, bool, f64)> {
        self.outputs()
            .filter_map(|o| match o {
                Output::AgentState(AgentStateEvent {
                    agent_id,
                    event: AgentStateEventKind::AgentCapacityChanged(c),
                    ..
                }) => Some((agent_id.clone(), c.full, c.workload_percent)),
                _ => None,
            })
            .collect()
    }
}

/// An SLA policy for every conversation with one severity.
pub fn sla_policy(
    id: &str,
    order: i32,
    first: Option<i32>,
    next: Option<i32>,
    resolution: Option<i32>,
    counting: Counting,
) -> SlaPolicy {
    SlaPolicy {
        id: id.into(),
        name: id.into(),
        order,
        enabled: true,
        valid_from: None,
        valid_to: None,
        condition: None,
        queue_filter: QueueFilter::All,
        queue_ids: vec![],
        exclude_automated: false,
        default_severity: "normal".into(),
        severities: vec![Severity {
            name: "normal".into(),
            first_response_minutes: first,
            next_reply_minutes: next,
            resolution_minutes: resolution,
            counting,
        }],
    }
}

impl Scenario {
    pub fn upsert_policy(&mut self, ts: i64, version: i64, p: SlaPolicy) -> &mut Scenario {
        self.config(
            ts,
            version,
            ConfigChangeKind::UpsertSlaPolicy(UpsertSlaPolicy { policy: p }),
        )
    }

    pub fn reply(
        &mut self,
        ts: i64,
        id: &str,
        conversation: &str,
        automated: bool,
    ) -> &mut Scenario {
        self.command(
            ts,
            id,
            conversation,
            CommandKind::Reply(Reply {
                content: "reply".into(),
                automated,
            }),
        )
    }
}

impl Outcome {
    pub fn sla_events(&self) -> Vec<&SlaEventKind> {
        self.outputs()
            .filter_map(|o| {
                if let Output::Sla(e) = o {
                    Some(&e.event)
                } else {
                    None
                }
            })
            .collect()
    }

    /// (metric, due_at, breached_at) of every breach.
    pub fn breaches(&self) -> Vec<(SlaMetric, i64, i64)> {
        self.sla_events()
            .into_iter()
            .filter_map(|e| {
                if let SlaEventKind::SlaBreached(b) = e {
                    Some((b.metric, b.due_at, b.breached_at))
                } else {
                    None
                }
            })
            .collect()
    }

    /// (metric, elapsed business ms) of every met target.
    pub fn met(&self) -> Vec<(SlaMetric, i64)> {
        self.sla_events()
            .into_iter()
            .filter_map(|e| {
                if let SlaEventKind::SlaMet(m) = e {
                    Some((m.metric, m.elapsed_business_ms))
                } else {
                    None
                }
            })
            .collect()
    }
}
