//! Rust mirrors of the Avro schemas in `schemas/avro/`.
//!
//! Every struct here has a schema record of the same shape. Enum variants that carry data are
//! Avro unions: the variant name is the name of the union branch's record, and serde's external
//! tagging (`{"Reply": {...}}`) is exactly Avro's JSON encoding of a union. The tests in
//! `tests/roundtrip.rs` prove that a record of every type survives Rust → Avro binary → Rust and
//! Rust → JSON → Rust unchanged, so a schema and its type cannot drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Map = BTreeMap<String, String>;

/// Bytes carried verbatim. In JSON they are a string whose code points 0–255 are the bytes
/// (Avro's own JSON encoding of `bytes`), so an ASCII payload stays readable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|b| char::from(*b)).collect();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| c))
            .collect::<Result<Vec<u8>, char>>()
            .map(Bytes)
            .map_err(|c| serde::de::Error::custom(format!("bytes string holds {c:?} above U+00FF")))
    }
}

// ---------------------------------------------------------------- shared enums

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Whatsapp,
    Viber,
    Telegram,
    Messenger,
    Instagram,
    Line,
    GoogleBusiness,
    AppleMessages,
    Rcs,
    Kakao,
    LiveChat,
    Email,
    Voice,
    Video,
}

/// The channel categories that capacity is counted in (SPEC §2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    LiveMessaging,
    LiveChat,
    Email,
    Voice,
}

impl Channel {
    pub const ALL: [Channel; 15] = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Viber,
        Channel::Telegram,
        Channel::Messenger,
        Channel::Instagram,
        Channel::Line,
        Channel::GoogleBusiness,
        Channel::AppleMessages,
        Channel::Rcs,
        Channel::Kakao,
        Channel::LiveChat,
        Channel::Email,
        Channel::Voice,
        Channel::Video,
    ];

    pub fn category(self) -> Category {
        match self {
            Channel::LiveChat => Category::LiveChat,
            Channel::Email => Category::Email,
            Channel::Voice | Channel::Video => Category::Voice,
            _ => Category::LiveMessaging,
        }
    }

    /// The name used in JSON, Avro and conditions (`whatsapp`, `live_chat`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Viber => "viber",
            Channel::Telegram => "telegram",
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
            Channel::Line => "line",
            Channel::GoogleBusiness => "google_business",
            Channel::AppleMessages => "apple_messages",
            Channel::Rcs => "rcs",
            Channel::Kakao => "kakao",
            Channel::LiveChat => "live_chat",
            Channel::Email => "email",
            Channel::Voice => "voice",
            Channel::Video => "video",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Waiting,
    Solved,
    Closed,
}

/// Conversation priority; the derived order is Low < Normal < High < Urgent.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StatusGroup {
    Available,
    Busy,
    Away,
    Unavailable,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

// ---------------------------------------------------------------- cc.inbound

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundMessage {
    pub id: String,
    pub tenant: String,
    pub channel: Channel,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub person: Option<Person>,
    #[serde(default)]
    pub company: Option<Company>,
    #[serde(default)]
    pub email: Option<EmailHeaders>,
    #[serde(default)]
    pub custom: Map,
    #[serde(default)]
    pub ivr: Map,
    #[serde(default)]
    pub is_visitor: bool,
}

impl InboundMessage {
    /// A plain text message with no person, company, e-mail or custom data.
    pub fn text(
        id: &str,
        tenant: &str,
        channel: Channel,
        from: &str,
        to: &str,
        content: &str,
    ) -> InboundMessage {
        InboundMessage {
            id: id.to_string(),
            tenant: tenant.to_string(),
            channel,
            from: from.to_string(),
            to: to.to_string(),
            content: content.to_string(),
            person: None,
            company: None,
            email: None,
            custom: Map::new(),
            ivr: Map::new(),
            is_visitor: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub attributes: Map,
    #[serde(default)]
    pub custom: Map,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Company {
    #[serde(default)]
    pub attributes: Map,
    #[serde(default)]
    pub custom: Map,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailHeaders {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub routed_to: Vec<String>,
}

// ---------------------------------------------------------------- cc.agent-events

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    pub id: String,
    pub tenant: String,
    pub agent_id: String,
    pub event: AgentEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum AgentEventKind {
    AgentStatusChanged(AgentStatusChange),
    AgentUpdated(AgentUpdate),
    CallStarted(CallRef),
    CallEnded(CallRef),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentStatusChange {
    pub status: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub queues: Option<Vec<String>>,
    #[serde(default)]
    pub capacity: Option<BTreeMap<String, i32>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallRef {
    pub call_id: String,
}

// ---------------------------------------------------------------- cc.commands

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    #[serde(default)]
    pub by: Option<String>,
    pub command: CommandKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum CommandKind {
    Reply(Reply),
    SetStatus(SetStatus),
    Assign(Assign),
    Unassign(Unassign),
    ChangeQueue(ChangeQueue),
    SetPriority(SetPriority),
    SetSeverity(SetSeverity),
    AddTags(TagList),
    RemoveTags(TagList),
    Merge(Merge),
    AddNote(AddNote),
    SetFormField(SetFormField),
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Reply(_) => "Reply",
            CommandKind::SetStatus(_) => "SetStatus",
            CommandKind::Assign(_) => "Assign",
            CommandKind::Unassign(_) => "Unassign",
            CommandKind::ChangeQueue(_) => "ChangeQueue",
            CommandKind::SetPriority(_) => "SetPriority",
            CommandKind::SetSeverity(_) => "SetSeverity",
            CommandKind::AddTags(_) => "AddTags",
            CommandKind::RemoveTags(_) => "RemoveTags",
            CommandKind::Merge(_) => "Merge",
            CommandKind::AddNote(_) => "AddNote",
            CommandKind::SetFormField(_) => "SetFormField",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub content: String,
    #[serde(default)]
    pub automated: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    pub status: Status,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub agent_id: String,
    #[serde(default = "yes")]
    pub only_if_unassigned: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Unassign {}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChangeQueue {
    pub queue_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    pub priority: Priority,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetSeverity {
    pub severity: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TagList {
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    pub source_conversation_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    pub text: String,
}

/// Set a field of the conversation's form; `value: None` clears it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetFormField {
    pub field: String,
    #[serde(default)]
    pub value: Option<String>,
}

// ---------------------------------------------------------------- cc.config

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    pub id: String,
    pub tenant: String,
    pub version: i64,
    pub change: ConfigChangeKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ConfigChangeKind {
    UpsertQueue(UpsertQueue),
    DeleteQueue(DeleteQueue),
    UpsertRoute(UpsertRoute),
    DeleteRoute(DeleteRoute),
    UpsertWorkingHours(UpsertWorkingHours),
    DeleteWorkingHours(DeleteWorkingHours),
    SetCapacityDefaults(CapacityDefaults),
    SetCountedStatuses(CountedStatuses),
    UpsertAgentStatus(AgentStatusDef),
    UpsertSlaPolicy(UpsertSlaPolicy),
    DeleteSlaPolicy(DeleteSlaPolicy),
    ReorderSlaPolicies(ReorderSlaPolicies),
    UpsertWaitingStrategy(UpsertWaitingStrategy),
    DeleteWaitingStrategy(DeleteWaitingStrategy),
    SetSentiment(SetSentiment),
    SetSurveySettings(SurveySettings),
    UpsertWorkflow(UpsertWorkflow),
    DeleteWorkflow(DeleteWorkflow),
    ReorderWorkflows(ReorderWorkflows),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertWorkflow {
    pub workflow: Workflow,
}

/// A workflow (SPEC §10): when any of its triggers fires for an Open, Waiting or Solved
/// conversation and its condition holds, its actions run in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub order: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub triggers: Vec<WorkflowTrigger>,
    #[serde(default)]
    pub condition: Option<Condition>,
    pub actions: Vec<WorkflowAction>,
}

/// A record with no fields (a union branch that says everything by its name).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusTrigger {
    pub status: Status,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScoreTrigger {
    pub scores: Vec<CsatScore>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FormTrigger {
    #[serde(default)]
    pub field: Option<String>,
}

/// How long a time trigger waits, in seconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AfterSeconds {
    pub seconds: i64,
}

/// What fires a workflow (SPEC §10.2 events, §10.3 times).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum WorkflowTrigger {
    StatusChangedTo(StatusTrigger),
    ConversationQueueChanged(NoFields),
    ConversationTagsChanged(NoFields),
    InboundMessageReceived(NoFields),
    AgentMessageSent(NoFields),
    SurveyFeedbackReceived(ScoreTrigger),
    NoteCreated(NoFields),
    ConversationFormFieldUpdated(FormTrigger),
    CustomerDidNotReplyFor(AfterSeconds),
    AgentDidNotReplyFor(AfterSeconds),
    SolvedUnmodifiedFor(AfterSeconds),
    SolvedFor(AfterSeconds),
    WaitingFor(AfterSeconds),
}

impl WorkflowTrigger {
    /// The trigger's name in `WorkflowRan` events and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            WorkflowTrigger::StatusChangedTo(_) => "status_changed_to",
            WorkflowTrigger::ConversationQueueChanged(_) => "queue_changed",
            WorkflowTrigger::ConversationTagsChanged(_) => "tags_changed",
            WorkflowTrigger::InboundMessageReceived(_) => "inbound_message_received",
            WorkflowTrigger::AgentMessageSent(_) => "agent_message_sent",
            WorkflowTrigger::SurveyFeedbackReceived(_) => "survey_feedback_received",
            WorkflowTrigger::NoteCreated(_) => "note_created",
            WorkflowTrigger::ConversationFormFieldUpdated(_) => "form_field_updated",
            WorkflowTrigger::CustomerDidNotReplyFor(_) => "customer_did_not_reply_for",
            WorkflowTrigger::AgentDidNotReplyFor(_) => "agent_did_not_reply_for",
            WorkflowTrigger::SolvedUnmodifiedFor(_) => "solved_unmodified_for",
            WorkflowTrigger::SolvedFor(_) => "solved_for",
            WorkflowTrigger::WaitingFor(_) => "waiting_for",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageText {
    pub content: String,
}

/// What a workflow does (SPEC §10.4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum WorkflowAction {
    SendMessage(MessageText),
    ApplyTags(TagList),
    RemoveTags(TagList),
    SetSolved(NoFields),
    SetConversationPriority(SetPriority),
    UnassignAgent(NoFields),
    SendSurvey(NoFields),
    AddNote(AddNote),
    CallApi(CallApi),
    CloseConversation(NoFields),
}

impl WorkflowAction {
    /// The action's name in metrics and errors.
    pub fn name(&self) -> &'static str {
        match self {
            WorkflowAction::SendMessage(_) => "send_message",
            WorkflowAction::ApplyTags(_) => "apply_tags",
            WorkflowAction::RemoveTags(_) => "remove_tags",
            WorkflowAction::SetSolved(_) => "set_solved",
            WorkflowAction::SetConversationPriority(_) => "set_priority",
            WorkflowAction::UnassignAgent(_) => "unassign_agent",
            WorkflowAction::SendSurvey(_) => "send_survey",
            WorkflowAction::AddNote(_) => "add_note",
            WorkflowAction::CallApi(_) => "call_api",
            WorkflowAction::CloseConversation(_) => "close_conversation",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteWorkflow {
    pub workflow_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReorderWorkflows {
    pub workflow_ids: Vec<String>,
}

fn thirty() -> i32 {
    30
}

fn day_hours() -> i32 {
    24
}

fn default_question() -> String {
    "Were you happy with our help? Reply 1 (happy) or 2 (not happy).".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SurveySettings {
    pub enabled: bool,
    #[serde(default = "thirty")]
    pub delay_seconds: i32,
    #[serde(default)]
    pub minimum_span_hours: i32,
    #[serde(default = "day_hours")]
    pub answer_window_hours: i32,
    #[serde(default = "default_question")]
    pub question: String,
    #[serde(default)]
    pub follow_up: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetSentiment {
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertSlaPolicy {
    pub policy: SlaPolicy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub order: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub valid_from: Option<i64>,
    #[serde(default)]
    pub valid_to: Option<i64>,
    #[serde(default)]
    pub condition: Option<Condition>,
    #[serde(default)]
    pub queue_filter: QueueFilter,
    #[serde(default)]
    pub queue_ids: Vec<String>,
    #[serde(default)]
    pub exclude_automated: bool,
    pub default_severity: String,
    pub severities: Vec<Severity>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueueFilter {
    #[default]
    All,
    Apply,
    Ignore,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Severity {
    pub name: String,
    #[serde(default)]
    pub first_response_minutes: Option<i32>,
    #[serde(default)]
    pub next_reply_minutes: Option<i32>,
    #[serde(default)]
    pub resolution_minutes: Option<i32>,
    #[serde(default)]
    pub counting: Counting,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    #[default]
    Always,
    WorkingHours,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteSlaPolicy {
    pub policy_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReorderSlaPolicies {
    pub policy_ids: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertWaitingStrategy {
    pub strategy: WaitingStrategy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaitingStrategy {
    pub id: String,
    pub sender: String,
    #[serde(default)]
    pub welcome: Option<String>,
    #[serde(default)]
    pub announcement: Option<Announcement>,
    #[serde(default)]
    pub max_wait: Option<MaxWait>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub text: String,
    pub interval_seconds: i32,
    pub max_count: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaxWait {
    pub text: String,
    pub after_seconds: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteWaitingStrategy {
    pub strategy_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertQueue {
    pub queue: Queue,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub working_hours_id: Option<String>,
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub auto_assign: bool,
    #[serde(default)]
    pub bot: bool,
    #[serde(default)]
    pub sticky_lookback: Option<StickyLookback>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StickyLookback {
    #[serde(rename = "days_30")]
    Days30,
    #[serde(rename = "days_60")]
    Days60,
    #[serde(rename = "year_1")]
    Year1,
    Ever,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteQueue {
    pub queue_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertRoute {
    pub route: Route,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub order: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub condition: Condition,
    pub queue_id: String,
    #[serde(default)]
    pub priority: Priority,
}

/// A node of the condition language (SPEC §4.2): exactly one of `all`, `any`, `not` or a leaf
/// (`attribute` + `operator` + `value`/`values`) is set. Config validation enforces that.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Is,
    IsNot,
    StartsWith,
    Contains,
    DoesNotContain,
    InList,
    NotInList,
    BeforeOrOn,
    AfterOrOn,
    Exists,
    NotExists,
}

impl Operator {
    pub const ALL: [Operator; 11] = [
        Operator::Is,
        Operator::IsNot,
        Operator::StartsWith,
        Operator::Contains,
        Operator::DoesNotContain,
        Operator::InList,
        Operator::NotInList,
        Operator::BeforeOrOn,
        Operator::AfterOrOn,
        Operator::Exists,
        Operator::NotExists,
    ];
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoute {
    pub route_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsertWorkingHours {
    pub period: WorkingHours,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub time_zone: String,
    #[serde(default)]
    pub is_default: bool,
    pub week: Week,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    #[serde(default)]
    pub away_message: Option<String>,
    #[serde(default)]
    pub close_after_away: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Week {
    #[serde(default)]
    pub monday: Vec<Interval>,
    #[serde(default)]
    pub tuesday: Vec<Interval>,
    #[serde(default)]
    pub wednesday: Vec<Interval>,
    #[serde(default)]
    pub thursday: Vec<Interval>,
    #[serde(default)]
    pub friday: Vec<Interval>,
    #[serde(default)]
    pub saturday: Vec<Interval>,
    #[serde(default)]
    pub sunday: Vec<Interval>,
}

impl Week {
    /// The days Monday first, with their field names (for error messages).
    pub fn days(&self) -> [(&'static str, &Vec<Interval>); 7] {
        [
            ("monday", &self.monday),
            ("tuesday", &self.tuesday),
            ("wednesday", &self.wednesday),
            ("thursday", &self.thursday),
            ("friday", &self.friday),
            ("saturday", &self.saturday),
            ("sunday", &self.sunday),
        ]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub start: String,
    pub end: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    #[serde(default)]
    pub name: String,
    pub start: String,
    pub end: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteWorkingHours {
    pub period_id: String,
}

fn five() -> i32 {
    5
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CapacityDefaults {
    #[serde(default = "five")]
    pub live_messaging: i32,
    #[serde(default = "five")]
    pub live_chat: i32,
    #[serde(default = "five")]
    pub email: i32,
}

impl Default for CapacityDefaults {
    fn default() -> Self {
        CapacityDefaults {
            live_messaging: 5,
            live_chat: 5,
            email: 5,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CountedStatuses {
    #[serde(default = "yes")]
    pub waiting: bool,
    #[serde(default = "yes")]
    pub solved: bool,
}

impl Default for CountedStatuses {
    fn default() -> Self {
        CountedStatuses {
            waiting: true,
            solved: true,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentStatusDef {
    pub name: String,
    pub group: StatusGroup,
}

// ---------------------------------------------------------------- cc.ticks

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tick {
    #[serde(default = "ticker")]
    pub source: String,
}

fn ticker() -> String {
    "ticker".to_string()
}

impl Default for Tick {
    fn default() -> Self {
        Tick { source: ticker() }
    }
}

// ---------------------------------------------------------------- cc.conversation-events

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConversationEvent {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub short_id: i64,
    pub event: ConversationEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ConversationEventKind {
    Opened(Opened),
    MessageReceived(MessageReceived),
    Routed(Routed),
    StatusChanged(StatusChanged),
    Merged(Merged),
    TagsChanged(TagList),
    PriorityChanged(SetPriority),
    QueueChanged(QueueChanged),
    NoteAdded(NoteAdded),
    AgentReplied(AgentReplied),
    FormFieldUpdated(FormFieldUpdated),
    WorkflowRan(WorkflowRan),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormFieldUpdated {
    pub field: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRan {
    pub workflow_id: String,
    pub trigger: String,
    /// The workflow's actions in the order they run ([`WorkflowAction::name`]).
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Opened {
    pub channel: Channel,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    #[serde(default)]
    pub person_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageReceived {
    pub message_id: String,
    pub channel: Channel,
    pub from: String,
    pub content: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Routed {
    pub queue_id: String,
    pub priority: Priority,
    #[serde(default)]
    pub route_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusChanged {
    pub from: Status,
    pub to: Status,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Merged {
    pub source_conversation_id: String,
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueChanged {
    pub from_queue: String,
    pub to_queue: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoteAdded {
    pub text: String,
    #[serde(default)]
    pub by: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentReplied {
    pub message_id: String,
    #[serde(default)]
    pub by: Option<String>,
    pub automated: bool,
}

// ---------------------------------------------------------------- cc.outbound

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboundMessage {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub channel: Channel,
    pub from: String,
    pub to: String,
    pub kind: OutboundKind,
    pub content: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    Agent,
    Bot,
    Away,
    Welcome,
    Announcement,
    MaxWait,
    Survey,
    Workflow,
}

// ---------------------------------------------------------------- cc.assignments

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssignmentEvent {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub event: AssignmentEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum AssignmentEventKind {
    Assigned(Assigned),
    Unassigned(AgentReason),
    AssignmentRejected(AgentReason),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Assigned {
    pub agent_id: String,
    pub method: AssignMethod,
    #[serde(default)]
    pub score: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssignMethod {
    Single,
    Sticky,
    Bulk,
    WorkingHoursStart,
    Manual,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentReason {
    pub agent_id: String,
    pub reason: String,
}

// ---------------------------------------------------------------- cc.sla-events

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaEvent {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub event: SlaEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum SlaEventKind {
    SlaApplied(SlaApplied),
    SlaBreached(SlaBreached),
    SlaMet(SlaMet),
    SlaRecalculated(SlaRecalculated),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaApplied {
    pub policy_id: String,
    pub severity: String,
    #[serde(default)]
    pub first_response_due: Option<i64>,
    #[serde(default)]
    pub next_reply_due: Option<i64>,
    #[serde(default)]
    pub resolution_due: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SlaMetric {
    FirstResponse,
    NextReply,
    Resolution,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaBreached {
    pub metric: SlaMetric,
    pub due_at: i64,
    pub breached_at: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaMet {
    pub metric: SlaMetric,
    pub elapsed_business_ms: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaRecalculated {
    #[serde(default)]
    pub policy_id: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub first_response_due: Option<i64>,
    #[serde(default)]
    pub next_reply_due: Option<i64>,
    #[serde(default)]
    pub resolution_due: Option<i64>,
}

// ---------------------------------------------------------------- cc.sentiment

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SentimentEvent {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub event: SentimentEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum SentimentEventKind {
    MessageSentiment(MessageSentiment),
    ConversationSentiment(ConversationSentiment),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageSentiment {
    pub message_id: String,
    pub score: f64,
    pub label: SentimentLabel,
    /// The model's version, or `lexicon` (R-SENT-1).
    #[serde(default)]
    pub model: Option<String>,
    /// The language when not English; such a message scores 0 (R-SENT-1).
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConversationSentiment {
    pub score: f64,
    pub label: SentimentLabel,
    pub messages: i32,
}

// ---------------------------------------------------------------- cc.csat

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsatEvent {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub event: CsatEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum CsatEventKind {
    SurveySent(SurveySent),
    SurveySuppressed(SurveySuppressed),
    SurveyFeedback(SurveyFeedback),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SurveySent {
    pub channel: Channel,
    pub to: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SurveySuppressed {
    pub reason: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CsatScore {
    Happy,
    NotHappy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SurveyFeedback {
    #[serde(default)]
    pub score: Option<CsatScore>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub queue_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
}

// ---------------------------------------------------------------- cc.agent-state

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentStateEvent {
    pub id: String,
    pub tenant: String,
    pub agent_id: String,
    pub event: AgentStateEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum AgentStateEventKind {
    AgentStatus(AgentStatus),
    AgentCapacityChanged(AgentCapacityChanged),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    pub status: String,
    pub group: StatusGroup,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentCapacityChanged {
    pub full: bool,
    pub workload_percent: f64,
}

// ---------------------------------------------------------------- cc.actions

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    #[serde(default)]
    pub workflow_id: String,
    #[serde(default)]
    pub idempotency_key: String,
    pub action: ActionKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ActionKind {
    CallApi(CallApi),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallApi {
    pub method: String,
    pub url: String,
    #[serde(default = "json_type")]
    pub content_type: String,
    #[serde(default)]
    pub headers: Map,
    #[serde(default)]
    pub body: String,
}

fn json_type() -> String {
    "application/json".to_string()
}

// ---------------------------------------------------------------- cc.action-outcomes

/// What the action executor made of one `cc.actions` request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionOutcome {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    #[serde(default)]
    pub workflow_id: String,
    pub idempotency_key: String,
    pub outcome: ActionResult,
    #[serde(default)]
    pub status: Option<i32>,
    pub attempts: i32,
    #[serde(default)]
    pub error: Option<String>,
    pub latency_ms: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    Succeeded,
    Failed,
}

// ---------------------------------------------------------------- cc.analytics

/// One queue's or one agent's figures for one tumbling window of event time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsWindow {
    pub id: String,
    pub tenant: String,
    pub dimension: AnalyticsDimension,
    pub key: String,
    pub window_start: i64,
    pub window_end: i64,
    #[serde(default)]
    pub correction: bool,
    pub offered: i64,
    pub assigned: i64,
    pub abandoned: i64,
    pub solved: i64,
    pub time_to_assign: Distribution,
    pub first_response: Distribution,
    pub handling: Distribution,
    pub sla_met: SlaCounts,
    pub sla_breached: SlaCounts,
    pub csat_happy: i64,
    pub csat_not_happy: i64,
    pub sentiment_positive: i64,
    pub sentiment_neutral: i64,
    pub sentiment_negative: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AnalyticsDimension {
    Queue,
    Agent,
}

/// Durations in ms: count, sum and max exact, p50 and p90 within 1%.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    pub count: i64,
    pub sum_ms: i64,
    pub max_ms: i64,
    #[serde(default)]
    pub p50_ms: Option<i64>,
    #[serde(default)]
    pub p90_ms: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaCounts {
    pub first_response: i64,
    pub next_reply: i64,
    pub resolution: i64,
}

// ---------------------------------------------------------------- cc.dlq

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub id: String,
    pub source_topic: String,
    #[serde(default)]
    pub source_partition: Option<i32>,
    #[serde(default)]
    pub source_offset: Option<i64>,
    #[serde(default)]
    pub source_line: Option<i64>,
    #[serde(default)]
    pub key: Option<String>,
    pub value: Bytes,
    pub reason: String,
}

// ---------------------------------------------------------------- cc.config-events

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigEvent {
    pub id: String,
    pub tenant: String,
    pub version: i64,
    pub event: ConfigEventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ConfigEventKind {
    ConfigApplied(ConfigApplied),
    ConfigRejected(ConfigRejected),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigApplied {
    pub entity: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigRejected {
    pub entity: String,
    pub field: String,
    pub reason: String,
}
