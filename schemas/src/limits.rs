//! Limits on input records, enforced when a record is decoded (both framings: the JSON mirror
//! of `simulate` and Avro from Kafka). A record beyond any of them is dead-lettered with the
//! limit named, so no single record can exhaust the stack, the heap or the CPU of the engine.
//! docs/operations.md lists them beside the per-tenant config limits.

use serde_json::Value as Json;

/// Largest encoded record (Avro bytes, or the JSON `value` text of a simulate line). Kafka's
/// default `message.max.bytes` is about the same.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Deepest nesting of objects and arrays in a record's JSON mirror (records, arrays and maps
/// in Avro). Deep enough for the deepest condition config accepts (16 levels of `all`, each
/// an object and an array, inside the 5 levels of a route change), shallow enough that every
/// decoder (apache-avro's recurses with ~25 KB per level in a debug build), the state rows
/// and `Drop` stay far from the stack's end.
pub const MAX_NESTING: usize = 48;
/// Most items in one array and entries in one map.
pub const MAX_LIST_ITEMS: usize = 1_000;
/// Longest identifier: `id`, `tenant` and every `*_id` field.
pub const MAX_ID_BYTES: usize = 256;
/// Longest string of any other field (message text, notes, condition values).
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Event times accepted: from the Unix epoch to the start of 2200 (ms, UTC). Keeps every
/// time computation far from `i64` overflow and bounds business-time walks.
pub const MIN_TIMESTAMP_MS: i64 = 0;
pub const MAX_TIMESTAMP_MS: i64 = 7_258_118_400_000;

/// Check an event time against [`MIN_TIMESTAMP_MS`]..[`MAX_TIMESTAMP_MS`].
pub fn check_timestamp(ts: i64) -> Result<(), String> {
    if (MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&ts) {
        Ok(())
    } else {
        Err(format!(
            "timestamp {ts} is outside the accepted range (1970-01-01 to 2200-01-01, \
             {MIN_TIMESTAMP_MS}..{MAX_TIMESTAMP_MS} ms)"
        ))
    }
}

/// Check an encoded record's size against [`MAX_RECORD_BYTES`].
pub fn check_record_size(len: usize) -> Result<(), String> {
    if len > MAX_RECORD_BYTES {
        Err(format!(
            "record of {len} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes"
        ))
    } else {
        Ok(())
    }
}

/// Whether a record's JSON text is plainly within every limit [`check_value`] checks and can
/// be decoded straight from its text ([`crate::Input::from_json_text`]): no string longer
/// than [`MAX_ID_BYTES`] (so within both string limits) and none with an escape, fewer than
/// [`MAX_NESTING`] objects (so none nested that deep), fewer than [`MAX_LIST_ITEMS`] commas
/// (so no list or map that long), and no array at all (so no struct can be read from one,
/// which the strict decoder refuses). One pass over the bytes; a text it turns down is not
/// wrong, only decoded the general way.
pub fn plainly_within(text: &str) -> bool {
    let (mut in_string, mut run, mut objects, mut commas) = (false, 0usize, 0usize, 0usize);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' => return false,
                _ => {
                    run += 1;
                    if run > MAX_ID_BYTES {
                        return false;
                    }
                }
            }
        } else {
            match b {
                b'"' => {
                    in_string = true;
                    run = 0;
                }
                b'[' => return false,
                b'{' => {
                    objects += 1;
                    if objects >= MAX_NESTING {
                        return false;
                    }
                }
                b',' => {
                    commas += 1;
                    if commas >= MAX_LIST_ITEMS {
                        return false;
                    }
                }
                _ => {}
            }
        }
    }
    true
}

fn is_identifier(field: &str) -> bool {
    field == "id" || field == "tenant" || field.ends_with("_id")
}

/// Check a record's JSON mirror against the nesting, list and string limits. The error names
/// the field path and the limit.
pub fn check_value(value: &Json) -> Result<(), String> {
    check(value, 0, &Path::Root, MAX_TEXT_BYTES)
}

/// The recursion stops at [`MAX_NESTING`], so it is bounded whatever the value.
fn check(v: &Json, depth: usize, path: &Path<'_>, string_limit: usize) -> Result<(), String> {
    match v {
        Json::String(s) if s.len() > string_limit => Err(format!(
            "{}: {} bytes exceed the limit of {string_limit} bytes",
            path.at(),
            s.len()
        )),
        Json::Object(_) | Json::Array(_) if depth >= MAX_NESTING => Err(format!(
            "{}: nested deeper than the limit of {MAX_NESTING} levels",
            path.at()
        )),
        Json::Object(map) => {
            if map.len() > MAX_LIST_ITEMS {
                return Err(format!(
                    "{}: {} entries exceed the limit of {MAX_LIST_ITEMS}",
                    path.at(),
                    map.len()
                ));
            }
            for (k, child) in map {
                let limit = if is_identifier(k) {
                    MAX_ID_BYTES
                } else {
                    MAX_TEXT_BYTES
                };
                check(child, depth + 1, &Path::Field(path, k), limit)?;
            }
            Ok(())
        }
        Json::Array(items) => {
            if items.len() > MAX_LIST_ITEMS {
                return Err(format!(
                    "{}: {} items exceed the limit of {MAX_LIST_ITEMS}",
                    path.at(),
                    items.len()
                ));
            }
            for (i, child) in items.iter().enumerate() {
                check(child, depth + 1, &Path::Index(path, i), MAX_TEXT_BYTES)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Where in a record a value is (`route.condition.all[2]`), rendered only for an error
/// message: the checks and the codec walk every record, and fail on few.
pub(crate) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The path; empty at the record itself.
    pub(crate) fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(parent, name) => match parent.render() {
                p if p.is_empty() => name.to_string(),
                p => format!("{p}.{name}"),
            },
            Path::Index(parent, i) => format!("{}[{i}]", parent.at()),
        }
    }

    /// The path, or `record` at the record itself.
    pub(crate) fn at(&self) -> String {
        match self.render() {
            p if p.is_empty() => "record".to_string(),
            p => p,
        }
    }
}
