//! R-TOPIC (SPEC §11, encoding), schema evolution: records written with a compatible schema
//! other than the engine's are read by the Avro resolution rules, so producers and the engine
//! need not upgrade in lock-step.

use serde_json::{json, Value as Json};
use switchboard_schemas::*;

/// The sample inputs of `docs/records.md` (one per record kind the docs show).
/// Every field and named type name in a schema, at any depth.
fn all_names(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(o) => {
            if let Some(Json::String(n)) = o.get("name") {
                out.push(n.clone());
            }
            for x in o.values() {
                all_names(x, out);
            }
        }
        Json::Array(a) => a.iter().for_each(|x| all_names(x, out)),
        _ => {}
    }
}

/// Drops, at every depth, object keys that are not a name the schema knows.
fn retain_known(v: &mut Json, names: &[String]) {
    match v {
        Json::Object(o) => {
            o.retain(|k, _| names.iter().any(|n| n == k));
            o.values_mut().for_each(|x| retain_known(x, names));
        }
        Json::Array(a) => a.iter_mut().for_each(|x| retain_known(x, names)),
        _ => {}
    }
}

fn samples(topic: Topic) -> Vec<Json> {
    let text = include_str!("../../docs/records.md");
    let marker = format!("<!-- record: {} -->", topic.name());
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let start = rest.find("```json").map(|i| i + 7).unwrap_or(0);
        let end = rest[start..]
            .find("```")
            .map(|i| start + i)
            .unwrap_or(start);
        if let Ok(v) = serde_json::from_str(&rest[start..end]) {
            out.push(v);
        }
    }
    out
}

/// What the next version of a topic's schema might look like: a field added with a default
/// at the front (so the writer's field order differs), one at the end, and a symbol appended
/// to every enum.
fn next_version(text: &str) -> String {
    fn add_symbols(v: &mut Json) {
        match v {
            Json::Object(o) => {
                if o.get("type") == Some(&json!("enum")) {
                    if let Some(Json::Array(symbols)) = o.get_mut("symbols") {
                        symbols.push(json!("added_symbol"));
                    }
                }
                o.values_mut().for_each(add_symbols);
            }
            Json::Array(a) => a.iter_mut().for_each(add_symbols),
            _ => {}
        }
    }
    let mut schema: Json = serde_json::from_str(text).expect("schema json");
    add_symbols(&mut schema);
    let fields = schema["fields"].as_array_mut().expect("a record schema");
    fields.insert(
        0,
        json!({"name": "trace_id", "type": ["null", "string"], "default": null}),
    );
    fields.push(json!({"name": "hops", "type": "long", "default": 0}));
    schema.to_string()
}

#[test]
fn a_producer_on_the_next_schema_version_is_read_by_the_current_engine() {
    let codec = Codec::new().expect("schemas parse");
    let mut checked = 0;
    for topic in Topic::INPUTS {
        let reader = codec.schema(topic);
        let next = TopicSchema::parse(&next_version(topic.schema_text())).expect("next schema");
        assert_ne!(next.fingerprint(), reader.fingerprint());
        for sample in samples(topic) {
            let expected = Input::from_json(topic, sample.clone()).expect("sample parses");
            let mut written = sample.clone();
            let obj = written.as_object_mut().expect("record");
            obj.insert("trace_id".into(), json!("t-123"));
            obj.insert("hops".into(), json!(7));
            let bytes = next.encode(&written).expect("encode with the next schema");
            let datum = &bytes[10..];
            let json = reader.read_datum(&next, datum).expect("resolves");
            let got = Input::from_json(topic, json).expect("the engine's type");
            assert_eq!(got, expected, "{topic}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

/// A symbol the engine does not know yet is refused with the symbol named (the inbound
/// `channel` enum has no default), which the runtime dead-letters.
#[test]
fn an_enum_symbol_the_engine_does_not_know_is_refused_by_name() {
    let codec = Codec::new().expect("schemas parse");
    let reader = codec.schema(Topic::Inbound);
    let next =
        TopicSchema::parse(&next_version(Topic::Inbound.schema_text())).expect("next schema");
    let mut sample = samples(Topic::Inbound).remove(0);
    sample["channel"] = json!("added_symbol");
    let bytes = next.encode(&sample).expect("encode");
    let err = reader.read_datum(&next, &bytes[10..]).expect_err("refused");
    assert!(err.to_string().contains("\"added_symbol\""), "{err}");
    assert!(err.to_string().contains("Channel"), "{err}");
}

/// The resolution rules themselves, on a small schema: fields matched by name whatever their
/// order, dropped when the reader lacks them, defaulted when the writer lacks them (a union
/// default as the mirror writes it), numeric promotion, an unknown enum symbol taking the
/// reader's enum default, and a writer value read into a reader union.
#[test]
fn resolution_follows_the_avro_rules() {
    let writer = TopicSchema::parse(
        r#"{"type": "record", "name": "R", "fields": [
            {"name": "gone", "type": "string"},
            {"name": "n", "type": "int"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b", "z"]}},
            {"name": "plain", "type": "string"},
            {"name": "xs", "type": {"type": "array", "items": "int"}}
        ]}"#,
    )
    .expect("writer");
    let reader = TopicSchema::parse(
        r#"{"type": "record", "name": "R", "fields": [
            {"name": "xs", "type": {"type": "array", "items": "double"}},
            {"name": "n", "type": "long"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"],
                                   "default": "a"}},
            {"name": "plain", "type": ["null", "string"]},
            {"name": "added", "type": ["null", "string"], "default": null},
            {"name": "counts", "type": {"type": "map", "values": "long"}, "default": {"k": 1}}
        ]}"#,
    )
    .expect("reader");
    let bytes = writer
        .encode(&json!({"gone": "x", "n": 5, "e": "z", "plain": "p", "xs": [1, 2]}))
        .expect("encode");
    let got = reader.read_datum(&writer, &bytes[10..]).expect("resolves");
    assert_eq!(
        got,
        json!({"xs": [1.0, 2.0], "n": 5, "e": "a", "plain": "p", "added": null,
               "counts": {"k": 1}})
    );
    // A reader field with no default that the writer lacks: refused, naming the field.
    let strict = TopicSchema::parse(
        r#"{"type": "record", "name": "R", "fields": [{"name": "must", "type": "string"}]}"#,
    )
    .expect("strict");
    let err = strict
        .read_datum(&writer, &bytes[10..])
        .expect_err("refused");
    assert!(err.to_string().starts_with("must:"), "{err}");
    // Incompatible types: refused with both named.
    let wrong = TopicSchema::parse(
        r#"{"type": "record", "name": "R", "fields": [{"name": "n", "type": "string"}]}"#,
    )
    .expect("wrong");
    let err = wrong
        .read_datum(&writer, &bytes[10..])
        .expect_err("refused");
    assert!(err.to_string().contains("cannot be read as"), "{err}");
}

/// The Confluent wire format carries the same datum after a 5-byte header; both framings
/// name their writer schema.
#[test]
fn both_framings_are_recognised() {
    let codec = Codec::new().expect("schemas parse");
    let tick = codec
        .encode(Topic::Ticks, &Tick::default())
        .expect("encode");
    let framed = confluent_frame(7, &tick);
    assert_eq!(framed[..5], [0, 0, 0, 0, 7]);
    assert_eq!(
        Framed::parse(&framed).expect("framing"),
        Framed::Confluent {
            id: 7,
            datum: &tick[10..]
        }
    );
    match Framed::parse(&tick).expect("framing") {
        Framed::SingleObject { fingerprint, datum } => {
            assert_eq!(fingerprint, codec.schema(Topic::Ticks).fingerprint());
            assert_eq!(datum, &tick[10..]);
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 13 item 5: each schema against its previous release (`schemas/avro/history/`).
/// Backward: the current schema reads everything the previous one wrote (apache-avro's full
/// check). Forward: a reader still on the previous schema reads what the current one writes,
/// for every sample record the previous schema can represent, exactly as if its own schema
/// had written it; a record on a union branch added since is refused naming the mismatch
/// (Avro cannot read a branch the reader lacks, so registry subjects use BACKWARD
/// compatibility, docs/records.md).
#[test]
fn each_schema_is_backward_and_forward_compatible_with_its_previous_release() {
    use apache_avro::schema_compatibility::SchemaCompatibility;
    let codec = Codec::new().expect("schemas parse");
    let (mut forward, mut new_branches) = (0, 0);
    for topic in Topic::ALL {
        let current = codec.schema(topic);
        for old_text in topic.previous_schema_texts() {
            let old = TopicSchema::parse(old_text).expect("old schema");
            SchemaCompatibility::can_read(old.schema(), current.schema()).unwrap_or_else(|e| {
                panic!("{topic}: the current schema cannot read the previous: {e}")
            });
            let known: Json = serde_json::from_str(old_text).expect("json");
            let names: Vec<&str> = known["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .filter_map(|f| f["name"].as_str())
                .collect();
            for sample in samples(topic) {
                let written = current
                    .encode(&sample)
                    .expect("encode with the current schema");
                let mut representable = sample.clone();
                if let Some(o) = representable.as_object_mut() {
                    o.retain(|k, _| names.contains(&k.as_str()));
                }
                // Fields added inside a record nested in a union (with defaults) are left
                // out too when the previous schema cannot write them (it reads past them).
                // Only then: the keys of a map are not names.
                if old.encode(&representable).is_err() {
                    let mut nested = Vec::new();
                    all_names(&known, &mut nested);
                    retain_known(&mut representable, &nested);
                }
                match old.encode(&representable) {
                    Ok(by_old) => {
                        let read = old.read_datum(current, &written[10..]).expect("forward");
                        assert_eq!(
                            read,
                            old.read_datum(&old, &by_old[10..]).expect("own"),
                            "{topic}"
                        );
                        forward += 1;
                    }
                    Err(_) => {
                        let err = old
                            .read_datum(current, &written[10..])
                            .expect_err("new branch");
                        assert!(err.to_string().contains("union"), "{topic}: {err}");
                        new_branches += 1;
                    }
                }
            }
        }
    }
    assert!(
        forward >= 10 && new_branches >= 1,
        "{forward} {new_branches}"
    );
}

/// Issue 13 item 5: documentation, defaults and logical types are compatible changes: each
/// schema's fingerprint (what single-object records carry) is that of the schema with them
/// all removed, so annotating a schema never strands the records already written with it.
#[test]
fn annotations_leave_every_fingerprint_unchanged() {
    fn strip(v: &mut Json) {
        match v {
            Json::Object(o) => {
                for k in ["doc", "default", "logicalType", "aliases"] {
                    o.remove(k);
                }
                o.values_mut().for_each(strip);
            }
            Json::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let codec = Codec::new().expect("schemas parse");
    let mut annotated = 0;
    for topic in Topic::ALL {
        let mut bare: Json = serde_json::from_str(topic.schema_text()).expect("json");
        strip(&mut bare);
        let bare = TopicSchema::parse(&bare.to_string()).expect("bare schema");
        assert_eq!(
            bare.fingerprint(),
            codec.schema(topic).fingerprint(),
            "{topic}"
        );
        annotated += usize::from(topic.schema_text().contains("timestamp-millis"));
    }
    assert!(annotated >= 3, "{annotated}");
}

/// Issue 13 item 5: every field of every schema says what it holds (`doc`), for the
/// producers and consumers who read the schemas in a registry.
#[test]
fn every_field_is_documented() {
    fn undocumented(v: &Json, record: &str, out: &mut Vec<String>) {
        match v {
            Json::Object(o) => {
                let name = o.get("name").and_then(Json::as_str).unwrap_or(record);
                if let Some(Json::Array(fields)) = o.get("fields") {
                    for f in fields {
                        if f.get("doc")
                            .and_then(Json::as_str)
                            .is_none_or(str::is_empty)
                        {
                            out.push(format!("{name}.{}", f["name"]));
                        }
                        undocumented(&f["type"], name, out);
                    }
                }
                for k in ["type", "items", "values"] {
                    if let Some(t) = o.get(k) {
                        undocumented(t, name, out);
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|x| undocumented(x, record, out)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for topic in Topic::ALL {
        let schema: Json = serde_json::from_str(topic.schema_text()).expect("json");
        undocumented(&schema, topic.name(), &mut missing);
    }
    assert!(missing.is_empty(), "fields without a doc: {missing:?}");
}
