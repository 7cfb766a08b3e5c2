//! The JSON examples in docs/records.md are valid records of their topics' schemas, and every
//! topic has one (R-TOPIC), so the documentation cannot drift from the schemas.

use switchboard_schemas::{Codec, Input, Output, Topic};

#[test]
fn every_example_in_records_md_is_a_valid_record() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/records.md"))
        .expect("docs/records.md");
    let codec = Codec::new().expect("schemas");
    let mut seen = std::collections::BTreeSet::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("<!-- record: ") {
        rest = &rest[at + 13..];
        let topic_name = &rest[..rest.find(" -->").expect("marker end")];
        let topic =
            Topic::from_name(topic_name).unwrap_or_else(|| panic!("unknown topic {topic_name}"));
        let start = rest.find("```json\n").expect("json block") + 8;
        let end = start + rest[start..].find("```").expect("block end");
        let json: serde_json::Value =
            serde_json::from_str(&rest[start..end]).unwrap_or_else(|e| panic!("{topic_name}: {e}"));
        codec
            .schema(topic)
            .encode(&json)
            .unwrap_or_else(|e| panic!("{topic_name} example does not match its schema: {e}"));
        let typed = if topic.is_input() {
            Input::from_json(topic, json).map(|_| ())
        } else {
            Output::from_json(topic, json).map(|_| ())
        };
        typed.unwrap_or_else(|e| panic!("{topic_name} example: {e}"));
        seen.insert(topic);
        rest = &rest[end..];
    }
    for topic in Topic::ALL {
        assert!(
            seen.contains(&topic),
            "docs/records.md has no example for {topic}"
        );
    }
}
