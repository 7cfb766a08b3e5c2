//! Threading (SPEC §3): inbound messages join the customer's conversation that is not Closed
//! (found by contact address, or by person id across channels) or open a new one; a message
//! on a Solved conversation reopens it; Merge folds conversation B into A. Also the
//! conversation commands that change a conversation's own fields: Reply, SetStatus,
//! SetPriority, AddTags, RemoveTags, Merge, AddNote.

use switchboard_schemas::*;

use crate::engine::{Ctx, Handled, Rejection};
use crate::state::{ConvId, Conversation, SortedSet};
use crate::Processor;
use std::sync::Arc;

pub struct Threading;

/// FNV-1a, 64 bit: a stable hash for deriving ids from input (never random, never clock).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The id of the conversation opened by record `record_id` of `tenant` (R-TIME-7).
pub fn conversation_id(tenant: &str, record_id: &str) -> String {
    format!("cv-{:016x}", stable_hash(&[tenant, record_id]))
}

fn address_key(address: &str) -> String {
    let mut key = String::with_capacity(address.len() + 5);
    write_address_key(&mut key, address);
    key
}

fn write_address_key(buf: &mut String, address: &str) {
    buf.push_str("addr:");
    if address.is_ascii() {
        buf.extend(address.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        buf.push_str(&address.to_lowercase());
    }
}

fn person_key(person: &str) -> String {
    let mut key = String::with_capacity(person.len() + 7);
    write_person_key(&mut key, person);
    key
}

fn write_person_key(buf: &mut String, person: &str) {
    buf.push_str("person:");
    buf.push_str(person);
}

/// The keys a customer's own rows (last replier, survey throttling, the survey awaiting an
/// answer) are kept under: their person's, then their address's; the same keys that thread
/// their messages.
pub fn customer_keys(person: Option<&str>, address: &str) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    each_customer_key(person, address, &mut String::new(), |k| {
        keys.push(k.to_string())
    });
    keys
}

/// [`customer_keys`], each written into `buf` in turn and handed to `each`: no string is
/// made for a key only looked up.
pub fn each_customer_key(
    person: Option<&str>,
    address: &str,
    buf: &mut String,
    mut each: impl FnMut(&str),
) {
    if let Some(p) = person {
        buf.clear();
        write_person_key(buf, p);
        each(buf);
    }
    buf.clear();
    write_address_key(buf, address);
    each(buf);
}

/// Change a conversation's status, emitting `StatusChanged`. Closing releases the
/// conversation's thread keys so the customer's next message opens a new conversation, and
/// schedules its archiving ([`Ctx::schedule_archive`]).
pub fn set_status(cx: &mut Ctx, conversation_id: &str, to: Status, reason: &str) {
    let tenant = cx.tenant;
    let Some(conv) = cx.state.conversation_mut(tenant, conversation_id) else {
        return;
    };
    let from = conv.status;
    if from == to {
        return;
    }
    conv.status = to;
    let mut released = Vec::new();
    if to == Status::Closed {
        conv.closed_reason = Some(reason.to_string());
        released = std::mem::take(&mut conv.thread_keys).into_iter().collect();
    }
    for key in released {
        if cx.state.threads.get(tenant, &key).map(|c| &**c) == Some(conversation_id) {
            cx.state.threads.remove(tenant, &key);
        }
    }
    if to == Status::Closed {
        cx.schedule_archive(conversation_id);
    }
    cx.conversation_event(
        conversation_id,
        ConversationEventKind::StatusChanged(StatusChanged {
            from,
            to,
            reason: Some(reason.to_string()),
        }),
    );
}

/// Send a message to the conversation's customer over the channel of their last inbound
/// message, to the address they wrote from, from the sender they wrote to.
pub fn send_to_customer(cx: &mut Ctx, conversation_id: &str, kind: OutboundKind, content: &str) {
    let Some(conv) = cx.state.conversation(cx.tenant, conversation_id) else {
        return;
    };
    let (channel, from, to) = (
        conv.channel,
        conv.sender.to_string(),
        cx.state.customer_address(cx.tenant, conv).to_string(),
    );
    let id = cx.next_id();
    cx.emit(Output::Outbound(OutboundMessage {
        id,
        tenant: cx.tenant.to_string(),
        conversation_id: conversation_id.to_string(),
        channel,
        from,
        to,
        kind,
        content: content.to_string(),
    }));
}

/// The conversation a thread key leads to: the person's first, then the address's.
fn thread_of(cx: &Ctx, person: Option<&str>, address: &str) -> Option<String> {
    person
        .into_iter()
        .chain([address])
        .find_map(|k| cx.state.threads.get(cx.tenant, k).map(|c| c.to_string()))
}

/// Lead `key` to the conversation. A key that leads there already is left as it is: most
/// messages come by a key their conversation holds.
/// The key is one shared string, held by the thread table and the conversation's own list.
fn bind(cx: &mut Ctx, conversation_id: &str, key: impl Into<Arc<str>>) {
    let key: Arc<str> = key.into();
    let tenant = cx.tenant;
    let bound = cx
        .state
        .threads
        .get(tenant, &*key)
        .is_some_and(|c| &**c == conversation_id)
        && cx
            .state
            .conversation(tenant, conversation_id)
            .is_some_and(|c| c.thread_keys.contains(&*key));
    if bound {
        return;
    }
    let id = cx.state.conversation_key(tenant, conversation_id);
    cx.state.threads.insert(tenant, key.clone(), id);
    if let Some(conv) = cx.state.conversation_mut(tenant, conversation_id) {
        conv.thread_keys.insert(key);
    }
}

fn on_inbound(cx: &mut Ctx, m: &InboundMessage) {
    let tenant = cx.tenant;
    let person = m.person.as_ref().and_then(|p| p.id.clone());
    let (person_thread, address_thread) = (person.as_deref().map(person_key), address_key(&m.from));
    let conversation_id = match thread_of(cx, person_thread.as_deref(), &address_thread) {
        Some(id) => {
            let reopen = cx
                .state
                .conversation(tenant, &id)
                .is_some_and(|c| c.status == Status::Solved);
            if reopen {
                set_status(cx, &id, Status::Open, "reopened");
            }
            let mut other_address = false;
            if let Some(conv) = cx.state.conversation_mut(tenant, &id) {
                conv.channel = m.channel;
                if *conv.sender != *m.to {
                    conv.sender = Arc::from(m.to.as_str());
                }
                conv.messages += 1;
                conv.last_inbound_at = cx.now;
                if conv.person_id.is_none() {
                    conv.person_id = person.as_deref().map(Arc::from);
                }
                other_address = *m.from != *conv.address;
            }
            // Replies go where the customer last wrote from (a row only while that is not the
            // address that opened the conversation).
            if other_address {
                let key = cx.state.conversation_key(tenant, &id);
                cx.state.reply_to.insert(tenant, key, m.from.clone());
            } else if cx.state.reply_to.get(tenant, id.as_str()).is_some() {
                cx.state.reply_to.remove(tenant, id.as_str());
            }
            id
        }
        None => {
            let short_id = cx.state.next_short_id(tenant);
            let id = conversation_id(tenant, &m.id);
            let key: ConvId = Arc::from(id.as_str());
            let conv = Conversation {
                id: Arc::clone(&key),
                short_id,
                status: Status::Open,
                priority: Priority::Normal,
                queue_id: None,
                assignee: None,
                channel: m.channel,
                address: Arc::from(m.from.as_str()),
                sender: Arc::from(m.to.as_str()),
                person_id: person.as_deref().map(Arc::from),
                thread_keys: SortedSet::new(),
                tags: SortedSet::new(),
                created_at: cx.now,
                direction: Direction::Inbound,
                category: m.channel.category(),
                previous_assignees: SortedSet::new(),
                messages: 1,
                last_inbound_at: cx.now,
                closed_reason: None,
            };
            cx.state
                .conversations
                .insert(tenant, Arc::clone(&key), conv);
            cx.state.short_ids.insert(tenant, short_id, key);
            cx.conversation_event(
                &id,
                ConversationEventKind::Opened(Opened {
                    channel: m.channel,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    direction: Direction::Inbound,
                    person_id: person.clone(),
                }),
            );
            id
        }
    };
    bind(cx, &conversation_id, address_thread);
    if let Some(key) = person_thread {
        bind(cx, &conversation_id, key);
    }
    cx.conversation_event(
        &conversation_id,
        ConversationEventKind::MessageReceived(MessageReceived {
            message_id: m.id.clone(),
            channel: m.channel,
            from: m.from.clone(),
            content: m.content.clone(),
        }),
    );
}

/// Set a conversation's priority, emitting `PriorityChanged` when it changes.
pub fn set_priority(cx: &mut Ctx, conversation_id: &str, priority: Priority) {
    if let Some(conv) = cx.state.conversation_mut(cx.tenant, conversation_id) {
        if conv.priority != priority {
            conv.priority = priority;
            cx.conversation_event(
                conversation_id,
                ConversationEventKind::PriorityChanged(SetPriority { priority }),
            );
        }
    }
}

/// Add (or remove) tags, emitting `TagsChanged` with the whole new set when it changes.
pub fn change_tags(cx: &mut Ctx, conversation_id: &str, tags: &[String], add: bool) {
    let Some(conv) = cx.state.conversation_mut(cx.tenant, conversation_id) else {
        return;
    };
    let mut changed = false;
    for tag in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        changed |= if add {
            conv.tags.insert(tag.to_string())
        } else {
            conv.tags.remove(tag)
        };
    }
    if changed {
        let tags = conv.tags.iter().cloned().collect();
        cx.conversation_event(
            conversation_id,
            ConversationEventKind::TagsChanged(TagList { tags }),
        );
    }
}

/// Most form fields one conversation may hold (docs/operations.md, "Limits").
pub const MAX_FORM_FIELDS: usize = 100;

/// Set (or clear) a form field, emitting `FormFieldUpdated` when the value changes.
fn set_form_field(
    cx: &mut Ctx,
    conversation_id: &str,
    f: &SetFormField,
    by: Option<String>,
) -> Result<(), Rejection> {
    let tenant = cx.tenant;
    let field = f.field.trim();
    if field.is_empty() {
        return Err(Rejection::new("SetFormField: field must not be empty"));
    }
    let mut form = cx
        .state
        .forms
        .get(tenant, conversation_id)
        .cloned()
        .unwrap_or_default();
    let before = form.get(field).cloned();
    if before == f.value {
        return Ok(());
    }
    match &f.value {
        Some(v) => {
            if !form.contains_key(field) && form.len() >= MAX_FORM_FIELDS {
                return Err(Rejection(format!(
                    "SetFormField: the conversation already has {MAX_FORM_FIELDS} form fields, \
                     the limit"
                )));
            }
            form.insert(field.to_string(), v.clone());
        }
        None => {
            form.remove(field);
        }
    }
    let key = cx.state.conversation_key(tenant, conversation_id);
    if form.is_empty() {
        cx.state.forms.remove(tenant, conversation_id);
    } else {
        cx.state.forms.insert(tenant, key, form);
    }
    cx.conversation_event(
        conversation_id,
        ConversationEventKind::FormFieldUpdated(FormFieldUpdated {
            field: field.to_string(),
            value: f.value.clone(),
            by,
        }),
    );
    Ok(())
}

fn on_command(cx: &mut Ctx, c: &Command) -> Result<Handled, Rejection> {
    let tenant = cx.tenant;
    let handles = matches!(
        c.command,
        CommandKind::Reply(_)
            | CommandKind::SetStatus(_)
            | CommandKind::SetPriority(_)
            | CommandKind::AddTags(_)
            | CommandKind::RemoveTags(_)
            | CommandKind::Merge(_)
            | CommandKind::AddNote(_)
            | CommandKind::SetFormField(_)
    );
    if !handles {
        return Ok(Handled::No);
    }
    let Some(resolved) = cx.state.resolve_conversation(tenant, &c.conversation_id) else {
        return Err(Rejection(format!(
            "unknown conversation {:?}",
            c.conversation_id
        )));
    };
    let id = resolved.as_str();
    let Some(conv) = cx.state.conversation(tenant, id) else {
        return Err(Rejection(format!("unknown conversation {id:?}")));
    };
    let closed = conv.status == Status::Closed;
    if closed && !matches!(c.command, CommandKind::AddNote(_)) {
        return Err(Rejection(format!(
            "conversation {id:?} is closed; {} does not apply",
            c.command.name()
        )));
    }
    match &c.command {
        CommandKind::Reply(r) => {
            cx.conversation_event(
                id,
                ConversationEventKind::AgentReplied(AgentReplied {
                    message_id: c.id.clone(),
                    by: c.by.clone(),
                    automated: r.automated,
                }),
            );
            let kind = if r.automated {
                OutboundKind::Bot
            } else {
                OutboundKind::Agent
            };
            send_to_customer(cx, id, kind, &r.content);
        }
        CommandKind::SetStatus(s) => set_status(cx, id, s.status, "command"),
        CommandKind::SetPriority(p) => set_priority(cx, id, p.priority),
        CommandKind::AddTags(t) => change_tags(cx, id, &t.tags, true),
        CommandKind::RemoveTags(t) => change_tags(cx, id, &t.tags, false),
        CommandKind::SetFormField(f) => set_form_field(cx, id, f, c.by.clone())?,
        CommandKind::Merge(m) => merge(cx, id, &m.source_conversation_id)?,
        CommandKind::AddNote(n) => cx.conversation_event(
            id,
            ConversationEventKind::NoteAdded(NoteAdded {
                text: n.text.clone(),
                by: c.by.clone(),
            }),
        ),
        _ => {}
    }
    Ok(Handled::Yes)
}

/// Merge conversation `source` (B) into `target` (A) (SPEC §3.3).
fn merge(cx: &mut Ctx, target: &str, source: &str) -> Result<(), Rejection> {
    let tenant = cx.tenant;
    let Some(b) = cx
        .state
        .resolve_conversation(tenant, source)
        .and_then(|id| cx.state.conversation(tenant, &id).cloned())
    else {
        return Err(Rejection(format!(
            "unknown conversation {source:?} to merge"
        )));
    };
    let source = &*b.id;
    if source == target {
        return Err(Rejection(
            "a conversation cannot be merged into itself".into(),
        ));
    }
    if b.status == Status::Closed {
        return Err(Rejection(format!(
            "conversation {source:?} is closed and cannot be merged"
        )));
    }
    let keys = b.thread_keys.clone();
    set_status(cx, source, Status::Closed, "merged");
    let mut tags = SortedSet::new();
    if let Some(a) = cx.state.conversation_mut(tenant, target) {
        a.tags.extend(b.tags.iter().cloned());
        a.messages += b.messages;
        tags = a.tags.clone();
    }
    // New messages from B's addresses now join A until A is closed.
    for key in keys {
        bind(cx, target, key);
    }
    cx.conversation_event(
        target,
        ConversationEventKind::Merged(Merged {
            source_conversation_id: source.to_string(),
            tags: tags.into_iter().collect(),
        }),
    );
    Ok(())
}

impl Processor for Threading {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        match input {
            Input::Inbound(m) => {
                on_inbound(cx, m);
                Ok(Handled::Yes)
            }
            Input::Command(c) => on_command(cx, c),
            _ => Ok(Handled::No),
        }
    }
}
