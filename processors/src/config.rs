//! Config (SPEC §2): versioned upserts and deletes of a tenant's queues, routes, working-hours
//! periods, capacity defaults, counted statuses and custom agent statuses.
//!
//! Each change names one entity (`queue/<id>`, `route/<id>`, `working_hours/<id>`, `capacity`,
//! `counted_statuses`, `agent_status/<name>`) and carries a version that must be greater than
//! the last version applied to that entity. A valid change is applied and answered with
//! `ConfigApplied`; an invalid or stale one with `ConfigRejected` naming the offending field,
//! and the previous config stays in force.

use switchboard_schemas::*;

use crate::calendar::Calendar;
use crate::condition;
use crate::engine::{Ctx, Handled, Rejection};
use crate::state::{TenantConfig, DEFAULT_QUEUE};
use crate::Processor;

pub struct ConfigProcessor;

/// Built-in agent statuses (SPEC §5.3); custom statuses may not reuse these names.
pub const BUILT_IN_STATUSES: &[(&str, StatusGroup)] = &[
    ("Available", StatusGroup::Available),
    ("Idle", StatusGroup::Available),
    ("Under capacity", StatusGroup::Available),
    ("Busy", StatusGroup::Busy),
    ("Full capacity", StatusGroup::Busy),
    ("In a call", StatusGroup::Busy),
    ("Ringing", StatusGroup::Busy),
    ("Wrap-up", StatusGroup::Busy),
    ("Away", StatusGroup::Away),
    ("Offline", StatusGroup::Unavailable),
];

/// The working-hours id that means "no period: open around the clock", so a queue created
/// while a default period exists can still be always open.
pub const ALWAYS_OPEN: &str = "always";

type Invalid = (String, String);

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    (field.into(), reason.into())
}

/// The entity a change applies to, for versioning and compaction keys.
pub fn entity_of(change: &ConfigChangeKind) -> String {
    match change {
        ConfigChangeKind::UpsertQueue(c) => format!("queue/{}", c.queue.id),
        ConfigChangeKind::DeleteQueue(c) => format!("queue/{}", c.queue_id),
        ConfigChangeKind::UpsertRoute(c) => format!("route/{}", c.route.id),
        ConfigChangeKind::DeleteRoute(c) => format!("route/{}", c.route_id),
        ConfigChangeKind::UpsertWorkingHours(c) => format!("working_hours/{}", c.period.id),
        ConfigChangeKind::DeleteWorkingHours(c) => format!("working_hours/{}", c.period_id),
        ConfigChangeKind::SetCapacityDefaults(_) => "capacity".to_string(),
        ConfigChangeKind::SetCountedStatuses(_) => "counted_statuses".to_string(),
        ConfigChangeKind::UpsertAgentStatus(c) => format!("agent_status/{}", c.name),
        ConfigChangeKind::UpsertSlaPolicy(c) => format!("sla_policy/{}", c.policy.id),
        ConfigChangeKind::DeleteSlaPolicy(c) => format!("sla_policy/{}", c.policy_id),
        ConfigChangeKind::ReorderSlaPolicies(_) => "sla_policy_order".to_string(),
        ConfigChangeKind::UpsertWaitingStrategy(c) => format!("waiting_strategy/{}", c.strategy.id),
        ConfigChangeKind::DeleteWaitingStrategy(c) => format!("waiting_strategy/{}", c.strategy_id),
        ConfigChangeKind::SetSentiment(_) => "sentiment".to_string(),
        ConfigChangeKind::SetSurveySettings(_) => "surveys".to_string(),
        ConfigChangeKind::UpsertWorkflow(c) => format!("workflow/{}", c.workflow.id),
        ConfigChangeKind::DeleteWorkflow(c) => format!("workflow/{}", c.workflow_id),
        ConfigChangeKind::ReorderWorkflows(_) => "workflow_order".to_string(),
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Apply `change` to a copy of `config`, or say which field is wrong.
fn apply(config: &TenantConfig, change: &ConfigChangeKind) -> Result<TenantConfig, Invalid> {
    let mut next = config.clone();
    match change {
        ConfigChangeKind::UpsertQueue(UpsertQueue { queue }) => {
            non_empty("queue.id", &queue.id)?;
            let mut queue = queue.clone();
            match &queue.working_hours_id {
                Some(id) if id == ALWAYS_OPEN => queue.working_hours_id = None,
                Some(id) if !config.working_hours.contains_key(id) => {
                    return Err(invalid(
                        "queue.working_hours_id",
                        format!("no working-hours period {id:?}"),
                    ));
                }
                None if !config.queues.contains_key(&queue.id) => {
                    // A queue created while a default period exists takes it (SPEC §4.3).
                    queue.working_hours_id = config
                        .working_hours
                        .values()
                        .find(|p| p.is_default)
                        .map(|p| p.id.clone());
                }
                _ => {}
            }
            next.queues.insert(queue.id.clone(), queue);
        }
        ConfigChangeKind::DeleteQueue(DeleteQueue { queue_id }) => {
            if queue_id == DEFAULT_QUEUE {
                return Err(invalid("queue_id", "the Default queue cannot be deleted"));
            }
            if !config.queues.contains_key(queue_id) {
                return Err(invalid("queue_id", format!("no queue {queue_id:?}")));
            }
            if let Some(r) = config.routes.values().find(|r| &r.queue_id == queue_id) {
                return Err(invalid(
                    "queue_id",
                    format!("route {:?} leads to this queue", r.id),
                ));
            }
            if let Some(w) = config.workflows.values().find(|w| {
                w.condition.as_ref().is_some_and(|c| {
                    condition_values(c, "conversation.queue")
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(queue_id))
                })
            }) {
                return Err(invalid(
                    "queue_id",
                    format!("workflow {:?} names this queue in its condition", w.id),
                ));
            }
            next.queues.remove(queue_id);
        }
        ConfigChangeKind::UpsertRoute(UpsertRoute { route }) => {
            non_empty("route.id", &route.id)?;
            if !config.has_queue(&route.queue_id) {
                return Err(invalid(
                    "route.queue_id",
                    format!("no queue {:?}", route.queue_id),
                ));
            }
            condition::validate(&route.condition, "route.condition")
                .map_err(|(f, r)| invalid(f, r))?;
            next.routes.insert(route.id.clone(), route.clone());
        }
        ConfigChangeKind::DeleteRoute(DeleteRoute { route_id }) => {
            if next.routes.remove(route_id).is_none() {
                return Err(invalid("route_id", format!("no route {route_id:?}")));
            }
        }
        ConfigChangeKind::UpsertWorkingHours(UpsertWorkingHours { period }) => {
            non_empty("period.id", &period.id)?;
            if period.id == ALWAYS_OPEN {
                return Err(invalid(
                    "period.id",
                    "\"always\" is reserved for queues that are always open",
                ));
            }
            Calendar::parse(period).map_err(|(f, r)| invalid(format!("period.{f}"), r))?;
            if period.close_after_away && period.away_message.as_deref().unwrap_or("").is_empty() {
                return Err(invalid(
                    "period.close_after_away",
                    "needs an away_message to send before closing",
                ));
            }
            if period.is_default {
                for p in next.working_hours.values_mut() {
                    p.is_default = false;
                }
            }
            next.working_hours.insert(period.id.clone(), period.clone());
        }
        ConfigChangeKind::DeleteWorkingHours(DeleteWorkingHours { period_id }) => {
            if !config.working_hours.contains_key(period_id) {
                return Err(invalid(
                    "period_id",
                    format!("no working-hours period {period_id:?}"),
                ));
            }
            if let Some(q) = config
                .queues
                .values()
                .find(|q| q.working_hours_id.as_ref() == Some(period_id))
            {
                return Err(invalid(
                    "period_id",
                    format!("queue {:?} uses this period", q.id),
                ));
            }
            next.working_hours.remove(period_id);
        }
        ConfigChangeKind::SetCapacityDefaults(c) => {
            for (field, v) in [
                ("live_messaging", c.live_messaging),
                ("live_chat", c.live_chat),
                ("email", c.email),
            ] {
                if !(0..=1000).contains(&v) {
                    return Err(invalid(field, format!("{v} is not between 0 and 1000")));
                }
            }
            next.capacity = c.clone();
        }
        ConfigChangeKind::SetCountedStatuses(c) => next.counted = c.clone(),
        ConfigChangeKind::UpsertAgentStatus(s) => {
            non_empty("name", &s.name)?;
            if BUILT_IN_STATUSES
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&s.name))
            {
                return Err(invalid(
                    "name",
                    format!("{:?} is a built-in status", s.name),
                ));
            }
            next.agent_statuses.insert(s.name.clone(), s.group);
        }
        ConfigChangeKind::UpsertSlaPolicy(UpsertSlaPolicy { policy }) => {
            validate_sla_policy(config, policy)?;
            next.sla_policies.insert(policy.id.clone(), policy.clone());
        }
        ConfigChangeKind::DeleteSlaPolicy(DeleteSlaPolicy { policy_id }) => {
            if next.sla_policies.remove(policy_id).is_none() {
                return Err(invalid("policy_id", format!("no SLA policy {policy_id:?}")));
            }
        }
        ConfigChangeKind::ReorderSlaPolicies(ReorderSlaPolicies { policy_ids }) => {
            let mut given: Vec<&String> = policy_ids.iter().collect();
            given.sort();
            let known: Vec<&String> = config.sla_policies.keys().collect();
            if given != known {
                return Err(invalid(
                    "policy_ids",
                    "must list every SLA policy exactly once",
                ));
            }
            for (i, id) in policy_ids.iter().enumerate() {
                if let Some(p) = next.sla_policies.get_mut(id) {
                    p.order = i as i32;
                }
            }
        }
        ConfigChangeKind::UpsertWaitingStrategy(UpsertWaitingStrategy { strategy }) => {
            validate_waiting_strategy(config, strategy)?;
            next.waiting_strategies
                .insert(strategy.id.clone(), strategy.clone());
        }
        ConfigChangeKind::SetSurveySettings(s) => {
            for (field, value, range) in [
                ("delay_seconds", s.delay_seconds, 0..=86_400),
                ("minimum_span_hours", s.minimum_span_hours, 0..=8_760),
                ("answer_window_hours", s.answer_window_hours, 1..=720),
            ] {
                if !range.contains(&value) {
                    return Err(invalid(
                        field,
                        format!(
                            "{value} is not between {} and {}",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
            }
            non_empty("question", &s.question)?;
            if let Some(f) = &s.follow_up {
                non_empty("follow_up", f)?;
            }
            next.surveys = Some(s.clone());
        }
        ConfigChangeKind::SetSentiment(SetSentiment { enabled }) => {
            next.sentiment_enabled = *enabled
        }
        ConfigChangeKind::UpsertWorkflow(UpsertWorkflow { workflow }) => {
            validate_workflow(config, workflow)?;
            next.workflows.insert(workflow.id.clone(), workflow.clone());
        }
        ConfigChangeKind::DeleteWorkflow(DeleteWorkflow { workflow_id }) => {
            if next.workflows.remove(workflow_id).is_none() {
                return Err(invalid(
                    "workflow_id",
                    format!("no workflow {workflow_id:?}"),
                ));
            }
            next.workflow_since.remove(workflow_id);
        }
        ConfigChangeKind::ReorderWorkflows(ReorderWorkflows { workflow_ids }) => {
            let mut given: Vec<&String> = workflow_ids.iter().collect();
            given.sort();
            let known: Vec<&String> = config.workflows.keys().collect();
            if given != known {
                return Err(invalid(
                    "workflow_ids",
                    "must list every workflow exactly once",
                ));
            }
            for (i, id) in workflow_ids.iter().enumerate() {
                if let Some(w) = next.workflows.get_mut(id) {
                    w.order = i as i32;
                }
            }
        }
        ConfigChangeKind::DeleteWaitingStrategy(DeleteWaitingStrategy { strategy_id }) => {
            if next.waiting_strategies.remove(strategy_id).is_none() {
                return Err(invalid(
                    "strategy_id",
                    format!("no waiting strategy {strategy_id:?}"),
                ));
            }
        }
    }
    check_counts(config, &next)?;
    Ok(next)
}

/// Most entities of each kind one tenant may configure (docs/operations.md, "Limits"). A
/// change that would go past one is rejected with the field named; one that removes or
/// replaces entities is always accepted.
pub const MAX_QUEUES: usize = 1_000;
pub const MAX_ROUTES: usize = 1_000;
pub const MAX_WORKING_HOURS: usize = 100;
pub const MAX_AGENT_STATUSES: usize = 100;
pub const MAX_SLA_POLICIES: usize = 100;
pub const MAX_WAITING_STRATEGIES: usize = 100;
pub const MAX_WORKFLOWS: usize = 100;
/// Largest config (with its versions) one tenant may have, as stored: it is one state row and
/// one changelog record, which must fit Kafka's default `max.message.bytes` (1 MB).
pub const MAX_TENANT_CONFIG_BYTES: usize = 768 * 1024;

/// The counted entities: (field named in a rejection, what, limit), in [`counts`] order.
const COUNTED: [(&str, &str, usize); 7] = [
    ("queue.id", "queues", MAX_QUEUES),
    ("route.id", "routes", MAX_ROUTES),
    ("period.id", "working-hours periods", MAX_WORKING_HOURS),
    ("name", "custom agent statuses", MAX_AGENT_STATUSES),
    ("policy.id", "SLA policies", MAX_SLA_POLICIES),
    ("strategy.id", "waiting strategies", MAX_WAITING_STRATEGIES),
    ("workflow.id", "workflows", MAX_WORKFLOWS),
];

fn counts(c: &TenantConfig) -> [usize; 7] {
    [
        c.queues.len(),
        c.routes.len(),
        c.working_hours.len(),
        c.agent_statuses.len(),
        c.sla_policies.len(),
        c.waiting_strategies.len(),
        c.workflows.len(),
    ]
}

fn check_counts(before: &TenantConfig, after: &TenantConfig) -> Result<(), Invalid> {
    let pairs = counts(before).into_iter().zip(counts(after));
    for ((field, what, limit), (before, after)) in COUNTED.into_iter().zip(pairs) {
        if after > limit && after > before {
            return Err(invalid(
                field,
                format!("the tenant already has {before} {what}, the limit is {limit}"),
            ));
        }
    }
    Ok(())
}

/// At most a year, in minutes, for any SLA target.
const MAX_SLA_MINUTES: i32 = 525_600;

fn validate_sla_policy(config: &TenantConfig, p: &SlaPolicy) -> Result<(), Invalid> {
    non_empty("policy.id", &p.id)?;
    if p.severities.is_empty() {
        return Err(invalid(
            "policy.severities",
            "a policy needs at least one severity",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, sev) in p.severities.iter().enumerate() {
        let field = |f: &str| format!("policy.severities[{i}]{f}");
        non_empty(&field(".name"), &sev.name)?;
        if !names.insert(sev.name.as_str()) {
            return Err(invalid(
                field(".name"),
                format!("severity {:?} is defined twice", sev.name),
            ));
        }
        let targets = [
            ("first_response_minutes", sev.first_response_minutes),
            ("next_reply_minutes", sev.next_reply_minutes),
            ("resolution_minutes", sev.resolution_minutes),
        ];
        if targets.iter().all(|(_, v)| v.is_none()) {
            return Err(invalid(field(""), "set at least one of first_response_minutes, next_reply_minutes, resolution_minutes"));
        }
        for (name, v) in targets {
            if let Some(v) = v.filter(|v| !(1..=MAX_SLA_MINUTES).contains(v)) {
                return Err(invalid(
                    field(&format!(".{name}")),
                    format!("{v} is not between 1 and {MAX_SLA_MINUTES}"),
                ));
            }
        }
    }
    if !names.contains(p.default_severity.as_str()) {
        return Err(invalid(
            "policy.default_severity",
            format!(
                "{:?} is not one of the policy's severities",
                p.default_severity
            ),
        ));
    }
    if let (Some(from), Some(to)) = (p.valid_from, p.valid_to) {
        if to < from {
            return Err(invalid("policy.valid_to", "ends before valid_from"));
        }
    }
    if let Some(c) = &p.condition {
        condition::validate(c, "policy.condition").map_err(|(f, r)| invalid(f, r))?;
    }
    for (i, q) in p.queue_ids.iter().enumerate() {
        if !config.has_queue(q) {
            return Err(invalid(
                format!("policy.queue_ids[{i}]"),
                format!("no queue {q:?}"),
            ));
        }
    }
    if p.queue_filter != QueueFilter::All && p.queue_ids.is_empty() {
        return Err(invalid(
            "policy.queue_ids",
            "an apply or ignore filter needs at least one queue",
        ));
    }
    Ok(())
}

fn validate_waiting_strategy(config: &TenantConfig, w: &WaitingStrategy) -> Result<(), Invalid> {
    non_empty("strategy.id", &w.id)?;
    non_empty("strategy.sender", &w.sender)?;
    if w.welcome.is_none() && w.announcement.is_none() && w.max_wait.is_none() {
        return Err(invalid(
            "strategy",
            "enable at least one of welcome, announcement, max_wait",
        ));
    }
    if let Some(text) = &w.welcome {
        non_empty("strategy.welcome", text)?;
    }
    if let Some(a) = &w.announcement {
        non_empty("strategy.announcement.text", &a.text)?;
        if !(60..=3600).contains(&a.interval_seconds) {
            return Err(invalid(
                "strategy.announcement.interval_seconds",
                format!("{} is not between 60 and 3600", a.interval_seconds),
            ));
        }
        if !(1..=60).contains(&a.max_count) {
            return Err(invalid(
                "strategy.announcement.max_count",
                format!("{} is not between 1 and 60", a.max_count),
            ));
        }
    }
    if let Some(m) = &w.max_wait {
        non_empty("strategy.max_wait.text", &m.text)?;
        if !(1..=3600).contains(&m.after_seconds) {
            return Err(invalid(
                "strategy.max_wait.after_seconds",
                format!("{} is not between 1 and 3600 (60 minutes)", m.after_seconds),
            ));
        }
    }
    if let Some(other) = config
        .waiting_strategies
        .values()
        .find(|o| o.id != w.id && o.sender.eq_ignore_ascii_case(&w.sender))
    {
        return Err(invalid(
            "strategy.sender",
            format!(
                "sender {:?} already has waiting strategy {:?}",
                w.sender, other.id
            ),
        ));
    }
    Ok(())
}

/// Most triggers and actions one workflow may have, and the longest message it may send.
pub const MAX_WORKFLOW_TRIGGERS: usize = 20;
pub const MAX_WORKFLOW_ACTIONS: usize = 20;
pub const MAX_WORKFLOW_MESSAGE_CHARS: usize = 1_000;
/// The longest tag a workflow may apply or remove.
pub const MAX_TAG_CHARS: usize = 100;

const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every value a condition compares `attribute` with (`is`, `is_not`, `in_list`,
/// `not_in_list` leaves), lowercased.
fn condition_values(c: &Condition, attribute: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![c];
    while let Some(node) = stack.pop() {
        stack.extend(node.all.iter().chain(&node.any));
        if let Some(child) = &node.not {
            stack.push(child);
        }
        if node.attribute.as_deref() == Some(attribute) {
            out.extend(leaf_values(node));
        }
    }
    out
}

fn leaf_values(c: &Condition) -> Vec<String> {
    match c.operator {
        Some(Operator::InList | Operator::NotInList) => condition::list_values(c),
        Some(Operator::Is | Operator::IsNot) => {
            c.value.iter().map(|v| v.trim().to_lowercase()).collect()
        }
        _ => Vec::new(),
    }
}

/// The values a workflow condition may compare an enumerated attribute with; `None` for a
/// free-form attribute.
fn allowed_values(config: &TenantConfig, attribute: &str) -> Option<Vec<String>> {
    let words = |w: &[&str]| Some(w.iter().map(|s| s.to_string()).collect());
    match attribute {
        "conversation.queue" => Some(
            config
                .queues
                .keys()
                .map(|q| q.to_lowercase())
                .chain([DEFAULT_QUEUE.to_lowercase()])
                .collect(),
        ),
        "conversation.agent_status" => Some(
            BUILT_IN_STATUSES
                .iter()
                .map(|(n, _)| n.to_lowercase())
                .chain(config.agent_statuses.keys().map(|n| n.to_lowercase()))
                .collect(),
        ),
        "conversation.agent_status_group" => words(&["available", "busy", "away", "unavailable"]),
        "conversation.status" => words(&["open", "waiting", "solved", "closed"]),
        "conversation.priority" => words(&["low", "normal", "high", "urgent"]),
        "conversation.direction" => words(&["inbound", "outbound"]),
        "conversation.channel" | "channel" => Some(
            Channel::ALL
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
        ),
        "message.is_first" => words(&["true", "false"]),
        _ => None,
    }
}

/// Every leaf comparing an enumerated attribute names a value that exists: a queue, an agent
/// status, a status...
fn check_condition_values(config: &TenantConfig, c: &Condition, path: &str) -> Result<(), Invalid> {
    for (i, child) in c.all.iter().enumerate() {
        check_condition_values(config, child, &format!("{path}.all[{i}]"))?;
    }
    for (i, child) in c.any.iter().enumerate() {
        check_condition_values(config, child, &format!("{path}.any[{i}]"))?;
    }
    if let Some(child) = &c.not {
        check_condition_values(config, child, &format!("{path}.not"))?;
    }
    let Some(attribute) = c.attribute.as_deref() else {
        return Ok(());
    };
    let Some(allowed) = allowed_values(config, attribute) else {
        return Ok(());
    };
    let field = if c.values.is_empty() {
        "value"
    } else {
        "values"
    };
    for v in leaf_values(c) {
        if !allowed.contains(&v) {
            let what = attribute
                .rsplit('.')
                .next()
                .unwrap_or(attribute)
                .replace('_', " ");
            return Err(invalid(
                format!("{path}.{field}"),
                format!("no {what} {v:?}"),
            ));
        }
    }
    Ok(())
}

fn check_tag(field: &str, tag: &str) -> Result<(), Invalid> {
    let t = tag.trim();
    if t.is_empty() {
        return Err(invalid(field, "a tag must not be empty"));
    }
    if t.chars().count() > MAX_TAG_CHARS {
        return Err(invalid(
            field,
            format!("a tag is at most {MAX_TAG_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "a tag must not hold control characters"));
    }
    Ok(())
}

fn check_template(field: &str, template: &str) -> Result<(), Invalid> {
    crate::workflow::check_template(template).map_err(|reason| invalid(field, reason))
}

fn validate_workflow(config: &TenantConfig, w: &Workflow) -> Result<(), Invalid> {
    use crate::workflow::{MAX_TIME_TRIGGER_SECONDS, MIN_TIME_TRIGGER_SECONDS};
    non_empty("workflow.id", &w.id)?;
    if w.triggers.is_empty() {
        return Err(invalid(
            "workflow.triggers",
            "a workflow needs at least one trigger",
        ));
    }
    if w.triggers.len() > MAX_WORKFLOW_TRIGGERS {
        return Err(invalid(
            "workflow.triggers",
            format!("at most {MAX_WORKFLOW_TRIGGERS} triggers"),
        ));
    }
    for (i, t) in w.triggers.iter().enumerate() {
        let field = |f: &str| format!("workflow.triggers[{i}]{f}");
        match t {
            WorkflowTrigger::StatusChangedTo(s) if s.status == Status::Closed => {
                return Err(invalid(
                    field(".status"),
                    "workflows do not run for Closed conversations: use open, waiting or solved",
                ));
            }
            WorkflowTrigger::SurveyFeedbackReceived(s) if s.scores.is_empty() => {
                return Err(invalid(field(".scores"), "pick happy, not_happy or both"));
            }
            WorkflowTrigger::ConversationFormFieldUpdated(f)
                if f.field.as_deref().is_some_and(|f| f.trim().is_empty()) =>
            {
                return Err(invalid(
                    field(".field"),
                    "must not be empty (leave it out for any field)",
                ));
            }
            WorkflowTrigger::CustomerDidNotReplyFor(a)
            | WorkflowTrigger::AgentDidNotReplyFor(a)
            | WorkflowTrigger::SolvedUnmodifiedFor(a)
            | WorkflowTrigger::SolvedFor(a)
            | WorkflowTrigger::WaitingFor(a)
                if !(MIN_TIME_TRIGGER_SECONDS..=MAX_TIME_TRIGGER_SECONDS).contains(&a.seconds) =>
            {
                return Err(invalid(
                    field(".seconds"),
                    format!(
                        "{} is not between {MIN_TIME_TRIGGER_SECONDS} and \
                         {MAX_TIME_TRIGGER_SECONDS} (90 days)",
                        a.seconds
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Some(c) = &w.condition {
        condition::validate_with(
            c,
            "workflow.condition",
            crate::workflow::is_workflow_attribute,
        )
        .map_err(|(f, r)| invalid(f, r))?;
        check_condition_values(config, c, "workflow.condition")?;
    }
    if w.actions.is_empty() {
        return Err(invalid(
            "workflow.actions",
            "a workflow needs at least one action",
        ));
    }
    if w.actions.len() > MAX_WORKFLOW_ACTIONS {
        return Err(invalid(
            "workflow.actions",
            format!("at most {MAX_WORKFLOW_ACTIONS} actions"),
        ));
    }
    let last = w.actions.len() - 1;
    for (i, a) in w.actions.iter().enumerate() {
        let field = |f: &str| format!("workflow.actions[{i}]{f}");
        match a {
            WorkflowAction::CloseConversation(_) if i != last => {
                return Err(invalid(
                    field(""),
                    "close_conversation must be the last action",
                ));
            }
            WorkflowAction::SendMessage(m) => {
                non_empty(&field(".content"), &m.content)?;
                if m.content.chars().count() > MAX_WORKFLOW_MESSAGE_CHARS {
                    return Err(invalid(
                        field(".content"),
                        format!("at most {MAX_WORKFLOW_MESSAGE_CHARS} characters"),
                    ));
                }
                check_template(&field(".content"), &m.content)?;
            }
            WorkflowAction::ApplyTags(t) | WorkflowAction::RemoveTags(t) => {
                if t.tags.is_empty() {
                    return Err(invalid(field(".tags"), "name at least one tag"));
                }
                for (j, tag) in t.tags.iter().enumerate() {
                    check_tag(&field(&format!(".tags[{j}]")), tag)?;
                }
            }
            WorkflowAction::AddNote(n) => {
                non_empty(&field(".text"), &n.text)?;
                check_template(&field(".text"), &n.text)?;
            }
            WorkflowAction::CallApi(call) => {
                if !HTTP_METHODS.contains(&call.method.to_ascii_uppercase().as_str()) {
                    return Err(invalid(
                        field(".method"),
                        format!(
                            "{:?} is not one of {}",
                            call.method,
                            HTTP_METHODS.join(", ")
                        ),
                    ));
                }
                let host = call
                    .url
                    .strip_prefix("https://")
                    .or_else(|| call.url.strip_prefix("http://"))
                    .and_then(|rest| rest.split(['/', '?', '#']).next())
                    .filter(|host| !host.is_empty() && !host.contains("{{"));
                if host.is_none() {
                    return Err(invalid(
                        field(".url"),
                        "must be an http:// or https:// URL with a host (placeholders only \
                         after the host)",
                    ));
                }
                check_template(&field(".url"), &call.url)?;
                non_empty(&field(".content_type"), &call.content_type)?;
                for (name, value) in &call.headers {
                    let token = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !token {
                        return Err(invalid(
                            field(".headers"),
                            format!("{name:?} is not a valid header name"),
                        ));
                    }
                    check_template(&field(&format!(".headers.{name}")), value)?;
                }
                check_template(&field(".body"), &call.body)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl Processor for ConfigProcessor {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        let Input::Config(change) = input else {
            return Ok(Handled::No);
        };
        let entity = entity_of(&change.change);
        let tenant = cx.state.tenant_mut(cx.tenant);
        let last = tenant.versions.get(&entity).copied();
        let outcome = match last {
            Some(last) if change.version <= last => Err(invalid(
                "version",
                format!(
                    "stale: version {} is not after the applied version {last}",
                    change.version
                ),
            )),
            _ => apply(&tenant.config, &change.change),
        };
        // Whatever is accepted must be storable: the tenant's row (its config and versions)
        // goes to the changelog topic as one record.
        let outcome = outcome.and_then(|config| {
            let mut versions = tenant.versions.clone();
            versions.insert(entity.clone(), change.version);
            let bytes = serde_json::to_vec(&config).map_or(usize::MAX, |b| b.len())
                + serde_json::to_vec(&versions).map_or(usize::MAX, |b| b.len());
            if bytes > MAX_TENANT_CONFIG_BYTES {
                Err(invalid(
                    "change",
                    format!(
                        "the tenant's config would take {bytes} bytes, more than the limit of \
                         {MAX_TENANT_CONFIG_BYTES}"
                    ),
                ))
            } else {
                Ok(config)
            }
        });
        let event = match outcome {
            Ok(mut config) => {
                if let ConfigChangeKind::UpsertWorkflow(u) = &change.change {
                    // Its time triggers count from moments after this change.
                    config.workflow_since.insert(u.workflow.id.clone(), cx.now);
                }
                tenant.config = std::sync::Arc::new(config.compile());
                tenant.versions.insert(entity.clone(), change.version);
                ConfigEventKind::ConfigApplied(ConfigApplied { entity })
            }
            Err((field, reason)) => ConfigEventKind::ConfigRejected(ConfigRejected {
                entity,
                field,
                reason,
            }),
        };
        let id = cx.next_id();
        cx.emit(Output::Config(ConfigEvent {
            id,
            tenant: cx.tenant.to_string(),
            version: change.version,
            event,
        }));
        Ok(Handled::Yes)
    }
}
