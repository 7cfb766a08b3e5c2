//! The engine's state: typed tables written through to a [`Store`].
//!
//! Every table is keyed by tenant first, so one partition's store holds whole tenants. In the
//! store, a row's key is a one-byte table tag followed by the JSON of its key, and its value is
//! a version byte (1) and the row in postcard, a compact binary serde format; tenant rows
//! (the config, rarely written) stay JSON, and JSON rows of older stores still load. The
//! record-id window has its own layout ([`crate::dedup`]).

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use switchboard_schemas::*;

use crate::calendar::Calendar;
use crate::store::{HashTable, RowMap, Store, StoreError, Table, TenantTable, Write};

/// The id of the system queue that always exists and holds every agent.
pub const DEFAULT_QUEUE: &str = "default";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conversation {
    /// The conversation's id: the key its rows are kept under, shared.
    pub id: ConvId,
    pub short_id: i64,
    pub status: Status,
    pub priority: Priority,
    pub queue_id: Option<Arc<str>>,
    pub assignee: Option<Arc<str>>,
    /// Channel of the customer's last inbound message.
    pub channel: Channel,
    /// The customer's address that opened the conversation.
    pub address: Arc<str>,
    /// Our sender (the `to` of the customer's last inbound message).
    pub sender: Arc<str>,
    pub person_id: Option<Arc<str>>,
    /// Thread keys (`addr:<address>`, `person:<id>`) that lead new messages here while the
    /// conversation is not Closed.
    pub thread_keys: SortedSet<Arc<str>>,
    pub tags: SortedSet<String>,
    pub created_at: i64,
    pub direction: Direction,
    /// The channel category of the opening message: where the conversation counts towards
    /// an agent's occupancy.
    pub category: Category,
    /// Every agent who has held the conversation; automatic assignment never returns it to
    /// them (SPEC §5.5).
    #[serde(default)]
    pub previous_assignees: SortedSet<String>,
    pub messages: u32,
    pub last_inbound_at: i64,
    pub closed_reason: Option<String>,
}

impl Conversation {
    /// The keys its customer's own rows are kept under ([`crate::threading::customer_keys`]).
    pub fn customer_keys(&self) -> Vec<String> {
        crate::threading::customer_keys(self.person_id.as_deref(), &self.address)
    }
}

/// A small ordered set in one sorted boxed slice: what a conversation's tags, thread keys and
/// previous assignees and an SLA row's settled clocks are (a handful each, rarely changed). A
/// `BTreeSet` spends a whole node (about 280 bytes for strings) on its first element; this
/// spends the elements, and no spare capacity: 16 bytes in its row where a `Vec` takes 24, and
/// a change reallocates the few elements. Stored (serde) exactly as a `BTreeSet` is, a
/// sequence in order, so rows keep their bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SortedSet<T>(Box<[T]>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Box::default())
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn new() -> Self {
        SortedSet::default()
    }

    /// Add `v`; false when it was there already.
    pub fn insert(&mut self, v: T) -> bool {
        match self.0.binary_search(&v) {
            Ok(_) => false,
            Err(i) => {
                let mut all = std::mem::take(&mut self.0).into_vec();
                all.insert(i, v);
                self.0 = all.into_boxed_slice();
                true
            }
        }
    }

    pub fn remove<Q>(&mut self, v: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.0.binary_search_by(|x| x.borrow().cmp(v)) {
            Ok(i) => {
                let mut all = std::mem::take(&mut self.0).into_vec();
                all.remove(i);
                self.0 = all.into_boxed_slice();
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains<Q>(&self, v: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.binary_search_by(|x| x.borrow().cmp(v)).is_ok()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for v in items {
            self.insert(v);
        }
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut v: Vec<T> = items.into_iter().collect();
        v.sort();
        v.dedup();
        SortedSet(v.into_boxed_slice())
    }
}

impl<T> IntoIterator for SortedSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(|v| v.into_iter().collect())
    }
}

/// A time that may be unset, in 8 bytes where `Option<i64>` takes 16: `i64::MIN` is unset.
/// No time the engine keeps is `i64::MIN`: event times are bounded
/// ([`switchboard_schemas::limits::MIN_TIMESTAMP_MS`] to
/// [`switchboard_schemas::limits::MAX_TIMESTAMP_MS`]) and computed ones saturate
/// upwards. Stored as `Option<i64>`, so rows keep their bytes; a stored `i64::MIN` (which this
/// engine never writes) is refused as a corrupt row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(i64);

impl Stamp {
    pub const UNSET: Stamp = Stamp(i64::MIN);

    pub fn get(self) -> Option<i64> {
        (self != Stamp::UNSET).then_some(self.0)
    }

    pub fn is_none(self) -> bool {
        self == Stamp::UNSET
    }
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp::UNSET
    }
}

impl From<Option<i64>> for Stamp {
    /// `Some(i64::MIN)`, which no engine time is, reads as unset.
    fn from(t: Option<i64>) -> Self {
        t.map_or(Stamp::UNSET, Stamp)
    }
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Stamp, D::Error> {
        match Option::<i64>::deserialize(d)? {
            Some(i64::MIN) => Err(serde::de::Error::custom(
                "a time of i64::MIN in a stored row",
            )),
            t => Ok(Stamp::from(t)),
        }
    }
}

/// One tenant's configuration (SPEC §2), as applied from the config topic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct TenantConfig {
    pub queues: BTreeMap<String, Queue>,
    pub routes: BTreeMap<String, Route>,
    pub working_hours: BTreeMap<String, WorkingHours>,
    pub capacity: CapacityDefaults,
    pub counted: CountedStatuses,
    pub agent_statuses: BTreeMap<String, StatusGroup>,
    #[serde(default)]
    pub sla_policies: BTreeMap<String, SlaPolicy>,
    #[serde(default)]
    pub waiting_strategies: BTreeMap<String, WaitingStrategy>,
    #[serde(default)]
    pub sentiment_enabled: bool,
    #[serde(default)]
    pub surveys: Option<SurveySettings>,
    /// Workflows by id (SPEC §10); left out of the stored row while there are none, so rows
    /// of tenants without workflows keep their bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workflows: BTreeMap<String, Workflow>,
    /// When (stream time) each workflow was last upserted: its time triggers count only from
    /// moments after that ([`crate::workflow`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workflow_since: BTreeMap<String, i64>,
    /// Every working-hours period parsed and the routes and policies put in order once, when
    /// the config is applied or loaded ([`TenantConfig::compile`]); derived, never stored.
    #[serde(skip)]
    pub compiled: Compiled,
}

/// What is derived from a tenant's config once, when it is applied or loaded: the parsed
/// working-hours periods by id, and the ids of the enabled routes and of the SLA policies in
/// evaluation order. Derived, so it takes no part in comparing configs.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    calendars: BTreeMap<String, Calendar>,
    routes: Vec<String>,
    sla_policies: Vec<String>,
    /// The enabled workflows in running order, indexed by trigger.
    pub(crate) flows: crate::workflow::FlowIndex,
}

impl PartialEq for Compiled {
    fn eq(&self, _: &Compiled) -> bool {
        true
    }
}

impl TenantConfig {
    /// A configured queue, or the built-in Default queue (always open, no auto-assignment,
    /// until configured).
    pub fn queue(&self, id: &str) -> Option<&Queue> {
        static DEFAULT: std::sync::OnceLock<Queue> = std::sync::OnceLock::new();
        match self.queues.get(id) {
            Some(q) => Some(q),
            None if id == DEFAULT_QUEUE => Some(DEFAULT.get_or_init(|| Queue {
                id: DEFAULT_QUEUE.to_string(),
                name: "Default".to_string(),
                working_hours_id: None,
                senders: Vec::new(),
                auto_assign: false,
                bot: false,
                sticky_lookback: None,
            })),
            None => None,
        }
    }

    pub fn has_queue(&self, id: &str) -> bool {
        id == DEFAULT_QUEUE || self.queues.contains_key(id)
    }

    /// Enabled routes in evaluation order: ascending (order, id).
    pub fn routes_in_order(&self) -> impl Iterator<Item = &Route> {
        self.compiled
            .routes
            .iter()
            .filter_map(|id| self.routes.get(id))
    }

    /// SLA policies in evaluation order: ascending (order, id).
    pub fn sla_policies_in_order(&self) -> impl Iterator<Item = &SlaPolicy> {
        self.compiled
            .sla_policies
            .iter()
            .filter_map(|id| self.sla_policies.get(id))
    }

    /// The waiting strategy of our sender `to`, if any.
    pub fn waiting_strategy_for(&self, sender: &str) -> Option<&WaitingStrategy> {
        self.waiting_strategies
            .values()
            .find(|w| w.sender.eq_ignore_ascii_case(sender))
    }

    /// The working-hours period of a queue, if it has one.
    pub fn period_of(&self, queue_id: &str) -> Option<&WorkingHours> {
        let id = self.queues.get(queue_id)?.working_hours_id.as_ref()?;
        self.working_hours.get(id)
    }

    /// The parsed working hours of a queue, if it has a period (periods are validated when
    /// configured, so every period has its calendar).
    pub fn calendar_of(&self, queue_id: &str) -> Option<&Calendar> {
        let id = self.queues.get(queue_id)?.working_hours_id.as_ref()?;
        self.compiled.calendars.get(id)
    }

    /// Derive [`TenantConfig::compiled`]: parse every working-hours period (one that does not
    /// parse, impossible once validated, gets no calendar and counts as always open) and put
    /// the enabled routes and the SLA policies in evaluation order.
    /// The enabled workflows in running order (ascending order, then id), indexed by
    /// trigger.
    pub fn flows(&self) -> &crate::workflow::FlowIndex {
        &self.compiled.flows
    }

    pub fn compile(mut self) -> TenantConfig {
        let mut routes: Vec<&Route> = self.routes.values().filter(|r| r.enabled).collect();
        routes.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
        let mut policies: Vec<&SlaPolicy> = self.sla_policies.values().collect();
        policies.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
        let flows = crate::workflow::FlowIndex::build(&self.workflows);
        self.compiled = Compiled {
            calendars: self
                .working_hours
                .iter()
                .filter_map(|(id, p)| Calendar::parse(p).ok().map(|c| (id.clone(), c)))
                .collect(),
            routes: routes.into_iter().map(|r| r.id.clone()).collect(),
            sla_policies: policies.into_iter().map(|p| p.id.clone()).collect(),
            flows,
        };
        self
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Tenant {
    /// The short-id counter of stores written before it got its own row
    /// ([`State::short_id_counters`]); read only when that row is missing.
    #[serde(default)]
    pub next_short_id: i64,
    /// Shared, so a processor holds it across its own state changes without copying it.
    pub config: Arc<TenantConfig>,
    /// Last applied config version per entity key (`queue/<id>`, `route/<id>`, ...).
    pub versions: BTreeMap<String, i64>,
}

/// Work scheduled for a stream time. Fired in (due, id) order with `now = due` (R-TIME-4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Timer {
    /// The tenant's name, shared by every timer of the tenant ([`State::tenant_name`]).
    pub tenant: Arc<str>,
    pub kind: TimerKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TimerKind {
    /// Written by versions before the dedup window ([`crate::dedup`]); kept so their stores
    /// still load, and fired as a no-op.
    ForgetRecordId { id: String },
    /// Work for a processor: `purpose` names it (each processor matches its own purposes),
    /// `subject` is what it is about (a conversation id, a queue id).
    Wake {
        purpose: std::borrow::Cow<'static, str>,
        subject: Arc<str>,
    },
}

/// An agent of a tenant (SPEC §2, §5).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: String,
    pub enabled: bool,
    /// The current status: one the agent chose, or the automatic Full capacity / Under
    /// capacity.
    pub status: String,
    pub group: StatusGroup,
    /// Queue membership besides the Default queue, which every agent is in.
    pub queues: BTreeSet<String>,
    /// Per-category capacity overrides (voice is always 1).
    pub capacity: BTreeMap<Category, i32>,
    pub last_assigned_at: Option<i64>,
    /// When the agent last entered the Available group.
    pub available_since: Option<i64>,
    /// Calls in progress: they occupy voice capacity.
    pub calls: BTreeSet<String>,
}

impl Agent {
    pub fn new(id: &str) -> Agent {
        Agent {
            id: id.to_string(),
            enabled: true,
            status: "Offline".to_string(),
            group: StatusGroup::Unavailable,
            queues: BTreeSet::new(),
            capacity: BTreeMap::new(),
            last_assigned_at: None,
            available_since: None,
            calls: BTreeSet::new(),
        }
    }

    pub fn in_queue(&self, queue: &str) -> bool {
        queue == DEFAULT_QUEUE || self.queues.contains(queue)
    }
}

pub type TenantKey = (String, String);

/// A conversation id as the tables hold it: one shared string for the conversation's row and
/// every row keyed by or pointing at it ([`State::conversation_key`]). Stored as a string.
pub type ConvId = Arc<str>;

#[derive(Default)]
pub struct State {
    pub tenants: HashTable<String, Tenant>,
    pub conversations: TenantTable<ConvId, Conversation>,
    /// (tenant, thread key) → conversation id, for conversations that are not Closed.
    pub threads: TenantTable<Arc<str>, ConvId>,
    /// (tenant, agent id) → agent.
    pub agents: TenantTable<String, Agent>,
    /// (tenant, customer key) → (agent, time) of the last human agent reply to that customer,
    /// for the sticky-agent mode.
    /// The key is the thread table's shared string where that holds it, the agent id the
    /// conversation's assignee's where it is them (stored as strings).
    pub last_replier: TenantTable<Arc<str>, (Arc<str>, i64)>,
    /// (tenant, conversation id) → the facts its SLA clocks are made of.
    pub sla: TenantTable<ConvId, crate::sla::SlaState>,
    /// (tenant, conversation id) → the customer's address on their last inbound message,
    /// for conversations where it is not the address that opened them (the customer wrote
    /// from another channel of the same person): where messages to them go
    /// ([`State::customer_address`]).
    pub reply_to: TenantTable<ConvId, String>,
    /// (tenant, conversation id) → the conversation's form fields (name → value), set by
    /// `SetFormField` commands.
    pub forms: TenantTable<ConvId, BTreeMap<String, String>>,
    /// (tenant, (dimension, queue or agent)) → its analytics windows not yet emitted
    /// ([`crate::analytics`]).
    pub analytics: TenantTable<crate::analytics::Subject, crate::analytics::OpenWindows>,
    /// (tenant, conversation id) → what the analytics remember of it (first assignment, first
    /// reply), until it is Closed.
    pub conv_facts: TenantTable<ConvId, crate::analytics::ConversationFacts>,
    /// (tenant, queue) → the SLA and CSAT counts of its windows closed in the last hour, for
    /// the wallboard ([`crate::analytics::QueueHour`]).
    pub queue_hours: TenantTable<String, crate::analytics::QueueHour>,
    /// (tenant, `breaches` | `negative`) → the latest conversations of each kind, newest
    /// first, for the wallboard.
    pub notable: TenantTable<String, Vec<crate::analytics::Notable>>,
    /// Tenant → the start of the latest analytics window whose emission timer is scheduled:
    /// a cache, not stored (empty after a restart: a window is scheduled again, which changes
    /// nothing), cleared by a rollback, which may have undone the timer.
    pub scheduled_windows: std::collections::HashMap<String, i64>,
    /// (tenant, conversation id) → what its time-triggered workflows count from.
    pub flows: TenantTable<ConvId, crate::workflow::FlowClocks>,
    /// (tenant, conversation id) → its running waiting strategy.
    pub waits: TenantTable<ConvId, crate::waiting::WaitState>,
    /// (tenant, conversation id) → its running sentiment mean.
    pub moods: TenantTable<ConvId, crate::sentiment::ConversationMood>,
    /// (tenant, conversation id) → its survey.
    pub surveys: TenantTable<ConvId, crate::csat::Survey>,
    /// (tenant, customer key) → the conversation whose survey awaits this customer's answer.
    pub survey_index: TenantTable<String, String>,
    /// (tenant, customer key) → when the customer was last surveyed.
    pub last_survey: TenantTable<String, i64>,
    /// (tenant, `tenant` | `queue/<id>` | `agent/<id>`) → (happy, not happy).
    pub csat: TenantTable<String, (u64, u64)>,
    /// Derived assignment indexes (not stored: rebuilt from the tables on load).
    pub assign: crate::assignment::AssignIndex,
    /// tenant → the last short id given to a conversation: a small row of its own, so a new
    /// conversation does not rewrite the tenant's config row.
    pub short_id_counters: HashTable<String, i64>,
    /// (tenant, short id) → conversation id.
    pub short_ids: TenantTable<i64, ConvId>,
    /// The record ids processed in the last dedup window, for idempotency (R-TIME-1).
    pub dedup: crate::dedup::DedupWindow,
    /// Rows of a former layout to delete at the next flush.
    legacy_rows: Vec<Vec<u8>>,
    /// Each tenant's name once, for the timers to share ([`State::tenant_name`]).
    tenant_names: rustc_hash::FxHashMap<Box<str>, Arc<str>>,
    /// Archive rows written or deleted since the last flush ([`State::archive`]), in order,
    /// and where each key's latest write is among them.
    archive_writes: Vec<Write>,
    archive_index: rustc_hash::FxHashMap<Vec<u8>, usize>,
    /// The scheduled timers, by id and in firing order ((due, id) → timer in the store).
    pub timers: crate::timers::Timers,
    /// Largest event time processed on this partition; key ().
    pub stream_time: Table<(), i64>,
    /// When the next flush lets the rows of customers with no conversation in memory go
    /// ([`State::sweep_customers`]); not stored (after a restart, the first flush does).
    next_customer_sweep: i64,
}

/// How often (stream time) a flush lets go of the rows of customers with no conversation in
/// memory: memory holds an hour's worth of customers who left at most.
const CUSTOMER_SWEEP_MS: i64 = 3_600_000;

const T_TENANT: u8 = b't';
const T_CONV: u8 = b'c';
const T_THREAD: u8 = b'h';
const T_SEEN: u8 = b's';
const T_SHORT: u8 = b'n';
const T_AGENT: u8 = b'a';
const T_REPLIER: u8 = b'r';
const T_SLA: u8 = b'l';
const T_WAIT: u8 = b'w';
const T_REPLY_TO: u8 = b'p';
const T_FORM: u8 = b'e';
const T_FLOW: u8 = b'f';
/// The analytics' open windows, one row per queue and agent.
const T_ANALYTICS: u8 = b'W';
const T_CONV_FACTS: u8 = b'u';
/// The keys of the analytics' former rows: (tenant, (window start, dimension, id)), and that
/// with the distribution.
type LegacyWindowKey = (String, (i64, AnalyticsDimension, String));
type LegacyDurationKey = (
    String,
    ((i64, AnalyticsDimension, String), crate::analytics::Measure),
);

/// The analytics' former layout (until 2026-12-01): a row per window, and one per window and
/// distribution. Adopted into [`T_ANALYTICS`] rows on load, then deleted.
const T_WINDOW: u8 = b'j';
const T_WINDOW_DURATIONS: u8 = b'g';
const T_QUEUE_HOUR: u8 = b'H';
const T_NOTABLE: u8 = b'N';
const T_MOOD: u8 = b'o';
const T_SURVEY: u8 = b'v';
const T_SURVEY_INDEX: u8 = b'y';
const T_LAST_SURVEY: u8 = b'z';
const T_CSAT: u8 = b'q';
const T_TIMER: u8 = b'x';
/// Timer id → due: written by versions before [`crate::timers`], which derives it; deleted on
/// load.
const T_TIMER_INDEX: u8 = b'i';
const T_STREAM_TIME: u8 = b'm';
const T_SHORT_COUNTER: u8 = b'k';
/// A Closed conversation's rows, moved out of memory ([`Archived`]); (tenant, id) → row.
pub const T_ARCHIVE: u8 = b'A';
/// The short id of an archived conversation; (tenant, short id) → conversation id.
pub const T_ARCHIVE_SHORT: u8 = b'B';

/// The tables whose rows the engine reads from its store after they leave memory: archived
/// conversations (a command that names one brings it back) and customers' rows (the agent
/// who last replied, the last survey, the survey awaiting an answer), let go once an hour and
/// read again with the customer's next conversation ([`State::load_customer`]). Every other
/// row is read only when a store is opened.
pub const READ_BACK: [u8; 5] = [
    T_ARCHIVE,
    T_ARCHIVE_SHORT,
    T_REPLIER,
    T_LAST_SURVEY,
    T_SURVEY_INDEX,
];

/// A Closed conversation once its work is done: its rows leave memory and wait in the store,
/// in one row, until a record names the conversation again ([`State::archive`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Archived {
    pub conversation: Conversation,
    pub sla: Option<crate::sla::SlaState>,
    pub mood: Option<crate::sentiment::ConversationMood>,
    pub wait: Option<crate::waiting::WaitState>,
}

thread_local! {
    /// Where keys and rows are encoded before they are copied out at their exact size: one
    /// allocation per key or row, where a vector grown from one byte took several.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes `encode` writes after `first`, in a vector of their exact size.
fn encoded(
    first: u8,
    encode: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, StoreError>,
) -> Result<Vec<u8>, StoreError> {
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        buf.push(first);
        let buf = encode(buf)?;
        let out = buf.as_slice().to_vec();
        *scratch.borrow_mut() = buf;
        Ok(out)
    })
}

fn key_bytes<K: Serialize>(tag: u8, k: &K) -> Result<Vec<u8>, StoreError> {
    encoded(tag, |mut buf| {
        serde_json::to_writer(&mut buf, k).map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(buf)
    })
}

/// One customer row of `table` (tag `tag`) read from `store` into memory, unless memory
/// has a say on it ([`State::load_customer`]).
fn load_customer_row<I, V: Clone + DeserializeOwned, S: Store>(
    table: &mut TenantTable<I, V>,
    tag: u8,
    store: &S,
    tenant: &str,
    key: &str,
) -> Result<(), StoreError>
where
    I: std::hash::Hash + Eq + Ord + Clone + std::borrow::Borrow<str> + for<'a> From<&'a str>,
{
    if table.holds(tenant, key) {
        return Ok(());
    }
    let k = key_bytes(tag, &(tenant, key))?;
    match store.get(&k)? {
        Some(v) => {
            table.load(tenant.to_string(), I::from(key), parse_row(&k, &v)?);
            Ok(())
        }
        None => Ok(()),
    }
}

fn parse<T: DeserializeOwned>(what: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(what).into_owned(),
        reason: e.to_string(),
    })
}

/// The version byte of binary rows: postcard after it. A row that starts with anything else
/// is JSON (every row before binary rows, and the tenant rows, whose config holds optional
/// fields that only a self-describing format can leave out).
const BINARY_ROW_V1: u8 = 1;

/// How a table's rows are encoded in the store.
#[derive(Clone, Copy)]
enum Rows {
    Binary,
    Json,
}

fn parse_row<T: DeserializeOwned>(what: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    match raw.split_first() {
        Some((&BINARY_ROW_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(what).into_owned(),
                reason: e.to_string(),
            })
        }
        _ => parse(what, raw),
    }
}

fn encode_row<V: Serialize>(rows: Rows, v: &V) -> Result<Vec<u8>, StoreError> {
    match rows {
        Rows::Binary => encoded(BINARY_ROW_V1, |buf| {
            postcard::to_extend(v, buf).map_err(|e| StoreError::Io(e.to_string()))
        }),
        Rows::Json => serde_json::to_vec(v).map_err(|e| StoreError::Io(e.to_string())),
    }
}

/// One stored row decoded as `{"key", "value"}` JSON (for `switchboard state`).
fn row_json<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
    key: &[u8],
    value: &[u8],
) -> Result<serde_json::Value, StoreError> {
    let k: K = parse(key, &key[1..])?;
    let v: V = parse_row(key, value)?;
    Ok(serde_json::json!({ "key": k, "value": v }))
}

fn load_row<
    K: Ord + Clone + std::hash::Hash + DeserializeOwned,
    V: Clone + DeserializeOwned,
    M: RowMap<K, V>,
>(
    table: &mut Table<K, V, M>,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    let k: K = parse(key, &key[1..])?;
    let v: V = parse_row(key, value)?;
    table.load(k, v);
    Ok(())
}

fn drain<K: Ord + Clone + std::hash::Hash + Serialize, V: Clone + Serialize, M: RowMap<K, V>>(
    tag: u8,
    table: &mut Table<K, V, M>,
    rows: Option<Rows>,
    batch: &mut Vec<Write>,
) -> Result<(), StoreError> {
    let rows = rows.unwrap_or(if tag == T_TENANT {
        Rows::Json
    } else {
        Rows::Binary
    });
    for (k, v) in table.drain_dirty() {
        let key = key_bytes(tag, &k)?;
        let value = match v {
            Some(v) => Some(encode_row(rows, v)?),
            None => None,
        };
        batch.push((key, value));
    }
    Ok(())
}

impl State {
    /// Empty state with this (empty) dedup window.
    pub fn new(dedup: crate::dedup::DedupWindow) -> State {
        State {
            dedup,
            ..State::default()
        }
    }

    /// Restore the state from every entry of a store, into `dedup` the record ids of its
    /// window.
    pub fn load<S: Store>(
        store: &S,
        dedup: crate::dedup::DedupWindow,
    ) -> Result<State, StoreError> {
        let mut state = State::new(dedup);
        let apart = [
            T_ARCHIVE,
            T_ARCHIVE_SHORT,
            crate::dedup::T_DEDUP,
            crate::dedup::T_DEDUP_INDEX,
            crate::dedup::T_DEDUP_INDEX_FORMER,
        ];
        for (k, v) in store.entries_except(&apart)? {
            match k.first().copied() {
                Some(T_TENANT) => {
                    let tenant: String = parse(&k, &k[1..])?;
                    let mut row: Tenant = parse(&k, &v)?;
                    row.config = Arc::new(Arc::unwrap_or_clone(row.config).compile());
                    state.tenants.load(tenant, row);
                }
                Some(T_SEEN) => {
                    // The former one-row-per-id layout: adopt the id, delete the row.
                    let (tenant, id): TenantKey = parse(&k, &k[1..])?;
                    let ts: i64 = parse_row(&k, &v)?;
                    state.dedup.adopt(&tenant, &id, ts);
                    state.legacy_rows.push(k.clone());
                }
                // The timer index is derived from the timers now.
                Some(T_TIMER_INDEX) => state.legacy_rows.push(k.clone()),
                Some(T_WINDOW) => {
                    let (tenant, (start, dimension, id)): LegacyWindowKey = parse(&k, &k[1..])?;
                    let figures: crate::analytics::Figures = parse_row(&k, &v)?;
                    let window =
                        crate::analytics::adopt(&mut state, &tenant, dimension, &id, start);
                    window.figures = figures;
                    state.legacy_rows.push(k.clone());
                }
                Some(T_WINDOW_DURATIONS) => {
                    let (tenant, ((start, dimension, id), measure)): LegacyDurationKey =
                        parse(&k, &k[1..])?;
                    let durations: crate::analytics::Durations = parse_row(&k, &v)?;
                    let window =
                        crate::analytics::adopt(&mut state, &tenant, dimension, &id, start);
                    window.durations[measure as usize] = durations;
                    state.legacy_rows.push(k.clone());
                }
                tag => {
                    let mut tables = state.tables();
                    let Some((_, table)) = tables.iter_mut().find(|(t, _)| Some(*t) == tag) else {
                        return Err(StoreError::Corrupt {
                            key: String::from_utf8_lossy(&k).into_owned(),
                            reason: "unknown table".into(),
                        });
                    };
                    table.load_row(&k, &v)?;
                }
            }
        }
        // A conversation's id is its key's string, one copy shared, as when it was opened.
        for (key, conversation) in state.conversations.loaded_rows_mut() {
            conversation.id = Arc::clone(key);
        }
        // Every customer's rows were read (one pass over the store is quicker than a lookup
        // per customer); those of customers with no conversation in memory go at once.
        state.sweep_customers();
        crate::assignment::rebuild_all(&mut state);
        let now = state.stream_time();
        state.dedup.restore(store, now)?;
        Ok(state)
    }

    /// Bring customer `key`'s rows into memory from `store` (the agent who last replied, when
    /// they were last surveyed, the survey awaiting their answer), where memory has nothing
    /// for them: a row memory holds, or has deleted, is newer than the store's.
    pub fn load_customer<S: Store>(
        &mut self,
        store: &S,
        tenant: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        load_customer_row(&mut self.last_replier, T_REPLIER, store, tenant, key)?;
        load_customer_row(&mut self.last_survey, T_LAST_SURVEY, store, tenant, key)?;
        load_customer_row(&mut self.survey_index, T_SURVEY_INDEX, store, tenant, key)
    }

    /// Let go of the rows of customers with no conversation in memory (the store keeps them,
    /// and they come back with the customer's next conversation, [`State::load_customer`]):
    /// without this, memory would grow with every customer ever served. Done by a flush once
    /// an hour of stream time, after the changed rows are written.
    ///
    /// A customer key stays while it leads messages to an open conversation (an open
    /// conversation's customer keys are among its thread keys: its first message bound them,
    /// and only the close releases them) or is a key of a Closed conversation still in memory.
    fn sweep_customers(&mut self) {
        let now = self.stream_time();
        if now < self.next_customer_sweep {
            return;
        }
        self.next_customer_sweep = now.saturating_add(CUSTOMER_SWEEP_MS);
        let closed_keys: Vec<(&str, String)> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.status == Status::Closed)
            .flat_map(|((tenant, _), c)| c.customer_keys().into_iter().map(move |k| (tenant, k)))
            .collect();
        let closed: BTreeSet<(&str, &str)> =
            closed_keys.iter().map(|(t, k)| (*t, k.as_str())).collect();
        let threads = &self.threads;
        let keep = |tenant: &str, key: &str| {
            threads.contains(tenant, key) || closed.contains(&(tenant, key))
        };
        self.last_replier.evict(|t, k| keep(t, k));
        self.last_survey.evict(|t, k| keep(t, k));
        self.survey_index.evict(|t, k| keep(t, k));
    }

    /// Decode one stored row on its own, as JSON: what `switchboard state` shows, and how
    /// it tells a row that cannot be read (the error names the key and the reason).
    pub fn inspect_row(key: &[u8], value: &[u8]) -> Result<serde_json::Value, StoreError> {
        let unknown = || StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "unknown table".into(),
        };
        match key.first().copied() {
            Some(T_TENANT) => {
                let tenant: String = parse(key, &key[1..])?;
                let row: Tenant = parse(key, value)?;
                Ok(serde_json::json!({ "key": tenant, "value": row }))
            }
            Some(crate::dedup::T_DEDUP) => {
                let (bucket, chunk, ids) = crate::dedup::parse_row(key, value)?;
                Ok(serde_json::json!({ "dedup_bucket": bucket, "chunk": chunk, "ids": ids.len() }))
            }
            Some(crate::dedup::T_DEDUP_INDEX | crate::dedup::T_DEDUP_INDEX_FORMER) => {
                let bucket = crate::dedup::parse_index_row(key, value)?;
                Ok(serde_json::json!({ "dedup_index_bucket": bucket }))
            }
            Some(T_SEEN) => {
                let k: TenantKey = parse(key, &key[1..])?;
                let ts: i64 = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": ts }))
            }
            Some(T_TIMER_INDEX) => {
                let k: String = parse(key, &key[1..])?;
                let due: i64 = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": due }))
            }
            Some(T_ARCHIVE) => {
                let k: TenantKey = parse(key, &key[1..])?;
                let row: Archived = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": row }))
            }
            Some(T_ARCHIVE_SHORT) => {
                let k: (String, i64) = parse(key, &key[1..])?;
                let id: String = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": id }))
            }
            Some(T_WINDOW) => {
                let k: LegacyWindowKey = parse(key, &key[1..])?;
                let row: crate::analytics::Figures = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": row }))
            }
            Some(T_WINDOW_DURATIONS) => {
                let k: LegacyDurationKey = parse(key, &key[1..])?;
                let row: crate::analytics::Durations = parse_row(key, value)?;
                Ok(serde_json::json!({ "key": k, "value": row }))
            }
            tag => {
                let mut scratch = State::default();
                let tables = scratch.tables();
                let (_, table) = tables
                    .iter()
                    .find(|(t, _)| Some(*t) == tag)
                    .ok_or_else(unknown)?;
                table.row_json(key, value)
            }
        }
    }

    /// Every table with its tag in the store: the one list that loading, flushing and the
    /// record journal go by.
    fn tables(&mut self) -> [(u8, &mut dyn StoredTable); 23] {
        [
            (T_TENANT, &mut self.tenants),
            (T_CONV, &mut self.conversations),
            (T_THREAD, &mut self.threads),
            (T_SHORT, &mut self.short_ids),
            (T_SHORT_COUNTER, &mut self.short_id_counters),
            (T_AGENT, &mut self.agents),
            (T_REPLIER, &mut self.last_replier),
            (T_SLA, &mut self.sla),
            (T_WAIT, &mut self.waits),
            (T_REPLY_TO, &mut self.reply_to),
            (T_FORM, &mut self.forms),
            (T_FLOW, &mut self.flows),
            (T_ANALYTICS, &mut self.analytics),
            (T_CONV_FACTS, &mut self.conv_facts),
            (T_QUEUE_HOUR, &mut self.queue_hours),
            (T_NOTABLE, &mut self.notable),
            (T_MOOD, &mut self.moods),
            (T_SURVEY, &mut self.surveys),
            (T_SURVEY_INDEX, &mut self.survey_index),
            (T_LAST_SURVEY, &mut self.last_survey),
            (T_CSAT, &mut self.csat),
            (T_TIMER, &mut self.timers),
            (T_STREAM_TIME, &mut self.stream_time),
        ]
    }

    /// Start applying one record (or timer): its changes are kept apart until
    /// [`State::commit`], or undone by [`State::rollback`].
    pub fn begin(&mut self) {
        for (_, t) in self.tables() {
            t.begin();
        }
    }

    pub fn commit(&mut self) {
        for (_, t) in self.tables() {
            t.commit();
        }
    }

    /// Undo every change since [`State::begin`]; the assignment indexes, derived from the
    /// rows, are rebuilt for `tenant`, the only tenant a record touches.
    pub fn rollback(&mut self, tenant: &str) {
        for (_, t) in self.tables() {
            t.rollback();
        }
        self.scheduled_windows.clear();
        crate::assignment::rebuild_tenant(self, tenant);
    }

    /// Every row changed since the last call, encoded for the store (and its changelog); the
    /// dedup window's rows apart ([`crate::dedup::DedupWindow::take_changes`], which reads the
    /// store).
    pub fn take_changes(&mut self) -> Result<Vec<Write>, StoreError> {
        self.take_changes_as(None, None)
    }

    /// [`State::take_changes`], with every row in `rows` when given (tests write the JSON
    /// rows of stores from before binary rows).
    /// With `only`, the changes of the tables it names alone; the other tables' marks are
    /// cleared without encoding anything ([`State::take_read_back_changes`]).
    fn take_changes_as(
        &mut self,
        rows: Option<Rows>,
        only: Option<&[u8]>,
    ) -> Result<Vec<Write>, StoreError> {
        let mut batch: Vec<Write> = self.legacy_rows.drain(..).map(|k| (k, None)).collect();
        batch.append(&mut self.archive_writes);
        self.archive_index.clear();
        for (tag, table) in self.tables() {
            if only.is_none_or(|tags| tags.contains(&tag)) {
                table.drain_into(tag, rows, &mut batch)?;
            } else {
                table.forget_changes();
            }
        }
        self.sweep_customers();
        Ok(batch)
    }

    /// The changes since the last flush of the rows the engine reads back from its store once
    /// they have left memory ([`READ_BACK`]: archived conversations, customers' rows); the
    /// marks of every other change are cleared without encoding it, and the flush's sweep of
    /// customers' rows runs as in [`State::take_changes`]. For a run that keeps no store for
    /// anyone else (`simulate`): its memory then holds the state, not every change since it
    /// started.
    pub fn take_read_back_changes(&mut self) -> Result<Vec<Write>, StoreError> {
        self.take_changes_as(None, Some(&READ_BACK))
    }

    /// Move a conversation's rows (the conversation, its SLA facts, mood and waiting
    /// strategy) out of memory into one archived row, and its short id into another; the
    /// next flush writes them and deletes the rows they replace. Done for Closed
    /// conversations whose work is over ([`crate::engine`]), so memory holds open work only.
    pub fn archive(&mut self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let Some(conversation) = self.conversations.remove(tenant, id) else {
            return Ok(());
        };
        let short = conversation.short_id;
        if self
            .short_ids
            .get(tenant, &short)
            .is_some_and(|c| **c == *id)
        {
            self.short_ids.remove(tenant, &short);
        }
        // Nothing is sent to a Closed conversation's customer, and its workflows are over.
        self.reply_to.remove(tenant, id);
        self.forms.remove(tenant, id);
        self.flows.remove(tenant, id);
        self.conv_facts.remove(tenant, id);
        let archived = Archived {
            conversation,
            sla: self.sla.remove(tenant, id),
            mood: self.moods.remove(tenant, id),
            wait: self.waits.remove(tenant, id),
        };
        let row = encode_row(Rows::Binary, &archived)?;
        let short_row = encode_row(Rows::Binary, &id)?;
        self.push_archive_write((key_bytes(T_ARCHIVE, &(tenant, id))?, Some(row)));
        self.push_archive_write((
            key_bytes(T_ARCHIVE_SHORT, &(tenant, short))?,
            Some(short_row),
        ));
        Ok(())
    }

    /// An archive row written or deleted since the last flush: `Some(None)` when deleted,
    /// `None` when the flush has nothing for `key` (the store has the answer).
    pub fn pending_archive_row(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let i = *self.archive_index.get(key)?;
        self.archive_writes.get(i).map(|(_, v)| v.as_deref())
    }

    fn push_archive_write(&mut self, write: Write) {
        self.archive_index
            .insert(write.0.clone(), self.archive_writes.len());
        self.archive_writes.push(write);
    }

    /// The store keys of an archived conversation and of its short id.
    pub fn archive_key(tenant: &str, id: &str) -> Result<Vec<u8>, StoreError> {
        key_bytes(T_ARCHIVE, &(tenant, id))
    }

    pub fn archive_short_key(tenant: &str, short: i64) -> Result<Vec<u8>, StoreError> {
        key_bytes(T_ARCHIVE_SHORT, &(tenant, short))
    }

    /// The conversation id an archived short-id row holds.
    pub fn archived_short(key: &[u8], value: &[u8]) -> Result<String, StoreError> {
        parse_row(key, value)
    }

    /// An archived row decoded.
    pub fn archived(key: &[u8], value: &[u8]) -> Result<Archived, StoreError> {
        parse_row(key, value)
    }

    /// Bring an archived conversation back into memory (its archive rows are deleted at the
    /// next flush), exactly as it was archived.
    pub fn unarchive(&mut self, tenant: &str, archived: Archived) -> Result<(), StoreError> {
        let id: ConvId = Arc::clone(&archived.conversation.id);
        let short = archived.conversation.short_id;
        self.push_archive_write((key_bytes(T_ARCHIVE, &(tenant, &*id))?, None));
        self.push_archive_write((key_bytes(T_ARCHIVE_SHORT, &(tenant, short))?, None));
        if let Some(s) = archived.sla {
            self.sla.insert(tenant, id.clone(), s);
        }
        if let Some(m) = archived.mood {
            self.moods.insert(tenant, id.clone(), m);
        }
        if let Some(w) = archived.wait {
            self.waits.insert(tenant, id.clone(), w);
        }
        self.short_ids.insert(tenant, short, id.clone());
        self.conversations.insert(tenant, id, archived.conversation);
        Ok(())
    }

    /// Where messages to conversation `id`'s customer go: the address of their last inbound
    /// message.
    pub fn customer_address<'a>(&'a self, tenant: &str, conv: &'a Conversation) -> &'a str {
        self.reply_to
            .get(tenant, &*conv.id)
            .map_or(&*conv.address, |a| a.as_str())
    }

    pub fn tenant(&self, tenant: &str) -> Option<&Tenant> {
        self.tenants.get(tenant)
    }

    /// The next short id of a tenant's conversations (1, 2, 3...).
    pub fn next_short_id(&mut self, tenant: &str) -> i64 {
        let last = match self.short_id_counters.get(tenant) {
            Some(n) => *n,
            None => self.tenant(tenant).map_or(0, |t| t.next_short_id),
        };
        self.short_id_counters.insert(tenant.to_string(), last + 1);
        last + 1
    }

    /// The tenant's row, created empty on first use.
    pub fn tenant_mut(&mut self, tenant: &str) -> &mut Tenant {
        self.tenants
            .get_or_insert_with(tenant.to_string(), Tenant::default)
    }

    pub fn config(&self, tenant: &str) -> TenantConfigRef<'_> {
        TenantConfigRef(self.tenant(tenant).map(|t| &*t.config))
    }

    /// The tenant's config as a shared handle, to read while changing other state.
    pub fn shared_config(&self, tenant: &str) -> Arc<TenantConfig> {
        static EMPTY: std::sync::OnceLock<Arc<TenantConfig>> = std::sync::OnceLock::new();
        match self.tenant(tenant) {
            Some(t) => Arc::clone(&t.config),
            None => Arc::clone(EMPTY.get_or_init(Arc::default)),
        }
    }

    /// The tenant's name as one shared string.
    pub fn tenant_name(&mut self, tenant: &str) -> Arc<str> {
        if let Some(name) = self.tenant_names.get(tenant) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(tenant);
        self.tenant_names.insert(tenant.into(), Arc::clone(&name));
        name
    }

    /// The shared id of conversation `id` (the conversations table's key), to key or point
    /// other rows at it without another copy of the string.
    pub fn conversation_key(&self, tenant: &str, id: &str) -> ConvId {
        match self.conversations.key_of(tenant, id) {
            Some(k) => Arc::clone(k),
            None => Arc::from(id),
        }
    }

    pub fn conversation(&self, tenant: &str, id: &str) -> Option<&Conversation> {
        self.conversations.get(tenant, id)
    }

    /// Resolve a command's conversation reference: a conversation id, or `#<short id>`.
    pub fn resolve_conversation(&self, tenant: &str, reference: &str) -> Option<String> {
        match reference.strip_prefix('#').map(str::parse::<i64>) {
            Some(Ok(short)) => self.short_ids.get(tenant, &short).map(|c| c.to_string()),
            _ => self
                .conversation(tenant, reference)
                .map(|c| c.id.to_string()),
        }
    }

    pub fn conversation_mut(&mut self, tenant: &str, id: &str) -> Option<&mut Conversation> {
        self.conversations.get_mut(tenant, id)
    }

    pub fn stream_time(&self) -> i64 {
        self.stream_time.get(&()).copied().unwrap_or(i64::MIN)
    }

    /// Schedule (or move) the timer `id` to fire at `due`.
    pub fn schedule(&mut self, due: i64, id: String, timer: Timer) {
        self.timers.schedule(due, id, timer);
    }

    /// [`State::schedule`] with an id already shared.
    pub fn schedule_shared(&mut self, due: i64, id: Arc<str>, timer: Timer) {
        self.timers.schedule_shared(due, id, timer);
    }

    pub fn cancel(&mut self, id: &str) {
        self.timers.cancel(id);
    }

    /// Remove and return the earliest timer due at or before `time`.
    pub fn pop_due_timer(&mut self, time: i64) -> Option<(i64, Arc<str>, Timer)> {
        self.timers.pop_due(time)
    }
}

/// What [`State`] does with each of its tables, whatever its key and row types.
trait StoredTable {
    #[cfg(test)]
    fn mark_all_changed(&mut self);
    fn begin(&mut self);
    fn commit(&mut self);
    fn rollback(&mut self);
    /// Encode the changed rows into `batch` (rows as `rows` says, else the table's default).
    fn drain_into(
        &mut self,
        tag: u8,
        rows: Option<Rows>,
        batch: &mut Vec<Write>,
    ) -> Result<(), StoreError>;
    /// Clear the changed rows' marks without encoding them (deleted rows leave memory).
    fn forget_changes(&mut self);
    /// Load one stored row of this table.
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// One stored row of this table decoded, as JSON (for `switchboard state`).
    fn row_json(&self, key: &[u8], value: &[u8]) -> Result<serde_json::Value, StoreError>;
}

impl<K, V, M> StoredTable for Table<K, V, M>
where
    K: Ord + Clone + std::hash::Hash + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
    M: RowMap<K, V>,
{
    #[cfg(test)]
    fn mark_all_changed(&mut self) {
        Table::mark_all_changed(self);
    }
    fn begin(&mut self) {
        Table::begin(self);
    }
    fn commit(&mut self) {
        Table::commit(self);
    }
    fn rollback(&mut self) {
        Table::rollback(self);
    }
    fn drain_into(
        &mut self,
        tag: u8,
        rows: Option<Rows>,
        batch: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        drain(tag, self, rows, batch)
    }
    fn forget_changes(&mut self) {
        drop(self.drain_dirty());
    }
    fn row_json(&self, key: &[u8], value: &[u8]) -> Result<serde_json::Value, StoreError> {
        row_json::<K, V>(key, value)
    }
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        load_row(self, key, value)
    }
}

impl<I, V> StoredTable for TenantTable<I, V>
where
    I: Ord + Clone + std::hash::Hash + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    #[cfg(test)]
    fn mark_all_changed(&mut self) {
        TenantTable::mark_all_changed(self);
    }
    fn begin(&mut self) {
        TenantTable::begin(self);
    }
    fn commit(&mut self) {
        TenantTable::commit(self);
    }
    fn rollback(&mut self) {
        TenantTable::rollback(self);
    }
    fn drain_into(
        &mut self,
        tag: u8,
        rows: Option<Rows>,
        batch: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        let rows = rows.unwrap_or(Rows::Binary);
        self.drain_dirty(|tenant, id, v| {
            let key = key_bytes(tag, &(tenant, id))?;
            let value = v.map(|v| encode_row(rows, v)).transpose()?;
            batch.push((key, value));
            Ok(())
        })
    }
    fn forget_changes(&mut self) {
        let _ = self.drain_dirty(|_, _, _| Ok::<(), StoreError>(()));
    }
    fn row_json(&self, key: &[u8], value: &[u8]) -> Result<serde_json::Value, StoreError> {
        row_json::<(String, I), V>(key, value)
    }
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, id): (String, I) = parse(key, &key[1..])?;
        let v: V = parse_row(key, value)?;
        self.load(tenant, id, v);
        Ok(())
    }
}

impl StoredTable for crate::timers::Timers {
    #[cfg(test)]
    fn mark_all_changed(&mut self) {
        crate::timers::Timers::mark_all_changed(self);
    }
    fn begin(&mut self) {
        crate::timers::Timers::begin(self);
    }
    fn commit(&mut self) {
        crate::timers::Timers::commit(self);
    }
    fn rollback(&mut self) {
        crate::timers::Timers::rollback(self);
    }
    fn drain_into(
        &mut self,
        tag: u8,
        rows: Option<Rows>,
        batch: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        let rows = rows.unwrap_or(Rows::Binary);
        self.drain(|w| {
            batch.push(match w {
                crate::timers::TimerWrite::Put(due, id, timer) => {
                    (key_bytes(tag, &(due, id))?, Some(encode_row(rows, timer)?))
                }
                crate::timers::TimerWrite::Delete(due, id) => (key_bytes(tag, &(due, id))?, None),
            });
            Ok(())
        })
    }
    fn forget_changes(&mut self) {
        let _ = self.drain(|_| Ok::<(), StoreError>(()));
    }
    fn row_json(&self, key: &[u8], value: &[u8]) -> Result<serde_json::Value, StoreError> {
        row_json::<(i64, String), Timer>(key, value)
    }
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (due, id): (i64, String) = parse(key, &key[1..])?;
        let timer: Timer = parse_row(key, value)?;
        self.load(due, id, timer);
        Ok(())
    }
}

/// A tenant's config, or the empty default for a tenant never configured.
pub struct TenantConfigRef<'a>(Option<&'a TenantConfig>);

impl std::ops::Deref for TenantConfigRef<'_> {
    type Target = TenantConfig;
    fn deref(&self) -> &TenantConfig {
        static EMPTY: std::sync::OnceLock<TenantConfig> = std::sync::OnceLock::new();
        self.0
            .unwrap_or_else(|| EMPTY.get_or_init(TenantConfig::default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use crate::{Engine, Settings};

    fn sms(id: &str, from: &str, text: &str) -> Input {
        Input::Inbound(InboundMessage::text(
            id,
            "acme",
            Channel::Sms,
            from,
            "+100",
            text,
        ))
    }

    /// Stores written before the timers got their own structure hold a timer-index row per
    /// timer: they load (the index is derived from the timers), and the next flush deletes
    /// those rows.
    #[test]
    fn timer_index_rows_of_former_stores_load_and_are_deleted() {
        let t0 = 1_772_445_600_000;
        let mut state = State::new(Default::default());
        let timer = Timer {
            tenant: "acme".into(),
            kind: TimerKind::Wake {
                purpose: "test".into(),
                subject: "x".into(),
            },
        };
        state.schedule(t0 + 60_000, "acme/test/x".into(), timer);
        let mut store = MemStore::default();
        store
            .write(&state.take_changes().expect("encode"))
            .expect("write");
        let old_index = key_bytes(T_TIMER_INDEX, &"acme/test/x").expect("key");
        let due = encode_row(Rows::Binary, &(t0 + 60_000)).expect("row");
        store.map.insert(old_index.clone(), due);

        let mut engine = Engine::open(store, Settings::default()).expect("reopen");
        assert_eq!(
            engine.state().timers.due_of("acme/test/x"),
            Some(t0 + 60_000)
        );
        let batch = engine.flush().expect("flush");
        assert!(batch.contains(&(old_index.clone(), None)), "{batch:?}");
        assert!(!engine.store().map.contains_key(&old_index));
        assert!(!engine.store().map.keys().any(|k| k[0] == T_TIMER_INDEX));
    }

    /// Stores written before the analytics kept one row per queue and agent hold a row per
    /// window and one per window and distribution: they load into the new rows, the window is
    /// emitted with their figures when it is due, and the next flush deletes them.
    #[test]
    fn analytics_rows_of_former_stores_are_adopted() {
        use crate::analytics::{Durations, Figures, Measure};
        let start = 1_772_445_600_000;
        let settings = Settings::default();
        let mut state = State::new(Default::default());
        let timer = Timer {
            tenant: "acme".into(),
            kind: TimerKind::Wake {
                purpose: "analytics".into(),
                subject: start.to_string().into(),
            },
        };
        let due = start + settings.analytics_window_ms + settings.analytics_grace_ms;
        state.schedule(due, format!("acme/analytics/{start}"), timer);
        let mut store = MemStore::default();
        store
            .write(&state.take_changes().expect("encode"))
            .expect("write");
        let figures: Figures = serde_json::from_value(serde_json::json!({
            "offered": 2, "assigned": 1, "abandoned": 0, "solved": 0,
            "sla": [[1, 0], [0, 0], [0, 0]], "csat": [0, 0], "sentiment": [0, 0, 0],
        }))
        .expect("figures");
        let mut waited = Durations::default();
        waited.add(15_000);
        let window = (start, AnalyticsDimension::Queue, "billing");
        let old = [
            (
                key_bytes(T_WINDOW, &("acme", window)).expect("key"),
                encode_row(Rows::Binary, &figures).expect("row"),
            ),
            (
                key_bytes(
                    T_WINDOW_DURATIONS,
                    &("acme", (window, Measure::TimeToAssign)),
                )
                .expect("key"),
                encode_row(Rows::Binary, &waited).expect("row"),
            ),
        ];
        store.map.extend(old.iter().cloned());

        let mut engine = Engine::open(store, settings).expect("reopen");
        let step = engine.process(due, &Input::Tick(Tick::default()));
        let emitted: Vec<&AnalyticsWindow> = step
            .outputs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Analytics(w) => Some(w),
                _ => None,
            })
            .collect();
        let [w] = emitted[..] else {
            panic!("one window: {emitted:?}")
        };
        assert_eq!(
            (w.key.as_str(), w.window_start, w.offered, w.assigned),
            ("billing", start, 2, 1)
        );
        assert_eq!((w.sla_met.first_response, w.time_to_assign.count), (1, 1));
        assert_eq!(w.time_to_assign.sum_ms, 15_000);
        let batch = engine.flush().expect("flush");
        for (key, _) in &old {
            assert!(batch.contains(&(key.clone(), None)), "{batch:?}");
        }
        assert!(!engine
            .store()
            .map
            .keys()
            .any(|k| [T_WINDOW, T_WINDOW_DURATIONS, T_ANALYTICS].contains(&k[0])));
    }

    /// Stores written before binary rows hold JSON rows: they load, and the engine goes on
    /// exactly as over its own binary rows.
    #[test]
    fn json_rows_of_former_stores_load_like_binary_rows() {
        let t0 = 1_772_445_600_000;
        let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("open");
        for (i, from) in ["+1", "+2", "+1", "+3"].iter().enumerate() {
            engine.process(
                t0 + i as i64,
                &sms(&format!("m{i}"), from, "where is my refund"),
            );
        }
        engine.flush().expect("flush");
        let binary = engine.store().clone();
        assert!(binary
            .map
            .values()
            .any(|v| v.first() == Some(&BINARY_ROW_V1)));

        let mut state = State::load(&binary, Default::default()).expect("load");
        for (_, t) in state.tables() {
            t.mark_all_changed();
        }
        let mut json = MemStore::default();
        json.write(
            &state
                .take_changes_as(Some(Rows::Json), None)
                .expect("encode"),
        )
        .expect("write");
        for (k, v) in binary
            .map
            .iter()
            .filter(|(k, _)| k[0] == crate::dedup::T_DEDUP)
        {
            json.map.insert(k.clone(), v.clone());
        }
        assert!(json
            .map
            .iter()
            .all(|(k, v)| k[0] == crate::dedup::T_DEDUP || v.first() != Some(&BINARY_ROW_V1)));

        let mut a = Engine::open(binary, Settings::default()).expect("binary");
        let mut b = Engine::open(json, Settings::default()).expect("json");
        for (i, from) in ["+1", "+4", "+2"].iter().enumerate() {
            let input = sms(&format!("n{i}"), from, "thanks");
            assert_eq!(
                a.process(t0 + 10 + i as i64, &input),
                b.process(t0 + 10 + i as i64, &input)
            );
        }
        let repeat = sms("m0", "+1", "where is my refund");
        assert!(b.process(t0 + 20, &repeat).duplicate);
    }
}
