//! Sentiment scoring (SPEC §8, R-SENT): hand-written customer-support cases, and the
//! processor's outputs.

mod common;
use common::*;
use switchboard_processors::sentiment::model::{self, Model, ModelError, TemplateError};
use switchboard_processors::sentiment::{
    evaluate, label, language, model_version, ConversationMood, Method, Scorer,
};
use switchboard_schemas::*;

fn score(text: &str) -> f64 {
    Scorer::default().score(text)
}

fn assert_label(text: &str, want: SentimentLabel) {
    let s = score(text);
    assert_eq!(label(s), want, "{text:?} scored {s}");
}

/// R-SENT-1: complaints in support language are negative, including the ones tweet-trained
/// lexicons read as positive or neutral.
#[test]
fn r_sent_1_complaints_are_negative() {
    for text in [
        "still waiting for my refund",
        "thanks for nothing",
        "never again, worst service ever",
        "I have been waiting for three days and nobody answers",
        "The app is still not working",
        "I want my money back",
        "This is unacceptable, I was charged twice",
        "The agent was helpful but the app is still not working",
        "I do not like this at all",
        "Do not buy this, total waste of money",
    ] {
        assert_label(text, SentimentLabel::Negative);
    }
}

/// R-SENT-1: thanks and praise are positive.
#[test]
fn r_sent_1_thanks_are_positive() {
    for text in [
        "Thank you so much, problem solved!",
        "Great support, thanks a lot :)",
        "Works perfectly now, you are the best",
        "Awesome, that was quick!",
    ] {
        assert_label(text, SentimentLabel::Positive);
    }
}

/// R-SENT-1: sarcasm of the usual support kind, negation, contrast and emphasis.
#[test]
fn r_sent_1_sarcasm_negation_contrast_and_emphasis() {
    assert_label(
        "Great, just great. My order is lost again.",
        SentimentLabel::Negative,
    );
    assert_label("Yeah right.", SentimentLabel::Negative);
    assert_label("Thanks for nothing.", SentimentLabel::Negative);
    assert_label("This is not bad at all", SentimentLabel::Positive);
    assert!(score("The product is good") > score("The product is not good"));
    assert!(
        score("The delivery was good") < score("The delivery was VERY GOOD!!!"),
        "caps and exclamation marks intensify"
    );
    assert!(
        score("It is good") > score("It is kind of good"),
        "dampeners soften"
    );
    assert!(
        score("Nice packaging but the phone is broken") < 0.0,
        "what follows 'but' dominates"
    );
}

/// R-SENT-1: emoji-only messages and emoticons.
#[test]
fn r_sent_1_emoji_only_messages() {
    assert_label("😡", SentimentLabel::Negative);
    assert_label("😡😡😡", SentimentLabel::Negative);
    assert_label("👍", SentimentLabel::Positive);
    assert_label("🙏🙏", SentimentLabel::Positive);
    assert_label(":(", SentimentLabel::Negative);
    assert_label("ok :)", SentimentLabel::Positive);
}

/// R-SENT-1, R-SENT-2: plain requests, and messages in languages the lexicon does not know,
/// fall back to neutral; scores stay in [-1, 1].
#[test]
fn r_sent_2_requests_and_other_languages_are_neutral() {
    for text in [
        "please help",
        "where is my order",
        "Hvala vam puno na pomoći",
        "¿Dónde está mi pedido?",
        "订单在哪里",
        "",
        "   ",
    ] {
        assert_label(text, SentimentLabel::Neutral);
    }
    for text in [
        "GREAT GREAT GREAT AMAZING LOVE!!!!!!",
        "worst worst horrible hate terrible!!!!",
    ] {
        let s = score(text);
        assert!((-1.0..=1.0).contains(&s), "{s}");
    }
    assert_eq!(label(0.35), SentimentLabel::Neutral);
    assert_eq!(label(0.3501), SentimentLabel::Positive);
    assert_eq!(label(-0.3501), SentimentLabel::Negative);
}

/// The evaluation figures: accuracy, macro-F1 over the gold classes, confusion matrix.
#[test]
fn evaluation_figures() {
    let rows: Vec<(SentimentLabel, String)> = vec![
        (SentimentLabel::Positive, "great, thank you!".into()),
        (SentimentLabel::Negative, "terrible service".into()),
        (SentimentLabel::Negative, "where is my order".into()),
        (SentimentLabel::Positive, "awful".into()),
    ];
    let e = evaluate(&Scorer::default(), &rows);
    assert_eq!(e.n, 4);
    assert_eq!(e.accuracy, 0.5);
    assert_eq!(e.confusion, [[1, 1, 0], [0, 0, 0], [1, 0, 1]]);
    assert!(!e.per_class[1].3, "neutral is not a gold class here");
    // F1: negative 0.5, positive 2/3.
    assert!((e.macro_f1 - 7.0 / 12.0).abs() < 1e-12);
}

/// R-SENT-3: the conversation's sentiment weighs message i by i.
#[test]
fn r_sent_3_recency_weighted_mean() {
    let mut mood = ConversationMood::default();
    assert_eq!(mood.add(-0.9), -0.9);
    assert_eq!(mood.add(0.3), (-0.9 + 2.0 * 0.3) / 3.0);
    let third = mood.add(0.6);
    assert!((third - (-0.9 + 0.6 + 1.8) / 6.0).abs() < 1e-12);
}

/// R-SENT-3: with sentiment enabled for the tenant, every inbound text message yields a
/// MessageSentiment and a ConversationSentiment; disabled (the default), nothing.
#[test]
fn r_sent_3_processor_emits_message_and_conversation_sentiment_when_enabled() {
    for enabled in [false, true] {
        let t = utc("2026-03-02T10:00");
        let mut s = Scenario::new();
        if enabled {
            s.config(
                t - 1,
                1,
                ConfigChangeKind::SetSentiment(SetSentiment { enabled: true }),
            );
        }
        s.sms(t, "m1", "+1", "still waiting for my refund 😡").sms(
            t + 1000,
            "m2",
            "+1",
            "ok thanks, got it!",
        );
        let out = s.run();
        let events: Vec<(String, f64, SentimentLabel, Option<i32>)> = out
            .outputs()
            .filter_map(|o| match o {
                Output::Sentiment(SentimentEvent {
                    event: SentimentEventKind::MessageSentiment(m),
                    ..
                }) => Some(("message".to_string(), m.score, m.label, None)),
                Output::Sentiment(SentimentEvent {
                    event: SentimentEventKind::ConversationSentiment(c),
                    ..
                }) => Some((
                    "conversation".to_string(),
                    c.score,
                    c.label,
                    Some(c.messages),
                )),
                _ => None,
            })
            .collect();
        if !enabled {
            assert!(events.is_empty());
            continue;
        }
        assert_eq!(events.len(), 4);
        let (first, second) = (events[0].1, events[2].1);
        assert_eq!(events[0].2, SentimentLabel::Negative);
        assert_eq!(events[2].2, SentimentLabel::Positive);
        let mean = ((first + 2.0 * second) / 3.0 * 10_000.0).round() / 10_000.0;
        assert_eq!((events[3].1, events[3].3), (mean, Some(2)));
    }
}

/// R-SENT-1: a message in another language is recognised, not scored as English: score 0,
/// neutral, with its language; English, including words other languages share, is scored.
#[test]
fn r_sent_1_other_languages_are_detected_not_scored() {
    for (text, code) in [
        (
            "¿Dónde está mi pedido? Hace dos semanas que lo espero",
            "es",
        ),
        ("hola, mi pedido no ha llegado todavía", "es"),
        ("gracias", "es"),
        ("Bonjour, ma commande est toujours en retard", "fr"),
        ("merci", "fr"),
        ("Ich habe meine Bestellung noch nicht bekommen", "de"),
        ("Olá, o meu pedido ainda não chegou", "pt"),
        ("Il mio ordine non è ancora arrivato, perché?", "it"),
        ("Ik heb mijn bestelling nog niet ontvangen", "nl"),
        ("Мой заказ до сих пор не пришёл", "ru"),
        ("Моє замовлення ще не прийшло, і що робити", "uk"),
        ("لم يصل طلبي بعد", "ar"),
        ("我的订单还没有到", "zh"),
        ("注文がまだ届きません", "ja"),
        ("주문이 아직 도착하지 않았어요", "ko"),
        ("Η παραγγελία μου δεν έφτασε", "el"),
        ("ההזמנה שלי עוד לא הגיעה", "he"),
        ("मेरा ऑर्डर अभी तक नहीं आया", "hi"),
        ("คำสั่งซื้อของฉันยังไม่มา", "th"),
    ] {
        let a = Scorer::default().assess(text);
        assert_eq!(a.language, Some(code), "{text}");
        assert_eq!(a.score, 0.0, "{text}");
    }
    for text in [
        "still waiting for my refund",
        "ok",
        "The Mac OS update broke my e-mail, per the support page",
        "Weird Al played in El Paso and it was great",
        "I met the van driver at the com port",
        "Thanks, 10/10 👍",
        "😡😡",
        "",
    ] {
        assert_eq!(Scorer::default().assess(text).language, None, "{text}");
        assert_eq!(language::detect(text), None, "{text}");
    }
}

/// R-SENT-1: the processor marks what scored each message, and a message in another
/// language carries its language and leaves the conversation's mood as it was.
#[test]
fn r_sent_1_records_carry_model_version_and_language() {
    let t = utc("2026-03-02T10:00");
    let mut s = Scenario::new();
    s.config(
        t - 1,
        1,
        ConfigChangeKind::SetSentiment(SetSentiment { enabled: true }),
    );
    s.sms(t, "m1", "+1", "still waiting for my refund")
        .sms(
            t + 1000,
            "m2",
            "+1",
            "hola, mi pedido no ha llegado todavía",
        )
        .sms(t + 2000, "m3", "+1", "thanks, that fixed it!");
    let out = s.run();
    let mut messages = Vec::new();
    let mut moods = Vec::new();
    for o in out.outputs() {
        match o {
            Output::Sentiment(SentimentEvent {
                event: SentimentEventKind::MessageSentiment(m),
                ..
            }) => messages.push(m.clone()),
            Output::Sentiment(SentimentEvent {
                event: SentimentEventKind::ConversationSentiment(c),
                ..
            }) => moods.push(c.clone()),
            _ => {}
        }
    }
    assert_eq!(messages.len(), 3);
    for m in &messages {
        assert_eq!(m.model.as_deref(), Some(model_version()));
    }
    assert!(model_version().starts_with("lr19-"), "{}", model_version());
    assert_eq!(messages[0].label, SentimentLabel::Negative);
    assert_eq!(messages[0].language, None);
    assert_eq!(messages[1].language.as_deref(), Some("es"));
    assert_eq!(
        (messages[1].score, messages[1].label),
        (0.0, SentimentLabel::Neutral)
    );
    assert_eq!(messages[2].label, SentimentLabel::Positive);
    // Two moods: the Spanish message was not scored, so it is not in the mean.
    assert_eq!(moods.len(), 2);
    assert_eq!(moods[1].messages, 2);
    let mean = ((messages[0].score + 2.0 * messages[2].score) / 3.0 * 10_000.0).round() / 10_000.0;
    assert_eq!(moods[1].score, mean);
}

/// R-SENT-1: the learned model and the lexicon are two methods of one scorer; the lexicon
/// alone names itself in the records.
#[test]
fn r_sent_1_lexicon_method_is_still_available() {
    let lexicon = Scorer::lexicon();
    assert_eq!(lexicon.method, Method::Lexicon);
    assert_eq!(lexicon.version(), "lexicon");
    assert_eq!(Scorer::default().version(), model_version());
    // The model reads complaints the lexicon misses.
    let text = "my order never arrived and nobody answers the phone";
    assert_eq!(label(lexicon.score(text)), SentimentLabel::Neutral);
    assert_eq!(
        label(Scorer::default().score(text)),
        SentimentLabel::Negative
    );
}

/// The golden file: fixed messages with the scores the shipped model gives them, so a
/// retrained model shows up in review as a diff of `processors/tests/data/sentiment_golden.tsv`.
/// To accept a new model: `SWITCHBOARD_BLESS=1 cargo test -p switchboard-processors --test
/// sentiment golden`.
#[test]
fn r_sent_1_golden_scores_of_the_shipped_model() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sentiment_golden.tsv"
    );
    let text = std::fs::read_to_string(path).expect("golden file");
    let scorer = Scorer::default();
    let mut blessed = String::new();
    let mut differences = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            blessed.push_str(line);
            blessed.push('\n');
            continue;
        }
        let mut cols = line.splitn(4, '\t');
        let (Some(score), Some(want_label), Some(want_language), Some(message)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            panic!("golden line without four columns: {line:?}");
        };
        let a = scorer.assess(message);
        let got = format!(
            "{:.4}\t{}\t{}\t{message}",
            a.score,
            format!("{:?}", label(a.score)).to_lowercase(),
            a.language.unwrap_or("-"),
        );
        if got != format!("{score}\t{want_label}\t{want_language}\t{message}") {
            differences.push(format!("want {line}\n got {got}"));
        }
        blessed.push_str(&got);
        blessed.push('\n');
    }
    if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
        std::fs::write(path, blessed).expect("write golden");
        return;
    }
    assert!(
        differences.is_empty(),
        "the model scores differ from the golden file (model {}):\n{}",
        model_version(),
        differences.join("\n")
    );
}

/// The shipped weight file loads, is the one the manifest describes, and survives a
/// write/read round trip; a damaged file is refused with a reason.
#[test]
fn shipped_model_loads_and_matches_its_manifest() {
    let bytes = include_bytes!("../data/sentiment/model.bin");
    let model = Model::from_bytes(bytes).expect("shipped model");
    assert_eq!(model.to_bytes(), bytes.to_vec());
    assert_eq!(model.version(), model_version());
    let manifest: serde_json::Value =
        serde_json::from_str(include_str!("../data/sentiment/model.json")).expect("manifest");
    assert_eq!(manifest["model"]["version"], model_version());
    assert_eq!(manifest["model"]["bytes"], bytes.len());
    assert_eq!(
        Model::from_bytes(b"nonsense").err(),
        Some(ModelError::Magic)
    );
    assert!(matches!(
        Model::from_bytes(&bytes[..bytes.len() - 1]),
        Err(ModelError::Size(..))
    ));
}

fn tiny_corpus() -> Vec<(SentimentLabel, String)> {
    let mut rows = Vec::new();
    for (i, subject) in ["order", "parcel", "refund", "app", "card", "agent"]
        .iter()
        .enumerate()
    {
        rows.push((
            SentimentLabel::Positive,
            format!("the {subject} was great, thanks {i}"),
        ));
        rows.push((
            SentimentLabel::Positive,
            format!("love the {subject}, excellent"),
        ));
        rows.push((
            SentimentLabel::Negative,
            format!("the {subject} is broken, awful"),
        ));
        rows.push((
            SentimentLabel::Negative,
            format!("worst {subject} ever, terrible"),
        ));
        rows.push((
            SentimentLabel::Neutral,
            format!("where do i find the {subject} number"),
        ));
        rows.push((
            SentimentLabel::Neutral,
            format!("the {subject} is on the table"),
        ));
    }
    rows
}

/// Training is deterministic (the same rows give the same weight file byte for byte), and
/// it learns: the trained model separates the classes of its corpus.
#[test]
fn training_is_deterministic_and_learns() {
    let rows = tiny_corpus();
    let params = model::TrainParams {
        runs: 2,
        epochs: 8,
        learning_rate: 0.3,
        seed: 5,
    };
    let first = model::train(&model::examples(&rows, 1.0), &params);
    let second = model::train(&model::examples(&rows, 1.0), &params);
    assert_eq!(first.to_bytes(), second.to_bytes());
    let other_seed = model::train(
        &model::examples(&rows, 1.0),
        &model::TrainParams {
            seed: 6,
            ..params.clone()
        },
    );
    assert_ne!(first.to_bytes(), other_seed.to_bytes());
    let scorer_model: &'static Model = Box::leak(Box::new(first));
    let scorer = Scorer {
        model: Some(scorer_model),
        ..Scorer::default()
    };
    let e = evaluate(&scorer, &rows);
    assert!(e.accuracy > 0.9, "{e:?}");
    assert_eq!(scorer.version(), scorer_model.version());
}

/// The support templates expand deterministically, and a bad line is named.
#[test]
fn templates_expand_and_name_bad_lines() {
    let text = "@item\torder\tparcel\tcard\n@end\t.\t!\nnegative\tmy {item} never arrived{end}\npositive\tthanks{end}\n";
    let a = model::expand_templates(text, 10, 7).expect("templates");
    assert_eq!(a, model::expand_templates(text, 10, 7).expect("templates"));
    assert!(a.len() > 4 && a.len() <= 8, "{a:?}");
    assert!(a
        .iter()
        .any(|(l, t)| *l == SentimentLabel::Negative && t == "my parcel never arrived!"));
    assert_eq!(
        model::expand_templates("negative\tmy {thing}\n", 3, 1),
        Err(TemplateError::Slot(1, "thing".into()))
    );
    assert_eq!(
        model::expand_templates("angry\tmy order\n", 3, 1),
        Err(TemplateError::Label(1, "angry".into()))
    );
    assert_eq!(
        model::expand_templates("no tab here\n", 3, 1),
        Err(TemplateError::Format(1))
    );
    // The shipped templates read.
    let shipped = include_str!("../../tools/sentiment/support_templates.txt");
    let rows = model::expand_templates(shipped, model::TEMPLATE_VARIANTS, model::TEMPLATE_SEED)
        .expect("shipped templates");
    assert!(rows.len() > 1_000);
}

/// Calibration never lowers the mean macro-F1 of the sets it is given.
#[test]
fn calibration_does_not_lower_the_figure() {
    let rows = tiny_corpus();
    let params = model::TrainParams {
        runs: 1,
        epochs: 1,
        learning_rate: 0.05,
        seed: 3,
    };
    let mut m = model::train(&model::examples(&rows, 1.0), &params);
    let before = {
        let leaked: &'static Model =
            Box::leak(Box::new(Model::from_bytes(&m.to_bytes()).expect("model")));
        evaluate(
            &Scorer {
                model: Some(leaked),
                ..Scorer::default()
            },
            &rows,
        )
        .macro_f1
    };
    let c = model::calibrate(&mut m, std::slice::from_ref(&rows));
    assert!(c.mean_macro_f1 >= before - 1e-9, "{c:?} {before}");
    assert!((-0.5..=0.5).contains(&c.negative) && (0.0..=1.0).contains(&c.neutral));
}
