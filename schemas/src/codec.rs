//! Avro encoding of Switchboard records.
//!
//! Records are converted between their JSON mirror (what serde produces for the Rust types in
//! [`crate::records`]) and Avro values by walking the schema, so the conversion is strict in
//! both directions: a JSON field the schema does not know is an error, a schema field missing
//! from the JSON takes the schema's default or is an error. The binary form is Avro's
//! single-object encoding: `C3 01`, the schema's 64-bit CRC-64-AVRO (Rabin) fingerprint
//! little-endian, then the datum.

use apache_avro::rabin::Rabin;
use apache_avro::schema::{Name, Namespace, ResolvedSchema, UnionSchema};
use apache_avro::Schema;
use serde_json::{Map as JsonMap, Value as Json};
use std::collections::HashMap;

use crate::limits::Path;
use crate::Topic;

mod resolve;
mod typed;
mod typed_read;

/// How an Avro record's bytes name the schema it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// Avro single-object encoding: `C3 01`, the writer schema's CRC-64-AVRO fingerprint
    /// (little-endian), the datum.
    SingleObject { fingerprint: u64, datum: &'a [u8] },
    /// The Confluent wire format: a zero byte, the writer schema's registry id (big-endian
    /// 32 bits), the datum.
    Confluent { id: u32, datum: &'a [u8] },
}

impl<'a> Framed<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Framed<'a>, CodecError> {
        match bytes {
            [0xC3, 0x01, fp @ ..] if fp.len() >= 8 => {
                let mut le = [0u8; 8];
                le.copy_from_slice(&fp[..8]);
                Ok(Framed::SingleObject {
                    fingerprint: u64::from_le_bytes(le),
                    datum: &fp[8..],
                })
            }
            [0x00, a, b, c, d, datum @ ..] => Ok(Framed::Confluent {
                id: u32::from_be_bytes([*a, *b, *c, *d]),
                datum,
            }),
            [0xC3, 0x01, ..] => Err(CodecError::NotSingleObject),
            _ => Err(CodecError::UnknownFraming),
        }
    }
}

/// Re-frame single-object bytes (as [`TopicSchema::encode`] writes them) in the Confluent
/// wire format with registry id `id`.
pub fn confluent_frame(id: u32, single_object: &[u8]) -> Vec<u8> {
    let datum = single_object.get(10..).unwrap_or_default();
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Why a record could not be encoded or decoded. The message names the field path.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("an Avro single-object record shorter than its 10-byte header")]
    NotSingleObject,
    #[error("unknown schema fingerprint {0:016x} for this topic")]
    UnknownSchema(u64),
    #[error("Confluent wire format (schema id {0}) needs schema_registry.url to be set")]
    NeedsRegistry(u32),
    #[error(
        "neither Avro single-object encoding (C3 01 + fingerprint) nor the Confluent wire \
         format (00 + schema id)"
    )]
    UnknownFraming,
    #[error("malformed Avro data: {0}")]
    Malformed(String),
    #[error("{0}")]
    Json(String),
}

impl Path<'_> {
    /// The error for the value at this path (`record` at the record itself).
    fn err(&self, message: impl Into<String>) -> CodecError {
        CodecError::Field {
            path: self.at(),
            message: message.into(),
        }
    }
}

/// One topic's parsed schema with its named types and fingerprint.
pub struct TopicSchema {
    schema: Schema,
    names: HashMap<Name, Schema>,
    fingerprint: u64,
    /// The topic's earlier schemas: a record written with one is read with it (its writer
    /// schema), and the JSON it gives takes the current types' defaults for fields added
    /// since.
    previous: Vec<TopicSchema>,
}

impl TopicSchema {
    pub fn parse(text: &str) -> Result<TopicSchema, CodecError> {
        // Logical types are annotations on the wire types, and the JSON mirror carries the
        // wire values (a `timestamp-millis` is its `long`): read and write the types under
        // them. The fingerprint is unchanged (the Parsing Canonical Form strips them), and
        // apache-avro's canonical form of an annotated primitive (`{"type":"long"}`, not
        // `"long"`) would otherwise disagree with every other implementation's.
        let mut json: Json =
            serde_json::from_str(text).map_err(|e| CodecError::Malformed(e.to_string()))?;
        strip_logical_types(&mut json);
        let schema = Schema::parse(&json).map_err(|e| CodecError::Malformed(e.to_string()))?;
        let names = {
            let resolved = ResolvedSchema::try_from(&schema)
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            resolved
                .get_names()
                .iter()
                .map(|(n, s)| (n.clone(), (*s).clone()))
                .collect()
        };
        let fp = schema.fingerprint::<Rabin>();
        let mut le = [0u8; 8];
        le.copy_from_slice(&fp.bytes[..8]);
        Ok(TopicSchema {
            schema,
            names,
            fingerprint: u64::from_le_bytes(le),
            previous: Vec::new(),
        })
    }

    /// This schema, also reading records written with each of `previous` (older schemas of
    /// the same topic).
    pub fn with_previous(mut self, previous: &[&str]) -> Result<TopicSchema, CodecError> {
        for text in previous {
            self.previous.push(TopicSchema::parse(text)?);
        }
        Ok(self)
    }

    /// The fingerprints of the earlier schemas this one also reads.
    pub fn previous_fingerprints(&self) -> Vec<u64> {
        self.previous.iter().map(|p| p.fingerprint).collect()
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The CRC-64-AVRO fingerprint of the schema's parsing canonical form.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Every named type (record or enum) of the schema with its canonical form, for the
    /// cross-file consistency check.
    pub fn named_types(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .map(|(n, s)| (n.fullname(None), s.canonical_form()))
            .collect()
    }

    /// Encode a JSON mirror value as Avro single-object bytes, writing the binary encoding
    /// straight from the JSON as the schema is walked (no intermediate Avro value, no second
    /// schema resolution): the same bytes apache-avro writes (`schemas/tests/roundtrip.rs`).
    pub fn encode(&self, json: &Json) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[0xC3, 0x01]);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        self.write(json, &self.schema, &None, &Path::Root, &mut out)?;
        Ok(out)
    }

    /// Encode a record as Avro single-object bytes straight from its type (no JSON mirror):
    /// the same bytes as [`TopicSchema::encode`] of its mirror, which it falls back to for
    /// what the typed path does not take (and which names the field of any error).
    pub fn encode_value<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        if let Some(bytes) = self.encode_typed(value) {
            return Ok(bytes);
        }
        let json = serde_json::to_value(value).map_err(|e| CodecError::Json(e.to_string()))?;
        self.encode(&json)
    }

    /// [`TopicSchema::encode_value`]'s typed path alone: none where it falls back.
    pub fn encode_typed<T: serde::Serialize + ?Sized>(&self, value: &T) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[0xC3, 0x01]);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        let typed = typed::Typed {
            ts: self,
            schema: &self.schema,
            ns: &None,
            out: &mut out,
        };
        value.serialize(typed).ok().map(|()| out)
    }

    /// Decode Avro single-object bytes to the JSON mirror: written with this schema or one
    /// of the topic's earlier ones (resolved to this one, [`TopicSchema::read_datum`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Json, CodecError> {
        match Framed::parse(bytes)? {
            Framed::SingleObject { fingerprint, datum } => {
                let writer = self
                    .known_writer(fingerprint)
                    .ok_or(CodecError::UnknownSchema(fingerprint))?;
                self.read_datum(writer, datum)
            }
            Framed::Confluent { id, .. } => Err(CodecError::NeedsRegistry(id)),
        }
    }

    /// This schema or the earlier one with `fingerprint`.
    pub fn known_writer(&self, fingerprint: u64) -> Option<&TopicSchema> {
        if fingerprint == self.fingerprint {
            return Some(self);
        }
        self.previous.iter().find(|p| p.fingerprint == fingerprint)
    }

    /// Read one value of `schema` from Avro's binary encoding straight into the JSON mirror.
    /// Records, arrays and maps nested deeper than [`crate::limits::MAX_NESTING`], and arrays
    /// or maps of more than [`crate::limits::MAX_LIST_ITEMS`], are refused before anything is
    /// read for them, so the recursion is bounded whatever the bytes say.
    fn read(
        &self,
        schema: &Schema,
        ns: &Namespace,
        depth: usize,
        bytes: &mut &[u8],
    ) -> Result<Json, CodecError> {
        let nested = |depth: usize| {
            if depth >= crate::limits::MAX_NESTING {
                Err(too_deep())
            } else {
                Ok(depth + 1)
            }
        };
        Ok(match self.resolve(schema, ns)? {
            Schema::Null => Json::Null,
            Schema::Boolean => match take(bytes, 1)?[0] {
                0 => Json::Bool(false),
                1 => Json::Bool(true),
                b => return Err(CodecError::Malformed(format!("{b} is not a boolean"))),
            },
            Schema::Int => {
                let v = read_long(bytes)?;
                i32::try_from(v)
                    .map(Json::from)
                    .map_err(|_| CodecError::Malformed(format!("{v} is not a 32-bit integer")))?
            }
            Schema::Long => Json::from(read_long(bytes)?),
            Schema::Float => {
                let mut b = [0u8; 4];
                b.copy_from_slice(take(bytes, 4)?);
                finite(f64::from(f32::from_le_bytes(b)))?
            }
            Schema::Double => {
                let mut b = [0u8; 8];
                b.copy_from_slice(take(bytes, 8)?);
                finite(f64::from_le_bytes(b))?
            }
            Schema::String => Json::String(read_string(bytes)?),
            Schema::Bytes => {
                let n = read_len(bytes)?;
                Json::String(take(bytes, n)?.iter().map(|c| char::from(*c)).collect())
            }
            Schema::Enum(e) => {
                let i = read_long(bytes)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| CodecError::Malformed(format!("enum index {i} out of range")))?;
                Json::String(symbol.clone())
            }
            Schema::Array(a) => {
                let depth = nested(depth)?;
                let mut items = Vec::new();
                read_blocks(bytes, |bytes| {
                    items.push(self.read(&a.items, ns, depth, bytes)?);
                    Ok(())
                })?;
                Json::Array(items)
            }
            Schema::Map(m) => {
                let depth = nested(depth)?;
                let mut entries = Vec::new();
                read_blocks(bytes, |bytes| {
                    let key = read_string(bytes)?;
                    entries.push((key, self.read(&m.types, ns, depth, bytes)?));
                    Ok(())
                })?;
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(entries.into_iter().collect())
            }
            Schema::Union(u) => {
                let i = read_long(bytes)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| {
                        CodecError::Malformed(format!("union branch {i} out of range"))
                    })?;
                let value = self.read(branch, ns, depth, bytes)?;
                let bare = u.variants().len() == 2
                    && u.variants().iter().any(|s| matches!(s, Schema::Null));
                if bare || value.is_null() {
                    value
                } else {
                    let name = schema_name(self.resolve(branch, ns)?)
                        .map(|n| n.name.clone())
                        .ok_or_else(|| CodecError::Malformed("unnamed union branch".into()))?;
                    let mut obj = JsonMap::new();
                    obj.insert(name, value);
                    Json::Object(obj)
                }
            }
            Schema::Record(r) => {
                let depth = nested(depth)?;
                let inner = if r.name.namespace.is_some() {
                    &r.name.namespace
                } else {
                    ns
                };
                let mut obj = JsonMap::new();
                for f in &r.fields {
                    obj.insert(f.name.clone(), self.read(&f.schema, inner, depth, bytes)?);
                }
                Json::Object(obj)
            }
            other => {
                return Err(CodecError::Malformed(format!(
                    "unsupported schema type {}",
                    describe(other)
                )))
            }
        })
    }

    fn resolve<'a>(&'a self, schema: &'a Schema, ns: &Namespace) -> Result<&'a Schema, CodecError> {
        match schema {
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                self.names
                    .get(&full)
                    .ok_or_else(|| CodecError::Malformed(format!("unresolved type {name}")))
            }
            other => Ok(other),
        }
    }

    /// Write `json` in Avro's binary encoding of `schema`, validating it as it goes: a field
    /// the schema does not know is an error, a missing one takes the schema's default or is
    /// an error. The error names the field's path.
    fn write(
        &self,
        json: &Json,
        schema: &Schema,
        ns: &Namespace,
        path: &Path<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let schema = self.resolve(schema, ns)?;
        match (schema, json) {
            (Schema::Null, Json::Null) => {}
            (Schema::Boolean, Json::Bool(b)) => out.push(u8::from(*b)),
            (Schema::Int, Json::Number(n)) => {
                let v = n
                    .as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| path.err(format!("{n} is not a 32-bit integer")))?;
                write_long(i64::from(v), out);
            }
            (Schema::Long, Json::Number(n)) => {
                let v = n
                    .as_i64()
                    .ok_or_else(|| path.err(format!("{n} is not a 64-bit integer")))?;
                write_long(v, out);
            }
            (Schema::Double, Json::Number(n)) => {
                let v = n
                    .as_f64()
                    .ok_or_else(|| path.err(format!("{n} is not a number")))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            (Schema::Float, Json::Number(n)) => {
                let v = n
                    .as_f64()
                    .ok_or_else(|| path.err(format!("{n} is not a number")))?;
                out.extend_from_slice(&(v as f32).to_le_bytes());
            }
            (Schema::String, Json::String(s)) => write_bytes(s.as_bytes(), out),
            (Schema::Bytes, Json::String(s)) => {
                let bytes = s
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| path.err("bytes string holds a code point above U+00FF"))?;
                write_bytes(&bytes, out);
            }
            (Schema::Enum(e), Json::String(s)) => {
                let i = e.symbols.iter().position(|sym| sym == s).ok_or_else(|| {
                    path.err(format!("{s:?} is not one of {}", e.symbols.join(", ")))
                })?;
                write_long(i as i64, out);
            }
            (Schema::Array(a), Json::Array(items)) => {
                if !items.is_empty() {
                    write_long(items.len() as i64, out);
                    for (i, v) in items.iter().enumerate() {
                        self.write(v, &a.items, ns, &Path::Index(path, i), out)?;
                    }
                }
                out.push(0);
            }
            (Schema::Map(m), Json::Object(obj)) => {
                if !obj.is_empty() {
                    write_long(obj.len() as i64, out);
                    for (k, v) in obj {
                        write_bytes(k.as_bytes(), out);
                        self.write(v, &m.types, ns, &Path::Field(path, k), out)?;
                    }
                }
                out.push(0);
            }
            (Schema::Union(u), _) => {
                let (i, branch, value, inner) = self.union_branch(json, u, ns, path)?;
                write_long(i as i64, out);
                let tagged;
                let at = match inner {
                    Some(tag) => {
                        tagged = Path::Field(path, tag);
                        &tagged
                    }
                    None => path,
                };
                self.write(value, branch, ns, at, out)?;
            }
            (Schema::Record(r), Json::Object(obj)) => {
                let inner_ns = if r.name.namespace.is_some() {
                    &r.name.namespace
                } else {
                    ns
                };
                if let Some(key) = obj.keys().find(|k| !r.lookup.contains_key(*k)) {
                    return Err(
                        Path::Field(path, key).err(format!("unknown field of {}", r.name.name))
                    );
                }
                for f in &r.fields {
                    let at = Path::Field(path, &f.name);
                    match obj.get(&f.name).or(f.default.as_ref()) {
                        Some(v) => self.write(v, &f.schema, inner_ns, &at, out)?,
                        None => return Err(at.err("missing required field")),
                    }
                }
            }
            (s, j) => {
                return Err(path.err(format!("expected {}, found {}", describe(s), json_kind(j))))
            }
        }
        Ok(())
    }

    /// Which branch of union `u` a JSON value takes: (index, branch schema, the value to write
    /// with it, the branch name when the value was tagged). `null` takes the null branch; for
    /// a union of null and one other type (an optional field) the bare value takes the other;
    /// otherwise the value is `{"BranchName": value}` (Avro's JSON encoding of a union).
    fn union_branch<'j, 's>(
        &'s self,
        json: &'j Json,
        u: &'s UnionSchema,
        ns: &Namespace,
        path: &Path<'_>,
    ) -> Result<(usize, &'s Schema, &'j Json, Option<&'j str>), CodecError> {
        let variants = u.variants();
        if json.is_null() {
            return variants
                .iter()
                .position(|s| matches!(s, Schema::Null))
                .map(|i| (i, &variants[i], json, None))
                .ok_or_else(|| path.err("null is not allowed here"));
        }
        let mut non_null = (0..variants.len()).filter(|i| !matches!(variants[*i], Schema::Null));
        let nullable = variants.iter().any(|s| matches!(s, Schema::Null));
        if let (Some(only), None, true) = (non_null.next(), non_null.next(), nullable) {
            return Ok((only, &variants[only], json, None));
        }
        let Json::Object(obj) = json else {
            return Err(path.err(format!(
                "expected one of {{\"{}\": {{...}}}}",
                self.branch_names(u, ns).join("\"|\"")
            )));
        };
        if obj.len() != 1 {
            return Err(path.err(format!(
                "a union value has exactly one key, one of {}",
                self.branch_names(u, ns).join(", ")
            )));
        }
        let (tag, inner) = obj.iter().next().ok_or_else(|| path.err("empty union"))?;
        for (i, s) in variants.iter().enumerate() {
            let resolved = self.resolve(s, ns)?;
            if let Some(name) = schema_name(resolved) {
                if name.name == *tag || name.fullname(None) == *tag {
                    return Ok((i, s, inner, Some(tag.as_str())));
                }
            }
        }
        Err(path.err(format!(
            "unknown variant {tag:?}, expected one of {}",
            self.branch_names(u, ns).join(", ")
        )))
    }

    fn branch_names(&self, u: &UnionSchema, ns: &Namespace) -> Vec<String> {
        u.variants()
            .iter()
            .filter_map(|s| self.resolve(s, ns).ok().and_then(schema_name))
            .map(|n| n.name.clone())
            .collect()
    }
}

/// Remove every `logicalType` annotation of a schema's JSON.
fn strip_logical_types(v: &mut Json) {
    match v {
        Json::Object(o) => {
            o.remove("logicalType");
            o.values_mut().for_each(strip_logical_types);
        }
        Json::Array(a) => a.iter_mut().for_each(strip_logical_types),
        _ => {}
    }
}

fn too_deep() -> CodecError {
    CodecError::Json(format!(
        "record: nested deeper than the limit of {} levels",
        crate::limits::MAX_NESTING
    ))
}

fn truncated() -> CodecError {
    CodecError::Malformed("the record ends inside a value".into())
}

fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Result<&'b [u8], CodecError> {
    if bytes.len() < n {
        return Err(truncated());
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// A zig-zag varint `long` (or `int`).
fn read_long(bytes: &mut &[u8]) -> Result<i64, CodecError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = take(bytes, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(CodecError::Malformed("integer longer than 10 bytes".into()))
}

fn read_len(bytes: &mut &[u8]) -> Result<usize, CodecError> {
    let n = read_long(bytes)?;
    let n = usize::try_from(n).map_err(|_| CodecError::Malformed("negative length".into()))?;
    if n > bytes.len() {
        return Err(truncated());
    }
    Ok(n)
}

fn read_string(bytes: &mut &[u8]) -> Result<String, CodecError> {
    let n = read_len(bytes)?;
    String::from_utf8(take(bytes, n)?.to_vec())
        .map_err(|_| CodecError::Malformed("a string is not valid UTF-8".into()))
}

/// An array's or a map's blocks: a count (negative: followed by the block's size in bytes),
/// that many items, until a count of 0; at most [`crate::limits::MAX_LIST_ITEMS`] in all.
fn read_blocks(
    bytes: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut seen: i64 = 0;
    loop {
        let mut n = read_long(bytes)?;
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            read_long(bytes)?;
            n = n
                .checked_neg()
                .ok_or_else(|| CodecError::Malformed("bad block count".into()))?;
        }
        seen = seen.saturating_add(n);
        if seen > crate::limits::MAX_LIST_ITEMS as i64 {
            return Err(CodecError::Json(format!(
                "record: an array or map of {seen} items exceeds the limit of {}",
                crate::limits::MAX_LIST_ITEMS
            )));
        }
        for _ in 0..n {
            item(bytes)?;
        }
    }
}

fn finite(v: f64) -> Result<Json, CodecError> {
    serde_json::Number::from_f64(v)
        .map(Json::Number)
        .ok_or_else(|| CodecError::Malformed("not a finite number".into()))
}

/// Avro's `long` (and `int`): zig-zag, then base-128 varint.
fn write_long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro's `bytes` and `string`: the length as a `long`, then the bytes.
fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

fn schema_name(s: &Schema) -> Option<&Name> {
    match s {
        Schema::Record(r) => Some(&r.name),
        Schema::Enum(e) => Some(&e.name),
        Schema::Fixed(f) => Some(&f.name),
        _ => None,
    }
}

fn describe(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("an object ({})", r.name.name),
        Schema::Enum(e) => format!("one of {}", e.symbols.join(", ")),
        Schema::Array(_) => "an array".into(),
        Schema::Map(_) => "an object".into(),
        Schema::String => "a string".into(),
        Schema::Bytes => "a string of bytes".into(),
        Schema::Boolean => "true or false".into(),
        Schema::Int | Schema::Long => "an integer".into(),
        Schema::Double | Schema::Float => "a number".into(),
        Schema::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Every topic's schema, parsed once.
pub struct Codec {
    /// In `Topic::ALL` order.
    topics: Vec<TopicSchema>,
}

impl Codec {
    pub fn new() -> Result<Codec, CodecError> {
        let topics = Topic::ALL
            .iter()
            .map(|t| TopicSchema::parse(t.schema_text())?.with_previous(t.previous_schema_texts()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Codec { topics })
    }

    pub fn schema(&self, topic: Topic) -> &TopicSchema {
        &self.topics[topic as usize]
    }

    pub fn encode<T: serde::Serialize>(
        &self,
        topic: Topic,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        self.schema(topic).encode_value(record)
    }

    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        topic: Topic,
        bytes: &[u8],
    ) -> Result<T, CodecError> {
        let json = self.schema(topic).decode(bytes)?;
        crate::strict::from_value(json).map_err(|e| CodecError::Json(e.to_string()))
    }
}
