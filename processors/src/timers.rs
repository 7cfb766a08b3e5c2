//! The partition's timers: work scheduled for a stream time (SPEC R-TIME-4).
//!
//! Timers are the busiest state there is: a conversation schedules, moves and cancels several
//! over its life, and the SLA clocks move theirs whenever a due time changes. So they have a
//! structure of their own rather than a general table: each timer id is one shared string,
//! held by the row (id → due and timer) and by the firing order ((due, id), ascending), and
//! changes are marked in the row itself.
//!
//! In the store a timer is one row, (due, id) → timer, as before; the id → due index is
//! derived when the store is opened. A timer scheduled and cancelled between two flushes is
//! never written, and moving a timer deletes its old row. While a record is applied
//! ([`Timers::begin`]) the first change to each timer keeps it as it was, so
//! [`Timers::rollback`] restores every timer the record touched.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::state::{Stamp, Timer};
use crate::store::{Journal, Marks};

/// One timer id's row.
#[derive(Clone, Debug)]
struct Row {
    /// The timer and its due time; `None` once cancelled or fired, until the next flush.
    live: Option<Live>,
    /// The due time of its row in the store (as of the last flush), if it has one.
    stored: Stamp,
    /// Changed since the last flush (its id is then in [`Timers::dirty`]), and the record
    /// that last journaled it.
    marks: Marks,
}

/// A scheduled timer: its due time and what it does.
type Live = (i64, Timer);

/// What [`Timers::drain`] hands over for one changed timer.
pub enum TimerWrite<'a> {
    /// Write the row (due, id) → timer.
    Put(i64, &'a str, &'a Timer),
    /// Delete the row (due, id).
    Delete(i64, &'a str),
}

#[derive(Clone, Debug, Default)]
pub struct Timers {
    rows: FxHashMap<Arc<str>, Row>,
    /// Live timers in firing order: (due, id).
    order: BTreeSet<(i64, Arc<str>)>,
    dirty: Vec<Arc<str>>,
    /// While a record is applied: (id, the timer before the record, dirty before).
    journal: Journal<(Arc<str>, Option<Live>, bool)>,
}

impl Timers {
    /// The due time of timer `id`, if it is scheduled.
    pub fn due_of(&self, id: &str) -> Option<i64> {
        self.rows.get(id)?.live.as_ref().map(|(due, _)| *due)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.due_of(id).is_some()
    }

    /// How many timers are scheduled.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The row of `id`, made (empty) when missing, marked changed and journaled the first
    /// time the current record changes it.
    fn touch(&mut self, id: &str, owned: impl FnOnce() -> Arc<str>) -> (Arc<str>, &mut Row) {
        let key = match self.rows.get_key_value(id) {
            Some((k, _)) => Arc::clone(k),
            None => owned(),
        };
        let row = self.rows.entry(Arc::clone(&key)).or_insert(Row {
            live: None,
            stored: Stamp::UNSET,
            marks: Marks::default(),
        });
        let (live, was_dirty) = (&row.live, row.marks.dirty());
        self.journal.first_change(&mut row.marks, || {
            (Arc::clone(&key), live.clone(), was_dirty)
        });
        if !row.marks.dirty() {
            row.marks.set_dirty(true);
            self.dirty.push(Arc::clone(&key));
        }
        (key, row)
    }

    /// The id of timer `id` as this structure holds it, to share rather than copy.
    pub fn shared_id(&self, id: &str) -> Option<Arc<str>> {
        self.rows.get_key_value(id).map(|(k, _)| Arc::clone(k))
    }

    /// Schedule (or move) timer `id` to fire at `due`.
    pub fn schedule(&mut self, due: i64, id: String, timer: Timer) {
        self.schedule_with(due, &id, || Arc::from(id.as_str()), timer);
    }

    /// [`Timers::schedule`] with an id already shared: a new timer keeps it as its id.
    pub fn schedule_shared(&mut self, due: i64, id: Arc<str>, timer: Timer) {
        self.schedule_with(due, &Arc::clone(&id), || id, timer);
    }

    fn schedule_with(
        &mut self,
        due: i64,
        id: &str,
        owned: impl FnOnce() -> Arc<str>,
        timer: Timer,
    ) {
        let (key, row) = self.touch(id, owned);
        let old = row.live.replace((due, timer)).map(|(d, _)| d);
        if let Some(old) = old {
            self.order.remove(&(old, Arc::clone(&key)));
        }
        self.order.insert((due, key));
    }

    /// Cancel timer `id`, if it is scheduled.
    pub fn cancel(&mut self, id: &str) {
        if !self.contains(id) {
            return;
        }
        let (key, row) = self.touch(id, || Arc::from(id));
        let unstored = row.stored.is_none();
        if let Some((due, _)) = row.live.take() {
            self.order.remove(&(due, Arc::clone(&key)));
        }
        self.forget_unstored(&key, unstored);
    }

    /// A timer that ended before it was ever written leaves memory at once: the store has
    /// nothing to delete (the journal keeps it for a rollback).
    fn forget_unstored(&mut self, id: &Arc<str>, unstored: bool) {
        if unstored {
            self.rows.remove(id);
        }
    }

    /// Remove and return the earliest timer due at or before `time`.
    pub fn pop_due(&mut self, time: i64) -> Option<(i64, Arc<str>, Timer)> {
        let (due, id) = self.order.first()?.clone();
        if due > time {
            return None;
        }
        self.order.pop_first();
        let (_, row) = self.touch(&id, || Arc::clone(&id));
        let unstored = row.stored.is_none();
        let (_, timer) = row.live.take()?;
        self.forget_unstored(&id, unstored);
        Some((due, id, timer))
    }

    /// Start keeping what the next record changes.
    pub fn begin(&mut self) {
        self.journal.begin();
    }

    pub fn commit(&mut self) {
        self.journal.commit();
    }

    /// Undo every change since [`Timers::begin`].
    pub fn rollback(&mut self) {
        for (id, before, was_dirty) in self.journal.take() {
            // A row that ended unstored during the record is gone: bring it back.
            let row = self.rows.entry(Arc::clone(&id)).or_insert(Row {
                live: None,
                stored: Stamp::UNSET,
                marks: Marks::default(),
            });
            if let Some((due, _)) = &row.live {
                self.order.remove(&(*due, Arc::clone(&id)));
            }
            if let Some((due, _)) = &before {
                self.order.insert((*due, Arc::clone(&id)));
            }
            row.live = before;
            row.marks.set_dirty(was_dirty);
            if row.live.is_none() && row.stored.is_none() && !row.marks.dirty() {
                self.rows.remove(&id);
            }
        }
    }

    /// A timer read from the store.
    pub(crate) fn load(&mut self, due: i64, id: String, timer: Timer) {
        let id: Arc<str> = id.into();
        if let Some(row) = self.rows.get(&id) {
            if let Some((old, _)) = &row.live {
                self.order.remove(&(*old, Arc::clone(&id)));
            }
        }
        self.order.insert((due, Arc::clone(&id)));
        let row = Row {
            live: Some((due, timer)),
            stored: Some(due).into(),
            marks: Marks::default(),
        };
        self.rows.insert(id, row);
    }

    /// Mark every timer changed (tests re-encode whole stores).
    #[cfg(test)]
    pub(crate) fn mark_all_changed(&mut self) {
        for (id, row) in self.rows.iter_mut() {
            if !row.marks.dirty() {
                row.marks.set_dirty(true);
                self.dirty.push(Arc::clone(id));
            }
        }
    }

    /// Hand every timer changed since the last call to `write`, by id: its old row deleted
    /// when it moved or ended, its new one written. Ended timers then leave memory.
    pub(crate) fn drain<E>(
        &mut self,
        mut write: impl FnMut(TimerWrite) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut result = Ok(());
        for id in dirty {
            let Some(row) = self.rows.get_mut(&id) else {
                continue;
            };
            if !row.marks.dirty() {
                continue;
            }
            row.marks.set_dirty(false);
            let now = row.live.as_ref().map(|(due, _)| *due);
            if let Some(old) = row.stored.get().filter(|old| Some(*old) != now) {
                result = result.and_then(|()| write(TimerWrite::Delete(old, &id)));
            }
            if let Some((due, timer)) = &row.live {
                result = result.and_then(|()| write(TimerWrite::Put(*due, &id, timer)));
            }
            row.stored = now.into();
            if row.live.is_none() {
                self.rows.remove(&id);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TimerKind;

    fn timer(subject: &str) -> Timer {
        Timer {
            tenant: "acme".into(),
            kind: TimerKind::Wake {
                purpose: "test".into(),
                subject: subject.into(),
            },
        }
    }

    fn writes(t: &mut Timers) -> Vec<String> {
        let mut out = Vec::new();
        t.drain(|w| {
            out.push(match w {
                TimerWrite::Put(due, id, _) => format!("put {due} {id}"),
                TimerWrite::Delete(due, id) => format!("delete {due} {id}"),
            });
            Ok::<(), ()>(())
        })
        .expect("drain");
        out
    }

    /// R-TIME-4: timers fire in (due, id) order; moving one deletes its stored row, and one
    /// scheduled and cancelled between flushes is never written.
    #[test]
    fn timers_fire_in_order_and_write_only_what_the_store_needs() {
        let mut t = Timers::default();
        t.schedule(20, "b".into(), timer("b"));
        t.schedule(10, "c".into(), timer("c"));
        t.schedule(20, "a".into(), timer("a"));
        t.schedule(5, "gone".into(), timer("gone"));
        t.cancel("gone");
        assert_eq!(writes(&mut t), ["put 20 a", "put 20 b", "put 10 c"]);
        t.schedule(30, "b".into(), timer("b"));
        assert_eq!(t.due_of("b"), Some(30));
        assert_eq!(writes(&mut t), ["delete 20 b", "put 30 b"]);
        let fired: Vec<(i64, String)> = std::iter::from_fn(|| t.pop_due(25))
            .map(|(due, id, _)| (due, id.to_string()))
            .collect();
        assert_eq!(fired, [(10, "c".to_string()), (20, "a".to_string())]);
        assert_eq!(writes(&mut t), ["delete 20 a", "delete 10 c"]);
        assert_eq!(t.len(), 1);
        assert!(t.rows.len() == 1, "fired timers leave memory once flushed");
        t.schedule(40, "brief".into(), timer("brief"));
        t.cancel("brief");
        assert_eq!(
            t.rows.len(),
            1,
            "a timer never written leaves memory when it ends"
        );
    }

    /// Atomic records: a rolled-back record leaves the timers, their order and what the next
    /// flush writes exactly as before it.
    #[test]
    fn rollback_restores_every_timer_the_record_touched() {
        let mut t = Timers::default();
        t.schedule(10, "a".into(), timer("a"));
        t.schedule(20, "b".into(), timer("b"));
        writes(&mut t);
        t.begin();
        t.schedule(15, "a".into(), timer("a2"));
        t.cancel("b");
        t.schedule(5, "new".into(), timer("new"));
        assert!(t.pop_due(100).is_some());
        t.rollback();
        assert_eq!(t.due_of("a"), Some(10));
        assert_eq!(t.due_of("b"), Some(20));
        assert!(!t.contains("new"));
        assert!(writes(&mut t).is_empty());
        let order: Vec<i64> = std::iter::from_fn(|| t.pop_due(100))
            .map(|(due, _, _)| due)
            .collect();
        assert_eq!(order, [10, 20]);
    }
}
