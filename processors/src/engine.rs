//! The engine: one partition's processors over one state, driven by input records.
//!
//! `(state, record, now) → outputs`. For each record the engine advances stream time, fires the
//! timers that became due (in (due, id) order, each with `now = due`), drops a record whose id
//! it has already processed, and passes the record to each processor in turn. Every output a
//! processor emits is also offered to every processor, in emission order, so processors react
//! to each other's decisions (routing reacts to `Opened`, assignment to `Routed`, ...) without
//! knowing about each other.

use std::sync::Arc;
use switchboard_schemas::*;

use crate::query::{Answer, Query};
use crate::state::{Archived, State, Timer, TimerKind};
use crate::store::{Store, StoreError, Write};
use crate::Processor;

/// Engine settings that are not per-tenant config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long (in stream time) a processed record id is remembered for idempotency
    /// (R-TIME-1; up to 1/24 longer, see [`crate::dedup`]).
    pub dedup_retention_ms: i64,
    /// Whether the dedup window's ids are looked up in the store rather than held in memory
    /// (the runtime, whose store is RocksDB on disk: memory then does not grow with traffic;
    /// see [`crate::dedup`]).
    pub dedup_in_store: bool,
    /// Bound on the outputs one record may cause, against a misconfigured feedback loop.
    pub max_outputs_per_record: usize,
    /// How long (in stream time) a Closed conversation stays in memory before its rows move
    /// to the store's archive ([`State::archive`]); `None` keeps them in memory.
    pub archive_closed_after_ms: Option<i64>,
    /// Whether `cc.analytics` windows are kept and emitted ([`crate::analytics`]), with
    /// their tumbling window and the grace period after its end before one is emitted.
    pub analytics: bool,
    pub analytics_window_ms: i64,
    pub analytics_grace_ms: i64,
}

/// The default of [`Settings::archive_closed_after_ms`]: an hour.
pub const DEFAULT_ARCHIVE_AFTER_MS: i64 = 3_600_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dedup_retention_ms: crate::dedup::DEFAULT_WINDOW_MS,
            dedup_in_store: false,
            max_outputs_per_record: 100_000,
            archive_closed_after_ms: Some(DEFAULT_ARCHIVE_AFTER_MS),
            analytics: true,
            analytics_window_ms: crate::analytics::DEFAULT_WINDOW_MS,
            analytics_grace_ms: crate::analytics::DEFAULT_GRACE_MS,
        }
    }
}

/// The purpose of the timer that archives a Closed conversation.
const ARCHIVE: &str = "archive";

/// Schedule the archiving of conversation `conv` at `due`.
fn schedule_archive(state: &mut State, tenant: &str, conv: &str, due: i64) {
    let timer = Timer {
        tenant: state.tenant_name(tenant),
        kind: TimerKind::Wake {
            purpose: ARCHIVE.into(),
            subject: state.conversation_key(tenant, conv),
        },
    };
    let id = IdBuilder::new(tenant.len() + conv.len() + 9)
        .str(tenant)
        .str("/archive/")
        .str(conv)
        .build();
    state.schedule(due, id, timer);
}

/// The message a panic carried (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Why a record was not applied: it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Rejection {
        Rejection(reason.into())
    }
}

/// Whether a processor acted on an input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Yes,
    No,
    /// Acted on it, and no later processor sees it (a survey answer is not a message).
    Consumed,
}

/// The processing context handed to processors: the state, the current time, and the place
/// to emit outputs and schedule timers.
/// An id built piece by piece: what `format!` makes of strings and integers, without the
/// formatting machinery (about a thousand instructions a call). Output ids and timer ids are
/// built several times for every record.
pub(crate) struct IdBuilder(String);

impl IdBuilder {
    pub(crate) fn new(capacity: usize) -> IdBuilder {
        IdBuilder(String::with_capacity(capacity))
    }

    pub(crate) fn str(mut self, s: &str) -> IdBuilder {
        self.0.push_str(s);
        self
    }

    /// `n` in decimal, as `format!("{n}")` writes it.
    pub(crate) fn int(mut self, n: i64) -> IdBuilder {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.0.push('-');
        }
        self.0.extend(digits[at..].iter().map(|d| char::from(*d)));
        self
    }

    pub(crate) fn build(self) -> String {
        self.0
    }
}

pub struct Ctx<'a> {
    pub now: i64,
    pub tenant: &'a str,
    pub state: &'a mut State,
    pub settings: &'a Settings,
    cause: &'a str,
    seq: u32,
    /// Outputs emitted and not yet offered to the processors, each with the workflow floor
    /// in force when it was emitted.
    outputs: Vec<(Output, usize)>,
    input: Option<&'a Input>,
    /// Workflows at this position of the tenant's ordered list or later may be triggered
    /// by what is emitted now (SPEC §10.5): 0 for what a record causes, n + 1 for what
    /// workflow n's actions cause.
    pub flow_floor: usize,
    /// Workflow runs caused by the current record (or timer) so far.
    pub flow_runs: usize,
    /// Set when a processor rejects the record while reacting to an output.
    failure: Option<Rejection>,
}

impl<'a> Ctx<'a> {
    /// Whether this is a timer's work (no input record).
    pub fn is_timer(&self) -> bool {
        self.input.is_none()
    }

    /// A deterministic id for the next output: `<cause>#<n>`, where the cause is the input
    /// record id, or `<timer id>@<due time>` for a timer (R-TIME-7).
    pub fn next_id(&mut self) -> String {
        let id = IdBuilder::new(self.cause.len() + 8)
            .str(self.cause)
            .str("#")
            .int(i64::from(self.seq))
            .build();
        self.seq += 1;
        id
    }

    pub fn emit(&mut self, output: Output) {
        self.outputs.push((output, self.flow_floor));
    }

    /// Reject the current record from a reaction to an output (where no `Result` is
    /// returned): the engine undoes the record and dead-letters it with this reason. The
    /// first rejection wins.
    pub fn reject(&mut self, rejection: Rejection) {
        self.failure.get_or_insert(rejection);
    }

    /// The input record being processed (none while a timer fires).
    pub fn input(&self) -> Option<&'a Input> {
        self.input
    }

    pub fn schedule(&mut self, due: i64, id: String, kind: TimerKind) {
        let timer = Timer {
            tenant: self.state.tenant_name(self.tenant),
            kind,
        };
        self.state.schedule(due, id, timer);
    }

    /// [`Ctx::schedule`] with an id already shared (a processor that keeps its timers' ids).
    pub fn schedule_shared(&mut self, due: i64, id: Arc<str>, kind: TimerKind) {
        let timer = Timer {
            tenant: self.state.tenant_name(self.tenant),
            kind,
        };
        self.state.schedule_shared(due, id, timer);
    }

    /// Archive conversation `conv` (just Closed) once [`Settings::archive_closed_after_ms`]
    /// of stream time has passed and nothing is left to do for it.
    pub fn schedule_archive(&mut self, conv: &str) {
        if let Some(after) = self.settings.archive_closed_after_ms {
            schedule_archive(
                self.state,
                self.tenant,
                conv,
                self.now.saturating_add(after),
            );
        }
    }

    /// Emit a conversation event for conversation `conversation_id` (which must exist).
    pub fn conversation_event(&mut self, conversation_id: &str, event: ConversationEventKind) {
        let short_id = self
            .state
            .conversation(self.tenant, conversation_id)
            .map(|c| c.short_id)
            .unwrap_or_default();
        let id = self.next_id();
        self.emit(Output::Conversation(ConversationEvent {
            id,
            tenant: self.tenant.to_string(),
            conversation_id: conversation_id.to_string(),
            short_id,
            event,
        }));
    }
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub records: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub timers_fired: u64,
    pub outputs: u64,
}

/// What one input record produced.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Outputs with the event time they were emitted at (a timer's due time, or the record's).
    pub outputs: Vec<(i64, Output)>,
    /// Set when the record was not applied; the caller dead-letters it with this reason.
    pub rejected: Option<Rejection>,
    /// The record's id had already been processed; it was dropped.
    pub duplicate: bool,
}

pub struct Engine<S: Store> {
    state: State,
    store: S,
    processors: Vec<Box<dyn Processor>>,
    settings: Settings,
    pub stats: Stats,
    /// Where a customer key is written to be looked up ([`Engine::load_sender`]).
    key_buf: String,
}

impl<S: Store> Engine<S> {
    /// Open an engine over `store`, restoring whatever state it holds, with the standard
    /// processors.
    pub fn open(store: S, settings: Settings) -> Result<Engine<S>, StoreError> {
        Engine::with_processors(store, settings, crate::standard_processors())
    }

    pub fn with_processors(
        store: S,
        settings: Settings,
        processors: Vec<Box<dyn Processor>>,
    ) -> Result<Engine<S>, StoreError> {
        let window =
            crate::dedup::DedupWindow::new(settings.dedup_retention_ms, settings.dedup_in_store);
        let state = State::load(&store, window)?;
        Ok(Engine {
            state,
            store,
            processors,
            settings,
            stats: Stats::default(),
            key_buf: String::new(),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The engine's state, the engine given up (the memory bench takes it apart).
    pub fn into_state(self) -> State {
        self.state
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn into_store(self) -> S {
        self.store
    }

    pub fn stream_time(&self) -> i64 {
        self.state.stream_time()
    }

    /// Process one input record with event time `ts`.
    pub fn process(&mut self, ts: i64, input: &Input) -> Step {
        self.stats.records += 1;
        let mut step = Step::default();
        if ts > self.state.stream_time() {
            self.state.stream_time.insert((), ts);
            self.state.dedup.expire(ts);
        }
        self.fire_due_timers(&mut step);

        if let Some((tenant, id)) = input.tenant_and_id() {
            let seen = if tenant.is_empty() || id.is_empty() {
                Err(Rejection::new("tenant and id must not be empty"))
            } else {
                (self.state.dedup)
                    .contains(&self.store, tenant, id)
                    .map_err(|e| Rejection(e.to_string()))
            };
            match seen {
                Err(r) => step.rejected = Some(r),
                Ok(true) => {
                    self.stats.duplicates += 1;
                    step.duplicate = true;
                }
                Ok(false) => {
                    let applied = self
                        .restore_named(tenant, input)
                        .and_then(|()| self.load_sender(tenant, input))
                        .map_err(|e| Rejection(e.to_string()))
                        .and_then(|()| self.apply(ts, tenant, id, Some(input), None));
                    match applied {
                        Ok(outputs) => {
                            let now = self.state.stream_time();
                            self.state.dedup.insert(tenant, id, ts, now);
                            step.outputs.extend(outputs.into_iter().map(|o| (ts, o)));
                        }
                        Err(r) => step.rejected = Some(r),
                    }
                }
            }
        }
        if step.rejected.is_some() {
            self.stats.rejected += 1;
        }
        // A record with an old timestamp may have scheduled work already due.
        self.fire_due_timers(&mut step);
        self.stats.outputs += step.outputs.len() as u64;
        step
    }

    fn fire_due_timers(&mut self, step: &mut Step) {
        let now = self.state.stream_time();
        while let Some((due, id, timer)) = self.state.pop_due_timer(now) {
            self.stats.timers_fired += 1;
            if self.engine_timer(due, &timer) {
                continue;
            }
            let tenant = timer.tenant.clone();
            // A timer id can fire again at a later due time: the cause names both, so output
            // ids stay unique.
            let cause = IdBuilder::new(id.len() + 14)
                .str(&id)
                .str("@")
                .int(due)
                .build();
            // A timer's own work never rejects; an error here is dropped with the timer.
            if let Ok(outputs) = self.apply(due, &tenant, &cause, None, Some(&timer)) {
                step.outputs.extend(outputs.into_iter().map(|o| (due, o)));
            }
        }
    }

    /// Timers the engine handles itself; true when `timer` was one.
    fn engine_timer(&mut self, due: i64, timer: &Timer) -> bool {
        match &timer.kind {
            // A timer of the former one-row-per-id dedup layout: ids now expire with their
            // bucket of the dedup window.
            TimerKind::ForgetRecordId { .. } => true,
            TimerKind::Wake { purpose, subject } if purpose == ARCHIVE => {
                self.archive(due, &timer.tenant, subject);
                true
            }
            TimerKind::Wake { .. } => false,
        }
    }

    /// Archive a Closed conversation whose survey is over, or try again when it will be.
    fn archive(&mut self, now: i64, tenant: &str, conv: &str) {
        let state = &mut self.state;
        if state
            .conversation(tenant, conv)
            .is_none_or(|c| c.status != Status::Closed)
        {
            return;
        }
        // The survey (sent after the close, answered within its window) still needs the
        // conversation: archive it after.
        let survey_send = state.timers.due_of(&format!("{tenant}/survey/{conv}/send"));
        let survey_ends = state.surveys.get(tenant, conv).map(|s| s.expires_at);
        if let Some(later) = survey_send.into_iter().chain(survey_ends).max() {
            schedule_archive(state, tenant, conv, later.max(now).saturating_add(1));
            return;
        }
        // An archive row that cannot be encoded (impossible for rows that were encoded at
        // every flush) leaves the conversation in memory.
        let _ = state.archive(tenant, conv);
    }

    /// Every tenant's live figures on this partition, for the metrics (R-RUN-4).
    pub fn live_figures(&self) -> std::collections::BTreeMap<String, crate::query::TenantFigures> {
        crate::query::live_figures(&self.state)
    }

    /// Answer an interactive query (R-RUN-5) from the state, or, for a conversation that
    /// has left memory, from the archive.
    pub fn answer(&self, query: &Query) -> Answer {
        let answer = query.answer(&self.state);
        if let (Answer::NotFound(_), Query::Conversation { tenant, reference }) = (&answer, query) {
            let known = crate::query::knows_tenant(&self.state, tenant);
            if let (true, Ok(Some(archived))) = (known, self.find_archived(tenant, reference)) {
                return crate::query::archived_answer(tenant, &archived);
            }
        }
        answer
    }

    /// An archived conversation by id or `#<short id>`.
    fn find_archived(&self, tenant: &str, reference: &str) -> Result<Option<Archived>, StoreError> {
        let id = match reference.strip_prefix('#').map(str::parse::<i64>) {
            Some(Ok(short)) => {
                let key = State::archive_short_key(tenant, short)?;
                match self.archive_row(&key)? {
                    Some(v) => State::archived_short(&key, &v)?,
                    None => return Ok(None),
                }
            }
            _ => reference.to_string(),
        };
        let key = State::archive_key(tenant, &id)?;
        match self.archive_row(&key)? {
            Some(v) => State::archived(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// An archive row as the next flush will leave it: written since the last flush, or in
    /// the store.
    fn archive_row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.state.pending_archive_row(key) {
            Some(pending) => Ok(pending.map(<[u8]>::to_vec)),
            None => self.store.get(key),
        }
    }

    /// Bring back from the archive the conversations a command names, so it applies to them
    /// exactly as if they had stayed in memory.
    fn restore_named(&mut self, tenant: &str, input: &Input) -> Result<(), StoreError> {
        let Input::Command(c) = input else {
            return Ok(());
        };
        let merged = match &c.command {
            CommandKind::Merge(m) => Some(m.source_conversation_id.as_str()),
            _ => None,
        };
        for reference in std::iter::once(c.conversation_id.as_str()).chain(merged) {
            if self.state.resolve_conversation(tenant, reference).is_some() {
                continue;
            }
            if let Some(archived) = self.find_archived(tenant, reference)? {
                let id = archived.conversation.id.clone();
                let customer = archived.conversation.customer_keys();
                self.state.unarchive(tenant, archived)?;
                for key in customer {
                    self.state.load_customer(&self.store, tenant, &key)?;
                }
                if let Some(after) = self.settings.archive_closed_after_ms {
                    let due = self.state.stream_time().saturating_add(after);
                    schedule_archive(&mut self.state, tenant, &id, due);
                }
            }
        }
        Ok(())
    }

    /// Bring the rows of an inbound message's sender into memory (sticky agent, surveys),
    /// unless a conversation already holds them there: a key that leads to an open
    /// conversation is that conversation's customer's, whose rows came with it.
    fn load_sender(&mut self, tenant: &str, input: &Input) -> Result<(), StoreError> {
        let Input::Inbound(m) = input else {
            return Ok(());
        };
        let person = m.person.as_ref().and_then(|p| p.id.as_deref());
        let mut absent: Vec<String> = Vec::new();
        let threads = &self.state.threads;
        crate::threading::each_customer_key(person, &m.from, &mut self.key_buf, |key| {
            if !threads.contains(tenant, key) {
                absent.push(key.to_string());
            }
        });
        for key in absent {
            self.state.load_customer(&self.store, tenant, &key)?;
        }
        Ok(())
    }

    /// Apply one record (or timer) atomically: its state changes stay only if every
    /// processor accepts it and its outputs stay within the bound; otherwise the state is as
    /// before it and the rejection says why.
    fn apply(
        &mut self,
        now: i64,
        tenant: &str,
        cause: &str,
        input: Option<&Input>,
        timer: Option<&Timer>,
    ) -> Result<Vec<Output>, Rejection> {
        self.state.begin();
        // A panic in a processor is a bug, but it must not stop the partition: it rejects
        // this record (or drops this timer) like any other failure, and the journal puts the
        // state back as it was before the record.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_processors(now, tenant, cause, input, timer)
        }));
        let result = run.unwrap_or_else(|panic| {
            Err(Rejection(format!(
                "processing failed (internal error): {}",
                panic_message(panic.as_ref())
            )))
        });
        match &result {
            Ok(_) => self.state.commit(),
            Err(_) => self.state.rollback(tenant),
        }
        result
    }

    fn run_processors(
        &mut self,
        now: i64,
        tenant: &str,
        cause: &str,
        input: Option<&Input>,
        timer: Option<&Timer>,
    ) -> Result<Vec<Output>, Rejection> {
        let mut cx = Ctx {
            now,
            tenant,
            state: &mut self.state,
            settings: &self.settings,
            cause,
            seq: 0,
            outputs: Vec::new(),
            input,
            flow_floor: 0,
            flow_runs: 0,
            failure: None,
        };
        if let Some(input) = input {
            let mut handled = false;
            for p in self.processors.iter_mut() {
                match p.on_input(&mut cx, input)? {
                    Handled::Yes => handled = true,
                    Handled::No => {}
                    Handled::Consumed => {
                        handled = true;
                        break;
                    }
                }
            }
            if let (Input::Command(c), false) = (input, handled) {
                return Err(Rejection(format!(
                    "command {} is not supported by this engine version",
                    c.command.name()
                )));
            }
        }
        if let Some(timer) = timer {
            for p in self.processors.iter_mut() {
                p.on_timer(&mut cx, timer);
            }
            if let Some(rejection) = cx.failure.take() {
                return Err(rejection);
            }
        }
        // Each output is offered to every processor in emission order; what they emit in turn
        // joins the end of the queue. Outputs move through, never copied.
        let mut done = Vec::new();
        let mut pending: std::collections::VecDeque<(Output, usize)> =
            std::mem::take(&mut cx.outputs).into();
        while let Some((output, floor)) = pending.pop_front() {
            if done.len() >= self.settings.max_outputs_per_record {
                return Err(Rejection(format!(
                    "record caused more than {} outputs; processors are looping",
                    self.settings.max_outputs_per_record
                )));
            }
            cx.flow_floor = floor;
            for p in self.processors.iter_mut() {
                p.on_output(&mut cx, &output);
            }
            if let Some(rejection) = cx.failure.take() {
                return Err(rejection);
            }
            pending.extend(cx.outputs.drain(..));
            done.push(output);
        }
        Ok(done)
    }

    /// Write every state change since the last flush to the store, handing the batch over
    /// (nothing else needs it: `simulate`, tests); the number of writes.
    pub fn flush_into_store(&mut self) -> Result<usize, StoreError> {
        let (batch, local) = self.changes()?;
        self.write_owned(batch, local)
    }

    /// Hand `batch` (for the store and its changelog) and `local` (for the store alone) to
    /// the store; the number of writes.
    fn write_owned(&mut self, batch: Vec<Write>, local: Vec<Write>) -> Result<usize, StoreError> {
        let n = batch.len() + local.len();
        if !batch.is_empty() {
            self.store.write_owned(batch)?;
        }
        if !local.is_empty() {
            self.store.write_local(local)?;
        }
        Ok(n)
    }

    /// Flush for a run whose store nobody else reads (`simulate`): of the changes since the
    /// last flush, only the rows the engine reads back once they leave memory are written
    /// ([`crate::state::READ_BACK`], and the dedup window's rows when it lives in the store);
    /// the rest are forgotten unencoded. The outputs are those of a run that flushes
    /// everything, or never; memory then holds the state rather than every change since the
    /// start, and customers' rows leave memory hourly as in the runtime. The number of writes.
    pub fn flush_read_back(&mut self) -> Result<usize, StoreError> {
        let mut batch = self.state.take_read_back_changes()?;
        let (mut window, mut local) = (Vec::new(), Vec::new());
        self.state
            .dedup
            .take_changes(&self.store, &mut window, &mut local)?;
        if self.settings.dedup_in_store {
            batch.append(&mut window);
        } else {
            local.clear();
        }
        self.write_owned(batch, local)
    }

    /// Write every state change since the last flush to the store, returning the batch (the
    /// runtime also sends it to the changelog topic; rows derived for the store alone, the
    /// dedup window's index, are not in it).
    pub fn flush(&mut self) -> Result<Vec<Write>, StoreError> {
        let (batch, local) = self.changes()?;
        if !batch.is_empty() {
            self.store.write(&batch)?;
        }
        if !local.is_empty() {
            self.store.write_local(local)?;
        }
        Ok(batch)
    }

    /// Write the dedup window's index rows for the ids a restore found without them (a store
    /// restored from its changelog), with [`Store::write_local`]; they then leave memory. For
    /// a store that makes them durable at once: they only describe rows it already holds.
    pub fn index_restored_ids(&mut self) -> Result<usize, StoreError> {
        let mut local = Vec::new();
        self.state.dedup.take_unindexed(&mut local);
        let n = local.len();
        if n > 0 {
            self.store.write_local(local)?;
        }
        Ok(n)
    }

    /// The state's changes since the last flush: for the store and its changelog, and for
    /// the store alone.
    fn changes(&mut self) -> Result<(Vec<Write>, Vec<Write>), StoreError> {
        let mut batch = self.state.take_changes()?;
        let mut local = Vec::new();
        self.state
            .dedup
            .take_changes(&self.store, &mut batch, &mut local)?;
        Ok((batch, local))
    }
}

#[cfg(test)]
mod tests {
    use super::IdBuilder;

    /// Output and timer ids are part of the records (SPEC §1.6: the same input gives the same
    /// outputs, byte for byte): built without `format!`, they must read exactly as `format!`
    /// wrote them, for any integer.
    #[test]
    fn ids_read_as_format_wrote_them() {
        for n in [0, 7, 10, 99, 1_700_000_000_000, -1, -42, i64::MAX, i64::MIN] {
            let built = IdBuilder::new(0).str("t1/sla/").int(n).str("#").build();
            assert_eq!(built, format!("t1/sla/{n}#"));
        }
    }
}
