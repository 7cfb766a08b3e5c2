//! The rule-based scorer (SPEC §8.1): the VADER method (Hutto & Gilbert, ICWSM 2014) over the
//! VADER lexicon (MIT), with a customer-support layer of our own on top
//! (`data/sentiment/support.tsv`): words and phrases that tweet-trained lexicons misread
//! ("please help", "still waiting", "thanks for nothing", "never again", 😡). Intensifiers
//! and dampeners in the three words before a sentiment word; negation in the same window;
//! "but" shifting weight to what follows; ALL-CAPS and !/?? emphasis; emoji and emoticons.
//! The sum is squashed into [-1, +1] by x / sqrt(x² + alpha). The learned model reads this
//! score as one of its features.

use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

// FxHash: eight bytes at a time, faster than FNV on the words of a message.
type WordMap<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

/// The squashing constant tuned on the development split (VADER uses 15).
pub const DEFAULT_ALPHA: f64 = 16.0;

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
    /// Some phrase ends with this word.
    ends_phrase: bool,
}

struct Lexicon {
    /// Keys borrow one leaked buffer and entries are 16 bytes, so the table stays small.
    words: WordMap<&'static str, Compact>,
    /// Phrases by the index a [`Compact`] holds.
    phrases: Vec<Vec<(Vec<String>, f64)>>,
}

/// An [`Entry`] as the scorer reads it.
#[derive(Clone, Copy)]
struct Compact {
    /// NaN: no valence.
    valence: f64,
    /// 1 intensifier, -1 dampener, 0 neither.
    booster: i8,
    negation: bool,
    /// Index into `Lexicon::phrases`; `u16::MAX`: none.
    phrases: u16,
    /// Some phrase ends with this word.
    ends_phrase: bool,
}

impl Compact {
    fn valence(&self) -> Option<f64> {
        (!self.valence.is_nan()).then_some(self.valence)
    }

    fn booster(&self) -> f64 {
        match self.booster {
            1 => B_INCR,
            -1 => B_DECR,
            _ => 0.0,
        }
    }
}

impl Lexicon {
    fn get(&self, word: &str) -> Option<&Compact> {
        self.words.get(word)
    }

    fn phrases(&self, entry: &Compact) -> &[(Vec<String>, f64)] {
        self.phrases
            .get(usize::from(entry.phrases))
            .map_or(&[], Vec::as_slice)
    }
}

fn parse_tsv(text: &str, words: &mut WordMap<String, Entry>) {
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
        let mut words = WordMap::default();
        parse_tsv(
            include_str!("../../data/sentiment/vader_lexicon.tsv"),
            &mut words,
        );
        parse_tsv(
            include_str!("../../data/sentiment/vader_emoji.tsv"),
            &mut words,
        );
        parse_tsv(include_str!("../../data/sentiment/support.tsv"), &mut words);
        for (list, strength) in [(BOOST_UP, B_INCR), (BOOST_DOWN, B_DECR)] {
            for w in list {
                words.entry(w.to_string()).or_default().booster = strength;
            }
        }
        for w in NEGATE {
            words.entry(w.to_string()).or_default().negation = true;
        }
        let ends: Vec<String> = words
            .keys()
            .filter_map(|k| k.rsplit_once(' ').map(|(_, last)| last.to_string()))
            .collect();
        for last in ends {
            words.entry(last).or_default().ends_phrase = true;
        }
        // Keys in one buffer, in a fixed order.
        let mut entries: Vec<(String, Entry)> = words.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let buffer: &'static str = Box::leak(
            entries
                .iter()
                .map(|e| e.0.as_str())
                .collect::<String>()
                .into_boxed_str(),
        );
        let mut compact = WordMap::default();
        let mut phrases = Vec::new();
        let mut at = 0;
        for (key, entry) in entries {
            let word = &buffer[at..at + key.len()];
            at += key.len();
            let index = if entry.phrases.is_empty() {
                u16::MAX
            } else {
                phrases.push(entry.phrases);
                u16::try_from(phrases.len() - 1).unwrap_or(u16::MAX)
            };
            compact.insert(
                word,
                Compact {
                    valence: entry.valence.unwrap_or(f64::NAN),
                    booster: if entry.booster > 0.0 {
                        1
                    } else if entry.booster < 0.0 {
                        -1
                    } else {
                        0
                    },
                    negation: entry.negation,
                    phrases: index,
                    ends_phrase: entry.ends_phrase,
                },
            );
        }
        Lexicon {
            words: compact,
            phrases,
        }
    })
}

/// Strip leading and trailing ASCII punctuation, unless that leaves two characters or fewer
/// (then it was an emoticon such as ":)").
fn strip(token: &str) -> &str {
    // ASCII punctuation is one byte and never part of a longer character, so trimming bytes
    // cuts at character boundaries.
    let bytes = token.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_punctuation())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_punctuation())
        .map_or(start, |e| e + 1);
    let stripped = token.get(start..end.max(start)).unwrap_or("");
    let short = stripped.len() <= 2
        || (stripped.len() <= 8 && !stripped.is_ascii() && stripped.chars().count() <= 2);
    if short {
        token
    } else {
        stripped
    }
}

struct Token {
    /// The words the rules look for, as bits (`NO`, `BUT`, …), found once per token.
    word: u8,
    upper: bool,
    valence: Option<f64>,
    booster: f64,
    negation: bool,
}

const NO: u8 = 1;
const BUT: u8 = 2;
const LEAST: u8 = 4;
const AT_OR_VERY: u8 = 8;
const NEVER: u8 = 16;
const SO_OR_THIS: u8 = 32;
const WITHOUT: u8 = 64;
const DOUBT: u8 = 128;

impl Token {
    fn new(lower: &str, upper: bool, entry: Option<&Compact>) -> Token {
        let negation = entry.is_some_and(|e| e.negation) || lower.contains("n't");
        let word = match lower {
            "no" => NO,
            "but" => BUT,
            "least" => LEAST,
            "at" | "very" => AT_OR_VERY,
            "never" => NEVER,
            "so" | "this" => SO_OR_THIS,
            "without" => WITHOUT,
            "doubt" => DOUBT,
            _ => 0,
        };
        Token {
            upper,
            valence: entry.and_then(Compact::valence),
            booster: entry.map_or(0.0, Compact::booster),
            negation,
            word,
        }
    }

    fn is(&self, word: u8) -> bool {
        self.word & word != 0
    }
}

/// The tokens of `text`: whitespace-separated, punctuation stripped, emoji split out, phrases
/// of the support lexicon merged into one token. Borrows from `text` where it can.
fn tokens(text: &str) -> SmallVec<[Token; 32]> {
    let lex = lexicon();
    let known_symbol = |s: &str| lex.get(s).is_some_and(|e| e.valence().is_some());
    // Every word lower-cased into one buffer: one allocation per message.
    let mut buf = String::with_capacity(text.len() + 8);
    let mut words: SmallVec<[(usize, usize, bool); 32]> = SmallVec::new();
    let mut push = |buf: &mut String, piece: &str| {
        let w = strip(piece);
        if w.is_empty() {
            return;
        }
        let start = buf.len();
        let upper = if w.is_ascii() {
            buf.push_str(w);
            buf[start..].make_ascii_lowercase();
            w.bytes().any(|b| b.is_ascii_alphabetic()) && !w.bytes().any(|b| b.is_ascii_lowercase())
        } else {
            if w.chars().any(char::is_uppercase) {
                buf.push_str(&w.to_lowercase());
            } else {
                buf.push_str(w);
            }
            w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_lowercase)
        };
        words.push((start, buf.len(), upper));
    };
    for word in super::words(text) {
        if word.is_ascii() {
            push(&mut buf, word);
            continue;
        }
        // Split out symbols the lexicon knows (emoji) from the letters around them.
        let mut start = 0;
        for (i, c) in word.char_indices() {
            let symbol = &word[i..i + c.len_utf8()];
            if !c.is_ascii() && !c.is_alphanumeric() && known_symbol(symbol) {
                if start < i {
                    push(&mut buf, &word[start..i]);
                }
                push(&mut buf, symbol);
                start = i + c.len_utf8();
            }
        }
        if start < word.len() {
            push(&mut buf, &word[start..]);
        }
    }
    let word = |k: usize| buf.get(words[k].0..words[k].1).unwrap_or("");
    let mut out = SmallVec::new();
    let mut i = 0;
    while i < words.len() {
        let entry = lex.get(word(i));
        let phrase = entry.and_then(|e| {
            lex.phrases(e).iter().find(|(p, _)| {
                words.len() - i >= p.len() && p.iter().zip(i..).all(|(a, k)| a == word(k))
            })
        });
        if let Some((p, _)) = phrase {
            let joined = p.join(" ");
            let entry = lex.get(&joined);
            out.push(Token::new(&joined, words[i].2, entry));
            i += p.len();
            continue;
        }
        out.push(Token::new(word(i), words[i].2, entry));
        i += 1;
    }
    out
}

/// The lexicon's score in [-1, +1] with squashing constant `alpha`. Text with no sentiment
/// words (including text in a language the lexicon does not know) scores 0, neutral.
pub fn score(text: &str, alpha: f64) -> f64 {
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
    let mut sentiments: SmallVec<[f64; 32]> = SmallVec::new();
    for (i, t) in toks.iter().enumerate() {
        // Boosters carry no sentiment of their own.
        let Some(base) = t.valence.filter(|_| t.booster == 0.0) else {
            sentiments.push(0.0);
            continue;
        };
        // "no" before another sentiment word is a determiner, not a sentiment.
        if t.is(NO) && toks.get(i + 1).is_some_and(|n| n.valence.is_some()) {
            sentiments.push(0.0);
            continue;
        }
        let mut v = base;
        if (i >= 1 && toks[i - 1].is(NO)) || (i >= 2 && toks[i - 2].is(NO)) {
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
            let never_so = p.is(NEVER)
                && k >= 2
                && (toks[i - k + 1].is(SO_OR_THIS) || toks[i - 1].is(SO_OR_THIS));
            let without_doubt = p.is(WITHOUT) && toks[i - k + 1..i].iter().any(|w| w.is(DOUBT));
            if never_so {
                v *= 1.25;
            } else if p.negation && !without_doubt {
                v *= N_SCALAR;
            }
        }
        if i >= 1 && toks[i - 1].is(LEAST) && !(i >= 2 && toks[i - 2].is(AT_OR_VERY)) {
            v *= N_SCALAR;
        }
        sentiments.push(v);
    }
    if let Some(b) = toks.iter().position(|t| t.is(BUT)) {
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
    (sum / (sum * sum + alpha).sqrt()).clamp(-1.0, 1.0)
}

/// What the lexicon knows of one lower-cased word (or emoji, or phrase of words joined by
/// single spaces), for the model's reading of a message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Known {
    pub valence: Option<f64>,
    /// A negation ("not", "never", "dont", …) in VADER's list.
    pub negation: bool,
    /// Some phrase of the lexicon ends with this word ("thanks for nothing").
    pub ends_phrase: bool,
}

/// Looks up one word or phrase.
pub fn known(word: &str) -> Option<Known> {
    lexicon().get(word).map(|c| Known {
        valence: c.valence(),
        negation: c.negation,
        ends_phrase: c.ends_phrase,
    })
}
