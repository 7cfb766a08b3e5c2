//! CSAT surveys (SPEC §9, R-CSAT).
//!
//! When a conversation becomes Solved and the tenant has surveys on, a survey goes out after
//! the configured delay over the channel of the customer's last inbound message, unless the
//! customer was surveyed within the minimum span (`SurveySuppressed`) or the conversation
//! was reopened or merged away meanwhile (closing it keeps the survey). Within the answer window the customer's next messages are read as
//! answers (digits, words, emoji). An answer is consumed by the survey: it neither reopens the
//! conversation nor opens a new one. With a follow-up question, the message after the score
//! is the comment, and `SurveyFeedback` waits for it or for the window to end. A message that
//! is not an answer, or one after the window, is an ordinary message.

use serde::{Deserialize, Serialize};
use switchboard_schemas::*;

use crate::engine::{Ctx, Handled, Rejection};
use crate::state::{Timer, TimerKind};
use crate::threading::{customer_keys, send_to_customer};
use crate::Processor;

pub struct Csat;

/// A survey that went out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Survey {
    pub sent_at: i64,
    pub expires_at: i64,
    pub score: Option<CsatScore>,
    /// The score came and the follow-up question went out: the next message is the comment.
    pub awaiting_comment: bool,
    pub queue_id: Option<String>,
    pub agent_id: Option<String>,
    /// The customer keys (`person:<id>`, `addr:<address>`) whose messages answer it.
    pub customer_keys: Vec<String>,
}

const HAPPY: &[&str] = &[
    "1",
    "yes",
    "y",
    "yeah",
    "yep",
    "yup",
    "sure",
    "happy",
    "very happy",
    "good",
    "very good",
    "great",
    "excellent",
    "satisfied",
    "👍",
    "🙂",
    "😀",
    "😊",
    "😃",
    "😄",
    "👌",
];
const NOT_HAPPY: &[&str] = &[
    "2",
    "no",
    "n",
    "nope",
    "nah",
    "not happy",
    "unhappy",
    "bad",
    "very bad",
    "not good",
    "terrible",
    "dissatisfied",
    "not satisfied",
    "👎",
    "🙁",
    "😠",
    "☹",
    "😞",
    "😡",
];

/// Read a message as a survey answer: digits (1 / 2), words, or emoji.
pub fn recognise(text: &str) -> Option<CsatScore> {
    let cleaned: String = text.replace('\u{fe0f}', "").to_lowercase();
    let normal = cleaned
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if HAPPY.contains(&normal.as_str()) {
        Some(CsatScore::Happy)
    } else if NOT_HAPPY.contains(&normal.as_str()) {
        Some(CsatScore::NotHappy)
    } else {
        None
    }
}

fn timer(cx: &Ctx, conv: &str, what: &str) -> String {
    format!("{}/survey/{conv}/{what}", cx.tenant)
}

fn emit(cx: &mut Ctx, conv: &str, event: CsatEventKind) {
    let id = cx.next_id();
    cx.emit(Output::Csat(CsatEvent {
        id,
        tenant: cx.tenant.to_string(),
        conversation_id: conv.to_string(),
        event,
    }));
}

/// Remove a survey and the index entries that point at it.
fn drop_survey(cx: &mut Ctx, conv: &str) -> Option<Survey> {
    let tenant = cx.tenant;
    let survey = cx.state.surveys.remove(tenant, conv)?;
    for k in &survey.customer_keys {
        if cx
            .state
            .survey_index
            .get(tenant, k.as_str())
            .map(String::as_str)
            == Some(conv)
        {
            cx.state.survey_index.remove(tenant, k.as_str());
        }
    }
    let expire = timer(cx, conv, "expire");
    cx.state.cancel(&expire);
    Some(survey)
}

/// Emit the feedback and count it for the CSAT ratios (tenant, queue, agent).
fn finish(cx: &mut Ctx, conv: &str, comment: Option<String>) {
    let Some(survey) = drop_survey(cx, conv) else {
        return;
    };
    let Some(score) = survey.score else { return };
    let tenant = cx.tenant;
    let dimensions = std::iter::once("tenant".to_string())
        .chain(survey.queue_id.iter().map(|q| format!("queue/{q}")))
        .chain(survey.agent_id.iter().map(|a| format!("agent/{a}")));
    for d in dimensions {
        let counts = cx.state.csat.get_or_insert_with(tenant, d, || (0, 0));
        match score {
            CsatScore::Happy => counts.0 += 1,
            CsatScore::NotHappy => counts.1 += 1,
        }
    }
    emit(
        cx,
        conv,
        CsatEventKind::SurveyFeedback(SurveyFeedback {
            score: Some(score),
            comment,
            queue_id: survey.queue_id,
            agent_id: survey.agent_id,
        }),
    );
}

fn send(cx: &mut Ctx, conv_id: &str) {
    let Some(conv) = cx.state.conversation(cx.tenant, conv_id) else {
        return;
    };
    // Still Solved, or Closed since (archiving a solved conversation keeps its survey).
    if !matches!(conv.status, Status::Solved | Status::Closed) {
        return;
    }
    send_survey(cx, conv_id);
}

/// Send the survey to a conversation's customer now, whatever its status (a workflow's Send
/// survey action), unless surveys are off or the customer was surveyed within the minimum
/// span (`SurveySuppressed`).
pub fn send_survey(cx: &mut Ctx, conv_id: &str) {
    let tenant = cx.tenant;
    let Some(settings) = cx
        .state
        .config(tenant)
        .surveys
        .clone()
        .filter(|s| s.enabled)
    else {
        return;
    };
    let Some(conv) = cx.state.conversation(tenant, conv_id).cloned() else {
        return;
    };
    let keys = conv.customer_keys();
    let span = i64::from(settings.minimum_span_hours) * 3_600_000;
    let recent = keys.iter().any(|k| {
        cx.state
            .last_survey
            .get(tenant, k)
            .is_some_and(|at| span > 0 && cx.now - at < span)
    });
    if recent {
        emit(
            cx,
            conv_id,
            CsatEventKind::SurveySuppressed(SurveySuppressed {
                reason: "minimum_span".into(),
            }),
        );
        return;
    }
    send_to_customer(cx, conv_id, OutboundKind::Survey, &settings.question);
    emit(
        cx,
        conv_id,
        CsatEventKind::SurveySent(SurveySent {
            channel: conv.channel,
            to: cx.state.customer_address(tenant, &conv).to_string(),
        }),
    );
    let now = cx.now;
    let expires_at = now + i64::from(settings.answer_window_hours) * 3_600_000;
    for k in &keys {
        cx.state.last_survey.insert(tenant, k.clone(), now);
        // The customer's most recent survey is the one their answers go to.
        cx.state
            .survey_index
            .insert(tenant, k.clone(), conv_id.to_string());
    }
    let survey = Survey {
        sent_at: now,
        expires_at,
        score: None,
        awaiting_comment: false,
        queue_id: conv.queue_id.as_deref().map(str::to_string),
        agent_id: conv.assignee.as_deref().map(str::to_string),
        customer_keys: keys,
    };
    let key = cx.state.conversation_key(tenant, conv_id);
    cx.state.surveys.insert(tenant, key, survey);
    let id = timer(cx, conv_id, "expire");
    cx.schedule(
        expires_at,
        id,
        TimerKind::Wake {
            purpose: "survey-expire".into(),
            subject: cx.state.conversation_key(cx.tenant, conv_id),
        },
    );
}

/// An inbound message: the answer or comment of a survey within its window, or not ours.
fn on_inbound(cx: &mut Ctx, m: &InboundMessage) -> Handled {
    let tenant = cx.tenant;
    let keys = customer_keys(m.person.as_ref().and_then(|p| p.id.as_deref()), &m.from);
    let Some(conv) = keys
        .iter()
        .find_map(|k| cx.state.survey_index.get(tenant, k).cloned())
    else {
        return Handled::No;
    };
    let Some(survey) = cx.state.surveys.get(tenant, conv.as_str()).cloned() else {
        return Handled::No;
    };
    if cx.now > survey.expires_at {
        return Handled::No;
    }
    if survey.awaiting_comment {
        finish(cx, &conv, Some(m.content.clone()));
        return Handled::Consumed;
    }
    let Some(score) = recognise(&m.content) else {
        return Handled::No;
    };
    let follow_up = cx
        .state
        .config(tenant)
        .surveys
        .as_ref()
        .and_then(|s| s.follow_up.clone());
    if let Some(s) = cx.state.surveys.get_mut(tenant, conv.as_str()) {
        s.score = Some(score);
        s.awaiting_comment = follow_up.is_some();
    }
    match follow_up {
        Some(question) => send_to_customer(cx, &conv, OutboundKind::Survey, &question),
        None => finish(cx, &conv, None),
    }
    Handled::Consumed
}

/// Merge keeps the most recent survey of the two conversations (SPEC §3.3).
fn on_merged(cx: &mut Ctx, target: &str, source: &str) {
    let tenant = cx.tenant;
    let (a, b) = (
        cx.state.surveys.get(tenant, target).cloned(),
        cx.state.surveys.get(tenant, source).cloned(),
    );
    let Some(b) = b else { return };
    drop_survey(cx, source);
    if a.as_ref().is_some_and(|a| a.sent_at >= b.sent_at) {
        return;
    }
    drop_survey(cx, target);
    for k in &b.customer_keys {
        cx.state
            .survey_index
            .insert(tenant, k.clone(), target.to_string());
    }
    let expires_at = b.expires_at;
    let key = cx.state.conversation_key(tenant, target);
    cx.state.surveys.insert(tenant, key, b);
    let id = timer(cx, target, "expire");
    cx.schedule(
        expires_at,
        id,
        TimerKind::Wake {
            purpose: "survey-expire".into(),
            subject: cx.state.conversation_key(cx.tenant, target),
        },
    );
}

impl Processor for Csat {
    fn on_input(&mut self, cx: &mut Ctx, input: &Input) -> Result<Handled, Rejection> {
        match input {
            Input::Inbound(m) => Ok(on_inbound(cx, m)),
            _ => Ok(Handled::No),
        }
    }

    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        let Output::Conversation(e) = output else {
            return;
        };
        if e.tenant != cx.tenant {
            return;
        }
        match &e.event {
            ConversationEventKind::StatusChanged(s) if s.to == Status::Solved => {
                let enabled = cx
                    .state
                    .config(cx.tenant)
                    .surveys
                    .as_ref()
                    .filter(|s| s.enabled)
                    .map(|s| s.delay_seconds);
                if let Some(delay) = enabled {
                    let id = timer(cx, &e.conversation_id, "send");
                    let due = cx.now + i64::from(delay) * 1000;
                    cx.schedule(
                        due,
                        id,
                        TimerKind::Wake {
                            purpose: "survey-send".into(),
                            subject: cx.state.conversation_key(cx.tenant, &e.conversation_id),
                        },
                    );
                }
            }
            // Reopened, or merged away, before the survey went out: no survey.
            ConversationEventKind::StatusChanged(s)
                if s.from == Status::Solved
                    && (s.to != Status::Closed || s.reason.as_deref() == Some("merged")) =>
            {
                let id = timer(cx, &e.conversation_id, "send");
                cx.state.cancel(&id);
            }
            ConversationEventKind::Merged(m) => {
                on_merged(cx, &e.conversation_id, &m.source_conversation_id)
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, timer: &Timer) {
        if let TimerKind::Wake { purpose, subject } = &timer.kind {
            match &**purpose {
                "survey-send" => send(cx, subject),
                "survey-expire" => finish(cx, subject, None),
                _ => {}
            }
        }
    }
}
