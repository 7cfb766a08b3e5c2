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
    }
    Ok(next)
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
        let event = match outcome {
            Ok(config) => {
                tenant.config = config;
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
