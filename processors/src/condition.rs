//! The condition language (SPEC §4.2), shared by routes, SLA policies and workflows.
//!
//! A condition is a tree of `all` / `any` / `not` over leaves `{attribute, operator, value}`.
//! String comparisons ignore case. A missing attribute (absent, or an empty list) makes every
//! operator false except the negative ones (`is_not`, `does_not_contain`, `not_in_list`,
//! `not_exists`), which it makes true. A list attribute (tags, e-mail recipients) satisfies a
//! positive operator when any of its elements does, and a negative operator when none of its
//! elements satisfies the positive counterpart.

use crate::state::SortedSet;
use chrono::NaiveDate;
use std::borrow::Cow;
use switchboard_schemas::{Condition, InboundMessage, Operator};

/// The value of an attribute for one conversation or message.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr<'a> {
    Missing,
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

/// Where a condition reads attribute values from.
pub trait Attributes {
    fn get(&self, attribute: &str) -> Attr<'_>;
}

/// The attributes of an inbound message, its conversation's tags, and the queues its sender
/// belongs to: what routing sees.
pub struct MessageFacts<'a> {
    pub message: &'a InboundMessage,
    pub conversation_tags: &'a SortedSet<String>,
    pub sender_queues: Vec<String>,
}

/// A string attribute: missing when empty.
pub(crate) fn one(s: &str) -> Attr<'_> {
    if s.is_empty() {
        Attr::Missing
    } else {
        Attr::One(Cow::Borrowed(s))
    }
}

fn opt(s: Option<&String>) -> Attr<'_> {
    s.map_or(Attr::Missing, |s| one(s))
}

/// A list attribute: missing when empty.
pub(crate) fn many<'a, I: IntoIterator<Item = &'a String>>(items: I) -> Attr<'a> {
    let v: Vec<Cow<'a, str>> = items
        .into_iter()
        .map(|s| Cow::Borrowed(s.as_str()))
        .collect();
    if v.is_empty() {
        Attr::Missing
    } else {
        Attr::Many(v)
    }
}

impl Attributes for MessageFacts<'_> {
    fn get(&self, attribute: &str) -> Attr<'_> {
        let m = self.message;
        match attribute {
            "channel" => one(m.channel.as_str()),
            "from" => one(&m.from),
            "to" => one(&m.to),
            "content" => one(&m.content),
            "is_visitor" => one(if m.is_visitor { "true" } else { "false" }),
            "conversation.tags" => many(self.conversation_tags),
            "sender_queue" => many(&self.sender_queues),
            "person.tags" => m.person.as_ref().map_or(Attr::Missing, |p| many(&p.tags)),
            "person.id" => m
                .person
                .as_ref()
                .map_or(Attr::Missing, |p| opt(p.id.as_ref())),
            "email.from" => m.email.as_ref().map_or(Attr::Missing, |e| one(&e.from)),
            "email.subject" => m.email.as_ref().map_or(Attr::Missing, |e| one(&e.subject)),
            "email.to" => m.email.as_ref().map_or(Attr::Missing, |e| many(&e.to)),
            "email.cc" => m.email.as_ref().map_or(Attr::Missing, |e| many(&e.cc)),
            "email.bcc" => m.email.as_ref().map_or(Attr::Missing, |e| many(&e.bcc)),
            "email.routed_to" => m
                .email
                .as_ref()
                .map_or(Attr::Missing, |e| many(&e.routed_to)),
            other => {
                if let Some(name) = other.strip_prefix("person.custom.") {
                    m.person
                        .as_ref()
                        .map_or(Attr::Missing, |p| opt(p.custom.get(name)))
                } else if let Some(name) = other.strip_prefix("person.") {
                    m.person
                        .as_ref()
                        .map_or(Attr::Missing, |p| opt(p.attributes.get(name)))
                } else if let Some(name) = other.strip_prefix("company.custom.") {
                    m.company
                        .as_ref()
                        .map_or(Attr::Missing, |c| opt(c.custom.get(name)))
                } else if let Some(name) = other.strip_prefix("company.") {
                    m.company
                        .as_ref()
                        .map_or(Attr::Missing, |c| opt(c.attributes.get(name)))
                } else if let Some(name) = other.strip_prefix("custom.") {
                    opt(m.custom.get(name))
                } else if let Some(name) = other.strip_prefix("ivr.") {
                    opt(m.ivr.get(name))
                } else {
                    Attr::Missing
                }
            }
        }
    }
}

/// Attribute names the language knows: exact names, and prefixes followed by a name.
const EXACT: &[&str] = &[
    "channel",
    "from",
    "to",
    "content",
    "is_visitor",
    "conversation.tags",
    "sender_queue",
    "email.cc",
    "email.bcc",
    "email.to",
    "email.from",
    "email.subject",
    "email.routed_to",
];
const PREFIXES: &[&str] = &[
    "person.custom.",
    "person.",
    "company.custom.",
    "company.",
    "custom.",
    "ivr.",
];

pub fn is_known_attribute(name: &str) -> bool {
    EXACT.contains(&name)
        || PREFIXES
            .iter()
            .any(|p| name.len() > p.len() && name.starts_with(p))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let day = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// The values of a leaf that takes a list (`values`, or `value` split at commas), lowercased.
pub fn list_values(c: &Condition) -> Vec<String> {
    if !c.values.is_empty() {
        c.values.iter().map(|v| v.to_lowercase()).collect()
    } else {
        c.value
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// Deepest condition config accepts (`all`, `any` and `not` each add a level); routing
/// rules rarely go past 4.
pub const MAX_CONDITION_DEPTH: usize = 16;
/// Most nodes (operators and leaves) in one condition.
pub const MAX_CONDITION_NODES: usize = 500;

/// Check a condition's size and shape; the error names the offending field under `path`.
/// The size comes first and without recursion, so the shape check (and evaluation, which
/// recurse) only ever see conditions within [`MAX_CONDITION_DEPTH`].
pub fn validate(c: &Condition, path: &str) -> Result<(), (String, String)> {
    validate_with(c, path, is_known_attribute)
}

/// [`validate`], with `known` saying which attributes the condition may use (workflows know
/// more than routes).
pub fn validate_with(
    c: &Condition,
    path: &str,
    known: fn(&str) -> bool,
) -> Result<(), (String, String)> {
    let mut nodes = 0usize;
    let mut stack = vec![(c, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        nodes += 1;
        if depth > MAX_CONDITION_DEPTH {
            return Err((
                path.to_string(),
                format!("nested deeper than the limit of {MAX_CONDITION_DEPTH} levels"),
            ));
        }
        if nodes > MAX_CONDITION_NODES {
            return Err((
                path.to_string(),
                format!("more than the limit of {MAX_CONDITION_NODES} nodes"),
            ));
        }
        stack.extend(
            node.all
                .iter()
                .chain(&node.any)
                .map(|child| (child, depth + 1)),
        );
        if let Some(child) = &node.not {
            stack.push((child, depth + 1));
        }
    }
    validate_shape(c, path, known)
}

fn validate_shape(
    c: &Condition,
    path: &str,
    known: fn(&str) -> bool,
) -> Result<(), (String, String)> {
    let kinds = [
        !c.all.is_empty(),
        !c.any.is_empty(),
        c.not.is_some(),
        c.attribute.is_some() || c.operator.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => {
            return Err((
                path.to_string(),
                "empty condition: set one of all, any, not or attribute".into(),
            ))
        }
        1 => {}
        _ => {
            return Err((
                path.to_string(),
                "set only one of all, any, not or attribute".into(),
            ))
        }
    }
    for (i, child) in c.all.iter().enumerate() {
        validate_shape(child, &format!("{path}.all[{i}]"), known)?;
    }
    for (i, child) in c.any.iter().enumerate() {
        validate_shape(child, &format!("{path}.any[{i}]"), known)?;
    }
    if let Some(child) = &c.not {
        validate_shape(child, &format!("{path}.not"), known)?;
    }
    if kinds[3] {
        let attribute = c.attribute.as_deref().unwrap_or("");
        if !known(attribute) {
            return Err((
                format!("{path}.attribute"),
                format!("unknown attribute {attribute:?}"),
            ));
        }
        let Some(op) = c.operator else {
            return Err((format!("{path}.operator"), "missing operator".into()));
        };
        match op {
            Operator::Exists | Operator::NotExists => {}
            Operator::InList | Operator::NotInList => {
                if list_values(c).is_empty() {
                    return Err((
                        format!("{path}.values"),
                        "in_list needs at least one value".into(),
                    ));
                }
            }
            Operator::BeforeOrOn | Operator::AfterOrOn => {
                if c.value.as_deref().and_then(parse_date).is_none() {
                    return Err((format!("{path}.value"), "needs a date as YYYY-MM-DD".into()));
                }
            }
            _ => {
                if c.value.is_none() {
                    return Err((format!("{path}.value"), "missing value".into()));
                }
            }
        }
    }
    Ok(())
}

/// Evaluate a (validated) condition.
pub fn eval(c: &Condition, attrs: &dyn Attributes) -> bool {
    if !c.all.is_empty() {
        return c.all.iter().all(|child| eval(child, attrs));
    }
    if !c.any.is_empty() {
        return c.any.iter().any(|child| eval(child, attrs));
    }
    if let Some(child) = &c.not {
        return !eval(child, attrs);
    }
    let (Some(attribute), Some(op)) = (c.attribute.as_deref(), c.operator) else {
        return false;
    };
    eval_leaf(op, &attrs.get(attribute), c)
}

fn eval_leaf(op: Operator, attr: &Attr<'_>, c: &Condition) -> bool {
    use Operator::*;
    let values: Vec<&str> = match attr {
        Attr::Missing => return matches!(op, IsNot | DoesNotContain | NotInList | NotExists),
        Attr::One(s) => vec![s.as_ref()],
        Attr::Many(v) => v.iter().map(|s| s.as_ref()).collect(),
    };
    let want = c.value.as_deref().unwrap_or("").to_lowercase();
    let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(&v.to_lowercase()));
    match op {
        Exists => true,
        NotExists => false,
        Is => any(&|v| v == want),
        IsNot => !any(&|v| v == want),
        StartsWith => any(&|v| v.starts_with(&want)),
        Contains => any(&|v| v.contains(&want)),
        DoesNotContain => !any(&|v| v.contains(&want)),
        InList | NotInList => {
            let list = list_values(c);
            let hit = any(&|v| list.iter().any(|l| l == v));
            hit == (op == InList)
        }
        BeforeOrOn | AfterOrOn => {
            let Some(limit) = c.value.as_deref().and_then(parse_date) else {
                return false;
            };
            values.iter().filter_map(|v| parse_date(v)).any(|d| {
                if op == BeforeOrOn {
                    d <= limit
                } else {
                    d >= limit
                }
            })
        }
    }
}
