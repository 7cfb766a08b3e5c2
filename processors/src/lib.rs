//! Switchboard's domain: pure, deterministic processors.
//!
//! `(state, event, now) → outputs`: no Kafka, no clock, no I/O. The [`engine::Engine`] runs
//! the processors for one partition over a [`store::Store`]; [`simulation`] runs engines over
//! a list of input records exactly as the Kafka runtime would, which is what `switchboard
//! simulate` and the tests use.

pub mod analytics;
pub mod assignment;
pub mod calendar;
pub mod condition;
pub mod config;
pub mod csat;
pub mod dedup;
pub mod engine;
pub mod partition;
pub mod query;
pub mod routing;
pub mod sentiment;
pub mod simulation;
pub mod sla;
pub mod state;
pub mod store;
pub mod threading;
pub mod timers;
pub mod waiting;
pub mod workflow;

pub use engine::{Ctx, Engine, Handled, Rejection, Settings, Stats, Step};
pub use store::{MemStore, Store, StoreError};

use switchboard_schemas::{Input, Output};

/// One stage of the pipeline. Every method has a do-nothing default, so a processor implements
/// only what it reacts to. `Send`: an engine is built where its partition is restored and
/// runs where the runtime schedules it.
pub trait Processor: Send {
    /// An input record. Return `Handled::Yes` when the record is (also) this processor's; an
    /// error rejects the record to the dead-letter topic, and the engine undoes every state
    /// change the record made, in this processor and the ones before it.
    fn on_input(&mut self, _cx: &mut Ctx, _input: &Input) -> Result<Handled, Rejection> {
        Ok(Handled::No)
    }

    /// An output emitted by any processor while handling the current record or timer.
    fn on_output(&mut self, _cx: &mut Ctx, _output: &Output) {}

    /// A timer that came due.
    fn on_timer(&mut self, _cx: &mut Ctx, _timer: &state::Timer) {}
}

/// The processors in pipeline order.
pub fn standard_processors() -> Vec<Box<dyn Processor>> {
    vec![
        Box::new(config::ConfigProcessor),
        // Before threading: a survey answer is consumed and never becomes a message.
        Box::new(csat::Csat),
        Box::new(threading::Threading),
        Box::new(routing::Routing),
        Box::new(assignment::Assignment),
        Box::new(waiting::Waiting),
        Box::new(sla::Sla),
        Box::new(sentiment::Sentiment {
            scorer: sentiment::Scorer::default(),
        }),
        // A workflow sees what every other processor made of an event first.
        Box::new(workflow::Workflows),
        // Counts what everything else decided, into windows of event time.
        Box::new(analytics::Analytics),
    ]
}
