//! Automatic agent assignment (SPEC §5, R-ASSIGN): capacity, statuses, the weighted-sum
//! method, the sticky agent, bulk assignment, working-hours starts, queue changes and manual
//! assignment.
//!
//! # Indexes and their cost
//!
//! The tables (`agents`, `conversations`) are the truth. [`AssignIndex`] holds what is derived
//! from them, rebuilt on load and kept current by refreshing one conversation or one agent at
//! a time from its row:
//!
//! - `waiting[(tenant, queue, category)]`: the unassigned, auto-assignable conversations
//!   (status counted, not Closed) in (priority desc, created_at, id) order.
//! - `available[(tenant, queue)]`: enabled agents of the queue whose status is in the
//!   Available group.
//! - `occupancy[(tenant, agent)]`: counted conversations per category.
//!
//! With A = available agents of the queue, W = waiting conversations of a queue, Q = an
//! agent's queues and n = conversations assigned in one go:
//!
//! | operation | cost |
//! |---|---|
//! | refresh one conversation or agent | O(log W + Q log A) |
//! | single assignment (sticky, or weighted sum) | O(B + log A), B = distinct (workload, room) buckets among the queue's available agents — no conversation is scanned, and agents of a bucket are not compared |
//! | bulk assignment for one agent | O((n + s) · 4Q · log W), s = conversations skipped because the agent held them before |
//! | working-hours start of a queue | O(W · A) |
//! | a config change | rebuilds the tenant's indexes: O(conversations + agents) |

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use switchboard_schemas::*;

use crate::config::BUILT_IN_STATUSES;
use crate::engine::{Ctx, Handled, Rejection};
use crate::state::{
    Agent, ConvId, Conversation, SortedSet, State, TenantConfig, Timer, TimerKind, DEFAULT_QUEUE,
};
use crate::store::Rows;
use crate::Processor;

pub struct Assignment;

/// Order of the waiting list: higher priority first, then older, then id.
pub type WaitKey = (Reverse<Priority>, i64, ConvId);

/// What one conversation contributes to the indexes.
#[derive(Clone, Debug, Default, PartialEq)]
struct Entry {
    /// The queue and agent ids are the conversation row's own, shared. Waiting: (queue,
    /// category, priority, waiting since); its [`WaitKey`] ends with the conversation id, which
    /// is the entry's key.
    waiting: Option<(Arc<str>, Category, Reverse<Priority>, i64)>,
    occupies: Option<(Arc<str>, Category)>,
}

/// A [`WaitKey`] borrowed from a conversation's row.
type WaitKeyOf<'a> = (Reverse<Priority>, i64, &'a str);

/// [`Entry`] as a conversation's row says it should be, borrowed from the row: compared with
/// the entry held, and made into one only when it differs.
#[derive(PartialEq)]
struct EntryOf<'a> {
    /// (queue, category, (priority, waiting since, conversation id)).
    waiting: Option<(&'a Arc<str>, Category, WaitKeyOf<'a>)>,
    occupies: Option<(&'a Arc<str>, Category)>,
}

impl EntryOf<'_> {
    fn same_as(&self, e: &Entry) -> bool {
        let waiting = e.waiting.as_ref().map(|(q, k, p, t)| (&**q, *k, *p, *t));
        let occupies = e.occupies.as_ref().map(|(a, k)| (&**a, *k));
        let mine = self.waiting.map(|(q, k, (p, t, _))| (&**q, k, p, t));
        mine == waiting && self.occupies.map(|(a, k)| (&**a, k)) == occupies
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_none() && self.occupies.is_none()
    }

    fn to_entry(&self) -> Entry {
        Entry {
            waiting: self
                .waiting
                .map(|(q, k, (p, t, _))| (Arc::clone(q), k, p, t)),
            occupies: self.occupies.map(|(a, k)| (Arc::clone(a), k)),
        }
    }
}

/// Position of a category in [`Load`]'s arrays.
fn cat(category: Category) -> usize {
    match category {
        Category::LiveMessaging => 0,
        Category::LiveChat => 1,
        Category::Email => 2,
        Category::Voice => 3,
    }
}

const CATEGORIES: [Category; 4] = [
    Category::LiveMessaging,
    Category::LiveChat,
    Category::Email,
    Category::Voice,
];

/// One agent's figures as assignment decisions read them, copied from the agent's row and
/// the tenant config by `refresh_agent`, with occupancy counted by `refresh_conversation`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    /// Shared by the pools' buckets, which list the agent by id.
    pub id: Arc<str>,
    /// Counted conversations per category; voice counts calls in progress.
    pub occupancy: [i64; 4],
    pub capacity: [i64; 4],
    /// Last assignment, or else the moment the agent last entered the Available group.
    pub since: Option<i64>,
    /// The queues this agent is listed under as available.
    listed: Vec<String>,
}

impl Load {
    pub fn has_room(&self, category: Category) -> bool {
        self.occupancy[cat(category)] < self.capacity[cat(category)]
    }

    /// (category, occupancy, capacity) for every category.
    pub fn by_category(&self) -> [(Category, i64, i64); 4] {
        CATEGORIES.map(|k| (k, self.occupancy[cat(k)], self.capacity[cat(k)]))
    }

    fn percent(&self, category: Category) -> Option<f64> {
        let (occ, cap) = (self.occupancy[cat(category)], self.capacity[cat(category)]);
        (cap > 0).then(|| occ as f64 / cap as f64 * 100.0)
    }

    /// Σ over LiveMessaging, LiveChat, Email of occupancy / capacity × 100 (SPEC §5.4);
    /// categories with capacity 0 are left out.
    pub fn full_workload(&self) -> f64 {
        [Category::LiveMessaging, Category::LiveChat, Category::Email]
            .into_iter()
            .filter_map(|k| self.percent(k))
            .sum()
    }

    /// Mean over LiveChat and LiveMessaging of occupancy / capacity × 100 (SPEC §5.6); 0
    /// when both capacities are 0.
    pub fn weighted_workload(&self) -> f64 {
        let (sum, n) = [Category::LiveChat, Category::LiveMessaging]
            .into_iter()
            .filter_map(|k| self.percent(k))
            .fold((0.0, 0u32), |(sum, n), p| (sum + p, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / f64::from(n)
        }
    }

    fn unserved_seconds(&self, now: i64) -> f64 {
        (now - self.since.unwrap_or(now)).max(0) as f64 / 1000.0
    }
}

/// A tenant's agents by slot, and per queue the pool of its available agents: a decision
/// walks integers, not keys.
#[derive(Default, Debug)]
struct Roster {
    slots: BTreeMap<String, usize>,
    loads: Vec<Load>,
    /// Per queue, its available agents bucketed for the weighted-sum decision.
    available: BTreeMap<String, Pool>,
}

impl Roster {
    fn slot(&mut self, agent: &str) -> usize {
        if let Some(s) = self.slots.get(agent) {
            return *s;
        }
        self.loads.push(Load {
            id: Arc::from(agent),
            ..Load::default()
        });
        self.slots.insert(agent.to_string(), self.loads.len() - 1);
        self.loads.len() - 1
    }

    /// Take an agent out of its queues' pools, before its load figures change.
    fn unlist(&mut self, slot: usize) {
        let load = &self.loads[slot];
        let key = BucketKey::of(load);
        for q in &load.listed {
            if let Some(pool) = self.available.get_mut(q) {
                pool.remove(key, load, slot);
                if pool.buckets.is_empty() {
                    self.available.remove(q);
                }
            }
        }
    }

    /// Put an agent into its queues' pools, after its load figures changed.
    fn list(&mut self, slot: usize) {
        let load = &self.loads[slot];
        let key = BucketKey::of(load);
        for q in &load.listed {
            match self.available.get_mut(q.as_str()) {
                Some(pool) => pool.insert(key, load, slot),
                None => self
                    .available
                    .entry(q.clone())
                    .or_default()
                    .insert(key, load, slot),
            }
        }
    }
}

/// The figures that decide an agent's weighted workload and room: agents with equal keys
/// have bit-identical workloads and room in every category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BucketKey {
    /// (occupancy, capacity) of LiveChat and LiveMessaging.
    figures: [(i64, i64); 2],
    /// Bit `cat(k)` set when the agent has room in category `k`.
    room: u8,
}

impl BucketKey {
    fn of(load: &Load) -> BucketKey {
        let i = |k| (load.occupancy[cat(k)], load.capacity[cat(k)]);
        let room = CATEGORIES
            .iter()
            .filter(|k| load.has_room(**k))
            .fold(0u8, |m, k| m | (1 << cat(*k)));
        BucketKey {
            figures: [i(Category::LiveChat), i(Category::LiveMessaging)],
            room,
        }
    }
}

/// Agents of one bucket in the two orders a decision reads.
#[derive(Default, Debug)]
struct Bucket {
    /// (since, or i64::MAX for never, agent id, slot): longest unserved first.
    by_since: BTreeSet<(i64, Arc<str>, usize)>,
    /// (agent id, slot).
    by_id: BTreeSet<(Arc<str>, usize)>,
}

/// The available agents of one queue, bucketed by [`BucketKey`]. The weighted-sum score
/// (SPEC §5.6) of agents with the same workload grows with unserved time, so each bucket's
/// best agent is its longest-unserved one (smallest id on ties; smallest id outright when
/// nobody in the bucket has unserved time): a decision compares one agent per bucket, not
/// every agent, and picks exactly whom the linear scan picks.
#[derive(Default, Debug)]
struct Pool {
    buckets: BTreeMap<BucketKey, Bucket>,
}

fn since_key(load: &Load) -> i64 {
    load.since.unwrap_or(i64::MAX)
}

impl Pool {
    fn insert(&mut self, key: BucketKey, load: &Load, slot: usize) {
        let b = self.buckets.entry(key).or_default();
        b.by_since
            .insert((since_key(load), Arc::clone(&load.id), slot));
        b.by_id.insert((Arc::clone(&load.id), slot));
    }

    fn remove(&mut self, key: BucketKey, load: &Load, slot: usize) {
        if let Some(b) = self.buckets.get_mut(&key) {
            b.by_since
                .remove(&(since_key(load), Arc::clone(&load.id), slot));
            b.by_id.remove(&(Arc::clone(&load.id), slot));
            if b.by_id.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }

    /// The weighted-sum winner among the pool's agents with room in `category` that
    /// `excluded` does not name, with its score.
    fn pick(
        &self,
        loads: &[Load],
        category: Category,
        excluded: &SortedSet<String>,
        now: i64,
    ) -> Option<(usize, f64)> {
        let bit = 1u8 << cat(category);
        // Per eligible bucket: its best agent, with workload and unserved seconds.
        let mut heads: Vec<(usize, f64, f64)> = Vec::new();
        for (key, b) in &self.buckets {
            if key.room & bit == 0 {
                continue;
            }
            let mut eligible = b
                .by_since
                .iter()
                .map(|(_, _, slot)| *slot)
                .filter(|slot| !excluded.contains(&*loads[*slot].id));
            let Some(first) = eligible.next() else {
                continue;
            };
            let mut best = &loads[first];
            let mut slot = first;
            if best.unserved_seconds(now) == 0.0 {
                // Nobody eligible here has unserved time: the smallest id wins the bucket.
                if let Some((_, s)) = b.by_id.iter().find(|(id, _)| !excluded.contains(&**id)) {
                    slot = *s;
                    best = &loads[slot];
                }
            }
            heads.push((slot, best.weighted_workload(), best.unserved_seconds(now)));
        }
        let min_w = heads.iter().map(|h| h.1).fold(f64::INFINITY, f64::min);
        let max_u = heads.iter().map(|h| h.2).fold(0.0, f64::max);
        heads
            .iter()
            .map(|(slot, w, u)| (score(*w, *u, min_w, max_u), *u, &*loads[*slot].id, *slot))
            .min_by(|a, b| rank((a.0, a.1, a.2), (b.0, b.1, b.2)))
            .map(|(score, _, _, slot)| (slot, score))
    }
}

/// The assignment indexes of every tenant, each tenant's apart.
#[derive(Default, Debug)]
pub struct AssignIndex {
    tenants: Rows<String, TenantIndex>,
}

/// One tenant's assignment indexes.
#[derive(Default, Debug)]
struct TenantIndex {
    /// Queue → its waiting lists, one per channel category ([`cat`]).
    waiting: Rows<String, [BTreeSet<WaitKey>; 4]>,
    /// Conversation id → what it is listed as.
    entries: Rows<ConvId, Entry>,
    roster: Roster,
}

impl AssignIndex {
    /// An agent's load figures.
    pub fn load(&self, tenant: &str, agent: &str) -> Option<&Load> {
        let roster = &self.tenants.get(tenant)?.roster;
        roster.slots.get(agent).map(|s| &roster.loads[*s])
    }

    fn roster(&self, tenant: &str) -> Option<&Roster> {
        self.tenants.get(tenant).map(|t| &t.roster)
    }

    /// A tenant's indexes, made empty when missing.
    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantIndex {
        self.tenants.entry_ref(tenant).or_default()
    }

    /// A non-empty waiting list.
    fn list(&self, tenant: &str, queue: &str, category: Category) -> Option<&BTreeSet<WaitKey>> {
        let list = &self.tenants.get(tenant)?.waiting.get(queue)?[cat(category)];
        (!list.is_empty()).then_some(list)
    }

    /// The waiting conversations of a queue in one category, in assignment order.
    pub fn waiting(&self, tenant: &str, queue: &str, category: Category) -> Vec<String> {
        self.waiting_entries(tenant, queue, category)
            .map(|k| k.2.to_string())
            .collect()
    }

    /// Every queue of `tenant` with conversations waiting: (queue, how many wait, since when
    /// the longest-waiting one waits).
    pub fn queue_figures(&self, tenant: &str) -> Vec<(&str, usize, i64)> {
        let Some(t) = self.tenants.get(tenant) else {
            return Vec::new();
        };
        t.waiting
            .iter()
            .filter_map(|(queue, lists)| {
                let waiting: usize = lists.iter().map(BTreeSet::len).sum();
                let since = lists.iter().flat_map(|l| l.iter().map(|k| k.1)).min()?;
                Some((queue.as_str(), waiting, since))
            })
            .collect()
    }

    /// The waiting list of a queue in one category, in assignment order: (priority, waiting
    /// since, conversation id).
    pub fn waiting_entries(
        &self,
        tenant: &str,
        queue: &str,
        category: Category,
    ) -> impl Iterator<Item = &WaitKey> {
        self.list(tenant, queue, category).into_iter().flatten()
    }
}

/// The group of a status: built-in, or a custom status of the tenant.
pub fn status_group(config: &TenantConfig, status: &str) -> Option<StatusGroup> {
    BUILT_IN_STATUSES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(status))
        .map(|(_, g)| *g)
        .or_else(|| config.agent_statuses.get(status).copied())
}

/// Whether a conversation in `status` counts towards occupancy (SPEC §5.2).
pub fn counted(config: &TenantConfig, status: Status) -> bool {
    match status {
        Status::Open => true,
        Status::Waiting => config.counted.waiting,
        Status::Solved => config.counted.solved,
        Status::Closed => false,
    }
}

/// An agent's capacity in a category: voice is always 1; otherwise the agent's override or
/// the tenant default (SPEC §5.1).
pub fn capacity(config: &TenantConfig, agent: &Agent, category: Category) -> i32 {
    if category == Category::Voice {
        return 1;
    }
    agent
        .capacity
        .get(&category)
        .copied()
        .unwrap_or(match category {
            Category::LiveMessaging => config.capacity.live_messaging,
            Category::LiveChat => config.capacity.live_chat,
            _ => config.capacity.email,
        })
}

/// A candidate of the weighted-sum method.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub agent: String,
    pub workload: f64,
    pub unserved_seconds: f64,
}

/// A candidate's weighted-sum score (SPEC §5.6) given the minimum workload and maximum
/// unserved time among the candidates.
fn score(workload: f64, unserved: f64, min_workload: f64, max_unserved: f64) -> f64 {
    let w = if workload == 0.0 {
        1.0
    } else if min_workload == 0.0 {
        0.0
    } else {
        min_workload / workload
    };
    let u = if max_unserved == 0.0 {
        0.0
    } else {
        unserved / max_unserved
    };
    0.5 * w + 0.5 * u
}

/// Ranking order: higher score first; ties: larger unserved time, then smaller agent id.
fn rank(a: (f64, f64, &str), b: (f64, f64, &str)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0)
        .then(b.1.total_cmp(&a.1))
        .then(a.2.cmp(b.2))
}

/// The weighted-sum method (SPEC §5.6): every candidate with its score, best first.
pub fn weighted_sum(candidates: &[Candidate]) -> Vec<(String, f64)> {
    let min_w = candidates
        .iter()
        .map(|c| c.workload)
        .fold(f64::INFINITY, f64::min);
    let max_u = candidates
        .iter()
        .map(|c| c.unserved_seconds)
        .fold(0.0, f64::max);
    let mut scored: Vec<(f64, f64, &str)> = candidates
        .iter()
        .map(|c| {
            (
                score(c.workload, c.unserved_seconds, min_w, max_u),
                c.unserved_seconds,
                c.agent.as_str(),
            )
        })
        .collect();
    scored.sort_by(|a, b| rank(*a, *b));
    scored
        .into_iter()
        .map(|(s, _, a)| (a.to_string(), s))
        .collect()
}

fn lookback_ms(l: StickyLookback) -> i64 {
    const DAY: i64 = 24 * 3600 * 1000;
    match l {
        StickyLookback::Days30 => 30 * DAY,
        StickyLookback::Days60 => 60 * DAY,
        StickyLookback::Year1 => 365 * DAY,
        StickyLookback::Ever => i64::MAX,
    }
}

fn queue_is_open(config: &TenantConfig, queue: &str, now: i64) -> bool {
    crate::routing::queue_open(config, queue, now)
}

// ------------------------------------------------------------------ index maintenance

fn entry_of<'a>(config: &TenantConfig, conv: &'a Conversation) -> EntryOf<'a> {
    let counts = counted(config, conv.status);
    match (&conv.assignee, &conv.queue_id) {
        (None, Some(q)) if counts => EntryOf {
            waiting: Some((
                q,
                conv.category,
                (Reverse(conv.priority), conv.created_at, &*conv.id),
            )),
            occupies: None,
        },
        (Some(agent), _) if counts && conv.category != Category::Voice => EntryOf {
            waiting: None,
            occupies: Some((agent, conv.category)),
        },
        _ => EntryOf {
            waiting: None,
            occupies: None,
        },
    }
}

/// Bring the indexes in line with one conversation's row. Returns the agents whose occupancy
/// changed.
fn refresh_conversation(state: &mut State, tenant: &str, id: &str) -> Vec<String> {
    let key = state.conversation_key(tenant, id);
    let new = {
        let config = state.config(tenant);
        let row = state.conversations.get(tenant, id);
        let new = row.map(|conv| entry_of(&config, conv));
        let old = state
            .assign
            .tenants
            .get(tenant)
            .and_then(|t| t.entries.get(id));
        let unchanged = match (&new, old) {
            (Some(new), Some(old)) => new.same_as(old),
            (new, None) => new.as_ref().is_none_or(EntryOf::is_empty),
            (None, Some(_)) => false,
        };
        if unchanged {
            return Vec::new();
        }
        new.map(|e| e.to_entry()).unwrap_or_default()
    };
    let index = state.assign.tenant_mut(tenant);
    let old = index.entries.remove(id).unwrap_or_default();
    if let Some((q, k, p, t)) = &old.waiting {
        if let Some(lists) = index.waiting.get_mut(&**q) {
            lists[cat(*k)].remove(&(*p, *t, Arc::clone(&key)));
            if lists.iter().all(BTreeSet::is_empty) {
                index.waiting.remove(&**q);
            }
        }
    }
    if let Some((q, k, p, t)) = &new.waiting {
        index.waiting.entry_ref(&**q).or_default()[cat(*k)].insert((*p, *t, Arc::clone(&key)));
    }
    let mut changed = Vec::new();
    if old.occupies != new.occupies {
        let roster = &mut index.roster;
        for (delta, occ) in [(-1, &old.occupies), (1, &new.occupies)] {
            if let Some((agent, k)) = occ {
                let slot = roster.slot(agent);
                roster.unlist(slot);
                let o = &mut roster.loads[slot].occupancy[cat(*k)];
                *o = (*o + delta).max(0);
                roster.list(slot);
                changed.push(agent.to_string());
            }
        }
    }
    if new != Entry::default() {
        index.entries.insert(key, new);
    }
    changed.sort();
    changed.dedup();
    changed
}

/// Bring an agent's load figures and availability listing in line with its row and the
/// tenant config.
fn refresh_agent(state: &mut State, tenant: &str, agent_id: &str) {
    let (capacities, calls, since, queues) = match state.agents.get(tenant, agent_id) {
        Some(a) => {
            let config = state.config(tenant);
            let caps = CATEGORIES.map(|k| i64::from(capacity(&config, a, k)));
            let queues: Vec<String> = if a.enabled && a.group == StatusGroup::Available {
                std::iter::once(DEFAULT_QUEUE.to_string())
                    .chain(a.queues.iter().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            } else {
                Vec::new()
            };
            (
                caps,
                a.calls.len() as i64,
                a.last_assigned_at.or(a.available_since),
                queues,
            )
        }
        None => ([0; 4], 0, None, Vec::new()),
    };
    let roster = &mut state.assign.tenant_mut(tenant).roster;
    let slot = roster.slot(agent_id);
    roster.unlist(slot);
    let load = &mut roster.loads[slot];
    load.capacity = capacities;
    load.occupancy[cat(Category::Voice)] = calls;
    load.since = since;
    load.listed = queues;
    roster.list(slot);
}

/// Rebuild one tenant's indexes from its rows (after a config change, or a rollback).
pub(crate) fn rebuild_tenant(state: &mut State, tenant: &str) {
    state.assign.tenants.remove(tenant);
    for id in state.agents.ids_of(tenant) {
        refresh_agent(state, tenant, &id);
    }
    for id in state.conversations.ids_of(tenant) {
        refresh_conversation(state, tenant, &id);
    }
}

/// Rebuild every index (after loading state from a store).
pub fn rebuild_all(state: &mut State) {
    let tenants: BTreeSet<String> = state
        .conversations
        .tenants()
        .into_iter()
        .chain(state.agents.tenants())
        .map(str::to_string)
        .collect();
    for t in tenants {
        rebuild_tenant(state, &t);
    }
}

// ------------------------------------------------------------------ decisions

/// Whether an agent with these load figures may take `conv` (SPEC §5.5); enabled, Available
/// and queue membership are what the availability listing already holds.
fn has_room_for(load: &Load, conv: &Conversation) -> bool {
    load.has_room(conv.category) && !conv.previous_assignees.contains(&*load.id)
}

fn agent(state: &State, tenant: &str, id: &str) -> Option<Agent> {
    state.agents.get(tenant, id).cloned()
}

fn open_timer_id(tenant: &str, queue: &str) -> String {
    format!("{tenant}/queue-opens/{queue}")
}

/// Make sure a closed queue's waiting conversations are looked at when it opens (SPEC §5.8).
fn schedule_opening(cx: &mut Ctx, queue: &str) {
    let id = open_timer_id(cx.tenant, queue);
    if cx.state.timers.contains(&id) {
        return;
    }
    let next = cx
        .state
        .config(cx.tenant)
        .calendar_of(queue)
        .and_then(|c| c.next_opening(cx.now));
    if let Some(due) = next {
        cx.schedule(
            due,
            id,
            TimerKind::Wake {
                purpose: "queue-opens".into(),
                subject: queue.into(),
            },
        );
    }
}

fn emit_assignment(cx: &mut Ctx, conv_id: &str, event: AssignmentEventKind) {
    let id = cx.next_id();
    cx.emit(Output::Assignment(AssignmentEvent {
        id,
        tenant: cx.tenant.to_string(),
        conversation_id: conv_id.to_string(),
        event,
    }));
}

/// Assign `conv` to `agent_id`, emit `Assigned`, and keep indexes and capacity status current.
fn assign(cx: &mut Ctx, conv_id: &str, agent_id: &str, method: AssignMethod, score: Option<f64>) {
    let tenant = cx.tenant;
    let now = cx.now;
    if let Some(conv) = cx.state.conversation_mut(tenant, conv_id) {
        conv.assignee = Some(agent_id.into());
        conv.previous_assignees.insert(agent_id.to_string());
    }
    if let Some(a) = cx.state.agents.get_mut(tenant, agent_id) {
        a.last_assigned_at = Some(now);
    }
    refresh_agent(cx.state, tenant, agent_id);
    emit_assignment(
        cx,
        conv_id,
        AssignmentEventKind::Assigned(Assigned {
            agent_id: agent_id.to_string(),
            method,
            score,
        }),
    );
    refresh_conversation(cx.state, tenant, conv_id);
    capacity_check(cx, agent_id);
}

fn unassign(cx: &mut Ctx, conv_id: &str, reason: &str) -> Option<String> {
    let tenant = cx.tenant;
    let agent_id = cx
        .state
        .conversation_mut(tenant, conv_id)?
        .assignee
        .take()?
        .to_string();
    emit_assignment(
        cx,
        conv_id,
        AssignmentEventKind::Unassigned(AgentReason {
            agent_id: agent_id.clone(),
            reason: reason.to_string(),
        }),
    );
    refresh_conversation(cx.state, tenant, conv_id);
    Some(agent_id)
}

/// Unassign a conversation's agent (with `reason`) and run single assignment for it again:
/// another agent, never one who held it before (SPEC §5.5); the agent's freed capacity then
/// goes to their queues' waiting conversations (§5.7).
pub fn unassign_and_reassign(cx: &mut Ctx, conv_id: &str, reason: &str) {
    if let Some(agent_id) = unassign(cx, conv_id, reason) {
        try_single(cx, conv_id, AssignMethod::Single);
        settle_agent(cx, &agent_id);
    }
}

/// Single assignment (SPEC §5.6): the sticky agent when the queue asks for it and they are
/// eligible, else the weighted-sum winner among the queue's eligible agents.
fn try_single(cx: &mut Ctx, conv_id: &str, method: AssignMethod) {
    match decide_single(cx.state, cx.tenant, conv_id, cx.now) {
        Decision::None => {}
        Decision::QueueClosed(queue) => schedule_opening(cx, &queue),
        Decision::Sticky(agent_id) => assign(cx, conv_id, &agent_id, AssignMethod::Sticky, None),
        Decision::Weighted(agent_id, score) => assign(cx, conv_id, &agent_id, method, Some(score)),
    }
}

/// The weighted-sum winner for a conversation among its queue's available agents at `now`,
/// with its score, as if the conversation were waiting (whether or not it is): the decision
/// alone, for questions and benchmarks. O(buckets of the queue's pool), not O(agents).
pub fn weighted_choice(
    state: &State,
    tenant: &str,
    conv_id: &str,
    now: i64,
) -> Option<(String, f64)> {
    let conv = state.conversation(tenant, conv_id)?;
    let roster = state.assign.roster(tenant)?;
    let pool = roster.available.get(conv.queue_id.as_deref()?)?;
    pool.pick(&roster.loads, conv.category, &conv.previous_assignees, now)
        .map(|(slot, score)| (roster.loads[slot].id.to_string(), score))
}

enum Decision {
    None,
    QueueClosed(String),
    Sticky(String),
    Weighted(String, f64),
}

/// Who gets `conv_id` now, reading the state only. Compares one agent per bucket of the
/// queue's pool ([`Pool::pick`]), not every agent.
fn decide_single(state: &State, tenant: &str, conv_id: &str, now: i64) -> Decision {
    let Some(conv) = state.conversation(tenant, conv_id) else {
        return Decision::None;
    };
    let config = state.config(tenant);
    let Some(queue_id) = conv.queue_id.as_deref() else {
        return Decision::None;
    };
    let Some(queue) = config.queue(queue_id) else {
        return Decision::None;
    };
    if conv.assignee.is_some() || !counted(&config, conv.status) || !queue.auto_assign {
        return Decision::None;
    }
    if !queue_is_open(&config, queue_id, now) {
        return Decision::QueueClosed(queue_id.to_string());
    }
    let Some(roster) = state.assign.roster(tenant) else {
        return Decision::None;
    };
    let Some(pool) = roster.available.get(queue_id) else {
        return Decision::None;
    };
    let Some((winner, score)) =
        pool.pick(&roster.loads, conv.category, &conv.previous_assignees, now)
    else {
        return Decision::None;
    };
    if let Some(lookback) = queue.sticky_lookback {
        let last = conv
            .customer_keys()
            .into_iter()
            .find_map(|k| state.last_replier.get(tenant, k.as_str()));
        if let Some((agent_id, at)) = last {
            let within = now.saturating_sub(*at) <= lookback_ms(lookback);
            let eligible = roster.slots.get(&**agent_id).is_some_and(|slot| {
                let load = &roster.loads[*slot];
                load.listed.iter().any(|q| q == queue_id) && has_room_for(load, conv)
            });
            if within && eligible {
                return Decision::Sticky(agent_id.to_string());
            }
        }
    }
    Decision::Weighted(roster.loads[winner].id.to_string(), score)
}

/// Bulk assignment (SPEC §5.7): the unassigned conversations of the agent's auto-assigning,
/// open queues, by priority then age, to this agent until they are no longer eligible.
fn bulk(cx: &mut Ctx, agent_id: &str) {
    let tenant = cx.tenant;
    let config = cx.state.shared_config(tenant);
    let Some(a) = agent(cx.state, tenant, agent_id) else {
        return;
    };
    if !a.enabled || a.group != StatusGroup::Available {
        return;
    }
    let mut streams: Vec<(String, Category)> = Vec::new();
    for q in std::iter::once(DEFAULT_QUEUE.to_string())
        .chain(a.queues.iter().cloned())
        .collect::<BTreeSet<_>>()
    {
        let Some(queue) = config.queue(&q) else {
            continue;
        };
        if !queue.auto_assign {
            continue;
        }
        let has_waiting = CATEGORIES
            .iter()
            .any(|k| cx.state.assign.list(tenant, &q, *k).is_some());
        if !has_waiting {
            continue;
        }
        if !queue_is_open(&config, &q, cx.now) {
            schedule_opening(cx, &q);
            continue;
        }
        streams.extend(CATEGORIES.iter().map(|k| (q.clone(), *k)));
    }
    let mut cursors: BTreeMap<(String, Category), WaitKey> = BTreeMap::new();
    loop {
        if cx.state.agents.get(tenant, agent_id).map(|a| a.group) != Some(StatusGroup::Available) {
            return;
        }
        let Some(load) = cx.state.assign.load(tenant, agent_id).cloned() else {
            return;
        };
        streams.retain(|(_, k)| load.has_room(*k));
        let mut best: Option<(WaitKey, (String, Category))> = None;
        for s in &streams {
            let Some(list) = cx.state.assign.list(tenant, &s.0, s.1) else {
                continue;
            };
            let head = match cursors.get(s) {
                Some(c) => list
                    .range((
                        std::ops::Bound::Excluded(c.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next(),
                None => list.iter().next(),
            };
            if let Some(h) = head {
                if best.as_ref().is_none_or(|(b, _)| h < b) {
                    best = Some((h.clone(), s.clone()));
                }
            }
        }
        let Some((key, stream)) = best else { return };
        let conv_id = key.2.clone();
        cursors.insert(stream, key);
        let ok = cx
            .state
            .conversation(tenant, &conv_id)
            .is_some_and(|c| has_room_for(&load, c));
        if ok {
            assign(cx, &conv_id, agent_id, AssignMethod::Bulk, None);
        }
    }
}

fn emit_agent_state(cx: &mut Ctx, agent_id: &str, event: AgentStateEventKind) {
    let id = cx.next_id();
    cx.emit(Output::AgentState(AgentStateEvent {
        id,
        tenant: cx.tenant.to_string(),
        agent_id: agent_id.to_string(),
        event,
    }));
}

/// Full capacity / Under capacity transitions at 90% combined workload (SPEC §5.4).
fn capacity_check(cx: &mut Ctx, agent_id: &str) {
    let tenant = cx.tenant;
    let Some(a) = agent(cx.state, tenant, agent_id) else {
        return;
    };
    let workload = cx
        .state
        .assign
        .load(tenant, agent_id)
        .map_or(0.0, Load::full_workload);
    let (status, group, full) = if a.group == StatusGroup::Available && workload >= 90.0 {
        ("Full capacity", StatusGroup::Busy, true)
    } else if a.status == "Full capacity" && workload < 90.0 {
        ("Under capacity", StatusGroup::Available, false)
    } else {
        return;
    };
    set_status(cx, agent_id, status, group);
    let event = AgentStateEventKind::AgentCapacityChanged(AgentCapacityChanged {
        full,
        workload_percent: (workload * 100.0).round() / 100.0,
    });
    emit_agent_state(cx, agent_id, event);
}

/// Set an agent's status, emit `AgentStatus`, and keep the availability index current.
fn set_status(cx: &mut Ctx, agent_id: &str, status: &str, group: StatusGroup) {
    let tenant = cx.tenant;
    let now = cx.now;
    let a = cx
        .state
        .agents
        .get_or_insert_with(tenant, agent_id.to_string(), || Agent::new(agent_id));
    if a.group != StatusGroup::Available && group == StatusGroup::Available {
        a.available_since = Some(now);
    }
    a.status = status.to_string();
    a.group = group;
    refresh_agent(cx.state, tenant, agent_id);
    let event = AgentStateEventKind::AgentStatus(AgentStatus {
        status: status.to_string(),
        group,
    });
    emit_agent_state(cx, agent_id, event);
}

/// After an agent's situation changed: the capacity status, then bulk assignment when they
/// can take work.
fn settle_agent(cx: &mut Ctx, agent_id: &str) {
    capacity_check(cx, agent_id);
    bulk(cx, agent_id);
}

/// Most agents one tenant may have (docs/operations.md, "Limits"): an event for a new agent
/// beyond it is dead-lettered.
pub const MAX_AGENTS: usize = 10_000;

fn on_agent_event(cx: &mut Ctx, e: &AgentEvent) -> Result<(), Rejection> {
    let tenant = cx.tenant;
    if e.agent_id.is_empty() {
        return Err(Rejection::new("agent_id must not be empty"));
    }
    if !cx.state.agents.contains(tenant, &e.agent_id)
        && cx.state.agents.count_of(tenant) >= MAX_AGENTS
    {
        return Err(Rejection(format!(
            "agent_id: the tenant already has {MAX_AGENTS} agents, the limit"
        )));
    }
    match &e.event {
        AgentEventKind::AgentStatusChanged(s) => {
            let group = status_group(&cx.state.config(tenant), &s.status)
                .ok_or_else(|| Rejection(format!("unknown agent status {:?}", s.status)))?;
            set_status(cx, &e.agent_id, &s.status, group);
        }
        AgentEventKind::AgentUpdated(u) => {
            let mut overrides = BTreeMap::new();
            for (name, value) in u.capacity.iter().flatten() {
                let category = match name.as_str() {
                    "live_messaging" => Category::LiveMessaging,
                    "live_chat" => Category::LiveChat,
                    "email" => Category::Email,
                    "voice" => return Err(Rejection::new("capacity.voice: voice capacity is always 1")),
                    other => return Err(Rejection(format!("capacity.{other}: not a channel category (live_messaging, live_chat, email)"))),
                };
                if !(0..=1000).contains(value) {
                    return Err(Rejection(format!(
                        "capacity.{name}: {value} is not between 0 and 1000"
                    )));
                }
                overrides.insert(category, *value);
            }
            let a = cx
                .state
                .agents
                .get_or_insert_with(tenant, e.agent_id.clone(), || Agent::new(&e.agent_id));
            if let Some(enabled) = u.enabled {
                a.enabled = enabled;
            }
            if let Some(queues) = &u.queues {
                a.queues = queues.iter().cloned().collect();
            }
            if u.capacity.is_some() {
                a.capacity = overrides;
            }
            refresh_agent(cx.state, tenant, &e.agent_id);
        }
        AgentEventKind::CallStarted(c) | AgentEventKind::CallEnded(c) => {
            let started = matches!(e.event, AgentEventKind::CallStarted(_));
            let a = cx
                .state
                .agents
                .get_or_insert_with(tenant, e.agent_id.clone(), || Agent::new(&e.agent_id));
            if started {
                a.calls.insert(c.call_id.clone());
            } else {
                a.calls.remove(&c.call_id);
            }
            refresh_agent(cx.state, tenant, &e.agent_id);
        }
    }
    settle_agent(cx, &e.agent_id);
    Ok(())
}

fn on_command(cx: &mut Ctx, c: &Command) -> Result<Handled, Rejection> {
    let tenant = cx.tenant;
    let (assign_to, only_if_unassigned) = match &c.command {
        CommandKind::Assign(a) => (Some(a.agent_id.clone()), a.only_if_unassigned),
        CommandKind::Unassign(_) => (None, false),
        CommandKind::Reply(r) if !r.automated => {
            // Remember who last answered this customer, for the sticky-agent mode.
            let (Some(by), Some(id)) = (
                &c.by,
                cx.state.resolve_conversation(tenant, &c.conversation_id),
            ) else {
                return Ok(Handled::No);
            };
            let (keys, assignee) = cx
                .state
                .conversation(tenant, &id)
                .map(|c| (c.customer_keys(), c.assignee.clone()))
                .unwrap_or_default();
            // Shared strings: the assignee's id when they replied, the thread table's key.
            let agent: Arc<str> = match assignee {
                Some(a) if *a == **by => a,
                _ => Arc::from(by.as_str()),
            };
            for k in keys {
                let key = match cx.state.threads.key_of(tenant, k.as_str()) {
                    Some(shared) => Arc::clone(shared),
                    None => Arc::from(k),
                };
                cx.state
                    .last_replier
                    .insert(tenant, key, (Arc::clone(&agent), cx.now));
            }
            return Ok(Handled::No);
        }
        _ => return Ok(Handled::No),
    };
    let Some(conv_id) = cx.state.resolve_conversation(tenant, &c.conversation_id) else {
        return Err(Rejection(format!(
            "unknown conversation {:?}",
            c.conversation_id
        )));
    };
    let conv = cx
        .state
        .conversation(tenant, &conv_id)
        .cloned()
        .ok_or_else(|| Rejection::new("unknown conversation"))?;
    if conv.status == Status::Closed {
        return Err(Rejection(format!(
            "conversation {conv_id:?} is closed; {} does not apply",
            c.command.name()
        )));
    }
    match assign_to {
        None => unassign_and_reassign(cx, &conv_id, "command"),
        Some(agent_id) => {
            let reject = |cx: &mut Ctx, reason: &str| {
                let event = AssignmentEventKind::AssignmentRejected(AgentReason {
                    agent_id: agent_id.clone(),
                    reason: reason.to_string(),
                });
                emit_assignment(cx, &conv_id, event);
            };
            match (agent(cx.state, tenant, &agent_id), &conv.assignee) {
                (None, _) => reject(cx, "unknown_agent"),
                (Some(a), _) if !a.enabled => reject(cx, "agent_disabled"),
                (Some(a), _) if a.group == StatusGroup::Unavailable => {
                    reject(cx, "agent_unavailable")
                }
                (Some(_), Some(holder)) if **holder == *agent_id => {}
                (Some(_), Some(_)) if only_if_unassigned => reject(cx, "already_assigned"),
                (Some(_), holder) => {
                    let previous = holder
                        .as_ref()
                        .and_then(|_| unassign(cx, &conv_id, "transferred"));
                    assign(cx, &conv_id, &agent_id, AssignMethod::Manual, None);
                    if let Some(p) = previous {
                        settle_agent(cx, &p);
                    }
                }
            }
        }
    }
    Ok(Handled::Yes)
}

fn on_conversation_event(cx: &mut Ctx, e: &ConversationEvent) {
    let tenant = cx.tenant;
    let id = e.conversation_id.as_str();
    let freed = refresh_conversation(cx.state, tenant, id);
    match &e.event {
        ConversationEventKind::Routed(_) => try_single(cx, id, AssignMethod::Single),
        ConversationEventKind::QueueChanged(q) => {
            let holder = cx
                .state
                .conversation(tenant, id)
                .and_then(|c| c.assignee.clone());
            if let Some(agent_id) = holder {
                let member =
                    agent(cx.state, tenant, &agent_id).is_some_and(|a| a.in_queue(&q.to_queue));
                if !member {
                    unassign(cx, id, "queue_changed");
                    try_single(cx, id, AssignMethod::Single);
                    settle_agent(cx, &agent_id);
                }
            } else {
                try_single(cx, id, AssignMethod::Single);
            }
        }
        ConversationEventKind::StatusChanged(_) => try_single(cx, id, AssignMethod::Single),
        _ => {}
    }
    for agent_id in freed {
        settle_agent(cx, &agent_id);
    }
}

/// A queue's working hours started: assign its waiting conversations, in order, each by
/// single assignment (SPEC §5.8).
fn on_queue_opens(cx: &mut Ctx, queue: &str) {
    let tenant = cx.tenant;
    let mut waiting: Vec<WaitKey> = CATEGORIES
        .iter()
        .filter_map(|k| cx.state.assign.list(tenant, queue, *k))
        .flat_map(|l| l.iter().cloned())
        .collect();
    waiting.sort();
    for (_, _, conv_id) in waiting {
        try_single(cx, &conv_id, AssignMethod::WorkingHoursStart);
    }
}

impl Processor for Assignment {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        match input {
            Input::Agent(e) => {
                on_agent_event(cx, e)?;
                Ok(Handled::Yes)
            }
            Input::Command(c) => on_command(cx, c),
            _ => Ok(Handled::No),
        }
    }

    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        match output {
            Output::Conversation(e) if e.tenant == cx.tenant => on_conversation_event(cx, e),
            Output::Config(ConfigEvent {
                event: ConfigEventKind::ConfigApplied(_),
                tenant,
                ..
            }) if tenant == cx.tenant => {
                // Counted statuses, capacities, queues or statuses may have changed: rebuild
                // the tenant's indexes and let every agent settle.
                let t = cx.tenant.to_string();
                rebuild_tenant(cx.state, &t);
                for a in cx.state.agents.ids_of(&t) {
                    settle_agent(cx, &a);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            if purpose == "queue-opens" {
                on_queue_opens(cx, subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The weighted-sum decision by scanning every agent of the pool: what [`Pool::pick`]
    /// must reproduce.
    fn linear(
        roster: &Roster,
        queue: &str,
        category: Category,
        excluded: &SortedSet<String>,
        now: i64,
    ) -> Option<(String, f64)> {
        let candidates: Vec<Candidate> = roster
            .loads
            .iter()
            .filter(|l| l.listed.iter().any(|q| q == queue))
            .filter(|l| l.has_room(category) && !excluded.contains(&*l.id))
            .map(|l| Candidate {
                agent: l.id.to_string(),
                workload: l.weighted_workload(),
                unserved_seconds: l.unserved_seconds(now),
            })
            .collect();
        weighted_sum(&candidates).into_iter().next()
    }

    fn arb_load() -> impl Strategy<Value = (i64, i64, i64, i64, i64, Option<i64>, u8)> {
        (
            0i64..4,
            0i64..4,
            0i64..4,
            0i64..4,
            0i64..2,
            proptest::option::of(0i64..20),
            0u8..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// R-ASSIGN-6 (weighted sum): the bucketed index picks the same agent with the same
        /// score as a scan over every agent, on random rosters whose agents change figures
        /// and queues between decisions, with excluded previous holders and unserved times
        /// on both sides of `now`.
        #[test]
        fn pool_pick_equals_linear_scan(
            agents in proptest::collection::vec(arb_load(), 1..40),
            changes in proptest::collection::vec((0usize..40, arb_load()), 0..20),
            excluded in proptest::collection::btree_set(0usize..40, 0..4),
            category in 0usize..4,
            now in 0i64..25,
        ) {
            let queues = ["q0", "q1", "q2", "q3"];
            let set = |roster: &mut Roster, slot: usize, l: (i64, i64, i64, i64, i64, Option<i64>, u8)| {
                roster.unlist(slot);
                let load = &mut roster.loads[slot];
                load.occupancy = [l.0, l.2, l.4, 0];
                load.capacity = [l.1, l.3, 2, 1];
                load.since = l.5.map(|s| s * 1000);
                load.listed = queues[..=l.6 as usize].iter().map(|q| q.to_string()).collect();
                roster.list(slot);
            };
            let mut roster = Roster::default();
            for (i, l) in agents.iter().enumerate() {
                let slot = roster.slot(&format!("a{:02}", (i * 7) % 40));
                set(&mut roster, slot, *l);
            }
            for (i, l) in &changes {
                if *i < roster.loads.len() {
                    set(&mut roster, *i, *l);
                }
            }
            let excluded: SortedSet<String> =
                excluded.iter().map(|i| format!("a{:02}", (i * 7) % 40)).collect();
            let category = CATEGORIES[category];
            let now = now * 1000;
            for q in queues {
                let picked = roster.available.get(q).and_then(|pool| {
                    pool.pick(&roster.loads, category, &excluded, now)
                        .map(|(slot, score)| (roster.loads[slot].id.to_string(), score))
                });
                prop_assert_eq!(picked, linear(&roster, q, category, &excluded, now));
            }
        }
    }
}
