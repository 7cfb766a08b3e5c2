//! Routing (SPEC §4): a new conversation goes to the queue of the first enabled route whose
//! condition holds (Default queue, priority Normal, when none does); a conversation opened
//! while its queue is outside working hours gets the queue's away message once, and with
//! `close_after_away` is then Closed. Routed conversations move only by `ChangeQueue`.

use switchboard_schemas::*;

use crate::condition::{self, MessageFacts};
use crate::engine::{Ctx, Handled, Rejection};
use crate::state::{SortedSet, TenantConfig, DEFAULT_QUEUE};
use crate::threading::{send_to_customer, set_status};
use crate::Processor;

pub struct Routing;

/// What conditions see of a message: its attributes, the conversation's tags, and the
/// queues whose senders include our address `to` (the `sender_queue` attribute).
pub fn message_facts<'a>(
    config: &TenantConfig,
    message: &'a InboundMessage,
    conversation_tags: &'a SortedSet<String>,
) -> MessageFacts<'a> {
    let sender_queues = config
        .queues
        .values()
        .filter(|q| {
            q.senders
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&message.to))
        })
        .map(|q| q.id.clone())
        .collect();
    MessageFacts {
        message,
        conversation_tags,
        sender_queues,
    }
}

/// The destination of a new conversation: (queue, priority, matching route).
pub fn route(
    config: &TenantConfig,
    message: &InboundMessage,
    conversation_tags: &SortedSet<String>,
) -> (String, Priority, Option<String>) {
    let facts = message_facts(config, message, conversation_tags);
    config
        .routes_in_order()
        .find(|r| condition::eval(&r.condition, &facts))
        .map(|r| (r.queue_id.clone(), r.priority, Some(r.id.clone())))
        .unwrap_or_else(|| (DEFAULT_QUEUE.to_string(), Priority::Normal, None))
}

/// Whether `queue_id` is open at `now`: true without a working-hours period.
pub fn queue_open(config: &TenantConfig, queue_id: &str, now: i64) -> bool {
    config.calendar_of(queue_id).is_none_or(|c| c.is_open(now))
}

fn on_opened(cx: &mut Ctx, conversation_id: &str) {
    let Some(Input::Inbound(message)) = cx.input() else {
        return;
    };
    let tenant = cx.tenant;
    let Some(conv) = cx.state.conversation(tenant, conversation_id) else {
        return;
    };
    let (queue_id, priority, route_id) = {
        let config = cx.state.config(tenant);
        route(&config, message, &conv.tags)
    };
    if let Some(conv) = cx.state.conversation_mut(tenant, conversation_id) {
        conv.queue_id = Some(queue_id.as_str().into());
        conv.priority = priority;
    }
    cx.conversation_event(
        conversation_id,
        ConversationEventKind::Routed(Routed {
            queue_id: queue_id.clone(),
            priority,
            route_id,
        }),
    );
    let config = cx.state.config(tenant);
    if queue_open(&config, &queue_id, cx.now) {
        return;
    }
    let Some(period) = config.period_of(&queue_id) else {
        return;
    };
    let (away, close) = (period.away_message.clone(), period.close_after_away);
    if let Some(text) = away.filter(|t| !t.is_empty()) {
        send_to_customer(cx, conversation_id, OutboundKind::Away, &text);
        if close {
            set_status(cx, conversation_id, Status::Closed, "outside_working_hours");
        }
    }
}

fn change_queue(cx: &mut Ctx, conversation_id: &str, queue_id: &str) -> Result<(), Rejection> {
    let tenant = cx.tenant;
    if !cx.state.config(tenant).has_queue(queue_id) {
        return Err(Rejection(format!("unknown queue {queue_id:?}")));
    }
    let Some(resolved) = cx.state.resolve_conversation(tenant, conversation_id) else {
        return Err(Rejection(format!(
            "unknown conversation {conversation_id:?}"
        )));
    };
    let conversation_id = resolved.as_str();
    let Some(conv) = cx.state.conversation_mut(tenant, conversation_id) else {
        return Err(Rejection(format!(
            "unknown conversation {conversation_id:?}"
        )));
    };
    if conv.status == Status::Closed {
        return Err(Rejection(format!(
            "conversation {conversation_id:?} is closed; ChangeQueue does not apply"
        )));
    }
    let from = conv
        .queue_id
        .as_deref()
        .unwrap_or(DEFAULT_QUEUE)
        .to_string();
    if from == queue_id {
        return Ok(());
    }
    conv.queue_id = Some(queue_id.into());
    cx.conversation_event(
        conversation_id,
        ConversationEventKind::QueueChanged(QueueChanged {
            from_queue: from,
            to_queue: queue_id.to_string(),
        }),
    );
    Ok(())
}

impl Processor for Routing {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        match input {
            Input::Command(Command {
                conversation_id,
                command: CommandKind::ChangeQueue(c),
                ..
            }) => {
                change_queue(cx, conversation_id, &c.queue_id)?;
                Ok(Handled::Yes)
            }
            _ => Ok(Handled::No),
        }
    }

    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        if let Output::Conversation(ConversationEvent {
            conversation_id,
            event: ConversationEventKind::Opened(_),
            ..
        }) = output
        {
            on_opened(cx, conversation_id);
        }
    }
}
