//! Sentiment (SPEC §8, R-SENT): the scorer that runs in-process, and the processor that
//! scores every inbound customer message.
//!
//! The scorer (docs/sentiment.md) first asks [`language::detect`] whether the message is in
//! another language; such a message is not scored as English but reads neutral, with its
//! language in the record. Otherwise the learned model ([`model`]) scores it, reading the
//! words, their pairs and negation scopes, and the lexicon's valences of the words (VADER's
//! lexicon with a support layer on top). The score is P(positive) − P(negative), in
//! [-1, +1]. The rule-based lexicon scorer ([`lexicon`], the scorer before the model) stays
//! available as [`Method::Lexicon`].

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use switchboard_schemas::*;

use crate::engine::Ctx;
use crate::Processor;

pub mod language;
pub mod lexicon;
pub mod model;

pub use lexicon::DEFAULT_ALPHA;

/// The whitespace-separated pieces of `text`, as `str::split_whitespace` gives them; the
/// ASCII split (faster) when it gives the same (no vertical tab, which it does not split on).
fn words(text: &str) -> impl Iterator<Item = &str> {
    let ascii = text.is_ascii() && !text.contains('\u{b}');
    let (a, b) = if ascii {
        (Some(text.split_ascii_whitespace()), None)
    } else {
        (None, Some(text.split_whitespace()))
    };
    a.into_iter().flatten().chain(b.into_iter().flatten())
}

/// Which scorer reads the messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// The learned model over words and the lexicon's reading (the default).
    #[default]
    Model,
    /// The rule-based lexicon alone (the scorer before the model; for comparison).
    Lexicon,
}

/// The scorer: its method, the lexicon's squashing constant, and the model (`None`: the one
/// shipped in the binary).
#[derive(Clone, Copy)]
pub struct Scorer {
    pub method: Method,
    pub alpha: f64,
    pub model: Option<&'static model::Model>,
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer {
            method: Method::Model,
            alpha: DEFAULT_ALPHA,
            model: None,
        }
    }
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("method", &self.method)
            .field("alpha", &self.alpha)
            .field("version", &self.version())
            .finish()
    }
}

thread_local! {
    /// The features of the message being scored, reused: no allocation per message.
    static FEATURES: std::cell::RefCell<Vec<u32>> = std::cell::RefCell::new(Vec::with_capacity(256));
}

/// What the scorer says about one message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    /// In [-1, +1]; 0 for a message in another language.
    pub score: f64,
    /// The language detected when it is not English (ISO 639-1, or `und` for a script
    /// without a code here); `None` when the message was scored as English.
    pub language: Option<&'static str>,
}

/// The model embedded in the binary, read once.
fn shipped_model() -> Option<&'static model::Model> {
    static MODEL: OnceLock<Option<model::Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| model::Model::from_bytes(SHIPPED_MODEL).ok())
        .as_ref()
}

/// The weight file, as `switchboard sentiment train` writes it.
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../../data/sentiment/model.bin");

/// The version of the shipped model, carried in every `MessageSentiment` (`lexicon` if the
/// embedded weight file could not be read, which a test rules out).
pub fn model_version() -> &'static str {
    shipped_model().map_or("lexicon", model::Model::version)
}

impl Scorer {
    /// The rule-based lexicon scorer alone.
    pub fn lexicon() -> Scorer {
        Scorer {
            method: Method::Lexicon,
            ..Scorer::default()
        }
    }

    /// The name of what scores: the model's version, or `lexicon`.
    pub fn version(&self) -> &'static str {
        match (self.method, self.model.or_else(shipped_model)) {
            (Method::Model, Some(m)) => m.version(),
            _ => "lexicon",
        }
    }

    /// Detects the language, then scores. The words are split once for both.
    pub fn assess(&self, text: &str) -> Assessment {
        let other = |language| Assessment {
            score: 0.0,
            language: Some(language),
        };
        if let Some(language) = language::script(text) {
            return other(language);
        }
        let mut tally = language::Tally::default();
        let score = match (self.method, self.model.or_else(shipped_model)) {
            (Method::Model, Some(m)) => FEATURES.with(|cell| {
                let mut features = cell.borrow_mut();
                features.clear();
                let reading = model::features_with(text, &mut features, Some(&mut tally));
                let score = model::score_of(m.probabilities(&features, reading));
                // A very long message leaves no large buffer behind.
                if features.capacity() > 16_384 {
                    *features = Vec::with_capacity(256);
                }
                score
            }),
            _ => {
                model::features_with(text, &mut Vec::new(), Some(&mut tally));
                lexicon::score(text, self.alpha)
            }
        };
        match tally.verdict() {
            Some(language) => other(language),
            None => Assessment {
                score,
                language: None,
            },
        }
    }

    /// The score of [`Scorer::assess`].
    pub fn score(&self, text: &str) -> f64 {
        self.assess(text).score
    }
}

/// Labels cut at ±0.35 (SPEC §8.2).
pub fn label(score: f64) -> SentimentLabel {
    if score < -0.35 {
        SentimentLabel::Negative
    } else if score > 0.35 {
        SentimentLabel::Positive
    } else {
        SentimentLabel::Neutral
    }
}

/// Figures of a labelled evaluation (`switchboard sentiment eval`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    /// Mean F1 over the classes present in the gold labels.
    pub macro_f1: f64,
    /// Per class (negative, neutral, positive): precision, recall, F1, and whether the class
    /// occurs in the gold labels.
    pub per_class: [(f64, f64, f64, bool); 3],
    /// confusion[gold][predicted], classes in the order negative, neutral, positive.
    pub confusion: [[usize; 3]; 3],
    /// Rows detected as another language (scored 0, neutral).
    pub other_language: usize,
}

impl Evaluation {
    /// The share of all rows called negative (on a one-class complaints file: complaint
    /// recall; on a file of non-complaints: false alarms).
    pub fn called_negative(&self) -> f64 {
        let negative: usize = self.confusion.iter().map(|row| row[0]).sum();
        if self.n == 0 {
            0.0
        } else {
            negative as f64 / self.n as f64
        }
    }
}

pub(crate) fn class_index(l: SentimentLabel) -> usize {
    match l {
        SentimentLabel::Negative => 0,
        SentimentLabel::Neutral => 1,
        SentimentLabel::Positive => 2,
    }
}

/// Score every (gold label, text) pair and compute the figures. On binary data a neutral
/// prediction simply counts as wrong.
pub fn evaluate(scorer: &Scorer, rows: &[(SentimentLabel, String)]) -> Evaluation {
    let mut confusion = [[0usize; 3]; 3];
    let mut other_language = 0;
    for (gold, text) in rows {
        let a = scorer.assess(text);
        other_language += usize::from(a.language.is_some());
        confusion[class_index(*gold)][class_index(label(a.score))] += 1;
    }
    Evaluation::from_confusion(confusion, other_language)
}

impl Evaluation {
    /// The figures of a confusion matrix (`confusion[gold][predicted]`).
    pub fn from_confusion(confusion: [[usize; 3]; 3], other_language: usize) -> Evaluation {
        let n: usize = confusion.iter().flatten().sum();
        let correct: usize = (0..3).map(|c| confusion[c][c]).sum();
        let mut per_class = [(0.0, 0.0, 0.0, false); 3];
        for (c, slot) in per_class.iter_mut().enumerate() {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..3).map(|g| confusion[g][c]).sum();
            let actual: usize = confusion[c].iter().sum();
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if actual > 0 { tp / actual as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            *slot = (precision, recall, f1, actual > 0);
        }
        let present: Vec<f64> = per_class.iter().filter(|c| c.3).map(|c| c.2).collect();
        Evaluation {
            n,
            accuracy: if n > 0 {
                correct as f64 / n as f64
            } else {
                0.0
            },
            macro_f1: if present.is_empty() {
                0.0
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            },
            per_class,
            confusion,
            other_language,
        }
    }
}

/// The running recency-weighted mean of one conversation: message i weighs i (SPEC §8.3).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ConversationMood {
    pub weighted_sum: f64,
    pub weights: f64,
    pub messages: i32,
}

impl ConversationMood {
    pub fn add(&mut self, score: f64) -> f64 {
        self.messages += 1;
        let w = f64::from(self.messages);
        self.weighted_sum += w * score;
        self.weights += w;
        self.weighted_sum / self.weights
    }
}

/// Scores every inbound customer text message of tenants that enabled sentiment.
pub struct Sentiment {
    pub scorer: Scorer,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

impl Processor for Sentiment {
    fn on_output(&mut self, cx: &mut Ctx, output: &Output) {
        let Output::Conversation(ConversationEvent {
            conversation_id,
            event: ConversationEventKind::MessageReceived(m),
            tenant,
            ..
        }) = output
        else {
            return;
        };
        if *tenant != cx.tenant
            || m.content.trim().is_empty()
            || !cx.state.config(cx.tenant).sentiment_enabled
        {
            return;
        }
        let assessment = self.scorer.assess(&m.content);
        let score = round4(assessment.score);
        let mut events = vec![SentimentEventKind::MessageSentiment(MessageSentiment {
            message_id: m.message_id.clone(),
            score,
            label: label(score),
            model: Some(self.scorer.version().to_string()),
            language: assessment.language.map(str::to_string),
        })];
        // A message in another language was not scored: it leaves the mood as it was.
        if assessment.language.is_none() {
            let key = cx.state.conversation_key(cx.tenant, conversation_id);
            let mood = cx
                .state
                .moods
                .get_or_insert_with(cx.tenant, key, ConversationMood::default);
            let mean = round4(mood.add(score));
            events.push(SentimentEventKind::ConversationSentiment(
                ConversationSentiment {
                    score: mean,
                    label: label(mean),
                    messages: mood.messages,
                },
            ));
        }
        for event in events {
            let id = cx.next_id();
            cx.emit(Output::Sentiment(SentimentEvent {
                id,
                tenant: cx.tenant.to_string(),
                conversation_id: conversation_id.clone(),
                event,
            }));
        }
    }
}
