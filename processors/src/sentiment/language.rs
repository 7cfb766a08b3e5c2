//! Cheap language detection (R-SENT-1): is a message English, or in a language the scorer
//! would misread? One pass over the characters, one match per word; no model.
//!
//! - A message written mostly in a non-Latin script is that script's language: Cyrillic
//!   (`ru`, or `uk` with Ukrainian letters), Greek, Arabic (`fa` with Persian letters),
//!   Hebrew, Devanagari, Thai, Hangul, Japanese kana, Han (`zh`), or `und` for other scripts.
//! - Latin-script text is counted against short lists of function words that are not
//!   English words, for Spanish, French, German, Portuguese, Italian and Dutch, and against
//!   English function words. A language needs two hits and more than English has; a
//!   message of one to three words may also be a greeting or thanks ("gracias", "merci").
//! - Anything else (short, mixed, numbers, emoji, unknown Latin-script languages) counts as
//!   English and is scored.

use rustc_hash::FxHashMap as HashMap;
use std::sync::OnceLock;

const MAX_WORDS: usize = 64;

const ENGLISH: &[&str] = &[
    "the", "and", "is", "to", "i", "you", "my", "it", "of", "for", "not", "this", "that", "was",
    "with", "have", "are", "be", "on", "your", "me", "please", "thanks", "can", "what", "why",
    "how", "still", "order", "we", "they", "just", "but", "at", "so", "do", "get", "will", "from",
    "has", "an", "all", "if", "or", "been", "when", "would", "there", "thank", "help", "am", "im",
    "dont",
];

/// Per language: its code, function words that are not English words, and greetings or
/// thanks that tell a message of one to three words.
const LATIN: &[(&str, &[&str], &[&str])] = &[
    (
        "es",
        &[
            "que", "el", "los", "las", "por", "para", "una", "del", "es", "está", "esta", "pero",
            "muy", "tengo", "mi", "su", "cuando", "porque", "también", "nada", "ayuda", "pedido",
            "y", "en", "lo", "se", "yo", "hay", "todavía", "mis", "como", "más", "gracias", "hola",
            "de",
        ],
        &["gracias", "hola", "buenas", "buenos"],
    ),
    (
        "fr",
        &[
            "le", "les", "des", "est", "une", "pas", "je", "vous", "nous", "avec", "dans", "mais",
            "très", "ne", "qui", "et", "du", "au", "ce", "cest", "jai", "toujours", "commande",
            "merci", "bonjour", "de", "aussi", "sont", "être", "votre",
        ],
        &["merci", "bonjour", "bonsoir", "salut"],
    ),
    (
        "de",
        &[
            "der",
            "und",
            "ist",
            "nicht",
            "ich",
            "sie",
            "das",
            "ein",
            "eine",
            "auf",
            "für",
            "noch",
            "mein",
            "meine",
            "wir",
            "auch",
            "schon",
            "kein",
            "keine",
            "bitte",
            "danke",
            "habe",
            "es",
            "zu",
            "den",
            "wie",
            "immer",
            "bestellung",
            "wurde",
        ],
        &["danke", "guten", "tschüss"],
    ),
    (
        "pt",
        &[
            "não", "nao", "que", "uma", "para", "muito", "você", "voce", "meu", "minha", "está",
            "isso", "mas", "pedido", "ainda", "obrigado", "obrigada", "olá", "da", "foi", "tenho",
            "ajuda", "de", "mais",
        ],
        &["obrigado", "obrigada", "olá", "oi"],
    ),
    (
        "it",
        &[
            "che",
            "di",
            "una",
            "sono",
            "mio",
            "mia",
            "questo",
            "è",
            "anche",
            "perché",
            "ancora",
            "della",
            "del",
            "gli",
            "ordine",
            "grazie",
            "ciao",
            "buongiorno",
            "mi",
        ],
        &["grazie", "ciao", "buongiorno", "buonasera"],
    ),
    (
        "nl",
        &[
            "het",
            "een",
            "niet",
            "ik",
            "je",
            "en",
            "zijn",
            "voor",
            "maar",
            "mijn",
            "geen",
            "nog",
            "bedankt",
            "dank",
            "de",
            "bestelling",
            "heb",
            "wel",
            "ook",
            "graag",
        ],
        &["bedankt", "dankjewel", "hoi"],
    ),
];

/// The listed words: bits of a word are 1 English; 2 << i a function word of `LATIN[i]`;
/// 256 << i its greeting. Words of up to eight bytes are keyed by their bytes packed in a
/// `u64` (one multiply to hash), longer ones by their text.
struct WordBits {
    short: HashMap<u64, u16>,
    long: HashMap<&'static str, u16>,
}

/// The bytes of a word of up to eight bytes in one `u64` (words hold no NUL byte, so the
/// packing is unique).
fn pack(word: &[u8]) -> Option<u64> {
    (word.len() <= 8).then(|| {
        word.iter()
            .enumerate()
            .fold(0u64, |k, (i, b)| k | u64::from(*b) << (8 * i))
    })
}

fn word_bits() -> &'static WordBits {
    static BITS: OnceLock<WordBits> = OnceLock::new();
    BITS.get_or_init(|| {
        let mut bits = WordBits {
            short: HashMap::default(),
            long: HashMap::default(),
        };
        let mut add = |w: &'static str, bit: u16| match pack(w.as_bytes()) {
            Some(key) => *bits.short.entry(key).or_default() |= bit,
            None => *bits.long.entry(w).or_default() |= bit,
        };
        for w in ENGLISH {
            add(w, 1);
        }
        for (i, (_, function_words, greetings)) in LATIN.iter().enumerate() {
            for w in *function_words {
                add(w, 2 << i);
            }
            for w in *greetings {
                add(w, 256 << i);
            }
        }
        bits
    })
}

#[derive(Default)]
struct Scripts {
    latin: u32,
    cyrillic: u32,
    ukrainian: u32,
    greek: u32,
    arabic: u32,
    persian: u32,
    hebrew: u32,
    devanagari: u32,
    thai: u32,
    hangul: u32,
    kana: u32,
    han: u32,
    other: u32,
}

/// The language of `text` when it is not English; `None` when it should be scored as
/// English (including when it is too short to tell).
pub fn detect(text: &str) -> Option<&'static str> {
    if let Some(code) = script(text) {
        return Some(code);
    }
    let mut tally = Tally::default();
    let mut scratch = Vec::new();
    super::model::features_with(text, &mut scratch, Some(&mut tally));
    tally.verdict()
}

/// The language of text written mostly in a non-Latin script; `None` for Latin-script text
/// (and at once for ASCII text).
pub fn script(text: &str) -> Option<&'static str> {
    if text.is_ascii() {
        return None;
    }
    let mut s = Scripts::default();
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphabetic() {
                s.latin += 1;
            }
            continue;
        }
        if !c.is_alphabetic() {
            continue;
        }
        match c as u32 {
            0x00C0..=0x024F
            | 0x1D00..=0x1DBF
            | 0x1E00..=0x1EFF
            | 0x2C60..=0x2C7F
            | 0xA720..=0xA7FF
            | 0xFF21..=0xFF5A => s.latin += 1,
            0x0400..=0x04FF => {
                s.cyrillic += 1;
                if matches!(c, 'і' | 'ї' | 'є' | 'ґ' | 'І' | 'Ї' | 'Є' | 'Ґ') {
                    s.ukrainian += 1;
                }
            }
            0x0370..=0x03FF | 0x1F00..=0x1FFF => s.greek += 1,
            0x0600..=0x06FF | 0x0750..=0x077F | 0xFB50..=0xFEFF => {
                s.arabic += 1;
                if matches!(c, 'پ' | 'چ' | 'ژ' | 'گ' | 'ی') {
                    s.persian += 1;
                }
            }
            0x0590..=0x05FF => s.hebrew += 1,
            0x0900..=0x097F => s.devanagari += 1,
            0x0E00..=0x0E7F => s.thai += 1,
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => s.hangul += 1,
            0x3040..=0x30FF => s.kana += 1,
            0x4E00..=0x9FFF | 0x3400..=0x4DBF => s.han += 1,
            _ => s.other += 1,
        }
    }
    let scripts = [
        (s.cyrillic, if s.ukrainian > 0 { "uk" } else { "ru" }),
        (s.greek, "el"),
        (s.arabic, if s.persian > 0 { "fa" } else { "ar" }),
        (s.hebrew, "he"),
        (s.devanagari, "hi"),
        (s.thai, "th"),
        (s.hangul, "ko"),
        (s.kana + s.han, if s.kana > 0 { "ja" } else { "zh" }),
        (s.other, "und"),
    ];
    let (most, code) = scripts
        .iter()
        .copied()
        .max_by_key(|(n, _)| *n)
        .unwrap_or((0, "und"));
    // Han characters carry a word each; other scripts need a few letters.
    let enough = if code == "zh" || code == "ja" { 2 } else { 3 };
    (most >= enough && most > s.latin).then_some(code)
}

/// The counts of one message's words, fed word by word by the model's word splitter
/// (`model::features_with`: lower-cased, apostrophes dropped, digits as `0`), so a message is
/// split into words once for both.
pub struct Tally {
    bits: &'static WordBits,
    en: u32,
    hits: [u32; LATIN.len()],
    greeting: u16,
    words: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            bits: word_bits(),
            en: 0,
            hits: [0; LATIN.len()],
            greeting: 0,
            words: 0,
        }
    }
}

impl Tally {
    /// Counts one word. Words of digits only are not words here; past MAX_WORDS words,
    /// nothing more is counted.
    pub fn word(&mut self, lower: &[u8]) {
        if self.words >= MAX_WORDS || lower.iter().all(|b| *b == b'0') {
            return;
        }
        self.words += 1;
        let b = match pack(lower) {
            Some(key) => self.bits.short.get(&key).copied(),
            None => std::str::from_utf8(lower)
                .ok()
                .and_then(|w| self.bits.long.get(w).copied()),
        };
        if let Some(b) = b {
            self.en += u32::from(b & 1);
            for (i, hit) in self.hits.iter_mut().enumerate() {
                *hit += u32::from((b >> (i + 1)) & 1);
            }
            self.greeting |= b >> 8;
        }
    }

    /// The Latin-script language the words point to, if any: two hits and more than
    /// English has, or a greeting in a message of one to three words with no English word.
    pub fn verdict(&self) -> Option<&'static str> {
        // The first language on a tie.
        let (best, n) = self
            .hits
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, 0),
                |best, (i, n)| if n > best.1 { (i, n) } else { best },
            );
        if n >= 2 && n > self.en {
            return Some(LATIN[best].0);
        }
        if (1..=3).contains(&self.words) && self.en == 0 && self.greeting != 0 {
            return Some(LATIN[self.greeting.trailing_zeros() as usize].0);
        }
        None
    }
}
