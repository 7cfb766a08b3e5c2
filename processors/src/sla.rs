//! SLA breach detection in business time (SPEC §7, R-SLA).
//!
//! For each conversation the processor keeps the facts the clocks are made of: when it began,
//! when a bot handed it over, every customer message, every response, the Solved periods and
//! the close. The clock instances (one first response, one next reply per customer message
//! that follows a response, one resolution) are derived from those facts under the policy
//! that applies now, so switching policy, severity or queue recalculates everything exactly.
//! A due instant is computed from the instance's start, the Solved pauses and the business
//! calendar (the queue's working hours when the severity counts working hours only), and a
//! timer fires at it. Breaches and met targets already emitted are remembered, so each is
//! emitted once per metric instance, whatever is recalculated or replayed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use switchboard_schemas::*;

use crate::calendar::BusinessTime;
use crate::condition;
use crate::engine::{Ctx, Handled, IdBuilder, Rejection};
use crate::routing::message_facts;
use crate::state::{Conversation, SortedSet, Stamp, TenantConfig, Timer, TimerKind};
use crate::Processor;

pub struct Sla;

/// What the clocks of one conversation are made of.
///
/// Its lists are short (a few customer messages and responses, rarely more than one Solved
/// period, one timer per running clock) and kept inline up to those sizes, and its names are
/// shared strings: the row is one allocation, and copying it (which the engine does for each
/// record that changes it, to undo the record if it fails) allocates nothing. Stored as
/// before: a list as a sequence, a name as a string, so rows keep their bytes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SlaState {
    pub policy: Option<Arc<str>>,
    pub severity: Option<Arc<str>>,
    /// The opening message, to evaluate policy conditions again later.
    pub first_message: Option<FirstMessage>,
    pub created_at: i64,
    /// When the conversation first sat in a queue that is not a bot queue.
    pub handover_at: Stamp,
    pub customer_messages: SmallVec<[i64; 3]>,
    pub responses: Responses,
    /// Solved periods: (solved at, reopened at).
    pub pauses: SmallVec<[(i64, Stamp); 1]>,
    pub closed_at: Stamp,
    pub breached: SortedSet<(SlaMetric, u32)>,
    pub met: SortedSet<(SlaMetric, u32)>,
    /// Timer ids currently scheduled for this conversation (at most two clocks run at once:
    /// first response or next reply, and resolution): each the timers' own copy of the id,
    /// shared (stored as strings, as they always were).
    pub timers: SmallVec<[Arc<str>; 2]>,
    /// The due instants last announced (first response, next reply, resolution).
    pub announced: (Stamp, Stamp, Stamp),
}

/// The responses to a conversation: (time, by a human agent) each, packed as
/// `time * 2 + human` in one `i64` (8 bytes where the pair takes 16). Times are bounded far
/// inside `i64 / 2` (see [`Stamp`]); one outside is clamped to that range. Stored as the
/// sequence of pairs, so rows keep their bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Responses(SmallVec<[i64; 2]>);

impl Responses {
    const LIMIT: i64 = i64::MAX / 2;

    pub fn push(&mut self, at: i64, human: bool) {
        self.0
            .push(at.clamp(-Self::LIMIT, Self::LIMIT) * 2 + i64::from(human));
    }

    /// (time, by a human agent), in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (i64, bool)> + '_ {
        self.0
            .iter()
            .map(|p| (p.div_euclid(2), p.rem_euclid(2) == 1))
    }
}

impl Serialize for Responses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Responses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Responses, D::Error> {
        let pairs = SmallVec::<[(i64, bool); 2]>::deserialize(d)?;
        let mut r = Responses::default();
        for (at, human) in pairs {
            r.push(at, human);
        }
        Ok(r)
    }
}

/// A conversation's opening message as it is kept in memory: its postcard bytes, decoded only
/// when a policy with a condition is selected again (a routing or queue change, a config
/// change). Held as the message it was, it cost about 700 bytes per conversation; as bytes, a
/// third of that. Shared: the row is copied whenever a record changes it, the message never.
///
/// In a binary row it is written as those bytes exactly, which is how the message itself is
/// written, so rows keep their bytes; in JSON (`switchboard state`) it is the message.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstMessage(Arc<[u8]>);

impl FirstMessage {
    pub fn new(message: &InboundMessage) -> Result<FirstMessage, postcard::Error> {
        Ok(FirstMessage(postcard::to_allocvec(message)?.into()))
    }

    pub fn message(&self) -> Result<InboundMessage, postcard::Error> {
        postcard::from_bytes(&self.0)
    }
}

impl Serialize for FirstMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        if s.is_human_readable() {
            return self.message().map_err(S::Error::custom)?.serialize(s);
        }
        // A tuple of bytes: postcard writes each as itself with no length before them.
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in self.0.iter() {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for FirstMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FirstMessage, D::Error> {
        let message = InboundMessage::deserialize(d)?;
        FirstMessage::new(&message).map_err(serde::de::Error::custom)
    }
}

/// One clock instance derived from the facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub metric: SlaMetric,
    pub n: u32,
    pub start: i64,
    pub stop: Option<i64>,
}

/// The clock instances of a conversation. With `exclude_automated`, only human responses
/// count and the clocks start at the bot hand-over.
pub fn instances(s: &SlaState, exclude_automated: bool) -> Vec<Instance> {
    let origin = if exclude_automated {
        s.handover_at.get()
    } else {
        Some(s.created_at)
    };
    let Some(origin) = origin else {
        return Vec::new();
    };
    let responses: Vec<i64> = s
        .responses
        .iter()
        .filter(|(t, human)| *t >= origin && (*human || !exclude_automated))
        .map(|(t, _)| t)
        .collect();
    let mut out = vec![Instance {
        metric: SlaMetric::FirstResponse,
        n: 0,
        start: origin,
        stop: responses.first().copied(),
    }];
    // Next reply: from the first customer message after each response to the next response.
    for (i, r) in responses.iter().enumerate() {
        let next_response = responses.get(i + 1).copied();
        let asked = s
            .customer_messages
            .iter()
            .copied()
            .find(|m| *m > *r && next_response.is_none_or(|n| *m < n));
        if let Some(m) = asked {
            out.push(Instance {
                metric: SlaMetric::NextReply,
                n: i as u32,
                start: m,
                stop: responses.iter().copied().find(|t| *t > m),
            });
        }
    }
    // Resolution: until Solved; a reopen resumes it (the Solved period is a pause).
    let solved_now = s
        .pauses
        .last()
        .filter(|(_, end)| end.is_none())
        .map(|(t, _)| *t);
    out.push(Instance {
        metric: SlaMetric::Resolution,
        n: 0,
        start: origin,
        stop: solved_now,
    });
    out
}

/// Business time of [start, end) outside the Solved pauses.
fn elapsed(clock: &BusinessTime, pauses: &[(i64, Stamp)], start: i64, end: i64) -> i64 {
    let paused: i64 = pauses
        .iter()
        .map(|(a, b)| {
            let (a, b) = ((*a).max(start), b.get().unwrap_or(end).min(end));
            if a < b {
                clock.elapsed(a, b)
            } else {
                0
            }
        })
        .sum();
    clock.elapsed(start, end) - paused
}

/// When `budget` of business time counted from `start`, outside the pauses, runs out; none
/// while an open pause holds the clock.
fn due_at(clock: &BusinessTime, pauses: &[(i64, Stamp)], start: i64, budget: i64) -> Option<i64> {
    let mut cursor = start;
    let mut left = budget;
    for (from, to) in pauses {
        let to = to.get();
        if to.is_some_and(|t| t <= cursor) {
            continue;
        }
        if *from > cursor {
            let run = clock.elapsed(cursor, *from);
            if run >= left {
                return clock.add(cursor, left);
            }
            left -= run;
        }
        cursor = to?.max(cursor);
    }
    clock.add(cursor, left)
}

/// The first enabled policy valid at `now` whose queue filter admits the conversation's queue
/// and whose condition holds (SPEC §7.1).
pub fn select_policy<'a>(
    config: &'a TenantConfig,
    conv: &Conversation,
    first: Option<&FirstMessage>,
    now: i64,
) -> Option<&'a SlaPolicy> {
    let queue = conv.queue_id.as_deref()?;
    // Decoded when the first condition asks; a message that does not decode (it was encoded
    // by this engine, so it does) holds no condition.
    let mut decoded: Option<Option<InboundMessage>> = None;
    config.sla_policies_in_order().find(|p| {
        let valid = p.enabled
            && p.valid_from.is_none_or(|f| f <= now)
            && p.valid_to.is_none_or(|t| now <= t);
        let listed = p.queue_ids.iter().any(|q| q == queue);
        let admits = match p.queue_filter {
            QueueFilter::All => true,
            QueueFilter::Apply => listed,
            QueueFilter::Ignore => !listed,
        };
        if !(valid && admits) {
            return false;
        }
        let Some(c) = &p.condition else {
            return true;
        };
        let message = decoded.get_or_insert_with(|| first.and_then(|f| f.message().ok()));
        message
            .as_ref()
            .is_some_and(|m| condition::eval(c, &message_facts(config, m, &conv.tags)))
    })
}

fn budget(sev: &Severity, metric: SlaMetric) -> Option<i64> {
    let minutes = match metric {
        SlaMetric::FirstResponse => sev.first_response_minutes,
        SlaMetric::NextReply => sev.next_reply_minutes,
        SlaMetric::Resolution => sev.resolution_minutes,
    };
    minutes.map(|m| i64::from(m) * 60_000)
}

/// The business clock of a severity for a conversation in `queue`.
fn business_time<'a>(
    config: &'a TenantConfig,
    sev: &Severity,
    queue: Option<&str>,
) -> BusinessTime<'a> {
    match (sev.counting, queue.and_then(|q| config.calendar_of(q))) {
        (Counting::WorkingHours, Some(c)) => BusinessTime::Hours(c),
        _ => BusinessTime::Always,
    }
}

/// Whether timer `id` is the one of clock (`metric`, `n`) of conversation `conv` of `tenant`:
/// `{tenant}/sla/{conv}/{metric}/{n}`, compared without building it.
fn names_clock(id: &str, tenant: &str, conv: &str, metric: &str, n: u32) -> bool {
    id.strip_prefix(tenant)
        .and_then(|r| r.strip_prefix("/sla/"))
        .and_then(|r| r.strip_prefix(conv))
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_prefix(metric))
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| is_decimal_of(r, n))
}

/// Whether `s` is `n` written as [`IdBuilder::int`] writes it (no sign, no leading zero).
fn is_decimal_of(s: &str, n: u32) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u32>() == Ok(n)
}

/// The due instants last announced (first response, next reply, resolution).
pub fn announced(s: &SlaState) -> (Option<i64>, Option<i64>, Option<i64>) {
    (
        s.announced.0.get(),
        s.announced.1.get(),
        s.announced.2.get(),
    )
}

fn metric_name(m: SlaMetric) -> &'static str {
    match m {
        SlaMetric::FirstResponse => "first_response",
        SlaMetric::NextReply => "next_reply",
        SlaMetric::Resolution => "resolution",
    }
}

fn emit(cx: &mut Ctx, conv: &str, event: SlaEventKind) {
    let id = cx.next_id();
    cx.emit(Output::Sla(SlaEvent {
        id,
        tenant: cx.tenant.to_string(),
        conversation_id: conv.to_string(),
        event,
    }));
}

/// Why `evaluate` runs: it announces the policy when it first applies or changes.
#[derive(PartialEq, Clone, Copy)]
enum Reason {
    Progress,
    Reselect,
    Recalculate,
}

/// Re-derive the clocks of one conversation at `now`: select the policy (on `Reselect`),
/// emit due breaches and met targets, announce changed due times, and schedule timers.
fn evaluate(cx: &mut Ctx, conv_id: &str, reason: Reason) {
    let tenant = cx.tenant;
    let Some(conv) = cx.state.conversation(tenant, conv_id) else {
        return;
    };
    let queue = conv.queue_id.clone();
    let selected = (reason == Reason::Reselect).then(|| {
        let s = cx.state.sla.get(tenant, conv_id)?;
        let config = cx.state.config(tenant);
        select_policy(&config, conv, s.first_message.as_ref(), cx.now).map(|p| p.id.clone())
    });
    // Taken out of its row while the clocks are re-derived, and put back (changed) at the
    // end: the row stays where it is (no removal and insertion, no key to look up).
    let Some(mut s) = cx.state.sla.get_mut(tenant, conv_id).map(std::mem::take) else {
        return;
    };
    let config = cx.state.shared_config(tenant);
    // Whether it had a policy, and whether the policy or severity changed: compared as they
    // change rather than copied before.
    let had_policy = s.policy.is_some();
    let mut changed = false;
    if let Some(selected) = selected {
        if selected.as_deref() != s.policy.as_deref() {
            let severity = selected
                .as_ref()
                .and_then(|id| config.sla_policies.get(id))
                .map(|p| Arc::from(p.default_severity.as_str()));
            changed = true;
            s.severity = severity;
            s.policy = selected.map(Arc::from);
        }
    }
    let policy = s
        .policy
        .as_deref()
        .and_then(|id| config.sla_policies.get(id));
    // A severity removed from the policy falls back to the default.
    if let Some(p) = policy {
        if !p
            .severities
            .iter()
            .any(|v| Some(v.name.as_str()) == s.severity.as_deref())
            && s.severity.as_deref() != Some(p.default_severity.as_str())
        {
            s.severity = Some(Arc::from(p.default_severity.as_str()));
            changed = true;
        }
    }
    let severity = policy.and_then(|p| {
        p.severities
            .iter()
            .find(|v| Some(v.name.as_str()) == s.severity.as_deref())
    });
    // Timers are reconciled, not replaced: one already due at the same instant stays as it is.
    let previous_timers = std::mem::take(&mut s.timers);
    let mut dues: (Option<i64>, Option<i64>, Option<i64>) = (None, None, None);
    if let (Some(p), Some(sev), None) = (policy, severity, s.closed_at.get()) {
        let clock = business_time(&config, sev, queue.as_deref());
        for inst in instances(&s, p.exclude_automated) {
            let k = (inst.metric, inst.n);
            // Settled: stopped, and its met target or breach emitted. Progress changes
            // neither the policy, the severity nor the calendar (each of those re-selects or
            // recalculates), and a stopped clock's time is spent: nothing about it can change.
            if reason == Reason::Progress
                && inst.stop.is_some()
                && (s.met.contains(&k) || s.breached.contains(&k))
            {
                continue;
            }
            let Some(budget) = budget(sev, inst.metric) else {
                continue;
            };
            let due = due_at(&clock, &s.pauses, inst.start, budget);
            match inst.stop {
                Some(stop) => {
                    let spent = elapsed(&clock, &s.pauses, inst.start, stop);
                    if spent <= budget && !s.breached.contains(&k) && s.met.insert(k) {
                        emit(
                            cx,
                            conv_id,
                            SlaEventKind::SlaMet(SlaMet {
                                metric: inst.metric,
                                elapsed_business_ms: spent,
                            }),
                        );
                    } else if spent > budget && s.breached.insert(k) {
                        let due_at = due.unwrap_or(stop);
                        emit(
                            cx,
                            conv_id,
                            SlaEventKind::SlaBreached(SlaBreached {
                                metric: inst.metric,
                                due_at,
                                breached_at: cx.now,
                            }),
                        );
                    }
                }
                None => {
                    let Some(due) = due else { continue };
                    match inst.metric {
                        SlaMetric::FirstResponse => dues.0 = Some(due),
                        SlaMetric::NextReply => dues.1 = Some(due),
                        SlaMetric::Resolution => dues.2 = Some(due),
                    }
                    if s.breached.contains(&k) {
                        continue;
                    }
                    if due <= cx.now {
                        s.breached.insert(k);
                        emit(
                            cx,
                            conv_id,
                            SlaEventKind::SlaBreached(SlaBreached {
                                metric: inst.metric,
                                due_at: due,
                                breached_at: cx.now,
                            }),
                        );
                    } else {
                        let metric = metric_name(inst.metric);
                        // The clock's timer id: the one it had, or a new one.
                        let id = previous_timers
                            .iter()
                            .find(|id| names_clock(id, tenant, conv_id, metric, inst.n))
                            .cloned()
                            .unwrap_or_else(|| {
                                IdBuilder::new(tenant.len() + conv_id.len() + 24)
                                    .str(tenant)
                                    .str("/sla/")
                                    .str(conv_id)
                                    .str("/")
                                    .str(metric)
                                    .str("/")
                                    .int(i64::from(inst.n))
                                    .build()
                                    .into()
                            });
                        if cx.state.timers.due_of(&id) != Some(due) {
                            cx.schedule_shared(
                                due,
                                std::sync::Arc::clone(&id),
                                TimerKind::Wake {
                                    purpose: "sla".into(),
                                    subject: cx.state.conversation_key(cx.tenant, conv_id),
                                },
                            );
                        }
                        let id = cx.state.timers.shared_id(&id).unwrap_or(id);
                        s.timers.push(id);
                    }
                }
            }
        }
    }
    for id in previous_timers {
        if !s.timers.contains(&id) {
            cx.state.cancel(&id);
        }
    }
    let announce = match (had_policy, &s.policy) {
        (false, Some(p)) => Some(SlaEventKind::SlaApplied(SlaApplied {
            policy_id: p.to_string(),
            severity: s.severity.as_deref().unwrap_or_default().to_string(),
            first_response_due: dues.0,
            next_reply_due: dues.1,
            resolution_due: dues.2,
        })),
        _ if changed || (reason != Reason::Progress && dues != announced(&s)) => {
            Some(SlaEventKind::SlaRecalculated(SlaRecalculated {
                policy_id: s.policy.as_deref().map(String::from),
                severity: s.severity.as_deref().map(String::from),
                first_response_due: dues.0,
                next_reply_due: dues.1,
                resolution_due: dues.2,
            }))
        }
        _ => None,
    };
    if let Some(event) = announce {
        s.announced = (dues.0.into(), dues.1.into(), dues.2.into());
        emit(cx, conv_id, event);
    }
    if let Some(row) = cx.state.sla.get_mut(tenant, conv_id) {
        *row = s;
    }
}

fn on_conversation_event(cx: &mut Ctx, e: &ConversationEvent) {
    let tenant = cx.tenant;
    let now = cx.now;
    let is_bot_queue =
        |cx: &Ctx, q: &str| cx.state.config(cx.tenant).queue(q).is_some_and(|q| q.bot);
    let reason = match &e.event {
        ConversationEventKind::Opened(_) => {
            let first = match cx.input() {
                Some(Input::Inbound(m)) => FirstMessage::new(m).ok(),
                _ => None,
            };
            let s = SlaState {
                first_message: first,
                created_at: now,
                ..SlaState::default()
            };
            let key = cx.state.conversation_key(tenant, &e.conversation_id);
            cx.state.sla.insert(tenant, key, s);
            return;
        }
        ConversationEventKind::MessageReceived(_) => {
            if let Some(s) = cx.state.sla.get_mut(tenant, e.conversation_id.as_str()) {
                s.customer_messages.push(now);
            }
            Reason::Progress
        }
        ConversationEventKind::Routed(r) => {
            let bot = is_bot_queue(cx, &r.queue_id);
            if let Some(s) = cx.state.sla.get_mut(tenant, e.conversation_id.as_str()) {
                if !bot && s.handover_at.is_none() {
                    s.handover_at = Some(now).into();
                }
            }
            Reason::Reselect
        }
        ConversationEventKind::QueueChanged(q) => {
            let bot = is_bot_queue(cx, &q.to_queue);
            if let Some(s) = cx.state.sla.get_mut(tenant, e.conversation_id.as_str()) {
                if !bot && s.handover_at.is_none() {
                    s.handover_at = Some(now).into();
                }
            }
            Reason::Reselect
        }
        ConversationEventKind::TagsChanged(_) => Reason::Progress,
        ConversationEventKind::StatusChanged(c) => {
            if let Some(s) = cx.state.sla.get_mut(tenant, e.conversation_id.as_str()) {
                if c.to == Status::Solved {
                    s.pauses.push((now, Stamp::UNSET));
                } else if c.from == Status::Solved {
                    if let Some(last) = s.pauses.last_mut() {
                        last.1 = Some(now).into();
                    }
                }
                if c.to == Status::Closed {
                    s.closed_at = Some(now).into();
                }
            }
            Reason::Progress
        }
        _ => return,
    };
    evaluate(cx, &e.conversation_id, reason);
}

impl Processor for Sla {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        let Input::Command(Command {
            conversation_id,
            command: CommandKind::SetSeverity(sev),
            ..
        }) = input
        else {
            return Ok(Handled::No);
        };
        let tenant = cx.tenant;
        let Some(id) = cx.state.resolve_conversation(tenant, conversation_id) else {
            return Err(Rejection(format!(
                "unknown conversation {conversation_id:?}"
            )));
        };
        let policy = cx
            .state
            .sla
            .get(tenant, id.as_str())
            .and_then(|s| s.policy.clone());
        let Some(policy) =
            policy.and_then(|p| cx.state.config(tenant).sla_policies.get(&*p).cloned())
        else {
            return Err(Rejection(format!(
                "no SLA policy applies to conversation {id:?}"
            )));
        };
        if !policy.severities.iter().any(|v| v.name == sev.severity) {
            return Err(Rejection(format!(
                "SLA policy {:?} has no severity {:?}",
                policy.id, sev.severity
            )));
        }
        if let Some(s) = cx.state.sla.get_mut(tenant, id.as_str()) {
            s.severity = Some(Arc::from(sev.severity.as_str()));
        }
        evaluate(cx, &id, Reason::Recalculate);
        Ok(Handled::Yes)
    }

    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        match output {
            Output::Conversation(e) if e.tenant == cx.tenant => on_conversation_event(cx, e),
            Output::Outbound(m) if m.tenant == cx.tenant && m.kind != OutboundKind::Survey => {
                let now = cx.now;
                if let Some(s) = cx.state.sla.get_mut(cx.tenant, m.conversation_id.as_str()) {
                    s.responses.push(now, m.kind == OutboundKind::Agent);
                    evaluate(cx, &m.conversation_id, Reason::Progress);
                }
            }
            Output::Config(ConfigEvent {
                event: ConfigEventKind::ConfigApplied(a),
                tenant,
                ..
            }) if *tenant == cx.tenant
                && (a.entity.starts_with("sla_policy")
                    || a.entity.starts_with("queue/")
                    || a.entity.starts_with("working_hours/")) =>
            {
                // Policies changed: re-select for every conversation SLA still tracks.
                let open: Vec<String> = cx
                    .state
                    .sla
                    .rows_of(cx.tenant)
                    .into_iter()
                    .filter(|(_, s)| s.closed_at.is_none())
                    .map(|(id, _)| id.to_string())
                    .collect();
                for id in open {
                    evaluate(cx, &id, Reason::Reselect);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            if purpose == "sla" {
                evaluate(cx, subject, Reason::Progress);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> InboundMessage {
        let mut m = InboundMessage::text(
            "m-1",
            "acme",
            Channel::Email,
            "ana@example.com",
            "support@acme.example",
            "My order never arrived 📦",
        );
        m.person = Some(Person {
            id: Some("p-7".into()),
            tags: vec!["vip".into()],
            ..Person::default()
        });
        m.email = Some(EmailHeaders {
            from: "ana@example.com".into(),
            to: vec!["support@acme.example".into()],
            subject: "Order 1234".into(),
            ..EmailHeaders::default()
        });
        m.custom.insert("plan".into(), "gold".into());
        m
    }

    /// R-SLA-6: a clock's timer is found by its id, and only by its own.
    #[test]
    fn timer_ids_name_their_clock_only() {
        let id = "acme/sla/cv-1/next_reply/12";
        assert!(names_clock(id, "acme", "cv-1", "next_reply", 12));
        assert!(!names_clock(id, "acme", "cv-1", "next_reply", 1));
        assert!(!names_clock(id, "acme", "cv-1", "first_response", 12));
        assert!(!names_clock(id, "acme", "cv-12", "next_reply", 12));
        assert!(!names_clock(id, "acm", "cv-1", "next_reply", 12));
        assert!(names_clock(
            "acme/sla/cv-1/resolution/0",
            "acme",
            "cv-1",
            "resolution",
            0
        ));
        assert!(!names_clock(
            "acme/sla/cv-1/resolution/00",
            "acme",
            "cv-1",
            "resolution",
            0
        ));
        assert!(!names_clock(
            "acme/sla/cv-1/resolution/+1",
            "acme",
            "cv-1",
            "resolution",
            1
        ));
    }

    /// R-RUN-2: an SLA row's compact times and packed responses are stored as the options and
    /// pairs they were, so a store written before restores the same row, and a time no engine
    /// writes (`i64::MIN`) is refused rather than read as unset.
    #[test]
    fn sla_row_keeps_its_bytes() {
        let mut s = SlaState {
            created_at: 5,
            handover_at: Some(7).into(),
            customer_messages: SmallVec::from_slice(&[6, 10]),
            closed_at: Some(30).into(),
            announced: (Stamp::UNSET, Some(20).into(), Stamp::UNSET),
            ..SlaState::default()
        };
        s.responses.push(9, true);
        s.responses.push(11, false);
        s.pauses.push((12, Stamp::UNSET));
        s.pauses.push((14, Some(16).into()));
        s.met.insert((SlaMetric::FirstResponse, 0));
        let as_before = (
            None::<String>,
            None::<String>,
            None::<InboundMessage>,
            5i64,
            Some(7i64),
            vec![6i64, 10],
            vec![(9i64, true), (11i64, false)],
            vec![(12i64, None::<i64>), (14, Some(16i64))],
            Some(30i64),
            Vec::<(SlaMetric, u32)>::new(),
            vec![(SlaMetric::FirstResponse, 0u32)],
            Vec::<String>::new(),
            (None::<i64>, Some(20i64), None::<i64>),
        );
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&as_before).unwrap());
        assert_eq!(postcard::from_bytes::<SlaState>(&bytes).unwrap(), s);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["handover_at"], serde_json::json!(7));
        assert_eq!(
            json["responses"],
            serde_json::json!([[9, true], [11, false]])
        );
        assert_eq!(json["pauses"], serde_json::json!([[12, null], [14, 16]]));
        assert_eq!(json["announced"], serde_json::json!([null, 20, null]));
        assert_eq!(serde_json::from_value::<SlaState>(json).unwrap(), s);
        let responses: Vec<(i64, bool)> = s.responses.iter().collect();
        assert_eq!(responses, vec![(9, true), (11, false)]);
        let corrupt = postcard::to_allocvec(&Some(i64::MIN)).unwrap();
        assert!(postcard::from_bytes::<Stamp>(&corrupt).is_err());
    }

    /// R-SLA-1: the opening message kept as bytes is stored exactly as the message was (a
    /// store written before reads the same, and rows keep their bytes), reads back as the
    /// message, and shows as the message in JSON (`switchboard state`).
    #[test]
    fn first_message_is_stored_as_the_message_was() {
        let m = message();
        let kept = FirstMessage::new(&m).unwrap();
        let as_bytes = postcard::to_allocvec(&Some(kept.clone())).unwrap();
        assert_eq!(as_bytes, postcard::to_allocvec(&Some(&m)).unwrap());
        let read: Option<FirstMessage> = postcard::from_bytes(&as_bytes).unwrap();
        assert_eq!(read.unwrap().message().unwrap(), m);
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::to_value(&m).unwrap()
        );
        let from_json: FirstMessage =
            serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(from_json, kept);
    }
}
