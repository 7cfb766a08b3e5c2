//! Workflows (SPEC §10): supervisor automations of the form "when this happens and this
//! holds, do that".
//!
//! A tenant's enabled workflows run in one order (ascending `order`, then id). Event triggers
//! react to what the other processors emit (status, queue, tag and form changes, inbound
//! messages, human agent replies, notes, survey feedback); time triggers are timers in stream
//! time counted from a per-conversation clock ([`FlowClocks`]), moved or cancelled when the
//! situation changes, never a scan of all conversations.
//!
//! Ordering and cycles (§10.5): every output carries a *floor*, the first position in the
//! ordered list that it may trigger ([`Ctx::flow_floor`]). What a record or timer causes has
//! floor 0; what workflow n's actions cause (and everything that follows from it) has floor
//! n + 1. A workflow's changes therefore trigger only workflows after it, so no chain loops.
//! Chains can still fan out, so the runs one record causes are bounded
//! ([`MAX_WORKFLOW_RUNS_PER_RECORD`]); past the bound the record is rejected to the
//! dead-letter topic with the workflow named, and nothing of it remains.
//!
//! Workflows run for Open, Waiting and Solved conversations; once a conversation is Closed
//! no workflow runs for it and no further action of the running one is taken.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_schemas::*;

use crate::condition::{self, many, one, Attr, Attributes};
use crate::engine::{Ctx, Rejection};
use crate::state::{Agent, Conversation, TenantConfig, Timer, TimerKind};
use crate::Processor;

pub struct Workflows;

/// Most workflow runs one input record (or timer) may cause, counting the cascade.
pub const MAX_WORKFLOW_RUNS_PER_RECORD: usize = 1_000;
/// The shortest and longest time a time trigger may wait (SPEC §10.3: 10 s to 90 days).
pub const MIN_TIME_TRIGGER_SECONDS: i64 = 10;
pub const MAX_TIME_TRIGGER_SECONDS: i64 = 90 * 86_400;

/// What a time trigger counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The first human agent reply the customer has not answered yet.
    CustomerSilent,
    /// The first customer message no human agent has answered yet.
    AgentSilent,
    /// The last change to the conversation while it is Solved.
    SolvedUnmodified,
    /// When the conversation became Solved.
    Solved,
    /// When the conversation became Waiting.
    Waiting,
}

impl Clock {
    pub const ALL: [Clock; 5] = [
        Clock::CustomerSilent,
        Clock::AgentSilent,
        Clock::SolvedUnmodified,
        Clock::Solved,
        Clock::Waiting,
    ];

    /// The clock a time trigger counts from, and its wait in milliseconds.
    pub fn of(trigger: &WorkflowTrigger) -> Option<(Clock, i64)> {
        let (clock, after) = match trigger {
            WorkflowTrigger::CustomerDidNotReplyFor(a) => (Clock::CustomerSilent, a),
            WorkflowTrigger::AgentDidNotReplyFor(a) => (Clock::AgentSilent, a),
            WorkflowTrigger::SolvedUnmodifiedFor(a) => (Clock::SolvedUnmodified, a),
            WorkflowTrigger::SolvedFor(a) => (Clock::Solved, a),
            WorkflowTrigger::WaitingFor(a) => (Clock::Waiting, a),
            _ => return None,
        };
        Some((clock, after.seconds.saturating_mul(1000)))
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The timer purpose (and the last part of the timer id).
    fn purpose(self) -> &'static str {
        match self {
            Clock::CustomerSilent => "flow-customer-silent",
            Clock::AgentSilent => "flow-agent-silent",
            Clock::SolvedUnmodified => "flow-solved-unmodified",
            Clock::Solved => "flow-solved",
            Clock::Waiting => "flow-waiting",
        }
    }

    fn from_purpose(purpose: &str) -> Option<Clock> {
        Clock::ALL.into_iter().find(|c| c.purpose() == purpose)
    }
}

/// A conversation's clocks: since when (stream time) each [`Clock`] counts, or `None`. Kept
/// only for tenants with a time-triggered workflow, and dropped when the conversation closes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct FlowClocks {
    pub since: [Option<i64>; 5],
}

/// How many kinds of event trigger there are ([`event_kind`]).
const EVENT_KINDS: usize = 8;

/// The event kind a trigger reacts to; `None` for a time trigger.
fn event_kind(trigger: &WorkflowTrigger) -> Option<usize> {
    use WorkflowTrigger as T;
    Some(match trigger {
        T::StatusChangedTo(_) => 0,
        T::ConversationQueueChanged(_) => 1,
        T::ConversationTagsChanged(_) => 2,
        T::InboundMessageReceived(_) => 3,
        T::AgentMessageSent(_) => 4,
        T::SurveyFeedbackReceived(_) => 5,
        T::NoteCreated(_) => 6,
        T::ConversationFormFieldUpdated(_) => 7,
        _ => return None,
    })
}

/// A tenant's enabled workflows in running order, indexed by what triggers them. Built once
/// when the config is applied or loaded, so an event looks only at the workflows it can
/// trigger and a clock finds its next due time without scanning.
#[derive(Clone, Debug, Default)]
pub struct FlowIndex {
    /// Ascending (order, id); a workflow's position is its index here.
    ordered: Vec<Workflow>,
    /// Per event kind, the positions of the workflows with such a trigger, ascending.
    by_event: [Vec<usize>; EVENT_KINDS],
    /// Per clock, (wait in ms, position) of every time trigger on it, ascending.
    by_clock: [Vec<(i64, usize)>; 5],
}

impl FlowIndex {
    pub fn build(workflows: &BTreeMap<String, Workflow>) -> FlowIndex {
        let mut ordered: Vec<Workflow> =
            workflows.values().filter(|w| w.enabled).cloned().collect();
        ordered.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
        let mut index = FlowIndex::default();
        for (position, w) in ordered.iter().enumerate() {
            for t in &w.triggers {
                if let Some(kind) = event_kind(t) {
                    if index.by_event[kind].last() != Some(&position) {
                        index.by_event[kind].push(position);
                    }
                }
                if let Some((clock, wait)) = Clock::of(t) {
                    index.by_clock[clock.index()].push((wait, position));
                }
            }
        }
        for waits in &mut index.by_clock {
            waits.sort_unstable();
            waits.dedup();
        }
        index.ordered = ordered;
        index
    }

    /// The enabled workflows in running order.
    pub fn ordered(&self) -> &[Workflow] {
        &self.ordered
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// Whether a workflow waits on `clock`.
    fn uses(&self, clock: Clock) -> bool {
        !self.by_clock[clock.index()].is_empty()
    }

    /// Whether a workflow has a time trigger (conversations then keep clocks).
    pub fn has_time_triggers(&self) -> bool {
        self.by_clock.iter().any(|c| !c.is_empty())
    }
}

fn timer_id(tenant: &str, conv: &str, clock: Clock) -> String {
    format!("{tenant}/{}/{conv}", clock.purpose())
}

/// Whether workflow `w`'s time triggers count from `anchor`: only from moments after the
/// workflow was last changed (a new or edited workflow does not act on clocks that started
/// before it).
fn counts_from(config: &TenantConfig, w: &Workflow, anchor: i64) -> bool {
    config
        .workflow_since
        .get(&w.id)
        .is_none_or(|since| anchor >= *since)
}

/// Schedule (or cancel) the timer of `clock` for conversation `conv`: at the earliest moment
/// after `after` when a workflow waiting on that clock comes due.
fn schedule_clock(cx: &mut Ctx, conv: &str, clock: Clock, after: i64) {
    let anchor = cx
        .state
        .flows
        .get(cx.tenant, conv)
        .and_then(|f| f.since[clock.index()]);
    let config = cx.state.shared_config(cx.tenant);
    let flows = config.flows();
    let due = anchor.and_then(|anchor| {
        flows.by_clock[clock.index()]
            .iter()
            .filter(|(_, position)| counts_from(&config, &flows.ordered[*position], anchor))
            .map(|(wait, _)| anchor.saturating_add(*wait))
            .find(|due| *due > after)
    });
    let id = timer_id(cx.tenant, conv, clock);
    match due {
        Some(due) => {
            let subject = cx.state.conversation_key(cx.tenant, conv);
            cx.schedule(
                due,
                id,
                TimerKind::Wake {
                    purpose: clock.purpose().into(),
                    subject,
                },
            );
        }
        None => cx.state.cancel(&id),
    }
}

/// Start `clock` at `now` unless it is running (`restart`: start it over).
fn start_clock(cx: &mut Ctx, conv: &str, clock: Clock, restart: bool) {
    if !cx.state.config(cx.tenant).flows().uses(clock) {
        return;
    }
    let now = cx.now;
    let tenant = cx.tenant;
    let mut clocks = cx
        .state
        .flows
        .get(tenant, conv)
        .copied()
        .unwrap_or_default();
    let slot = &mut clocks.since[clock.index()];
    if slot.is_some() && !restart {
        return;
    }
    *slot = Some(now);
    let key = cx.state.conversation_key(tenant, conv);
    cx.state.flows.insert(tenant, key, clocks);
    schedule_clock(cx, conv, clock, now);
}

fn stop_clock(cx: &mut Ctx, conv: &str, clock: Clock) {
    let tenant = cx.tenant;
    let Some(mut clocks) = cx.state.flows.get(tenant, conv).copied() else {
        return;
    };
    if clocks.since[clock.index()].take().is_none() {
        return;
    }
    cx.state.cancel(&timer_id(tenant, conv, clock));
    if clocks.since.iter().all(Option::is_none) {
        cx.state.flows.remove(tenant, conv);
    } else {
        let key = cx.state.conversation_key(tenant, conv);
        cx.state.flows.insert(tenant, key, clocks);
    }
}

/// Move the clocks for what just happened to conversation `conv`.
fn move_clocks(cx: &mut Ctx, conv: &str, event: &ConversationEventKind) {
    let solved = cx
        .state
        .conversation(cx.tenant, conv)
        .is_some_and(|c| c.status == Status::Solved);
    match event {
        ConversationEventKind::MessageReceived(_) => {
            start_clock(cx, conv, Clock::AgentSilent, false);
            stop_clock(cx, conv, Clock::CustomerSilent);
        }
        ConversationEventKind::AgentReplied(r) if !r.automated => {
            stop_clock(cx, conv, Clock::AgentSilent);
            start_clock(cx, conv, Clock::CustomerSilent, false);
        }
        ConversationEventKind::StatusChanged(s) => {
            for (status, clock) in [
                (Status::Solved, Clock::Solved),
                (Status::Waiting, Clock::Waiting),
            ] {
                if s.to == status {
                    start_clock(cx, conv, clock, true);
                } else if s.from == status {
                    stop_clock(cx, conv, clock);
                }
            }
            if s.to == Status::Solved {
                start_clock(cx, conv, Clock::SolvedUnmodified, true);
            } else if s.from == Status::Solved {
                stop_clock(cx, conv, Clock::SolvedUnmodified);
            }
            return;
        }
        ConversationEventKind::WorkflowRan(_) => return,
        _ => {}
    }
    // Anything else that happens to a Solved conversation modifies it.
    if solved {
        start_clock(cx, conv, Clock::SolvedUnmodified, true);
    }
}

/// A Closed conversation's clocks stop for good.
fn drop_clocks(cx: &mut Ctx, conv: &str) {
    if cx.state.flows.get(cx.tenant, conv).is_some() {
        for clock in Clock::ALL {
            cx.state.cancel(&timer_id(cx.tenant, conv, clock));
        }
        cx.state.flows.remove(cx.tenant, conv);
    }
}

/// An event that may trigger workflows.
enum Happened<'a> {
    Event(&'a ConversationEventKind),
    Feedback(CsatScore),
}

impl Happened<'_> {
    /// The event kind of [`event_kind`] this can trigger.
    fn kind(&self) -> usize {
        use ConversationEventKind as E;
        match self {
            Happened::Event(E::StatusChanged(_)) => 0,
            Happened::Event(E::QueueChanged(_)) => 1,
            Happened::Event(E::TagsChanged(_)) => 2,
            Happened::Event(E::MessageReceived(_)) => 3,
            Happened::Event(E::AgentReplied(_)) => 4,
            Happened::Feedback(_) => 5,
            Happened::Event(E::NoteAdded(_)) => 6,
            Happened::Event(E::FormFieldUpdated(_)) => 7,
            // Nothing triggers on the others: an empty list.
            Happened::Event(_) => EVENT_KINDS,
        }
    }

    fn fires(&self, trigger: &WorkflowTrigger) -> bool {
        use ConversationEventKind as E;
        use WorkflowTrigger as T;
        match (self, trigger) {
            (Happened::Event(E::StatusChanged(s)), T::StatusChangedTo(t)) => s.to == t.status,
            (Happened::Event(E::QueueChanged(_)), T::ConversationQueueChanged(_))
            | (Happened::Event(E::TagsChanged(_)), T::ConversationTagsChanged(_))
            | (Happened::Event(E::MessageReceived(_)), T::InboundMessageReceived(_))
            | (Happened::Event(E::NoteAdded(_)), T::NoteCreated(_)) => true,
            (Happened::Event(E::AgentReplied(r)), T::AgentMessageSent(_)) => !r.automated,
            (Happened::Event(E::FormFieldUpdated(f)), T::ConversationFormFieldUpdated(t)) => t
                .field
                .as_deref()
                .is_none_or(|want| want.eq_ignore_ascii_case(&f.field)),
            (Happened::Feedback(score), T::SurveyFeedbackReceived(t)) => t.scores.contains(score),
            _ => false,
        }
    }
}

/// The inbound message a `MessageReceived` event is about: the record being processed.
fn message_of<'a>(cx: &Ctx<'a>, event: &ConversationEventKind) -> Option<&'a InboundMessage> {
    let ConversationEventKind::MessageReceived(r) = event else {
        return None;
    };
    match cx.input() {
        Some(Input::Inbound(m)) if m.id == r.message_id => Some(m),
        _ => None,
    }
}

/// Run, in order, every workflow at or after the current floor that `happened` triggers.
fn on_event(cx: &mut Ctx, conv: &str, happened: &Happened, message: Option<&InboundMessage>) {
    let config = cx.state.shared_config(cx.tenant);
    let flows = config.flows();
    let floor = cx.flow_floor;
    let Some(positions) = flows.by_event.get(happened.kind()) else {
        return;
    };
    let start = positions.partition_point(|p| *p < floor);
    for &position in &positions[start..] {
        let w = &flows.ordered[position];
        if let Some(trigger) = w.triggers.iter().find(|t| happened.fires(t)) {
            run(cx, &config, position, w, conv, trigger.name(), message);
            cx.flow_floor = floor;
        }
    }
}

/// A time trigger came due: run the workflows waiting on this clock for this moment, then
/// schedule the clock's next one.
fn on_clock(cx: &mut Ctx, clock: Clock, conv: &str) {
    let Some(anchor) = cx
        .state
        .flows
        .get(cx.tenant, conv)
        .and_then(|f| f.since[clock.index()])
    else {
        return;
    };
    let config = cx.state.shared_config(cx.tenant);
    let flows = config.flows();
    let now = cx.now;
    let wait = now - anchor;
    let waits = &flows.by_clock[clock.index()];
    let start = waits.partition_point(|(w, _)| *w < wait);
    for &(w_wait, position) in &waits[start..] {
        if w_wait != wait {
            break;
        }
        let w = &flows.ordered[position];
        if !counts_from(&config, w, anchor) {
            continue;
        }
        let trigger = w
            .triggers
            .iter()
            .find(|t| Clock::of(t) == Some((clock, wait)))
            .map_or("", |t| t.name());
        run(cx, &config, position, w, conv, trigger, None);
        cx.flow_floor = 0;
    }
    schedule_clock(cx, conv, clock, now);
}

fn runs_for(status: Status) -> bool {
    matches!(status, Status::Open | Status::Waiting | Status::Solved)
}

/// Run workflow `w` (at `position` in the order) for conversation `conv` if its condition
/// holds: `WorkflowRan`, then its actions in order.
fn run(
    cx: &mut Ctx,
    config: &TenantConfig,
    position: usize,
    w: &Workflow,
    conv: &str,
    trigger: &str,
    message: Option<&InboundMessage>,
) {
    let Some(c) = cx.state.conversation(cx.tenant, conv) else {
        return;
    };
    if !runs_for(c.status) {
        return;
    }
    if let Some(condition) = &w.condition {
        let facts = Facts::new(cx, config, c, message);
        if !condition::eval(condition, &facts) {
            return;
        }
    }
    cx.flow_runs += 1;
    if cx.flow_runs > MAX_WORKFLOW_RUNS_PER_RECORD {
        cx.reject(Rejection(format!(
            "workflows ran more than {MAX_WORKFLOW_RUNS_PER_RECORD} times for one record \
             (workflow {:?} was next): the workflows trigger each other too widely",
            w.id
        )));
        return;
    }
    cx.flow_floor = position + 1;
    cx.conversation_event(
        conv,
        ConversationEventKind::WorkflowRan(WorkflowRan {
            workflow_id: w.id.clone(),
            trigger: trigger.to_string(),
            actions: w.actions.iter().map(|a| a.name().to_string()).collect(),
        }),
    );
    for action in &w.actions {
        let open = cx
            .state
            .conversation(cx.tenant, conv)
            .is_some_and(|c| runs_for(c.status));
        if !open {
            break;
        }
        perform(cx, w, conv, action, message);
    }
}

fn perform(
    cx: &mut Ctx,
    w: &Workflow,
    conv: &str,
    action: &WorkflowAction,
    message: Option<&InboundMessage>,
) {
    let by = format!("workflow:{}", w.id);
    match action {
        WorkflowAction::SendMessage(m) => {
            let text = render(cx, &w.id, conv, message, &m.content, Escape::None);
            crate::threading::send_to_customer(cx, conv, OutboundKind::Workflow, &text);
        }
        WorkflowAction::ApplyTags(t) => crate::threading::change_tags(cx, conv, &t.tags, true),
        WorkflowAction::RemoveTags(t) => crate::threading::change_tags(cx, conv, &t.tags, false),
        WorkflowAction::SetSolved(_) => crate::threading::set_status(cx, conv, Status::Solved, &by),
        WorkflowAction::SetConversationPriority(p) => {
            crate::threading::set_priority(cx, conv, p.priority)
        }
        WorkflowAction::UnassignAgent(_) => crate::assignment::unassign_and_reassign(cx, conv, &by),
        WorkflowAction::SendSurvey(_) => crate::csat::send_survey(cx, conv),
        WorkflowAction::AddNote(n) => {
            let text = render(cx, &w.id, conv, message, &n.text, Escape::None);
            cx.conversation_event(
                conv,
                ConversationEventKind::NoteAdded(NoteAdded { text, by: Some(by) }),
            );
        }
        WorkflowAction::CallApi(call) => {
            let json = call.content_type.to_ascii_lowercase().contains("json");
            let body_escape = if json { Escape::Json } else { Escape::None };
            let request = CallApi {
                method: call.method.to_ascii_uppercase(),
                url: render(cx, &w.id, conv, message, &call.url, Escape::Url),
                content_type: call.content_type.clone(),
                headers: call
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            render(cx, &w.id, conv, message, v, Escape::Header),
                        )
                    })
                    .collect(),
                body: render(cx, &w.id, conv, message, &call.body, body_escape),
            };
            let id = cx.next_id();
            let idempotency_key = format!(
                "sb-{:016x}",
                crate::threading::stable_hash(&[cx.tenant, &id])
            );
            cx.emit(Output::Action(ActionRequest {
                id,
                tenant: cx.tenant.to_string(),
                conversation_id: conv.to_string(),
                workflow_id: w.id.clone(),
                idempotency_key,
                action: ActionKind::CallApi(request),
            }));
        }
        WorkflowAction::CloseConversation(_) => {
            crate::threading::set_status(cx, conv, Status::Closed, &by)
        }
    }
}

// ------------------------------------------------------------------ conditions

/// Attributes a workflow condition may use besides the routing ones (SPEC §10.1).
const CONVERSATION_ATTRIBUTES: &[&str] = &[
    "conversation.queue",
    "conversation.status",
    "conversation.direction",
    "conversation.channel",
    "conversation.priority",
    "conversation.assignee",
    "conversation.agent_status",
    "conversation.agent_status_group",
    "message.is_first",
];

/// Whether a workflow condition may use `name`: the routing attributes (§4.2), the
/// conversation fields of §10.1, and `form.<field>`.
pub fn is_workflow_attribute(name: &str) -> bool {
    condition::is_known_attribute(name)
        || CONVERSATION_ATTRIBUTES.contains(&name)
        || name.strip_prefix("form.").is_some_and(|f| !f.is_empty())
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::Waiting => "waiting",
        Status::Solved => "solved",
        Status::Closed => "closed",
    }
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

fn group_name(g: StatusGroup) -> &'static str {
    match g {
        StatusGroup::Available => "available",
        StatusGroup::Busy => "busy",
        StatusGroup::Away => "away",
        StatusGroup::Unavailable => "unavailable",
    }
}

/// What a workflow condition reads: the conversation, its agent and form, and, when an
/// inbound message triggered the workflow, the message (as routing sees it).
struct Facts<'a> {
    conv: &'a Conversation,
    agent: Option<&'a Agent>,
    form: Option<&'a BTreeMap<String, String>>,
    message: Option<condition::MessageFacts<'a>>,
    customer: &'a str,
}

impl<'a> Facts<'a> {
    fn new(
        cx: &'a Ctx,
        config: &TenantConfig,
        conv: &'a Conversation,
        message: Option<&'a InboundMessage>,
    ) -> Facts<'a> {
        let tenant = cx.tenant;
        Facts {
            conv,
            agent: conv
                .assignee
                .as_deref()
                .and_then(|a| cx.state.agents.get(tenant, a)),
            form: cx.state.forms.get(tenant, &*conv.id),
            message: message.map(|m| crate::routing::message_facts(config, m, &conv.tags)),
            customer: cx.state.customer_address(tenant, conv),
        }
    }
}

impl Attributes for Facts<'_> {
    fn get(&self, attribute: &str) -> Attr<'_> {
        let c = self.conv;
        match attribute {
            "conversation.queue" => c.queue_id.as_deref().map_or(Attr::Missing, one),
            "conversation.status" => one(status_name(c.status)),
            "conversation.direction" => one(match c.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            }),
            "conversation.channel" => one(c.channel.as_str()),
            "conversation.priority" => one(priority_name(c.priority)),
            "conversation.assignee" => c.assignee.as_deref().map_or(Attr::Missing, one),
            "conversation.agent_status" => self.agent.map_or(Attr::Missing, |a| one(&a.status)),
            "conversation.agent_status_group" => self
                .agent
                .map_or(Attr::Missing, |a| one(group_name(a.group))),
            "conversation.tags" => many(&c.tags),
            "message.is_first" => match &self.message {
                Some(_) => one(if c.messages == 1 { "true" } else { "false" }),
                None => Attr::Missing,
            },
            other => {
                if let Some(field) = other.strip_prefix("form.") {
                    return self
                        .form
                        .and_then(|f| f.get(field))
                        .map_or(Attr::Missing, |v| one(v));
                }
                if let Some(m) = &self.message {
                    return m.get(other);
                }
                // Without a message, the conversation's own channel and addresses.
                match other {
                    "channel" => one(c.channel.as_str()),
                    "from" => one(self.customer),
                    "to" => one(&c.sender),
                    _ => Attr::Missing,
                }
            }
        }
    }
}

// ------------------------------------------------------------------ placeholders

/// The placeholders message texts, notes and Call API requests may use (`{{name}}`).
pub const PLACEHOLDERS: &[&str] = &[
    "tenant",
    "workflow.id",
    "conversation.id",
    "conversation.short_id",
    "conversation.queue",
    "conversation.status",
    "conversation.priority",
    "conversation.channel",
    "conversation.assignee",
    "customer.address",
    "message.content",
    "message.from",
];

/// The placeholders in `template`, or the reason it is malformed.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a placeholder opened with {{ is not closed with }}".into());
        };
        names.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// Check a template's placeholders: every one must be known.
pub fn check_template(template: &str) -> Result<(), String> {
    for name in placeholders(template)? {
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}; known: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
    }
    Ok(())
}

/// How a placeholder's value is written into its template.
#[derive(Clone, Copy)]
enum Escape {
    None,
    /// Inside a JSON string: quotes, backslashes and control characters escaped.
    Json,
    /// Percent-encoded, everything but RFC 3986's unreserved characters.
    Url,
    /// Line breaks removed, so a value cannot add a header.
    Header,
}

fn escape(value: &str, how: Escape) -> String {
    match how {
        Escape::None => value.to_string(),
        Escape::Json => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            quoted[1..quoted.len() - 1].to_string()
        }
        Escape::Url => value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect(),
        Escape::Header => value.replace(['\r', '\n'], " "),
    }
}

/// `template` with its placeholders filled in for conversation `conv`.
fn render(
    cx: &Ctx,
    workflow: &str,
    conv: &str,
    message: Option<&InboundMessage>,
    template: &str,
    how: Escape,
) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let Some(c) = cx.state.conversation(cx.tenant, conv) else {
        return template.to_string();
    };
    let value = |name: &str| -> String {
        match name {
            "tenant" => cx.tenant.to_string(),
            "workflow.id" => workflow.to_string(),
            "conversation.id" => c.id.to_string(),
            "conversation.short_id" => c.short_id.to_string(),
            "conversation.queue" => c.queue_id.as_deref().unwrap_or_default().to_string(),
            "conversation.status" => status_name(c.status).to_string(),
            "conversation.priority" => priority_name(c.priority).to_string(),
            "conversation.channel" => c.channel.as_str().to_string(),
            "conversation.assignee" => c.assignee.as_deref().unwrap_or_default().to_string(),
            "customer.address" => cx.state.customer_address(cx.tenant, c).to_string(),
            "message.content" => message.map(|m| m.content.clone()).unwrap_or_default(),
            "message.from" => message.map(|m| m.from.clone()).unwrap_or_default(),
            _ => String::new(),
        }
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(&escape(&value(after[..end].trim()), how));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

impl Processor for Workflows {
    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        let (conv, happened) = match output {
            Output::Conversation(e) if e.tenant == cx.tenant => {
                (e.conversation_id.as_str(), Happened::Event(&e.event))
            }
            Output::Csat(CsatEvent {
                tenant,
                conversation_id,
                event: CsatEventKind::SurveyFeedback(SurveyFeedback { score: Some(s), .. }),
                ..
            }) if *tenant == cx.tenant => (conversation_id.as_str(), Happened::Feedback(*s)),
            Output::Assignment(a) if a.tenant == cx.tenant => {
                // An assignment change modifies a Solved conversation.
                let solved = cx
                    .state
                    .conversation(cx.tenant, &a.conversation_id)
                    .is_some_and(|c| c.status == Status::Solved);
                if solved {
                    start_clock(cx, &a.conversation_id, Clock::SolvedUnmodified, true);
                }
                return;
            }
            _ => return,
        };
        if let Happened::Event(ConversationEventKind::StatusChanged(s)) = &happened {
            if s.to == Status::Closed {
                drop_clocks(cx, conv);
                return;
            }
        }
        let (empty, timed) = {
            let config = cx.state.config(cx.tenant);
            (
                config.flows().is_empty(),
                config.flows().has_time_triggers(),
            )
        };
        if empty {
            return;
        }
        if let (Happened::Event(event), true) = (&happened, timed) {
            move_clocks(cx, conv, event);
        }
        let message = match &happened {
            Happened::Event(event) => message_of(cx, event),
            Happened::Feedback(_) => None,
        };
        on_event(cx, conv, &happened, message);
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            if let Some(clock) = Clock::from_purpose(purpose) {
                on_clock(cx, clock, subject);
            }
        }
    }
}
