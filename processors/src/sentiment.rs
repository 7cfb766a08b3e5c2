//! Sentiment (SPEC §8, R-SENT): a rule-based scorer that runs in-process, and the processor
//! that scores every inbound customer message.
//!
//! The scorer follows the VADER method (Hutto & Gilbert, ICWSM 2014): a valence lexicon;
//! intensifiers and dampeners in the three words before a sentiment word; negation in the
//! same window; "but" shifting weight to what follows; ALL-CAPS and !/?? emphasis; emoji and
//! emoticons. It uses the VADER lexicon (MIT), with a customer-support layer of our own on
//! top (`data/sentiment/support.tsv`). That layer holds words and phrases that tweet-trained
//! lexicons misread: "please help", "still waiting", "thanks for nothing", "never again",
//! 😡. The sum is squashed into [-1, +1] by x / sqrt(x² + alpha); alpha was tuned on the
//! development split (docs/sentiment.md).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use switchboard_schemas::*;

use crate::engine::Ctx;
use crate::Processor;

/// FNV-1a for the lexicon maps: fast on short keys, and the same on every run.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

/// The squashing constant tuned on the development split (VADER uses 15).
pub const DEFAULT_ALPHA: f64 = 16.0;

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

const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "dont", "hadnt",
    "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither", "neednt", "never", "none", "nope",
    "nor", "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent",
    "uh-uh", "without", "wont", "wouldnt", "rarely", "seldom", "despite",
];

const BOOST_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOST_DOWN: &[&str] = &[
    "almost",
    "kind of",
    "sort of",
    "just enough",
    "barely",
    "hardly",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sorta",
    "sortof",
    "sort-of",
];

/// Everything the scorer knows about one word (or phrase), found with one lookup.
#[derive(Default)]
struct Entry {
    valence: Option<f64>,
    /// Intensifier (+) or dampener (-) strength; 0 for neither.
    booster: f64,
    negation: bool,
    /// Phrases that start with this word: (their words, valence), longest first.
    phrases: Vec<(Vec<String>, f64)>,
}

struct Lexicon {
    words: FnvMap<String, Entry>,
}

fn parse_tsv(text: &str, words: &mut FnvMap<String, Entry>) {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split('\t');
        let (Some(term), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let tokens: Vec<String> = term
            .split_whitespace()
            .map(|t| strip(t).to_lowercase())
            .collect();
        if tokens.len() > 1 {
            words.entry(tokens.join(" ")).or_default().valence = Some(value);
            let list = &mut words.entry(tokens[0].clone()).or_default().phrases;
            list.push((tokens, value));
            list.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        } else {
            words.entry(term.to_lowercase()).or_default().valence = Some(value);
        }
    }
}

fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let mut words = FnvMap::default();
        parse_tsv(
            include_str!("../data/sentiment/vader_lexicon.tsv"),
            &mut words,
        );
        parse_tsv(
            include_str!("../data/sentiment/vader_emoji.tsv"),
            &mut words,
        );
        parse_tsv(include_str!("../data/sentiment/support.tsv"), &mut words);
        for (list, strength) in [(BOOST_UP, B_INCR), (BOOST_DOWN, B_DECR)] {
            for w in list {
                words.entry(w.to_string()).or_default().booster = strength;
            }
        }
        for w in NEGATE {
            words.entry(w.to_string()).or_default().negation = true;
        }
        Lexicon { words }
    })
}

/// Strip leading and trailing ASCII punctuation, unless that leaves two characters or fewer
/// (then it was an emoticon such as ":)").
fn strip(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 {
        token
    } else {
        stripped
    }
}

struct Token<'a> {
    lower: Cow<'a, str>,
    upper: bool,
    valence: Option<f64>,
    booster: f64,
    negation: bool,
}

impl<'a> Token<'a> {
    fn new(lower: Cow<'a, str>, upper: bool, entry: Option<&Entry>) -> Token<'a> {
        let negation = entry.is_some_and(|e| e.negation) || lower.contains("n't");
        Token {
            upper,
            valence: entry.and_then(|e| e.valence),
            booster: entry.map_or(0.0, |e| e.booster),
            negation,
            lower,
        }
    }
}

/// Lower-case without allocating when there is nothing to change.
fn lower(word: &str) -> Cow<'_, str> {
    if word.chars().any(char::is_uppercase) {
        Cow::Owned(word.to_lowercase())
    } else {
        Cow::Borrowed(word)
    }
}

/// The tokens of `text`: whitespace-separated, punctuation stripped, emoji split out, phrases
/// of the support lexicon merged into one token. Borrows from `text` where it can.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let lex = lexicon();
    let known_symbol = |s: &str| lex.words.get(s).is_some_and(|e| e.valence.is_some());
    let mut words: Vec<(Cow<'_, str>, bool)> = Vec::with_capacity(16);
    fn push<'a>(words: &mut Vec<(Cow<'a, str>, bool)>, piece: &'a str) {
        let w = strip(piece);
        if !w.is_empty() {
            let upper = w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_lowercase);
            words.push((lower(w), upper));
        }
    }
    for word in text.split_whitespace() {
        if word.is_ascii() {
            push(&mut words, word);
            continue;
        }
        // Split out symbols the lexicon knows (emoji) from the letters around them.
        let mut start = 0;
        for (i, c) in word.char_indices() {
            let symbol = &word[i..i + c.len_utf8()];
            if !c.is_ascii() && !c.is_alphanumeric() && known_symbol(symbol) {
                if start < i {
                    push(&mut words, &word[start..i]);
                }
                push(&mut words, symbol);
                start = i + c.len_utf8();
            }
        }
        if start < word.len() {
            push(&mut words, &word[start..]);
        }
    }
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let entry = lex.words.get(words[i].0.as_ref());
        let phrase = entry.and_then(|e| {
            e.phrases.iter().find(|(p, _)| {
                words.len() - i >= p.len() && p.iter().zip(&words[i..]).all(|(a, b)| *a == b.0)
            })
        });
        if let Some((p, _)) = phrase {
            let joined = p.join(" ");
            let entry = lex.words.get(&joined);
            out.push(Token::new(Cow::Owned(joined), words[i].1, entry));
            i += p.len();
            continue;
        }
        let word = std::mem::take(&mut words[i].0);
        out.push(Token::new(word, words[i].1, entry));
        i += 1;
    }
    out
}

/// The scorer, with its squashing constant.
#[derive(Clone, Copy, Debug)]
pub struct Scorer {
    pub alpha: f64,
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer {
            alpha: DEFAULT_ALPHA,
        }
    }
}

impl Scorer {
    /// A score in [-1, +1]. Text with no sentiment words (including text in a language the
    /// lexicon does not know) scores 0, neutral.
    pub fn score(&self, text: &str) -> f64 {
        let toks = tokens(text);
        let uppers = toks.iter().filter(|t| t.upper).count();
        let cap_diff = uppers > 0 && uppers < toks.len();
        let caps = |t: &Token, v: f64| {
            if t.upper && cap_diff {
                if v > 0.0 {
                    C_INCR
                } else {
                    -C_INCR
                }
            } else {
                0.0
            }
        };
        let mut sentiments = Vec::with_capacity(toks.len());
        for (i, t) in toks.iter().enumerate() {
            // Boosters carry no sentiment of their own.
            let Some(base) = t.valence.filter(|_| t.booster == 0.0) else {
                sentiments.push(0.0);
                continue;
            };
            // "no" before another sentiment word is a determiner, not a sentiment.
            if t.lower == "no" && toks.get(i + 1).is_some_and(|n| n.valence.is_some()) {
                sentiments.push(0.0);
                continue;
            }
            let mut v = base;
            if (i >= 1 && toks[i - 1].lower == "no") || (i >= 2 && toks[i - 2].lower == "no") {
                v *= N_SCALAR;
            }
            v += caps(t, v);
            for k in 1..=3usize.min(i) {
                let p = &toks[i - k];
                if p.valence.is_some() && p.booster == 0.0 {
                    continue;
                }
                if p.booster != 0.0 {
                    let s = if v < 0.0 { -p.booster } else { p.booster } + caps(p, v);
                    v += s * [1.0, 0.95, 0.9][k - 1];
                }
                let so_this = |w: &str| w == "so" || w == "this";
                let never_so = p.lower == "never"
                    && k >= 2
                    && (so_this(&toks[i - k + 1].lower) || so_this(&toks[i - 1].lower));
                let without_doubt =
                    p.lower == "without" && toks[i - k + 1..i].iter().any(|w| w.lower == "doubt");
                if never_so {
                    v *= 1.25;
                } else if p.negation && !without_doubt {
                    v *= N_SCALAR;
                }
            }
            if i >= 1
                && toks[i - 1].lower == "least"
                && !(i >= 2 && (toks[i - 2].lower == "at" || toks[i - 2].lower == "very"))
            {
                v *= N_SCALAR;
            }
            sentiments.push(v);
        }
        if let Some(b) = toks.iter().position(|t| t.lower == "but") {
            for (i, s) in sentiments.iter_mut().enumerate() {
                if i < b {
                    *s *= 0.5;
                } else if i > b {
                    *s *= 1.5;
                }
            }
        }
        let mut sum: f64 = sentiments.iter().sum();
        let (mut bangs, mut questions) = (0usize, 0usize);
        for b in text.bytes() {
            match b {
                b'!' => bangs += 1,
                b'?' => questions += 1,
                _ => {}
            }
        }
        let emphasis = bangs.min(4) as f64 * 0.292
            + match questions {
                0 | 1 => 0.0,
                n @ 2..=3 => n as f64 * 0.18,
                _ => 0.96,
            };
        if sum > 0.0 {
            sum += emphasis;
        } else if sum < 0.0 {
            sum -= emphasis;
        }
        (sum / (sum * sum + self.alpha).sqrt()).clamp(-1.0, 1.0)
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
}

fn class_index(l: SentimentLabel) -> usize {
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
    for (gold, text) in rows {
        confusion[class_index(*gold)][class_index(label(scorer.score(text)))] += 1;
    }
    let n = rows.len();
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
        let score = round4(self.scorer.score(&m.content));
        let key = cx.state.conversation_key(cx.tenant, conversation_id);
        let mood = cx
            .state
            .moods
            .get_or_insert_with(cx.tenant, key, ConversationMood::default);
        let mean = round4(mood.add(score));
        let messages = mood.messages;
        for event in [
            SentimentEventKind::MessageSentiment(MessageSentiment {
                message_id: m.message_id.clone(),
                score,
                label: label(score),
            }),
            SentimentEventKind::ConversationSentiment(ConversationSentiment {
                score: mean,
                label: label(mean),
                messages,
            }),
        ] {
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
