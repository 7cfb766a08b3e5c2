//! Sentiment scoring throughput on one core.
//!
//! `cargo bench -p switchboard-processors --bench sentiment`
//!
//! Scores the 4,200 tweets of the development set (`../shared/data/sentiment-dev`, or a
//! built-in sample of support messages when that folder is absent) over and over on one
//! thread: the shipped scorer (language detection, then the learned model over the words and
//! the lexicon's reading), and the lexicon alone. The baseline from the same run: splitting
//! the same messages into lower-cased words, the least any word-based scorer does.

use std::time::Instant;
use switchboard_processors::sentiment::{language, lexicon, model, Scorer};

fn messages() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/sentiment-dev/vader_icwsm_tweets.tsv"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_once('\t').map(|(_, t)| t.to_string()))
            .collect(),
        Err(_) => [
            "still waiting for my refund 😡",
            "Thank you so much, problem solved!",
            "please help, the app is not working since yesterday",
            "never again, worst service ever",
            "ok thanks",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

fn main() {
    let msgs = messages();
    let scorer = Scorer::default();
    scorer.score("warm up the lexicon");
    let rounds = (400_000 / msgs.len()).max(1);
    let n = rounds * msgs.len();

    let started = Instant::now();
    let mut words = 0usize;
    for _ in 0..rounds {
        for m in &msgs {
            words += m
                .split_whitespace()
                .map(|w| w.to_lowercase().len())
                .sum::<usize>();
        }
    }
    let baseline = n as f64 / started.elapsed().as_secs_f64();

    let time = |scorer: &Scorer| {
        let started = Instant::now();
        let mut sum = 0.0;
        for _ in 0..rounds {
            for m in &msgs {
                sum += scorer.score(m);
            }
        }
        assert!(sum.is_finite());
        n as f64 / started.elapsed().as_secs_f64()
    };
    let scored = time(&scorer);
    // Where the time goes, each part on its own over the same messages.
    let part = |f: &dyn Fn(&str) -> f64| {
        let started = Instant::now();
        let mut sum = 0.0;
        for _ in 0..rounds {
            for m in &msgs {
                sum += f(m);
            }
        }
        assert!(sum.is_finite());
        n as f64 / started.elapsed().as_secs_f64()
    };
    let detect = part(&|m| f64::from(u8::from(language::detect(m).is_some())));
    let rules = part(&|m| lexicon::score(m, lexicon::DEFAULT_ALPHA));
    let mut scratch = Vec::new();
    let cell = std::cell::RefCell::new(&mut scratch);
    let featured = part(&|m| {
        let mut f = cell.borrow_mut();
        f.clear();
        model::features(m, &mut f);
        f.len() as f64
    });
    let lexicon = time(&Scorer::lexicon());
    assert!(words > 0);
    println!("messages: {} distinct, {n} scored per line", msgs.len());
    println!("baseline  split + lower-case words : {baseline:>10.0} messages/s   (1.00x)");
    println!(
        "scorer    Scorer::score (model)    : {scored:>10.0} messages/s   ({:.2}x)",
        scored / baseline
    );
    println!(
        "lexicon   the lexicon alone        : {lexicon:>10.0} messages/s   ({:.2}x)",
        lexicon / baseline
    );
    println!("parts, each alone: language::detect {detect:.0}/s, lexicon::score {rules:.0}/s, model::features {featured:.0}/s");
}
