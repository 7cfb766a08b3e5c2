//! Waiting strategies for messaging (SPEC §6, R-WAIT): while a conversation waits unassigned
//! in a queue, the strategy of the sender the customer wrote to sends a welcome message, then
//! announcements, and at the maximum wait a last message before closing the conversation.
//!
//! A strategy starts when a conversation enters a queue (routed, or moved) and is still
//! unassigned after automatic assignment had its chance, unless the queue is outside working
//! hours. It ends on assignment, on closing, at the maximum wait, or after one hour in the
//! queue (the conversation then stays open, and no more messages are sent).

use serde::{Deserialize, Serialize};
use switchboard_schemas::*;

use crate::engine::Ctx;
use crate::routing::queue_open;
use crate::state::{Timer, TimerKind};
use crate::threading::{send_to_customer, set_status};
use crate::Processor;

pub struct Waiting;

/// No announcement is sent after one hour in the queue.
const HORIZON_MS: i64 = 3_600_000;

/// A running strategy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WaitState {
    pub strategy_id: String,
    pub entered_at: i64,
    pub announcements: i32,
}

fn timer_id(tenant: &str, conv: &str, what: &str) -> String {
    crate::engine::IdBuilder::new(tenant.len() + conv.len() + what.len() + 7)
        .str(tenant)
        .str("/wait/")
        .str(conv)
        .str("/")
        .str(what)
        .build()
}

fn end(cx: &mut Ctx, conv: &str) {
    if cx.state.waits.remove(cx.tenant, conv).is_some() {
        for what in ["announce", "max-wait"] {
            let id = timer_id(cx.tenant, conv, what);
            cx.state.cancel(&id);
        }
    }
}

fn wake(cx: &mut Ctx, conv: &str, what: &str, due: i64) {
    let id = timer_id(cx.tenant, conv, what);
    cx.schedule(
        due,
        id,
        TimerKind::Wake {
            purpose: match what {
                "announce" => "wait-announce".into(),
                "max-wait" => "wait-max-wait".into(),
                other => format!("wait-{other}").into(),
            },
            subject: cx.state.conversation_key(cx.tenant, conv),
        },
    );
}

/// Start the sender's strategy if the conversation waits unassigned in an open queue.
fn maybe_start(cx: &mut Ctx, conv_id: &str) {
    let tenant = cx.tenant;
    if cx.state.waits.contains(tenant, conv_id) {
        return;
    }
    let Some(conv) = cx.state.conversation(tenant, conv_id) else {
        return;
    };
    if conv.assignee.is_some() || conv.status == Status::Closed {
        return;
    }
    let config = cx.state.shared_config(tenant);
    let open = conv
        .queue_id
        .as_deref()
        .is_some_and(|q| queue_open(&config, q, cx.now));
    let Some(strategy) = config.waiting_strategy_for(&conv.sender).filter(|_| open) else {
        return;
    };
    let now = cx.now;
    let key = cx.state.conversation_key(tenant, conv_id);
    cx.state.waits.insert(
        tenant,
        key,
        WaitState {
            strategy_id: strategy.id.clone(),
            entered_at: now,
            announcements: 0,
        },
    );
    if let Some(text) = &strategy.welcome {
        send_to_customer(cx, conv_id, OutboundKind::Welcome, text);
    }
    if let Some(a) = &strategy.announcement {
        let due = now + i64::from(a.interval_seconds) * 1000;
        if due <= now + HORIZON_MS {
            wake(cx, conv_id, "announce", due);
        }
    }
    if let Some(m) = &strategy.max_wait {
        wake(
            cx,
            conv_id,
            "max-wait",
            now + i64::from(m.after_seconds) * 1000,
        );
    }
}

fn on_timer(cx: &mut Ctx, what: &str, conv_id: &str) {
    let tenant = cx.tenant;
    let Some(wait) = cx.state.waits.get(tenant, conv_id).cloned() else {
        return;
    };
    let config = cx.state.shared_config(tenant);
    let Some(strategy) = config.waiting_strategies.get(&wait.strategy_id) else {
        // The strategy was deleted while the conversation waited.
        end(cx, conv_id);
        return;
    };
    match what {
        "wait-announce" => {
            let Some(a) = &strategy.announcement else {
                return;
            };
            if wait.announcements >= a.max_count || cx.now > wait.entered_at + HORIZON_MS {
                return;
            }
            send_to_customer(cx, conv_id, OutboundKind::Announcement, &a.text);
            let sent = wait.announcements + 1;
            if let Some(w) = cx.state.waits.get_mut(tenant, conv_id) {
                w.announcements = sent;
            }
            let next = cx.now + i64::from(a.interval_seconds) * 1000;
            if sent < a.max_count && next <= wait.entered_at + HORIZON_MS {
                wake(cx, conv_id, "announce", next);
            }
        }
        "wait-max-wait" => {
            let Some(m) = &strategy.max_wait else { return };
            end(cx, conv_id);
            send_to_customer(cx, conv_id, OutboundKind::MaxWait, &m.text);
            set_status(cx, conv_id, Status::Closed, "max_wait");
        }
        _ => {}
    }
}

impl Processor for Waiting {
    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        match output {
            Output::Conversation(e) if e.tenant == cx.tenant => match &e.event {
                ConversationEventKind::Routed(_) | ConversationEventKind::QueueChanged(_) => {
                    maybe_start(cx, &e.conversation_id)
                }
                ConversationEventKind::StatusChanged(s) if s.to == Status::Closed => {
                    end(cx, &e.conversation_id)
                }
                _ => {}
            },
            Output::Assignment(AssignmentEvent {
                conversation_id,
                event: AssignmentEventKind::Assigned(_),
                tenant,
                ..
            }) if *tenant == cx.tenant => end(cx, conversation_id),
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            if purpose.starts_with("wait-") {
                on_timer(cx, purpose, subject);
            }
        }
    }
}
