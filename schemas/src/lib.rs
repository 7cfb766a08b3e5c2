//! Switchboard's record formats: the Avro schemas in `schemas/avro/` (the single source of
//! truth), the Rust types that mirror them, and the codec between the two.

pub mod codec;
pub mod limits;
pub mod records;
pub mod strict;

pub use codec::{confluent_frame, Codec, CodecError, Framed, TopicSchema};
pub use records::*;

use serde::{Deserialize, Serialize};

/// Every topic Switchboard reads or writes. The discriminant indexes `Topic::ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    Config,
    AgentEvents,
    Commands,
    Inbound,
    Ticks,
    ConversationEvents,
    Outbound,
    Assignments,
    SlaEvents,
    Sentiment,
    Csat,
    AgentState,
    Actions,
    Dlq,
    ConfigEvents,
    ActionOutcomes,
    Analytics,
}

impl Topic {
    pub const ALL: [Topic; 17] = [
        Topic::Config,
        Topic::AgentEvents,
        Topic::Commands,
        Topic::Inbound,
        Topic::Ticks,
        Topic::ConversationEvents,
        Topic::Outbound,
        Topic::Assignments,
        Topic::SlaEvents,
        Topic::Sentiment,
        Topic::Csat,
        Topic::AgentState,
        Topic::Actions,
        Topic::Dlq,
        Topic::ConfigEvents,
        Topic::ActionOutcomes,
        Topic::Analytics,
    ];

    /// The input topics, in the order that breaks timestamp ties (SPEC §1.3).
    pub const INPUTS: [Topic; 5] = [
        Topic::Config,
        Topic::AgentEvents,
        Topic::Commands,
        Topic::Inbound,
        Topic::Ticks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Config => "cc.config",
            Topic::AgentEvents => "cc.agent-events",
            Topic::Commands => "cc.commands",
            Topic::Inbound => "cc.inbound",
            Topic::Ticks => "cc.ticks",
            Topic::ConversationEvents => "cc.conversation-events",
            Topic::Outbound => "cc.outbound",
            Topic::Assignments => "cc.assignments",
            Topic::SlaEvents => "cc.sla-events",
            Topic::Sentiment => "cc.sentiment",
            Topic::Csat => "cc.csat",
            Topic::AgentState => "cc.agent-state",
            Topic::Actions => "cc.actions",
            Topic::Dlq => "cc.dlq",
            Topic::ConfigEvents => "cc.config-events",
            Topic::ActionOutcomes => "cc.action-outcomes",
            Topic::Analytics => "cc.analytics",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn is_input(self) -> bool {
        Topic::INPUTS.contains(&self)
    }

    /// Position in the timestamp tie-break order: config < agent-events < commands < inbound
    /// < ticks. Output topics sort after the inputs.
    pub fn merge_rank(self) -> u8 {
        self as u8
    }

    /// The schema file's text (`schemas/avro/<name>.avsc`).
    pub fn schema_text(self) -> &'static str {
        match self {
            Topic::Config => include_str!("../avro/config.avsc"),
            Topic::AgentEvents => include_str!("../avro/agent-events.avsc"),
            Topic::Commands => include_str!("../avro/commands.avsc"),
            Topic::Inbound => include_str!("../avro/inbound.avsc"),
            Topic::Ticks => include_str!("../avro/ticks.avsc"),
            Topic::ConversationEvents => include_str!("../avro/conversation-events.avsc"),
            Topic::Outbound => include_str!("../avro/outbound.avsc"),
            Topic::Assignments => include_str!("../avro/assignments.avsc"),
            Topic::SlaEvents => include_str!("../avro/sla-events.avsc"),
            Topic::Sentiment => include_str!("../avro/sentiment.avsc"),
            Topic::Csat => include_str!("../avro/csat.avsc"),
            Topic::AgentState => include_str!("../avro/agent-state.avsc"),
            Topic::Actions => include_str!("../avro/actions.avsc"),
            Topic::Dlq => include_str!("../avro/dlq.avsc"),
            Topic::ConfigEvents => include_str!("../avro/config-events.avsc"),
            Topic::ActionOutcomes => include_str!("../avro/action-outcomes.avsc"),
            Topic::Analytics => include_str!("../avro/analytics.avsc"),
        }
    }
}

impl Topic {
    /// The schemas this topic had before its current one
    /// (`schemas/avro/history/<name>.<n>.avsc`), oldest first: records written with one of
    /// them still decode (docs/records.md, "Evolution").
    pub fn previous_schema_texts(self) -> &'static [&'static str] {
        match self {
            Topic::Config => &[include_str!("../avro/history/config.1.avsc")],
            Topic::Commands => &[include_str!("../avro/history/commands.1.avsc")],
            Topic::ConversationEvents => {
                &[include_str!("../avro/history/conversation-events.1.avsc")]
            }
            Topic::Actions => &[include_str!("../avro/history/actions.1.avsc")],
            Topic::Sentiment => &[include_str!("../avro/history/sentiment.1.avsc")],
            _ => &[],
        }
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A record read from one of the input topics.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Config(ConfigChange),
    Agent(AgentEvent),
    Command(Command),
    Inbound(InboundMessage),
    Tick(Tick),
}

impl Input {
    pub fn topic(&self) -> Topic {
        match self {
            Input::Config(_) => Topic::Config,
            Input::Agent(_) => Topic::AgentEvents,
            Input::Command(_) => Topic::Commands,
            Input::Inbound(_) => Topic::Inbound,
            Input::Tick(_) => Topic::Ticks,
        }
    }

    /// The tenant and record id; ticks belong to no tenant.
    pub fn tenant_and_id(&self) -> Option<(&str, &str)> {
        match self {
            Input::Config(r) => Some((&r.tenant, &r.id)),
            Input::Agent(r) => Some((&r.tenant, &r.id)),
            Input::Command(r) => Some((&r.tenant, &r.id)),
            Input::Inbound(r) => Some((&r.tenant, &r.id)),
            Input::Tick(_) => None,
        }
    }

    /// [`Input::from_json`] straight from the record's JSON text, without building a
    /// `serde_json::Value` first, for a text [`limits::plainly_within`] vouches for: such a
    /// text is within every limit and holds no array, so the direct decoder accepts what the
    /// strict one accepts and reads it the same. `None` for any other text, and for one that
    /// does not decode: the caller decodes it with [`Input::from_json`], whose error is the
    /// one to report.
    pub fn from_json_text(topic: Topic, text: &str) -> Option<Input> {
        fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
            serde_json::from_str(text).ok()
        }
        if !limits::plainly_within(text) {
            return None;
        }
        Some(match topic {
            Topic::Config => Input::Config(parse(text)?),
            Topic::AgentEvents => Input::Agent(parse(text)?),
            Topic::Commands => Input::Command(parse(text)?),
            Topic::Inbound => Input::Inbound(parse(text)?),
            Topic::Ticks => Input::Tick(parse(text)?),
            _ => return None,
        })
    }

    /// Parse the JSON mirror of a record of `topic`: a JSON object (never an array) within
    /// the limits of [`limits::check_value`].
    pub fn from_json(topic: Topic, value: serde_json::Value) -> Result<Input, String> {
        fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            strict::from_value(v).map_err(|e| e.to_string())
        }
        limits::check_value(&value)?;
        Ok(match topic {
            Topic::Config => Input::Config(parse(value)?),
            Topic::AgentEvents => Input::Agent(parse(value)?),
            Topic::Commands => Input::Command(parse(value)?),
            Topic::Inbound => Input::Inbound(parse(value)?),
            Topic::Ticks => Input::Tick(parse(value)?),
            other => return Err(format!("{other} is not an input topic")),
        })
    }

    /// Decode Avro single-object bytes of a record of `topic`.
    pub fn decode(codec: &Codec, topic: Topic, bytes: &[u8]) -> Result<Input, CodecError> {
        limits::check_record_size(bytes.len()).map_err(CodecError::Json)?;
        let reader = codec.schema(topic);
        match Framed::parse(bytes)? {
            Framed::SingleObject { fingerprint, datum } => {
                let writer = reader
                    .known_writer(fingerprint)
                    .ok_or(CodecError::UnknownSchema(fingerprint))?;
                Input::from_datum(topic, reader, writer, datum)
            }
            Framed::Confluent { id, .. } => Err(CodecError::NeedsRegistry(id)),
        }
    }

    /// Decode a datum of `topic` written with `writer` into the engine's record (`reader` is
    /// the topic's schema), within the limits of [`limits::check_value`]. Written with the
    /// engine's own schema, it is read straight into the record type; otherwise (or where the
    /// typed path refuses, so errors are named alike) through the JSON mirror, resolved from
    /// the writer's schema.
    pub fn from_datum(
        topic: Topic,
        reader: &TopicSchema,
        writer: &TopicSchema,
        datum: &[u8],
    ) -> Result<Input, CodecError> {
        if writer.fingerprint() == reader.fingerprint() {
            if let Some(input) = Input::decode_typed(topic, reader, datum) {
                return Ok(input);
            }
        }
        let json = reader.read_datum(writer, datum)?;
        Input::from_json(topic, json).map_err(CodecError::Json)
    }

    /// [`Input::from_datum`]'s typed path alone: none where it refuses.
    pub fn decode_typed(topic: Topic, schema: &TopicSchema, datum: &[u8]) -> Option<Input> {
        Some(match topic {
            Topic::Config => Input::Config(schema.decode_typed(datum)?),
            Topic::AgentEvents => Input::Agent(schema.decode_typed(datum)?),
            Topic::Commands => Input::Command(schema.decode_typed(datum)?),
            Topic::Inbound => Input::Inbound(schema.decode_typed(datum)?),
            Topic::Ticks => Input::Tick(schema.decode_typed(datum)?),
            _ => return None,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Input::Config(r) => serde_json::to_value(r),
            Input::Agent(r) => serde_json::to_value(r),
            Input::Command(r) => serde_json::to_value(r),
            Input::Inbound(r) => serde_json::to_value(r),
            Input::Tick(r) => serde_json::to_value(r),
        };
        // Serializing these plain data types cannot fail (no maps with non-string keys).
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Encode as Avro single-object bytes with the topic's schema.
    pub fn encode(&self, codec: &Codec) -> Result<Vec<u8>, CodecError> {
        codec.schema(self.topic()).encode(&self.to_json())
    }
}

/// A record the engine writes to one of the output topics.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Conversation(ConversationEvent),
    Outbound(OutboundMessage),
    Assignment(AssignmentEvent),
    Sla(SlaEvent),
    Sentiment(SentimentEvent),
    Csat(CsatEvent),
    AgentState(AgentStateEvent),
    Action(ActionRequest),
    DeadLetter(DeadLetter),
    Config(ConfigEvent),
    /// Written by the action executor, not the engine.
    ActionOutcome(ActionOutcome),
    Analytics(AnalyticsWindow),
}

impl Output {
    pub fn topic(&self) -> Topic {
        match self {
            Output::Conversation(_) => Topic::ConversationEvents,
            Output::Outbound(_) => Topic::Outbound,
            Output::Assignment(_) => Topic::Assignments,
            Output::Sla(_) => Topic::SlaEvents,
            Output::Sentiment(_) => Topic::Sentiment,
            Output::Csat(_) => Topic::Csat,
            Output::AgentState(_) => Topic::AgentState,
            Output::Action(_) => Topic::Actions,
            Output::DeadLetter(_) => Topic::Dlq,
            Output::Config(_) => Topic::ConfigEvents,
            Output::ActionOutcome(_) => Topic::ActionOutcomes,
            Output::Analytics(_) => Topic::Analytics,
        }
    }

    /// The record key: the tenant (for dead letters, the original key).
    pub fn key(&self) -> Option<&str> {
        match self {
            Output::Conversation(r) => Some(&r.tenant),
            Output::Outbound(r) => Some(&r.tenant),
            Output::Assignment(r) => Some(&r.tenant),
            Output::Sla(r) => Some(&r.tenant),
            Output::Sentiment(r) => Some(&r.tenant),
            Output::Csat(r) => Some(&r.tenant),
            Output::AgentState(r) => Some(&r.tenant),
            Output::Action(r) => Some(&r.tenant),
            Output::DeadLetter(r) => r.key.as_deref(),
            Output::Config(r) => Some(&r.tenant),
            Output::ActionOutcome(r) => Some(&r.tenant),
            Output::Analytics(r) => Some(&r.tenant),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these plain data types cannot fail (no maps with non-string keys).
        serde_json::to_value(self.value()).unwrap_or(serde_json::Value::Null)
    }

    /// The record itself, to serialize straight from the typed value (the JSON mirror's
    /// `value`), without building a `serde_json::Value` first.
    pub fn value(&self) -> OutputValue<'_> {
        OutputValue(self)
    }

    pub fn from_json(topic: Topic, value: serde_json::Value) -> Result<Output, String> {
        fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        Ok(match topic {
            Topic::ConversationEvents => Output::Conversation(parse(value)?),
            Topic::Outbound => Output::Outbound(parse(value)?),
            Topic::Assignments => Output::Assignment(parse(value)?),
            Topic::SlaEvents => Output::Sla(parse(value)?),
            Topic::Sentiment => Output::Sentiment(parse(value)?),
            Topic::Csat => Output::Csat(parse(value)?),
            Topic::AgentState => Output::AgentState(parse(value)?),
            Topic::Actions => Output::Action(parse(value)?),
            Topic::Dlq => Output::DeadLetter(parse(value)?),
            Topic::ConfigEvents => Output::Config(parse(value)?),
            Topic::ActionOutcomes => Output::ActionOutcome(parse(value)?),
            Topic::Analytics => Output::Analytics(parse(value)?),
            other => return Err(format!("{other} is not an output topic")),
        })
    }

    /// Encode as Avro single-object bytes with the topic's schema, straight from the record.
    pub fn encode(&self, codec: &Codec) -> Result<Vec<u8>, CodecError> {
        codec.schema(self.topic()).encode_value(&self.value())
    }
}

/// Serializes an [`Output`] as its record alone (no variant tag): see [`Output::value`].
pub struct OutputValue<'a>(&'a Output);

impl serde::Serialize for OutputValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Output::Conversation(r) => r.serialize(s),
            Output::Outbound(r) => r.serialize(s),
            Output::Assignment(r) => r.serialize(s),
            Output::Sla(r) => r.serialize(s),
            Output::Sentiment(r) => r.serialize(s),
            Output::Csat(r) => r.serialize(s),
            Output::AgentState(r) => r.serialize(s),
            Output::Action(r) => r.serialize(s),
            Output::DeadLetter(r) => r.serialize(s),
            Output::Config(r) => r.serialize(s),
            Output::ActionOutcome(r) => r.serialize(s),
            Output::Analytics(r) => r.serialize(s),
        }
    }
}
