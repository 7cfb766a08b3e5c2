//! `switchboard sentiment score` and `switchboard sentiment eval`.

use std::io::{BufRead, Write};
use switchboard_processors::sentiment::{evaluate, label, Evaluation, Scorer};
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

/// Read stdin lines and print `score<TAB>label` for each.
pub fn score_lines(
    scorer: &Scorer,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<(), SentimentError> {
    for line in input.lines() {
        let line = line?;
        let score = scorer.score(&line);
        writeln!(out, "{score:.4}\t{}", label_name(label(score)))?;
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
    let mut s = format!("{path} ({split:?} split, {} rows)\naccuracy  {:.3}\nmacro-F1  {:.3}\n\nclass      precision  recall  F1\n", e.n, e.accuracy, e.macro_f1);
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
