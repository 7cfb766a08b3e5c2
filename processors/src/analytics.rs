//! Analytics (SPEC §11 `cc.analytics`, R-RUN-4): per tenant and queue, and per tenant and
//! agent, what happened in each tumbling window of event time: conversations offered,
//! assigned, abandoned and solved; time to assign, first response time and handling time
//! (count, sum, max, p50, p90); SLA targets met and breached per metric; CSAT answers; the
//! sentiment of customer messages.
//!
//! The processor reads what the other processors emit. Each figure belongs to the window of
//! the moment it happened (the record's event time, or a timer's due time). A window is
//! emitted once, by a timer at its end plus the grace period ([`Settings`]), one record per
//! queue and agent that had anything, then forgotten. Each queue and agent has one state row
//! holding its open windows (usually one; two while the last one's grace period runs), so a
//! figure is one lookup without allocating, and the row lives as long as the queue or agent. A figure for a window already emitted
//! (a late record) is emitted at once as a *correction* record, never dropped. The
//! accumulators are state rows like any other, so a restart or a replay emits exactly the
//! same records.
//!
//! Percentiles come from a sketch kept per distribution: DDSketch's logarithmic buckets
//! (relative accuracy 1%), stored sparse (only the buckets that hold values), so a window
//! with a few durations costs a few bytes rather than the kilobytes of a dense store.
//!
//! [`Settings`]: crate::engine::Settings

use std::sync::Arc;

use hashbrown::Equivalent;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use switchboard_schemas::*;

use crate::engine::Ctx;
use crate::state::{Timer, TimerKind};
use crate::Processor;

pub struct Analytics;

/// The default window and grace period: one minute, and 30 seconds for stragglers.
pub const DEFAULT_WINDOW_MS: i64 = 60_000;
pub const DEFAULT_GRACE_MS: i64 = 30_000;

const PURPOSE: &str = "analytics";

/// DDSketch's γ for a relative accuracy α of 1%: (1 + α) / (1 − α).
const GAMMA: f64 = 1.01 / 0.99;

/// A distribution of durations in ms: exact count, sum and max, and a sparse DDSketch for
/// the quantiles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Durations {
    count: u64,
    sum: i64,
    max: i64,
    /// (bucket, values in it), by bucket. Bucket 0 holds values under 1 ms; bucket k ≥ 1 the
    /// values in (γ^(k−1), γ^k]. A few inline: most windows hold a few durations.
    buckets: SmallVec<[(u16, u32); 4]>,
}

impl Durations {
    pub fn add(&mut self, ms: i64) {
        let ms = ms.max(0);
        self.count += 1;
        self.sum = self.sum.saturating_add(ms);
        self.max = self.max.max(ms);
        let key = if ms < 1 {
            0
        } else {
            ((ms as f64).ln() / GAMMA.ln())
                .ceil()
                .clamp(1.0, u16::MAX as f64) as u16
        };
        match self.buckets.binary_search_by_key(&key, |b| b.0) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (key, 1)),
        }
    }

    /// The `q` quantile (0 ≤ q ≤ 1), within 1% of a true value; none when empty.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank + 1 == self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for &(key, n) in &self.buckets {
            seen += u64::from(n);
            if seen > rank {
                if key == 0 {
                    return Some(0);
                }
                // The bucket's midpoint in relative terms: 2γ^k / (γ + 1).
                let value = 2.0 * GAMMA.powi(i32::from(key)) / (GAMMA + 1.0);
                return Some((value.round() as i64).min(self.max));
            }
        }
        Some(self.max)
    }

    fn record(&self) -> Distribution {
        Distribution {
            count: self.count as i64,
            sum_ms: self.sum,
            max_ms: self.max,
            p50_ms: self.quantile(0.5),
            p90_ms: self.quantile(0.9),
        }
    }
}

/// One queue's or agent's counts in one window, as they accumulate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    offered: u64,
    assigned: u64,
    abandoned: u64,
    solved: u64,
    /// Per SLA metric (first response, next reply, resolution): met, breached.
    sla: [[u64; 2]; 3],
    /// Happy, not happy.
    csat: [u64; 2],
    /// Positive, neutral, negative.
    sentiment: [u64; 3],
}

/// The three distributions of a window.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    TimeToAssign,
    FirstResponse,
    Handling,
}

/// One queue's or agent's window not yet emitted: its start, counts and distributions (by
/// [`Measure`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct OpenWindow {
    pub start: i64,
    pub figures: Figures,
    pub durations: [Durations; 3],
}

/// A queue's or agent's open windows, by start: one, or two while the older one's grace
/// period runs (more only when the grace period is longer than a window).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct OpenWindows {
    pub windows: SmallVec<[OpenWindow; 1]>,
}

impl OpenWindows {
    /// The window starting at `start`, made when missing; and whether it was.
    fn at(&mut self, start: i64) -> (&mut OpenWindow, bool) {
        match self.windows.binary_search_by_key(&start, |w| w.start) {
            Ok(i) => (&mut self.windows[i], false),
            Err(i) => {
                let window = OpenWindow {
                    start,
                    ..OpenWindow::default()
                };
                self.windows.insert(i, window);
                (&mut self.windows[i], true)
            }
        }
    }
}

/// The open window of `(dimension, id)` starting at `start`, made when missing (the row is
/// marked changed): how a store in the former layout, a row per window, is loaded.
pub(crate) fn adopt<'a>(
    state: &'a mut crate::state::State,
    tenant: &str,
    dimension: AnalyticsDimension,
    id: &str,
    start: i64,
) -> &'a mut OpenWindow {
    let row = state.analytics.get_or_insert_with(
        tenant,
        (dimension, Arc::from(id)),
        OpenWindows::default,
    );
    row.at(start).0
}

/// Whose figures a row holds: a queue's or an agent's (by id).
pub type Subject = (AnalyticsDimension, Arc<str>);

/// A [`Subject`] as looked up: borrowed, so finding a row allocates nothing. It hashes as the
/// tuple does (field by field, the id as a `str`).
#[derive(Hash, Clone, Copy)]
struct SubjectRef<'a>(AnalyticsDimension, &'a str);

impl Equivalent<Subject> for SubjectRef<'_> {
    fn equivalent(&self, k: &Subject) -> bool {
        self.0 == k.0 && self.1 == &*k.1
    }
}

/// What the analytics remember of a conversation: when it was first assigned, and whether
/// an agent has answered it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct ConversationFacts {
    pub assigned_at: Option<i64>,
    pub responded: bool,
}

/// How far back the wallboard looks: the last hour of closed windows.
pub const HOUR_MS: i64 = 3_600_000;
/// How many of the latest breaches and negative-sentiment conversations a tenant keeps.
pub const NOTABLE_KEPT: usize = 10;

/// The wallboard's memory of one queue's last hour: per window (by start), SLA targets met,
/// SLA targets breached, CSAT happy, CSAT not happy. Folded in as windows close (and as
/// corrections come), pruned to the hour; one small row per queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct QueueHour {
    pub windows: Vec<(i64, [u32; 4])>,
}

impl QueueHour {
    /// (met, breached, happy, not happy) over the windows that start at or after `since`.
    pub fn totals(&self, since: i64) -> [u64; 4] {
        let mut t = [0u64; 4];
        for (_, w) in self.windows.iter().filter(|(start, _)| *start >= since) {
            for (t, w) in t.iter_mut().zip(w) {
                *t += u64::from(*w);
            }
        }
        t
    }
}

/// A conversation a supervisor should look at: an SLA breach or a negative message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Notable {
    pub conversation: Arc<str>,
    pub queue: Arc<str>,
    /// The breached metric (`first_response`, `next_reply`, `resolution`) or `negative`.
    pub what: Arc<str>,
    pub at: i64,
}

/// The keys of a tenant's two lists in [`crate::state::State::notable`].
pub const BREACHES: &str = "breaches";
pub const NEGATIVE: &str = "negative";

fn metric_name(m: SlaMetric) -> &'static str {
    match m {
        SlaMetric::FirstResponse => "first_response",
        SlaMetric::NextReply => "next_reply",
        SlaMetric::Resolution => "resolution",
    }
}

fn metric_index(m: SlaMetric) -> usize {
    match m {
        SlaMetric::FirstResponse => 0,
        SlaMetric::NextReply => 1,
        SlaMetric::Resolution => 2,
    }
}

/// The window of `cx.now`: its start, its due time, and whether it was already emitted, so
/// what arrives for it now is a correction. A record comes after every timer due by stream
/// time, so its window was emitted when its due time has passed. Timers fire in due order,
/// and a window's is due after every moment in it: a timer's work is never late, even when
/// stream time jumped past the window's due time (a tick after a quiet night).
fn window_of(cx: &Ctx) -> (i64, i64, bool) {
    let (window, grace) = (
        cx.settings.analytics_window_ms,
        cx.settings.analytics_grace_ms,
    );
    let start = cx.now.div_euclid(window) * window;
    let due = start.saturating_add(window).saturating_add(grace);
    let fired_through = if cx.is_timer() {
        cx.now
    } else {
        cx.state.stream_time()
    };
    (start, due, due <= fired_through)
}

/// Make sure the window starting at `start` will be emitted at `due`: one timer per tenant
/// and window (scheduling it again changes nothing).
fn schedule_window(cx: &mut Ctx, start: i64, due: i64) {
    let tenant = cx.tenant;
    let timer = Timer {
        tenant: cx.state.tenant_name(tenant),
        kind: TimerKind::Wake {
            purpose: PURPOSE.into(),
            subject: start.to_string().into(),
        },
    };
    cx.state
        .schedule(due, format!("{tenant}/analytics/{start}"), timer);
}

/// Add to the counts of `(dimension, key)` in the window of `cx.now`.
fn add(cx: &mut Ctx, dimension: AnalyticsDimension, key: &str, f: impl FnOnce(&mut Figures)) {
    add_to(cx, dimension, key, |w| f(&mut w.figures));
}

/// Add to the figures of `(dimension, key)` in the window of `cx.now`: to its open window,
/// or, when that window was already emitted, in a correction record at once.
fn add_to(cx: &mut Ctx, dimension: AnalyticsDimension, key: &str, f: impl FnOnce(&mut OpenWindow)) {
    if key.is_empty() {
        return;
    }
    let (start, due, late) = window_of(cx);
    if late {
        let mut window = OpenWindow {
            start,
            ..OpenWindow::default()
        };
        f(&mut window);
        remember_hour(cx, dimension, key, &window);
        emit(cx, dimension, key, &window, true);
        return;
    }
    let tenant = cx.tenant;
    let subject = SubjectRef(dimension, key);
    let row = match cx.state.analytics.get_mut(tenant, &subject) {
        Some(row) => row,
        None => cx.state.analytics.get_or_insert_with(
            tenant,
            (dimension, Arc::from(key)),
            OpenWindows::default,
        ),
    };
    let (window, new) = row.at(start);
    f(window);
    // Most new windows belong to a window start already scheduled: the state remembers the
    // latest one per tenant (a cache; a miss schedules again, which changes nothing).
    if new && cx.state.scheduled_windows.get(tenant) != Some(&start) {
        schedule_window(cx, start, due);
        cx.state.scheduled_windows.insert(tenant.to_string(), start);
    }
}

/// Add a duration to `measure` of `(dimension, key)` in the window of `cx.now`.
fn add_duration(cx: &mut Ctx, dimension: AnalyticsDimension, key: &str, measure: Measure, ms: i64) {
    add_to(cx, dimension, key, |w| {
        w.durations[measure as usize].add(ms)
    });
}

fn emit(cx: &mut Ctx, dimension: AnalyticsDimension, key: &str, w: &OpenWindow, correction: bool) {
    let window = cx.settings.analytics_window_ms;
    let id = cx.next_id();
    let (f, d) = (&w.figures, &w.durations);
    let n = |v: u64| v as i64;
    let sla = |i: usize| SlaCounts {
        first_response: n(f.sla[0][i]),
        next_reply: n(f.sla[1][i]),
        resolution: n(f.sla[2][i]),
    };
    cx.emit(Output::Analytics(AnalyticsWindow {
        id,
        tenant: cx.tenant.to_string(),
        dimension,
        key: key.to_string(),
        window_start: w.start,
        window_end: w.start.saturating_add(window),
        correction,
        offered: n(f.offered),
        assigned: n(f.assigned),
        abandoned: n(f.abandoned),
        solved: n(f.solved),
        time_to_assign: d[Measure::TimeToAssign as usize].record(),
        first_response: d[Measure::FirstResponse as usize].record(),
        handling: d[Measure::Handling as usize].record(),
        sla_met: sla(0),
        sla_breached: sla(1),
        csat_happy: n(f.csat[0]),
        csat_not_happy: n(f.csat[1]),
        sentiment_positive: n(f.sentiment[0]),
        sentiment_neutral: n(f.sentiment[1]),
        sentiment_negative: n(f.sentiment[2]),
    }));
}

/// The window starting at `start` is over: emit each queue's and agent's figures in it
/// (queues, then agents, by id) and forget them. A row whose windows are all emitted goes.
fn close_window(cx: &mut Ctx, start: i64) {
    let tenant = cx.tenant;
    let subjects: Vec<Subject> = cx
        .state
        .analytics
        .rows_of(tenant)
        .into_iter()
        .filter(|(_, row)| row.windows.iter().any(|w| w.start == start))
        .map(|(k, _)| k.clone())
        .collect();
    for (dimension, key) in subjects {
        let Some(row) = cx
            .state
            .analytics
            .get_mut(tenant, &SubjectRef(dimension, &key))
        else {
            continue;
        };
        let Ok(i) = row.windows.binary_search_by_key(&start, |w| w.start) else {
            continue;
        };
        let window = row.windows.remove(i);
        if row.windows.is_empty() {
            cx.state
                .analytics
                .remove(tenant, &SubjectRef(dimension, &key));
        }
        remember_hour(cx, dimension, &key, &window);
        emit(cx, dimension, &key, &window, false);
    }
}

/// Fold a queue window's SLA and CSAT counts into the queue's last hour, dropping windows
/// that started more than an hour before stream time.
fn remember_hour(cx: &mut Ctx, dimension: AnalyticsDimension, queue: &str, w: &OpenWindow) {
    let (start, f) = (&w.start, &w.figures);
    let sla = |i: usize| f.sla.iter().map(|m| m[i]).sum::<u64>();
    let add = [sla(0), sla(1), f.csat[0], f.csat[1]];
    if dimension != AnalyticsDimension::Queue || add.iter().all(|n| *n == 0) {
        return;
    }
    let since = cx.state.stream_time().saturating_sub(HOUR_MS);
    if start.saturating_add(cx.settings.analytics_window_ms) <= since {
        return;
    }
    let tenant = cx.tenant;
    let hour = match cx.state.queue_hours.get_mut(tenant, queue) {
        Some(hour) => hour,
        None => {
            cx.state
                .queue_hours
                .get_or_insert_with(tenant, queue.to_string(), QueueHour::default)
        }
    };
    hour.windows
        .retain(|(s, _)| s.saturating_add(cx.settings.analytics_window_ms) > since);
    let at = match hour.windows.binary_search_by_key(start, |w| w.0) {
        Ok(i) => i,
        Err(i) => {
            hour.windows.insert(i, (*start, [0; 4]));
            i
        }
    };
    for (t, n) in hour.windows[at].1.iter_mut().zip(add) {
        *t = t.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

/// Put a conversation at the head of one of the tenant's notable lists (once: an entry for
/// the same conversation and reason moves up), keeping [`NOTABLE_KEPT`].
fn remember_notable(cx: &mut Ctx, list: &str, conversation: &str, queue: Arc<str>, what: &str) {
    let tenant = cx.tenant;
    // The conversation's id as the state holds it (shared, not copied).
    let conversation = match cx.state.conversations.key_of(tenant, conversation) {
        Some(id) => Arc::clone(id),
        None => Arc::from(conversation),
    };
    let rows = match cx.state.notable.get_mut(tenant, list) {
        Some(rows) => rows,
        None => cx
            .state
            .notable
            .get_or_insert_with(tenant, list.to_string(), Vec::new),
    };
    // The reason as an entry already holds it, shared.
    let what = match rows.iter().find(|n| &*n.what == what) {
        Some(n) => Arc::clone(&n.what),
        None => Arc::from(what),
    };
    let entry = Notable {
        conversation,
        queue,
        what,
        at: cx.now,
    };
    rows.retain(|n| !(n.conversation == entry.conversation && n.what == entry.what));
    rows.insert(0, entry);
    rows.truncate(NOTABLE_KEPT);
}

/// What the analytics need of a conversation: its queue and assignee (shared ids), when it
/// was created, and what they remember of it.
struct Seen {
    queue: Arc<str>,
    assignee: Option<Arc<str>>,
    created: i64,
    facts: ConversationFacts,
}

fn conversation(cx: &Ctx, conv: &str) -> Option<Seen> {
    let c = cx.state.conversation(cx.tenant, conv)?;
    let facts = cx
        .state
        .conv_facts
        .get(cx.tenant, conv)
        .copied()
        .unwrap_or_default();
    Some(Seen {
        queue: c.queue_id.clone().unwrap_or_else(|| Arc::from("")),
        assignee: c.assignee.clone(),
        created: c.created_at,
        facts,
    })
}

fn set_facts(cx: &mut Ctx, conv: &str, facts: ConversationFacts) {
    let key = cx.state.conversation_key(cx.tenant, conv);
    cx.state.conv_facts.insert(cx.tenant, key, facts);
}

/// Add a duration to the conversation's queue and, when it has one, its agent.
fn add_durations(cx: &mut Ctx, queue: &str, agent: Option<&str>, measure: Measure, ms: i64) {
    add_duration(cx, AnalyticsDimension::Queue, queue, measure, ms);
    if let Some(agent) = agent {
        add_duration(cx, AnalyticsDimension::Agent, agent, measure, ms);
    }
}

/// Add to the conversation's queue and, when it has one, its agent.
fn add_both(cx: &mut Ctx, queue: &str, agent: Option<&str>, f: impl Fn(&mut Figures)) {
    add(cx, AnalyticsDimension::Queue, queue, &f);
    if let Some(agent) = agent {
        add(cx, AnalyticsDimension::Agent, agent, &f);
    }
}

fn on_conversation_event(cx: &mut Ctx, conv: &str, event: &ConversationEventKind) {
    use ConversationEventKind as E;
    match event {
        E::Routed(r) => add(cx, AnalyticsDimension::Queue, &r.queue_id, |f| {
            f.offered += 1
        }),
        E::QueueChanged(q) => add(cx, AnalyticsDimension::Queue, &q.to_queue, |f| {
            f.offered += 1
        }),
        E::AgentReplied(r) if !r.automated => {
            let Some(Seen {
                queue,
                assignee,
                created,
                mut facts,
            }) = conversation(cx, conv)
            else {
                return;
            };
            if facts.responded {
                return;
            }
            facts.responded = true;
            set_facts(cx, conv, facts);
            let took = cx.now - created;
            let agent = r.by.as_deref().or(assignee.as_deref());
            add_durations(cx, &queue, agent, Measure::FirstResponse, took);
        }
        E::StatusChanged(s) if s.to == Status::Solved => {
            let Some(Seen {
                queue,
                assignee,
                facts,
                ..
            }) = conversation(cx, conv)
            else {
                return;
            };
            add_both(cx, &queue, assignee.as_deref(), |f| f.solved += 1);
            if let Some(at) = facts.assigned_at {
                let took = cx.now - at;
                add_durations(cx, &queue, assignee.as_deref(), Measure::Handling, took);
            }
        }
        E::StatusChanged(s) if s.to == Status::Closed => {
            let Some(Seen {
                queue, assignee, ..
            }) = conversation(cx, conv)
            else {
                return;
            };
            let waiting = matches!(s.from, Status::Open | Status::Waiting)
                && assignee.is_none()
                && s.reason.as_deref() != Some("merged");
            if waiting {
                add(cx, AnalyticsDimension::Queue, &queue, |f| f.abandoned += 1);
            }
            if cx.state.conv_facts.contains(cx.tenant, conv) {
                cx.state.conv_facts.remove(cx.tenant, conv);
            }
        }
        _ => {}
    }
}

impl Processor for Analytics {
    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        if !cx.settings.analytics {
            return;
        }
        match output {
            Output::Conversation(e) if e.tenant == cx.tenant => {
                on_conversation_event(cx, &e.conversation_id, &e.event)
            }
            Output::Assignment(AssignmentEvent {
                tenant,
                conversation_id,
                event: AssignmentEventKind::Assigned(a),
                ..
            }) if *tenant == cx.tenant => {
                let Some(Seen {
                    queue,
                    created,
                    mut facts,
                    ..
                }) = conversation(cx, conversation_id)
                else {
                    return;
                };
                let first = facts.assigned_at.is_none();
                if first {
                    facts.assigned_at = Some(cx.now);
                    set_facts(cx, conversation_id, facts);
                }
                add_both(cx, &queue, Some(&a.agent_id), |f| f.assigned += 1);
                if first {
                    let took = cx.now - created;
                    add_durations(cx, &queue, Some(&a.agent_id), Measure::TimeToAssign, took);
                }
            }
            Output::Sla(e) if e.tenant == cx.tenant => {
                let (metric, met) = match &e.event {
                    SlaEventKind::SlaMet(m) => (m.metric, 0),
                    SlaEventKind::SlaBreached(b) => (b.metric, 1),
                    _ => return,
                };
                let Some(Seen {
                    queue, assignee, ..
                }) = conversation(cx, &e.conversation_id)
                else {
                    return;
                };
                add_both(cx, &queue, assignee.as_deref(), |f| {
                    f.sla[metric_index(metric)][met] += 1
                });
                if met == 1 {
                    let what = metric_name(metric);
                    remember_notable(cx, BREACHES, &e.conversation_id, queue, what);
                }
            }
            Output::Csat(CsatEvent {
                tenant,
                event: CsatEventKind::SurveyFeedback(fb),
                ..
            }) if *tenant == cx.tenant => {
                let Some(score) = fb.score else { return };
                let i = usize::from(score == CsatScore::NotHappy);
                let queue = fb.queue_id.clone().unwrap_or_default();
                add_both(cx, &queue, fb.agent_id.as_deref(), |f| f.csat[i] += 1);
            }
            Output::Sentiment(SentimentEvent {
                tenant,
                conversation_id,
                event: SentimentEventKind::MessageSentiment(m),
                ..
            }) if *tenant == cx.tenant && m.language.is_none() => {
                // A message in another language was not scored, so it is in no column.
                let i = match m.label {
                    SentimentLabel::Positive => 0,
                    SentimentLabel::Neutral => 1,
                    SentimentLabel::Negative => 2,
                };
                let Some(Seen { queue, .. }) = conversation(cx, conversation_id) else {
                    return;
                };
                add(cx, AnalyticsDimension::Queue, &queue, |f| {
                    f.sentiment[i] += 1
                });
                if i == 2 {
                    remember_notable(cx, NEGATIVE, conversation_id, queue, "negative");
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            if purpose == PURPOSE {
                if let Ok(start) = subject.parse::<i64>() {
                    close_window(cx, start);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sketch's quantiles are within 1% of the exact ones, whatever the spread.
    #[test]
    fn quantiles_are_within_one_percent() {
        let mut d = Durations::default();
        let values: Vec<i64> = (1..=2_000).map(|i| i * i * 37 % 1_000_003 + 1).collect();
        for v in &values {
            d.add(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.9] {
            let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64;
            let got = d.quantile(q).expect("values") as f64;
            assert!(
                (got - exact).abs() <= exact * 0.0101 + 1.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(d.quantile(1.0), Some(*sorted.last().expect("max")));
        assert_eq!(Durations::default().quantile(0.5), None);
        assert!(d.buckets.len() < 1_500, "{} buckets", d.buckets.len());
    }
}
