//! `switchboard sentiment score`, `eval` and `train`.

use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use switchboard_processors::sentiment::model::{self, Model, TrainParams};
use switchboard_processors::sentiment::{evaluate, label, Evaluation, Method, Scorer};
use switchboard_schemas::SentimentLabel;

#[derive(Debug, thiserror::Error)]
pub enum SentimentError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `label<TAB>text` with label negative, neutral or positive")]
    Format { path: String, line: usize },
    #[error("{path}: no rows in the {split} split")]
    Empty { path: String, split: String },
    #[error("{path}: {source}")]
    Templates {
        path: String,
        source: model::TemplateError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Which rows of a file to evaluate: the tuning half (even lines, 0-based), the held-out half
/// (odd lines), or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    All,
    Tune,
    HeldOut,
}

fn label_name(l: SentimentLabel) -> &'static str {
    match l {
        SentimentLabel::Negative => "negative",
        SentimentLabel::Neutral => "neutral",
        SentimentLabel::Positive => "positive",
    }
}

/// Read stdin lines and print `score<TAB>label` for each, and a third column naming the
/// language of a message that is not English.
pub fn score_lines(
    scorer: &Scorer,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<(), SentimentError> {
    for line in input.lines() {
        let line = line?;
        let a = scorer.assess(&line);
        match a.language {
            None => writeln!(out, "{:.4}\t{}", a.score, label_name(label(a.score)))?,
            Some(language) => writeln!(
                out,
                "{:.4}\t{}\t{language}",
                a.score,
                label_name(label(a.score))
            )?,
        }
    }
    Ok(())
}

/// Read `label<TAB>text` rows of the chosen split.
pub fn read_rows(
    path: &str,
    split: Split,
) -> Result<Vec<(SentimentLabel, String)>, SentimentError> {
    let text = std::fs::read_to_string(path).map_err(|source| SentimentError::Read {
        path: path.to_string(),
        source,
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let keep = match split {
            Split::All => true,
            Split::Tune => i % 2 == 0,
            Split::HeldOut => i % 2 == 1,
        };
        if !keep || line.trim().is_empty() {
            continue;
        }
        let format = || SentimentError::Format {
            path: path.to_string(),
            line: i + 1,
        };
        let (gold, text) = line.split_once('\t').ok_or_else(format)?;
        let gold = match gold.trim() {
            "negative" => SentimentLabel::Negative,
            "neutral" => SentimentLabel::Neutral,
            "positive" => SentimentLabel::Positive,
            _ => return Err(format()),
        };
        rows.push((gold, text.to_string()));
    }
    if rows.is_empty() {
        return Err(SentimentError::Empty {
            path: path.to_string(),
            split: format!("{split:?}"),
        });
    }
    Ok(rows)
}

/// The report `sentiment eval` prints.
pub fn report(path: &str, split: Split, e: &Evaluation) -> String {
    let names = ["negative", "neutral", "positive"];
    let mut s = format!(
        "{path} ({split:?} split, {} rows)\naccuracy  {:.3}\nmacro-F1  {:.3}\n",
        e.n, e.accuracy, e.macro_f1
    );
    if e.per_class[0].3 {
        s.push_str(&format!("negative recall  {:.3}\n", e.per_class[0].1));
    }
    s.push_str(&format!(
        "called negative  {:.3}\nother language   {} rows (scored neutral)\n\nclass      precision  recall  F1\n",
        e.called_negative(),
        e.other_language
    ));
    for (i, (p, r, f, present)) in e.per_class.iter().enumerate() {
        if *present || e.confusion.iter().any(|row| row[i] > 0) {
            s.push_str(&format!(
                "{:<10} {p:>9.3}  {r:>6.3}  {f:.3}{}\n",
                names[i],
                if *present {
                    ""
                } else {
                    "  (not in the gold labels)"
                }
            ));
        }
    }
    s.push_str(
        "\nconfusion (rows: gold, columns: predicted)\n           negative  neutral  positive\n",
    );
    for (i, row) in e.confusion.iter().enumerate() {
        if row.iter().sum::<usize>() > 0 {
            s.push_str(&format!(
                "{:<10} {:>8}  {:>7}  {:>8}\n",
                names[i], row[0], row[1], row[2]
            ));
        }
    }
    s
}

pub fn eval_file(path: &str, split: Split, scorer: &Scorer) -> Result<String, SentimentError> {
    let rows = read_rows(path, split)?;
    Ok(report(path, split, &evaluate(scorer, &rows)))
}

/// `sentiment eval --complaints`: every row of the file counts as one class (a complaint,
/// or a non-complaint), whatever its label; the figure is the share called negative.
pub fn complaints_file(
    path: &str,
    split: Split,
    scorer: &Scorer,
) -> Result<String, SentimentError> {
    let rows = read_rows(path, split)?;
    let e = evaluate(scorer, &rows);
    let negative: usize = e.confusion.iter().map(|row| row[0]).sum();
    Ok(format!(
        "{path} ({split:?} split, {} rows, one class)\ncalled negative  {:.3}  ({negative} of {})\nother language   {} rows (scored neutral)\n",
        e.n,
        e.called_negative(),
        e.n,
        e.other_language
    ))
}

/// Where `sentiment train` reads and writes.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The training corpora (`../shared/data/sentiment-train`).
    pub data: PathBuf,
    /// The support templates.
    pub templates: PathBuf,
    /// The development sets, for the manifest's figures (skipped when absent).
    pub dev: PathBuf,
    /// The weight file to write.
    pub out: PathBuf,
    /// The manifest to write.
    pub manifest: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, SentimentError> {
    std::fs::read(path).map_err(|source| SentimentError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SentimentError> {
    std::fs::write(path, bytes).map_err(|source| SentimentError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The development sets and evaluation-only sets the manifest reports figures on.
const FIGURE_SETS: &[(&str, &str, bool)] = &[
    ("dev", "vader_icwsm_tweets.tsv", false),
    ("dev", "vader_icwsm_amazon.tsv", false),
    ("dev", "uci_amazon.tsv", false),
    ("dev", "uci_imdb.tsv", false),
    ("dev", "uci_yelp.tsv", false),
    ("data", "sanders_brand_tweets.tsv", false),
    ("data", "apple_dfe_tweets.tsv", false),
    ("data", "complaints_neg.tsv", true),
    ("data", "complaints_noncomplaint_as_neu.tsv", true),
];

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `sentiment train`: reads the training corpora and the support templates, trains the model
/// (deterministic: the same inputs give the same weight file byte for byte), writes the
/// weight file and a manifest (inputs with sha256 and licences, parameters, figures). Returns
/// a summary for the terminal.
pub fn train(opts: &TrainOptions) -> Result<String, SentimentError> {
    let mut examples = Vec::new();
    let mut data = Vec::new();
    for set in model::TRAINING_SETS {
        let path = opts.data.join(set.file);
        let bytes = read_bytes(&path)?;
        let rows = read_rows(&path.display().to_string(), Split::All)?;
        examples.extend(model::examples(&rows, set.weight));
        data.push(serde_json::json!({
            "file": set.file,
            "sha256": sha256_hex(&bytes),
            "rows": rows.len(),
            "weight": set.weight,
            "licence": set.licence,
        }));
    }
    let template_bytes = read_bytes(&opts.templates)?;
    let template_text = String::from_utf8_lossy(&template_bytes);
    let support = model::expand_templates(
        &template_text,
        model::TEMPLATE_VARIANTS,
        model::TEMPLATE_SEED,
    )
    .map_err(|source| SentimentError::Templates {
        path: opts.templates.display().to_string(),
        source,
    })?;
    examples.extend(model::template_examples(&support));
    let params = TrainParams::default();
    let mut trained = model::train(&examples, &params);
    // Class priors from the development sets' tuning halves (docs/sentiment.md).
    let mut tune = Vec::new();
    for (_, file, _) in FIGURE_SETS.iter().filter(|(dir, ..)| *dir == "dev") {
        let path = opts.dev.join(file);
        tune.push(read_rows(&path.display().to_string(), Split::Tune)?);
    }
    let calibration = model::calibrate(&mut trained, &tune);
    let weights = trained.to_bytes();
    write_file(&opts.out, &weights)?;

    // Figures of the model just trained, beside the lexicon alone, on the same rows.
    let leaked: &'static Model = Box::leak(Box::new(trained));
    let learned = Scorer {
        model: Some(leaked),
        ..Scorer::default()
    };
    let lexicon_only = Scorer::lexicon();
    let mut figures = serde_json::Map::new();
    let mut summary = String::new();
    for (dir, file, one_class) in FIGURE_SETS {
        let path = if *dir == "dev" { &opts.dev } else { &opts.data }.join(file);
        if !path.exists() {
            continue;
        }
        let rows = read_rows(&path.display().to_string(), Split::All)?;
        let (m, l) = (evaluate(&learned, &rows), evaluate(&lexicon_only, &rows));
        let mut held_out_line = String::new();
        let held_out = (*dir == "dev")
            .then(|| read_rows(&path.display().to_string(), Split::HeldOut))
            .transpose()?
            .map(|rows| {
                let (m, l) = (evaluate(&learned, &rows), evaluate(&lexicon_only, &rows));
                held_out_line = format!(
                    "{:<38} macro-F1 {:.3} (lexicon {:.3}), held-out half\n",
                    "", m.macro_f1, l.macro_f1
                );
                serde_json::json!({
                    "rows": rows.len(),
                    "macro_f1": round3(m.macro_f1),
                    "negative_recall": round3(m.per_class[0].1),
                    "lexicon_macro_f1": round3(l.macro_f1),
                })
            });
        let figure = if *one_class {
            summary.push_str(&format!(
                "{file:<38} called negative {:.3} (lexicon {:.3})\n",
                m.called_negative(),
                l.called_negative()
            ));
            serde_json::json!({
                "rows": rows.len(),
                "called_negative": round3(m.called_negative()),
                "lexicon_called_negative": round3(l.called_negative()),
            })
        } else {
            summary.push_str(&format!(
                "{file:<38} macro-F1 {:.3} (lexicon {:.3}), negative recall {:.3}\n",
                m.macro_f1, l.macro_f1, m.per_class[0].1
            ));
            let mut all = serde_json::json!({
                "rows": rows.len(),
                "macro_f1": round3(m.macro_f1),
                "negative_recall": round3(m.per_class[0].1),
                "lexicon_macro_f1": round3(l.macro_f1),
            });
            if let Some(h) = held_out {
                all["held_out_half"] = h;
            }
            all
        };
        summary.push_str(&held_out_line);
        figures.insert(file.to_string(), figure);
    }
    let manifest = serde_json::json!({
        "model": {
            "version": leaked.version(),
            "sha256": sha256_hex(&weights),
            "bytes": weights.len(),
        },
        "features": {
            "hash_buckets": 1u64 << model::BUCKETS_LOG2,
            "words": "lower-cased, digits as 0, elongations cut to two, @handles and URLs as one token each",
            "word_ngrams": [1, 2],
            "negation_scope": "words after a negation up to the next . , ; : ! ? get features of their own",
            "lexicon": "the lexicon's valences of the words, turned (x -0.74) in negation scopes, summed and squashed by x/sqrt(x^2+15): a weight per class, and 21 bins as features",
        },
        "training": {
            "algorithm": "multinomial logistic regression, AdaGrad on the softmax cross-entropy, rows in a seeded shuffle",
            "epochs": params.epochs,
            "learning_rate": params.learning_rate,
            "seed": params.seed,
            "runs": params.runs,
            "quantization": "int8 weights, one scale: the 99.99th percentile of |w| maps to 127",
            "calibration": {
                "on": "the tuning halves (even lines) of the five development sets",
                "negative_offset": calibration.negative,
                "neutral_offset": calibration.neutral,
                "mean_macro_f1": round3(calibration.mean_macro_f1),
                "rule": format!("the smallest offsets within {} of the best mean macro-F1", model::CALIBRATION_TOLERANCE),
            },
            "score": "P(positive) - P(negative); labels at ±0.35",
        },
        "data": data,
        "templates": {
            "file": opts.templates.file_name().map(|n| n.to_string_lossy().to_string()),
            "sha256": sha256_hex(&template_bytes),
            "variants": model::TEMPLATE_VARIANTS,
            "seed": model::TEMPLATE_SEED,
            "rows": support.len(),
            "weight": format!("{} per row on average, each class the same in total", model::TEMPLATE_WEIGHT),
            "licence": "Apache-2.0 (this project)",
        },
        "figures": figures,
    });
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    write_file(&opts.manifest, text.as_bytes())?;
    Ok(format!(
        "trained {} on {} rows; wrote {} ({} bytes) and {}\n{summary}",
        leaked.version(),
        examples.len(),
        opts.out.display(),
        weights.len(),
        opts.manifest.display()
    ))
}

/// The method by name, for the CLI.
pub fn method(lexicon_only: bool) -> Method {
    if lexicon_only {
        Method::Lexicon
    } else {
        Method::Model
    }
}
