//! Sentiment scoring (SPEC §8, R-SENT): hand-written customer-support cases, and the
//! processor's outputs.

mod common;
use common::*;
use switchboard_processors::sentiment::{evaluate, label, ConversationMood, Scorer};
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
