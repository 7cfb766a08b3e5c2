//! Schema resolution: reading a datum written with one schema (the writer's) as another (the
//! engine's, the reader's), by the rules of the Avro specification ("Schema Resolution"):
//!
//! - record fields are matched by name (or a reader field's alias); a writer field the reader
//!   does not have is read and dropped, a reader field the writer does not have takes the
//!   reader's default (no default: the record is refused);
//! - an enum symbol the reader does not know takes the reader enum's default (none: refused);
//! - `int` is promoted to `long`, `float` or `double`, `long` to `float` or `double`, `float`
//!   to `double`, and `string` and `bytes` read as each other;
//! - a writer union is read by the branch the datum took, matched to the first reader branch
//!   of the same type; a reader union takes a writer value of a type one of its branches has.
//!
//! The result is the JSON mirror of the reader's schema, as [`TopicSchema::decode`] gives for
//! a datum written with it, so everything after decoding is the same whoever wrote the record.

use super::{describe, read_blocks, read_long, schema_name, CodecError, TopicSchema};
use apache_avro::schema::{Namespace, UnionSchema};
use apache_avro::Schema;
use serde_json::{Map as JsonMap, Value as Json};

/// One side of the resolution: the parsed schema (for its named types) and the namespace
/// the current position sits in.
#[derive(Clone, Copy)]
struct Side<'s> {
    ts: &'s TopicSchema,
    ns: &'s Namespace,
}

impl TopicSchema {
    /// Read `datum` (Avro binary, no header) written with `writer` as this schema's JSON
    /// mirror. With the same schema on both sides this is the plain read.
    pub fn read_datum(&self, writer: &TopicSchema, datum: &[u8]) -> Result<Json, CodecError> {
        let mut rest = datum;
        let json = if writer.fingerprint == self.fingerprint {
            self.read(&self.schema, &None, 0, &mut rest)?
        } else {
            let w = Side {
                ts: writer,
                ns: &None,
            };
            let r = Side {
                ts: self,
                ns: &None,
            };
            resolve(w, &writer.schema, r, &self.schema, 0, &mut rest)?
        };
        if !rest.is_empty() {
            return Err(CodecError::Malformed(format!(
                "{} trailing bytes after the record",
                rest.len()
            )));
        }
        Ok(json)
    }
}

fn inner<'s>(schema: &'s Schema, outer: &'s Namespace) -> &'s Namespace {
    match schema {
        Schema::Record(r) if r.name.namespace.is_some() => &r.name.namespace,
        Schema::Enum(e) if e.name.namespace.is_some() => &e.name.namespace,
        _ => outer,
    }
}

/// Whether a writer value of schema `w` can be read as `r` (both resolved): the same
/// primitive, a promotion, or named types of the same unqualified name.
fn matches(w: &Schema, r: &Schema) -> bool {
    use Schema::*;
    match (w, r) {
        (Record(a), Record(b)) => a.name.name == b.name.name,
        (Enum(a), Enum(b)) => a.name.name == b.name.name,
        (Array(_), Array(_)) | (Map(_), Map(_)) => true,
        (Int, Int | Long | Float | Double) | (Long, Long | Float | Double) => true,
        (Float, Float | Double) | (Double, Double) => true,
        (String | Bytes, String | Bytes) => true,
        (Null, Null) | (Boolean, Boolean) => true,
        _ => false,
    }
}

/// The first branch of reader union `u` that a writer value of schema `w` reads as: an exact
/// match first, then a promotion (the specification's order).
fn reader_branch<'s>(
    w: &Schema,
    wside: Side<'_>,
    u: &'s UnionSchema,
    rside: Side<'s>,
) -> Result<(usize, &'s Schema), CodecError> {
    let w = wside.ts.resolve(w, wside.ns)?;
    let variants = u.variants();
    let resolved: Vec<&Schema> = variants
        .iter()
        .map(|v| rside.ts.resolve(v, rside.ns))
        .collect::<Result<_, _>>()?;
    let same = |a: &Schema, b: &Schema| std::mem::discriminant(a) == std::mem::discriminant(b);
    resolved
        .iter()
        .position(|r| same(w, r) && matches(w, r))
        .or_else(|| resolved.iter().position(|r| matches(w, r)))
        .map(|i| (i, &variants[i]))
        .ok_or_else(|| {
            CodecError::Malformed(format!(
                "the writer's {} matches no branch of the reader's union",
                describe(w)
            ))
        })
}

fn resolve(
    wside: Side<'_>,
    w: &Schema,
    rside: Side<'_>,
    r: &Schema,
    depth: usize,
    bytes: &mut &[u8],
) -> Result<Json, CodecError> {
    let w = wside.ts.resolve(w, wside.ns)?;
    let r = rside.ts.resolve(r, rside.ns)?;
    // A writer union: the datum says which branch; read it as the reader's type.
    if let Schema::Union(wu) = w {
        let i = read_long(bytes)?;
        let branch = usize::try_from(i)
            .ok()
            .and_then(|i| wu.variants().get(i))
            .ok_or_else(|| CodecError::Malformed(format!("union branch {i} out of range")))?;
        return resolve(wside, branch, rside, r, depth, bytes);
    }
    if let Schema::Union(ru) = r {
        let (_, branch) = reader_branch(w, wside, ru, rside)?;
        let value = resolve(wside, w, rside, branch, depth, bytes)?;
        let bare =
            ru.variants().len() == 2 && ru.variants().iter().any(|s| matches!(s, Schema::Null));
        if bare || value.is_null() {
            return Ok(value);
        }
        let name = schema_name(rside.ts.resolve(branch, rside.ns)?)
            .map(|n| n.name.clone())
            .ok_or_else(|| CodecError::Malformed("unnamed union branch".into()))?;
        let mut obj = JsonMap::new();
        obj.insert(name, value);
        return Ok(Json::Object(obj));
    }
    if !matches(w, r) {
        return Err(CodecError::Malformed(format!(
            "the writer's {} cannot be read as {}",
            describe(w),
            describe(r)
        )));
    }
    let nested = || {
        if depth >= crate::limits::MAX_NESTING {
            Err(super::too_deep())
        } else {
            Ok(depth + 1)
        }
    };
    Ok(match (w, r) {
        (Schema::Record(wr), Schema::Record(rr)) => {
            let depth = nested()?;
            let (wside, rside) = (
                Side {
                    ns: inner(w, wside.ns),
                    ..wside
                },
                Side {
                    ns: inner(r, rside.ns),
                    ..rside
                },
            );
            let mut read: Vec<Option<Json>> = vec![None; rr.fields.len()];
            for wf in &wr.fields {
                let target = rr.fields.iter().position(|rf| {
                    rf.name == wf.name || rf.aliases.as_ref().is_some_and(|a| a.contains(&wf.name))
                });
                match target {
                    Some(i) => {
                        read[i] = Some(resolve(
                            wside,
                            &wf.schema,
                            rside,
                            &rr.fields[i].schema,
                            depth,
                            bytes,
                        )?)
                    }
                    // Read past a field the reader does not have.
                    None => {
                        wside.ts.read(&wf.schema, wside.ns, depth, bytes)?;
                    }
                }
            }
            let mut obj = JsonMap::new();
            for (rf, value) in rr.fields.iter().zip(read) {
                let value = match value {
                    Some(v) => v,
                    None => {
                        let default = rf.default.clone().ok_or_else(|| CodecError::Field {
                            path: rf.name.clone(),
                            message: format!(
                                "the writer's {} has no such field and the reader's has no \
                                 default",
                                wr.name.name
                            ),
                        })?;
                        default_mirror(default, &rf.schema, rside)?
                    }
                };
                obj.insert(rf.name.clone(), value);
            }
            Json::Object(obj)
        }
        (Schema::Enum(we), Schema::Enum(re)) => {
            let i = read_long(bytes)?;
            let symbol = usize::try_from(i)
                .ok()
                .and_then(|i| we.symbols.get(i))
                .ok_or_else(|| CodecError::Malformed(format!("enum index {i} out of range")))?;
            if re.symbols.contains(symbol) {
                Json::String(symbol.clone())
            } else if let Some(default) = &re.default {
                Json::String(default.clone())
            } else {
                return Err(CodecError::Malformed(format!(
                    "{symbol:?} is not a symbol of {} this version of Switchboard knows ({})",
                    re.name.name,
                    re.symbols.join(", ")
                )));
            }
        }
        (Schema::Array(wa), Schema::Array(ra)) => {
            let depth = nested()?;
            let mut items = Vec::new();
            read_blocks(bytes, |bytes| {
                items.push(resolve(wside, &wa.items, rside, &ra.items, depth, bytes)?);
                Ok(())
            })?;
            Json::Array(items)
        }
        (Schema::Map(wm), Schema::Map(rm)) => {
            let depth = nested()?;
            let mut entries = Vec::new();
            read_blocks(bytes, |bytes| {
                let key = super::read_string(bytes)?;
                entries.push((
                    key,
                    resolve(wside, &wm.types, rside, &rm.types, depth, bytes)?,
                ));
                Ok(())
            })?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().collect())
        }
        // Promotions: read as the writer wrote, the JSON mirror's numbers and strings
        // already are the reader's.
        (Schema::Int | Schema::Long, Schema::Float | Schema::Double) => {
            let v = read_long(bytes)?;
            super::finite(v as f64)?
        }
        _ => wside.ts.read(w, wside.ns, depth, bytes)?,
    })
}

/// A reader field's default (Avro's JSON encoding, where a union's default is a value of its
/// first branch) as the JSON mirror writes that value.
fn default_mirror(default: Json, schema: &Schema, rside: Side<'_>) -> Result<Json, CodecError> {
    let Schema::Union(u) = rside.ts.resolve(schema, rside.ns)? else {
        return Ok(default);
    };
    let bare = u.variants().len() == 2 && u.variants().iter().any(|s| matches!(s, Schema::Null));
    if bare || default.is_null() {
        return Ok(default);
    }
    let first = u
        .variants()
        .first()
        .ok_or_else(|| CodecError::Malformed("empty union".into()))?;
    let name = schema_name(rside.ts.resolve(first, rside.ns)?)
        .map(|n| n.name.clone())
        .ok_or_else(|| CodecError::Malformed("unnamed union branch".into()))?;
    let mut obj = JsonMap::new();
    obj.insert(name, default);
    Ok(Json::Object(obj))
}
