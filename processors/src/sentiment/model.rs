//! The learned sentiment model: a multinomial logistic regression over hashed word 1–2-grams
//! (negation-scoped) and a lexicon reading of the words, with int8 weights embedded in the
//! binary (`data/sentiment/model.bin`). Character n-grams were tried and left out: they
//! raised nothing on the development sets and lowered the brand sets (docs/sentiment.md).
//!
//! The same [`features`] function serves training ([`train`]) and scoring, so the weights
//! the training pipeline writes are read back exactly as they were learned. Training is
//! deterministic: one thread, a fixed seed, the rows in a fixed order; the same inputs give
//! the same weight file byte for byte.

use super::language::Tally;
use smallvec::SmallVec;
use switchboard_schemas::SentimentLabel;

/// Number of hash buckets: 2^BUCKETS_LOG2, each with one int8 weight per class.
pub const BUCKETS_LOG2: u32 = 19;
const BUCKETS: usize = 1 << BUCKETS_LOG2;
/// Classes in model order.
pub const CLASSES: [SentimentLabel; 3] = [
    SentimentLabel::Negative,
    SentimentLabel::Neutral,
    SentimentLabel::Positive,
];
const MAGIC: &[u8; 8] = b"SBSENT01";
const HEADER: usize = 8 + 4 + 4 * 7;

/// Words that open a negation scope: the words after them, up to the next clause
/// punctuation, get features of their own ("not good" is not "good").
fn negates(word: &[u8]) -> bool {
    matches!(
        word,
        b"not"
            | b"no"
            | b"never"
            | b"nothing"
            | b"nobody"
            | b"none"
            | b"nor"
            | b"neither"
            | b"nowhere"
            | b"cannot"
            | b"without"
            | b"aint"
            | b"isnt"
            | b"arent"
            | b"wasnt"
            | b"werent"
            | b"dont"
            | b"doesnt"
            | b"didnt"
            | b"cant"
            | b"couldnt"
            | b"wont"
            | b"wouldnt"
            | b"shouldnt"
            | b"havent"
            | b"hasnt"
            | b"hadnt"
            | b"still"
    )
}

const EMOTICONS: &[&str] = &[
    ":)", ":-)", ":(", ":-(", ":D", ":-D", ";)", ";-)", ":P", ":p", ":/", ":-/", ":'(", ":|", "<3",
    "</3", "xD", "XD", ":o", ":O", "=)", "=(", ":]", ":[", "^^", "-_-", ":*",
];

#[inline]
fn mix(mut h: u64) -> u64 {
    // The finalizer of MurmurHash3.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for chunk in bytes.chunks(8) {
        let mut v = 0u64;
        for (i, b) in chunk.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        h = (h ^ v).wrapping_mul(0x5851_f42d_4c95_7f2d).rotate_left(29);
    }
    h ^ bytes.len() as u64
}

#[inline]
fn bucket(h: u64) -> u32 {
    (mix(h) >> (64 - BUCKETS_LOG2)) as u32
}

const SEED_WORD: u64 = 1;
const SEED_NEG: u64 = 2;
const SEED_BIGRAM: u64 = 3;
const SEED_LEX: u64 = 5;
const BOUNDARY: u64 = 0x2545_f491_4f6c_dd1d;

/// Collects the hashed features of one message.
struct Extractor<'a> {
    out: &'a mut Vec<u32>,
    word: SmallVec<[u8; 32]>,
    prev: u64,
    negated: bool,
    tally: Option<&'a mut Tally>,
    /// The lexicon reading so far: see [`Reading`].
    reading: Reading,
}

/// The lexicon reading of a message's words, the way the lexicon scorer reads them, without
/// its boosters and emphasis: each word's valence, turned (× −0.74) when one of the three
/// words before it is a negation; a phrase of the lexicon ("thanks for nothing", "yeah
/// right") in place of its words; what comes before the first "but" weighs 0.5 and what
/// follows 1.5.
#[derive(Default)]
struct Reading {
    before_but: f64,
    sum: f64,
    but: bool,
    /// Words since the last negation (saturating).
    since_negation: u8,
    /// The last two words (lower-cased), what each added to `sum`, and `since_negation`
    /// before each.
    recent: [(SmallVec<[u8; 24]>, f64, u8); 2],
}

impl Reading {
    fn word(&mut self, text: &[u8]) {
        let Some(word) = std::str::from_utf8(text).ok() else {
            return;
        };
        if word == "but" && !self.but {
            self.but = true;
            self.before_but = self.sum;
            self.sum = 0.0;
            self.recent = Default::default();
            self.since_negation = self.since_negation.saturating_add(1);
            return;
        }
        let known = super::lexicon::known(word);
        let turn = |v: f64, since: u8| if since < 3 { v * NEGATED } else { v };
        let mut added = 0.0;
        if let Some(k) = known {
            if let Some(v) = k.valence {
                added = turn(v, self.since_negation);
            }
            if k.ends_phrase {
                // The longest phrase ending here wins: three words, then two.
                let [(w2, a2, s2), (w1, a1, s1)] = &self.recent;
                let join = |parts: &[&[u8]]| {
                    let mut j = Vec::with_capacity(32);
                    for (i, p) in parts.iter().enumerate() {
                        if i > 0 {
                            j.push(b' ');
                        }
                        j.extend_from_slice(p);
                    }
                    j
                };
                let three = join(&[w2, w1, text]);
                let two = join(&[w1, text]);
                // A negation inside the phrase is part of it ("not working"): only one
                // before its first word turns it.
                let phrase = [(three, *a1 + *a2, *s2), (two, *a1, *s1)]
                    .into_iter()
                    .filter(|(j, ..)| !j.starts_with(b" "))
                    .find_map(|(j, prior, since)| {
                        std::str::from_utf8(&j)
                            .ok()
                            .and_then(super::lexicon::known)
                            .and_then(|k| k.valence)
                            .map(|v| (v, prior, since))
                    });
                if let Some((v, prior, since)) = phrase {
                    self.sum -= prior;
                    added = turn(v, since);
                }
            }
        }
        self.sum += added;
        let since_before = self.since_negation;
        self.since_negation = if known.is_some_and(|k| k.negation) {
            0
        } else {
            self.since_negation.saturating_add(1)
        };
        self.recent[0] = std::mem::take(&mut self.recent[1]);
        self.recent[1] = (SmallVec::from_slice(text), added, since_before);
    }

    fn value(&self) -> f64 {
        let x = if self.but {
            0.5 * self.before_but + 1.5 * self.sum
        } else {
            self.sum
        };
        x / (x * x + SQUASH).sqrt()
    }
}

/// A valence in a negation scope is turned and damped, as the lexicon scorer does.
const NEGATED: f64 = -0.74;
/// The reading's squashing constant: VADER's.
const SQUASH: f64 = 15.0;

impl Extractor<'_> {
    fn token(&mut self, text: &[u8]) {
        if text != b"!" && text != b"?" {
            self.reading.word(text);
        }
        let h = hash_bytes(SEED_WORD, text);
        let unigram = if self.negated { h ^ SEED_NEG } else { h };
        self.out.push(bucket(unigram));
        self.out.push(bucket(
            self.prev.rotate_left(17) ^ h.wrapping_mul(SEED_BIGRAM),
        ));
        self.prev = h;
        if negates(text) {
            self.negated = true;
        }
    }

    fn end_word(&mut self) {
        if !self.word.is_empty() {
            let word = std::mem::take(&mut self.word);
            self.token(&word);
            if let Some(t) = self.tally.as_deref_mut() {
                t.word(&word);
            }
            self.word = word;
            self.word.clear();
        }
    }

    fn push_char(&mut self, c: char) {
        if c.is_ascii() {
            let b = if c.is_ascii_digit() {
                b'0'
            } else {
                (c as u8).to_ascii_lowercase()
            };
            let n = self.word.len();
            if !(n >= 2 && self.word[n - 1] == b && self.word[n - 2] == b) {
                self.word.push(b);
            }
            return;
        }
        let mut buf = [0u8; 4];
        for l in c.to_lowercase() {
            let l = if l.is_ascii_digit() { '0' } else { l };
            let bytes = l.encode_utf8(&mut buf).as_bytes();
            // Elongations ("soooo") read as two repeats ("soo").
            let n = self.word.len();
            if bytes.len() == 1
                && n >= 2
                && self.word[n - 1] == bytes[0]
                && self.word[n - 2] == bytes[0]
            {
                continue;
            }
            self.word.extend_from_slice(bytes);
        }
    }
}

/// The lexicon reading as features: its score cut into 21 bins.
fn lexicon_bin(lexicon: f64) -> u32 {
    let bin = ((lexicon.clamp(-1.0, 1.0) + 1.0) * 10.0).round() as u64;
    bucket(hash_bytes(SEED_LEX, &bin.to_le_bytes()))
}

/// The hashed features of `text` (bucket numbers, repeats allowed), appended to `out`, and
/// the lexicon reading of its words (in -1..1): the lexicon's valences of the words, turned
/// in negation scopes, summed and squashed by x / √(x² + 15). The reading is the model's
/// continuous input, and cut into 21 bins among the features. One pass over the words: the
/// full rule-based scorer (boosters, "but", emphasis, phrases) would double the time per
/// message for ~0.01 of macro-F1 (docs/sentiment.md).
pub fn features(text: &str, out: &mut Vec<u32>) -> f64 {
    features_with(text, out, None)
}

/// [`features`], and each word counted in `tally` for language detection.
pub fn features_with(text: &str, out: &mut Vec<u32>, tally: Option<&mut Tally>) -> f64 {
    let mut x = Extractor {
        out,
        word: SmallVec::new(),
        prev: BOUNDARY,
        negated: false,
        tally,
        reading: Reading {
            since_negation: u8::MAX,
            ..Reading::default()
        },
    };
    for chunk in super::words(text) {
        if chunk.starts_with("http://")
            || chunk.starts_with("https://")
            || chunk.starts_with("www.")
        {
            x.token(b"_url");
            continue;
        }
        if chunk.len() > 1 && chunk.starts_with('@') {
            x.token(b"_user");
            continue;
        }
        if chunk.len() <= 4 && EMOTICONS.contains(&chunk) {
            x.token(chunk.as_bytes());
            continue;
        }
        let mut last_mark = 0u8;
        for c in chunk.chars() {
            if c.is_alphanumeric() {
                x.push_char(c);
                last_mark = 0;
                continue;
            }
            if c == '\'' || c == '’' {
                continue;
            }
            x.end_word();
            match c {
                '!' | '?' => {
                    if last_mark != c as u8 {
                        x.token(if c == '!' { b"!" } else { b"?" });
                        last_mark = c as u8;
                    }
                    x.negated = false;
                }
                '.' | ',' | ';' | ':' => x.negated = false,
                // Variation selectors, joiners and skin tones belong to the emoji before.
                '\u{fe0f}' | '\u{200d}' | '\u{1f3fb}'..='\u{1f3ff}' => {}
                c if !c.is_ascii() => {
                    let mut buf = [0u8; 4];
                    x.token(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => {}
            }
        }
        x.end_word();
    }
    let last = x.prev;
    x.out.push(bucket(
        last.rotate_left(17) ^ BOUNDARY.wrapping_mul(SEED_BIGRAM),
    ));
    let reading = x.reading.value();
    x.out.push(lexicon_bin(reading));
    reading
}

/// Softmax probabilities (negative, neutral, positive) to the score in [-1, +1]:
/// P(positive) − P(negative).
pub fn score_of(p: [f64; 3]) -> f64 {
    (p[2] - p[0]).clamp(-1.0, 1.0)
}

fn softmax(z: [f64; 3]) -> [f64; 3] {
    let m = z[0].max(z[1]).max(z[2]);
    let e = [(z[0] - m).exp(), (z[1] - m).exp(), (z[2] - m).exp()];
    let s = e[0] + e[1] + e[2];
    [e[0] / s, e[1] / s, e[2] / s]
}

/// A model with int8 weights: what ships.
pub struct Model {
    scale: f32,
    bias: [f32; 3],
    lexicon: [f32; 3],
    weights: Vec<i8>,
    version: String,
}

/// A model's version: the bucket count and a hash (FNV-1a) of its weight file, so a
/// retrained model shows in the records.
pub fn version_of(weight_file: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in weight_file {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("lr{BUCKETS_LOG2}-{:08x}", h >> 32)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("not a Switchboard sentiment model (bad magic)")]
    Magic,
    #[error("model is {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("model has 2^{0} buckets, this build reads 2^{BUCKETS_LOG2}")]
    Buckets(u32),
}

fn f32_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl Model {
    /// Reads a weight file written by [`Model::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let expected = HEADER + BUCKETS * 3;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(ModelError::Magic);
        }
        let log2 = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if log2 != BUCKETS_LOG2 {
            return Err(ModelError::Buckets(log2));
        }
        if bytes.len() != expected {
            return Err(ModelError::Size(bytes.len(), expected));
        }
        let f = |i: usize| f32_at(bytes, 12 + 4 * i);
        Ok(Model {
            scale: f(0),
            bias: [f(1), f(2), f(3)],
            lexicon: [f(4), f(5), f(6)],
            weights: bytes[HEADER..].iter().map(|b| *b as i8).collect(),
            version: version_of(bytes),
        })
    }

    /// See [`version_of`].
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The weight file: magic, bucket count, scale, biases, lexicon weights (little-endian
    /// f32), then 3 int8 weights per bucket.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BUCKETS_LOG2.to_le_bytes());
        for v in [self.scale].iter().chain(&self.bias).chain(&self.lexicon) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend(self.weights.iter().map(|w| *w as u8));
        out
    }

    /// Class probabilities (negative, neutral, positive) of hashed features.
    pub fn probabilities(&self, features: &[u32], lexicon: f64) -> [f64; 3] {
        let mut acc = [0i32; 3];
        for &f in features {
            let at = f as usize * 3;
            if let Some(w) = self.weights.get(at..at + 3) {
                acc[0] += i32::from(w[0]);
                acc[1] += i32::from(w[1]);
                acc[2] += i32::from(w[2]);
            }
        }
        let z = [0, 1, 2].map(|k| {
            f64::from(self.bias[k])
                + f64::from(self.scale) * f64::from(acc[k])
                + f64::from(self.lexicon[k]) * lexicon
        });
        softmax(z)
    }
}

/// Training parameters (recorded in the manifest).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainParams {
    /// Runs with seeds `seed`, `seed + 1`, …, their weights averaged.
    pub runs: u32,
    pub epochs: u32,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            runs: 3,
            epochs: 2,
            learning_rate: 0.03,
            seed: 17,
        }
    }
}

/// The corpora the shipped model learns from (files of `../shared/data/sentiment-train/`),
/// in training order, each with the weight of its rows: tweets and text messages 1, other
/// genres (Reddit comments, reviews, pros and cons) 0.5, because chat and social messages to
/// a company read like the former. `vader_nytEditorialSnippets` is left out (the text is the
/// New York Times'); the evaluation-only sets are never read by training.
pub const TRAINING_SETS: &[TrainingSet] = &[
    TrainingSet::new("tse_tweets.tsv", 1.0, "CC BY 4.0 (Figure Eight)"),
    TrainingSet::new("goemotions_group.tsv", 0.5, "Apache-2.0"),
    TrainingSet::new("nltk_pros_cons.tsv", 0.5, "CC BY 4.0"),
    TrainingSet::new("nltk_rt_polarity.tsv", 0.5, "CC BY 4.0"),
    TrainingSet::new("nltk_product_reviews_2.tsv", 0.5, "CC BY 4.0"),
    TrainingSet::new("vader_movieReviewSnippets.tsv", 0.5, "MIT"),
    TrainingSet::new(
        "semeval13_16_tweets.tsv",
        1.0,
        "annotations CC BY 3.0; tweets under Twitter's terms (weights only, never the text)",
    ),
    TrainingSet::new(
        "semeval_sms_lj.tsv",
        1.0,
        "annotations CC BY 3.0; text not redistributed",
    ),
    TrainingSet::new(
        "tweeteval_test.tsv",
        1.0,
        "TweetEval, released without restrictions; Twitter's terms apply",
    ),
    TrainingSet::new(
        "tweeteval_val.tsv",
        1.0,
        "TweetEval, released without restrictions; Twitter's terms apply",
    ),
];

/// One training corpus: its file, the weight of its rows, its licence.
#[derive(Clone, Copy, Debug)]
pub struct TrainingSet {
    pub file: &'static str,
    pub weight: f32,
    pub licence: &'static str,
}

impl TrainingSet {
    const fn new(file: &'static str, weight: f32, licence: &'static str) -> TrainingSet {
        TrainingSet {
            file,
            weight,
            licence,
        }
    }
}

/// The support templates (`tools/sentiment/support_templates.txt`): variants per template,
/// the seed that fills them, and the weight of their rows.
pub const TEMPLATE_VARIANTS: usize = 30;
pub const TEMPLATE_SEED: u64 = 7;
pub const TEMPLATE_WEIGHT: f32 = 3.0;

/// Training examples of the expanded support templates: [`TEMPLATE_WEIGHT`], balanced so
/// each class weighs the same in total. The templates teach how support messages are
/// phrased, not how often each class occurs (most templates are complaints).
pub fn template_examples(rows: &[(SentimentLabel, String)]) -> Vec<Example> {
    let mut counts = [0usize; 3];
    for (l, _) in rows {
        counts[class_of(*l)] += 1;
    }
    let present = counts.iter().filter(|c| **c > 0).count().max(1);
    let mut out = examples(rows, TEMPLATE_WEIGHT);
    for e in &mut out {
        let share = counts[class_of(e.label)] as f32 / rows.len() as f32;
        e.weight = TEMPLATE_WEIGHT / (share * present as f32);
    }
    out
}

/// Training examples of labelled rows. Rows of a set without a neutral row are binary (see
/// [`Example::binary`]).
pub fn examples(rows: &[(SentimentLabel, String)], weight: f32) -> Vec<Example> {
    let binary = !rows.iter().any(|(l, _)| *l == SentimentLabel::Neutral);
    rows.iter()
        .map(|(label, text)| {
            let mut features_of = Vec::new();
            let lx = features(text, &mut features_of);
            Example {
                label: *label,
                lexicon: lx,
                features: features_of,
                weight,
                binary,
            }
        })
        .collect()
}

/// One training row: its label, the lexicon's reading, its features, and its weight.
pub struct Example {
    pub label: SentimentLabel,
    pub lexicon: f64,
    pub features: Vec<u32>,
    pub weight: f32,
    /// From a corpus with no neutral class (reviews cut into negative and positive): the
    /// row only teaches negative against positive, and leaves the neutral class alone, so
    /// binary corpora do not teach that nothing is neutral.
    pub binary: bool,
}

fn class_of(label: SentimentLabel) -> usize {
    match label {
        SentimentLabel::Negative => 0,
        SentimentLabel::Neutral => 1,
        SentimentLabel::Positive => 2,
    }
}

/// Trains by AdaGrad on the softmax cross-entropy, visiting the rows in a seeded shuffle,
/// then quantizes the weights to int8.
pub fn train(examples: &[Example], params: &TrainParams) -> Model {
    let mut w = vec![0f32; BUCKETS * 3];
    let mut bias = [0f64; 3];
    let mut lex = [0f64; 3];
    for run in 0..params.runs {
        let (w1, b1, l1) = train_run(examples, params, params.seed.wrapping_add(u64::from(run)));
        for (a, b) in w.iter_mut().zip(&w1) {
            *a += b / params.runs as f32;
        }
        for k in 0..3 {
            bias[k] += b1[k] / f64::from(params.runs);
            lex[k] += l1[k] / f64::from(params.runs);
        }
    }
    quantize(&w, bias, lex)
}

/// One training run: the float weights, biases and lexicon weights.
fn train_run(
    examples: &[Example],
    params: &TrainParams,
    seed: u64,
) -> (Vec<f32>, [f64; 3], [f64; 3]) {
    let mut w = vec![0f32; BUCKETS * 3];
    let mut g2 = vec![0f32; BUCKETS * 3];
    let mut bias = [0f64; 3];
    let mut bias_g2 = [1e-6f64; 3];
    let mut lex = [0f64; 3];
    let mut lex_g2 = [1e-6f64; 3];
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = Rng(seed | 1);
    let lr = params.learning_rate;
    for _ in 0..params.epochs {
        // Fisher–Yates.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let e = &examples[i];
            let mut z = [0f64; 3];
            for k in 0..3 {
                z[k] = bias[k] + lex[k] * e.lexicon;
            }
            for &f in &e.features {
                let at = f as usize * 3;
                for k in 0..3 {
                    z[k] += f64::from(w[at + k]);
                }
            }
            let p = if e.binary {
                let two = softmax([z[0], f64::NEG_INFINITY, z[2]]);
                [two[0], 0.0, two[2]]
            } else {
                softmax(z)
            };
            let y = class_of(e.label);
            let g: [f64; 3] =
                [0, 1, 2].map(|k| (p[k] - if k == y { 1.0 } else { 0.0 }) * f64::from(e.weight));
            for k in 0..3 {
                bias_g2[k] += g[k] * g[k];
                bias[k] -= lr * g[k] / bias_g2[k].sqrt();
                let gl = g[k] * e.lexicon;
                lex_g2[k] += gl * gl;
                lex[k] -= lr * gl / lex_g2[k].sqrt();
            }
            for &f in &e.features {
                let at = f as usize * 3;
                for k in 0..3 {
                    let gk = g[k] as f32;
                    g2[at + k] += gk * gk;
                    w[at + k] -= lr as f32 * gk / (g2[at + k].sqrt() + 1e-6);
                }
            }
        }
    }
    (w, bias, lex)
}

fn quantize(w: &[f32], bias: [f64; 3], lex: [f64; 3]) -> Model {
    // Scale by a high percentile of the magnitudes rather than the maximum, so a few
    // outliers (clipped) do not flatten every other weight.
    let mut mags: Vec<f32> = w.iter().map(|v| v.abs()).filter(|v| *v > 0.0).collect();
    mags.sort_by(f32::total_cmp);
    let top = mags
        .get(mags.len().saturating_sub(1 + mags.len() / 10_000))
        .copied()
        .unwrap_or(1.0)
        .max(1e-6);
    let scale = top / 127.0;
    let mut model = Model {
        version: String::new(),
        scale,
        bias: bias.map(|b| b as f32),
        lexicon: lex.map(|b| b as f32),
        weights: w
            .iter()
            .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
    };
    model.version = version_of(&model.to_bytes());
    model
}

/// A line of the support templates that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("line {0}: expected `label<TAB>template` or `@slot<TAB>alternatives`")]
    Format(usize),
    #[error("line {0}: unknown label `{1}`")]
    Label(usize, String),
    #[error("line {0}: unknown slot `{{{1}}}`")]
    Slot(usize, String),
}

/// xorshift64*: the seeded generator of training's shuffle and of the templates' fillings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Expands the support templates (`tools/sentiment/support_templates.txt`): up to `variants`
/// distinct fillings of each template, slots filled by a generator seeded with `seed`.
pub fn expand_templates(
    text: &str,
    variants: usize,
    seed: u64,
) -> Result<Vec<(SentimentLabel, String)>, TemplateError> {
    let mut slots: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut out = Vec::new();
    let mut rng = Rng(seed | 1);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, rest) = line.split_once('\t').ok_or(TemplateError::Format(n))?;
        if let Some(slot) = head.strip_prefix('@') {
            slots.push((slot, rest.split('\t').collect()));
            continue;
        }
        let label = match head {
            "negative" => SentimentLabel::Negative,
            "neutral" => SentimentLabel::Neutral,
            "positive" => SentimentLabel::Positive,
            other => return Err(TemplateError::Label(n, other.to_string())),
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..variants * 3 {
            if seen.len() == variants {
                break;
            }
            let mut filled = String::new();
            let mut rest = rest;
            while let Some(open) = rest.find('{') {
                filled.push_str(&rest[..open]);
                let close = rest[open..]
                    .find('}')
                    .map(|c| open + c)
                    .ok_or(TemplateError::Format(n))?;
                let name = &rest[open + 1..close];
                let alts = slots
                    .iter()
                    .find(|(s, _)| *s == name)
                    .map(|(_, a)| a)
                    .ok_or_else(|| TemplateError::Slot(n, name.to_string()))?;
                filled.push_str(alts[(rng.next() % alts.len() as u64) as usize]);
                rest = &rest[close + 1..];
            }
            filled.push_str(rest);
            let filled = filled.split_whitespace().collect::<Vec<_>>().join(" ");
            if !filled.is_empty() {
                seen.insert(filled);
            }
        }
        out.extend(seen.into_iter().map(|t| (label, t)));
    }
    Ok(out)
}

/// How far below the best mean macro-F1 [`calibrate`] may settle to keep offsets small.
pub const CALIBRATION_TOLERANCE: f64 = 0.002;

/// Class offsets chosen by [`calibrate`]: added to the negative and neutral biases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    pub negative: f32,
    pub neutral: f32,
    /// The mean macro-F1 over the calibration sets at these offsets.
    pub mean_macro_f1: f64,
}

/// Chooses offsets for the negative and neutral biases (a grid of 0.1 steps: negative
/// −0.5..0.5, neutral 0..1) that maximise the mean macro-F1 over `sets` — the smallest
/// offsets within [`CALIBRATION_TOLERANCE`] of the best — and applies them.
/// The training corpora mix three-class sets with binary ones (no neutral) and carry their
/// own class shares; the offsets set the model's priors to the development sets' tuning
/// halves, never to an evaluation-only set. The first best offsets in grid order win, so the
/// choice is deterministic.
pub fn calibrate(model: &mut Model, sets: &[Vec<(SentimentLabel, String)>]) -> Calibration {
    let rows: Vec<Vec<(usize, Vec<u32>, f64)>> = sets
        .iter()
        .map(|set| {
            set.iter()
                .map(|(gold, text)| {
                    let mut f = Vec::new();
                    let lx = features(text, &mut f);
                    (super::class_index(*gold), f, lx)
                })
                .collect()
        })
        .collect();
    let base = model.bias;
    let mut grid = Vec::new();
    for neg in -5i32..=5 {
        for neu in 0i32..=10 {
            let (negative, neutral) = (neg as f32 / 10.0, neu as f32 / 10.0);
            model.bias = [base[0] + negative, base[1] + neutral, base[2]];
            let mut sum = 0.0;
            for set in &rows {
                let mut confusion = [[0usize; 3]; 3];
                for (gold, f, lx) in set {
                    let s = score_of(model.probabilities(f, *lx));
                    confusion[*gold][super::class_index(super::label(s))] += 1;
                }
                sum += super::Evaluation::from_confusion(confusion, 0).macro_f1;
            }
            let mean = sum / rows.len().max(1) as f64;
            grid.push((neg.abs() + neu, negative, neutral, mean));
        }
    }
    // The figure is flat near its best: take the smallest offsets within
    // CALIBRATION_TOLERANCE of the best, the first in grid order on a tie.
    let top = grid.iter().map(|g| g.3).fold(f64::MIN, f64::max);
    let best = grid
        .iter()
        .filter(|g| g.3 >= top - CALIBRATION_TOLERANCE)
        .min_by_key(|g| g.0)
        .map(|g| Calibration {
            negative: g.1,
            neutral: g.2,
            mean_macro_f1: g.3,
        })
        .unwrap_or(Calibration {
            negative: 0.0,
            neutral: 0.0,
            mean_macro_f1: 0.0,
        });
    model.bias = [base[0] + best.negative, base[1] + best.neutral, base[2]];
    model.version = version_of(&model.to_bytes());
    best
}
