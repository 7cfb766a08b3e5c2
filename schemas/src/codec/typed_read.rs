//! Avro's binary encoding read straight into a record's `Deserialize`, walking the schema as
//! serde asks for the value: no JSON mirror is built, and strings are handed over from the
//! bytes without an intermediate `String`.
//!
//! It gives exactly what decoding through the mirror gives ([`TopicSchema::decode`], then
//! [`crate::limits::check_value`] and [`crate::strict::from_value`]) for every record the
//! mirror path accepts: values are presented to serde in the mirror's shapes (a record as a
//! map, an optional field bare or null, any other union as a one-key map, an enum symbol as a
//! string, bytes as a string of code points 0–255), and the mirror's limits are checked on the
//! way (nesting as the mirror nests, identifier and text lengths, list sizes). Anything it
//! refuses, the caller decodes through the mirror instead, which is authoritative and names
//! the field of any real error; `schemas/tests/roundtrip.rs` checks both paths agree.

use apache_avro::schema::{Namespace, RecordField};
use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::{read_len, read_long, take, TopicSchema};
use crate::limits::{MAX_ID_BYTES, MAX_LIST_ITEMS, MAX_NESTING, MAX_TEXT_BYTES};

/// The record does not take the typed path (or is bad): decode through the mirror instead.
#[derive(Debug)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not decodable straight into the type")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: std::fmt::Display>(_: T) -> Refused {
        Refused
    }
}

type Cursor<'c, 'b> = &'c mut &'b [u8];

/// Deserializes one value of `schema` from `input`.
pub struct Reader<'s, 'c, 'b> {
    pub ts: &'s TopicSchema,
    pub schema: &'s Schema,
    pub ns: &'s Namespace,
    pub input: Cursor<'c, 'b>,
    /// The mirror's nesting depth of this value (the record itself is 0).
    pub depth: usize,
    /// The longest string this value may be (an identifier's or any text's).
    pub limit: usize,
}

fn is_identifier(field: &str) -> bool {
    field == "id" || field == "tenant" || field.ends_with("_id")
}

fn limit_of(field: &str) -> usize {
    if is_identifier(field) {
        MAX_ID_BYTES
    } else {
        MAX_TEXT_BYTES
    }
}

fn read_str<'b>(input: &mut &'b [u8], limit: usize) -> Result<&'b str, Refused> {
    let n = read_len(input).map_err(|_| Refused)?;
    if n > limit {
        return Err(Refused);
    }
    std::str::from_utf8(take(input, n).map_err(|_| Refused)?).map_err(|_| Refused)
}

impl<'s, 'c, 'b> Reader<'s, 'c, 'b> {
    fn resolved(&self) -> Result<&'s Schema, Refused> {
        self.ts.resolve(self.schema, self.ns).map_err(|_| Refused)
    }

    fn child<'x>(
        &'x mut self,
        schema: &'s Schema,
        ns: &'s Namespace,
        depth: usize,
        limit: usize,
    ) -> Reader<'s, 'x, 'b> {
        Reader {
            ts: self.ts,
            schema,
            ns,
            input: self.input,
            depth,
            limit,
        }
    }

    /// A record, array or map nests one level deeper in the mirror: refused past the limit.
    fn nested(&self) -> Result<usize, Refused> {
        if self.depth >= MAX_NESTING {
            Err(Refused)
        } else {
            Ok(self.depth + 1)
        }
    }

    fn inner_ns(&self, schema: &'s Schema) -> &'s Namespace {
        match schema {
            Schema::Record(r) if r.name.namespace.is_some() => &r.name.namespace,
            _ => self.ns,
        }
    }

    /// Read a union's branch index: the branch schema and whether the union is an optional
    /// field (null and one other type, written bare in the mirror).
    fn branch(&mut self, schema: &'s Schema) -> Result<(&'s Schema, bool), Refused> {
        let Schema::Union(u) = schema else {
            return Err(Refused);
        };
        let i = read_long(self.input).map_err(|_| Refused)?;
        let variants = u.variants();
        let branch = usize::try_from(i)
            .ok()
            .and_then(|i| variants.get(i))
            .ok_or(Refused)?;
        let bare = variants.len() == 2 && variants.iter().any(|s| matches!(s, Schema::Null));
        Ok((branch, bare))
    }

    /// The name a union branch has in the mirror (its record's or enum's unqualified name).
    fn branch_name(&self, branch: &'s Schema) -> Result<&'s str, Refused> {
        match self.ts.resolve(branch, self.ns).map_err(|_| Refused)? {
            Schema::Record(r) => Ok(&r.name.name),
            Schema::Enum(e) => Ok(&e.name.name),
            _ => Err(Refused),
        }
    }
}

impl<'de, 's, 'c, 'b> de::Deserializer<'de> for Reader<'s, 'c, 'b> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Refused> {
        let schema = self.resolved()?;
        match schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match take(self.input, 1).map_err(|_| Refused)?[0] {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                _ => Err(Refused),
            },
            Schema::Int => {
                let v = read_long(self.input).map_err(|_| Refused)?;
                i32::try_from(v).map_err(|_| Refused)?;
                visitor.visit_i64(v)
            }
            Schema::Long => visitor.visit_i64(read_long(self.input).map_err(|_| Refused)?),
            Schema::Float => {
                let mut b = [0u8; 4];
                b.copy_from_slice(take(self.input, 4).map_err(|_| Refused)?);
                let v = f64::from(f32::from_le_bytes(b));
                if !v.is_finite() {
                    return Err(Refused);
                }
                visitor.visit_f64(v)
            }
            Schema::Double => {
                let mut b = [0u8; 8];
                b.copy_from_slice(take(self.input, 8).map_err(|_| Refused)?);
                let v = f64::from_le_bytes(b);
                if !v.is_finite() {
                    return Err(Refused);
                }
                visitor.visit_f64(v)
            }
            Schema::String => visitor.visit_str(read_str(self.input, self.limit)?),
            Schema::Bytes => {
                let n = read_len(self.input).map_err(|_| Refused)?;
                let raw = take(self.input, n).map_err(|_| Refused)?;
                let text: String = raw.iter().map(|c| char::from(*c)).collect();
                if text.len() > self.limit {
                    return Err(Refused);
                }
                visitor.visit_string(text)
            }
            Schema::Enum(e) => {
                let i = read_long(self.input).map_err(|_| Refused)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or(Refused)?;
                if symbol.len() > self.limit {
                    return Err(Refused);
                }
                visitor.visit_str(symbol)
            }
            Schema::Union(_) => {
                let (branch, bare) = self.branch(schema)?;
                if matches!(branch, Schema::Null) {
                    return visitor.visit_unit();
                }
                let (depth, limit) = (self.depth, self.limit);
                if bare {
                    return self
                        .child(branch, self.ns, depth, limit)
                        .deserialize_any(visitor);
                }
                // `{"Branch": value}`: a one-key object of the mirror.
                let name = self.branch_name(branch)?;
                let depth = self.nested()?;
                visitor.visit_map(Tagged {
                    name: Some(name),
                    value: Some(self.child(branch, self.ns, depth, limit_of(name))),
                })
            }
            Schema::Array(a) => {
                let depth = self.nested()?;
                visitor.visit_seq(Blocks {
                    reader: self.child(&a.items, self.ns, depth, MAX_TEXT_BYTES),
                    left: 0,
                    seen: 0,
                    done: false,
                    key: None,
                })
            }
            Schema::Map(m) => {
                let depth = self.nested()?;
                visitor.visit_map(Blocks {
                    reader: self.child(&m.types, self.ns, depth, MAX_TEXT_BYTES),
                    left: 0,
                    seen: 0,
                    done: false,
                    key: None,
                })
            }
            Schema::Record(r) => {
                let depth = self.nested()?;
                let ns = self.inner_ns(schema);
                visitor.visit_map(Fields {
                    fields: r.fields.iter(),
                    current: None,
                    reader: self.child(schema, ns, depth, MAX_TEXT_BYTES),
                })
            }
            _ => Err(Refused),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Refused> {
        let schema = self.resolved()?;
        match schema {
            Schema::Null => visitor.visit_none(),
            Schema::Union(_) => {
                let (branch, bare) = self.branch(schema)?;
                if matches!(branch, Schema::Null) {
                    return visitor.visit_none();
                }
                if !bare {
                    // A tagged branch: the mirror's one-key object, as a present value.
                    let name = self.branch_name(branch)?;
                    let depth = self.nested()?;
                    let limit = limit_of(name);
                    let value = self.child(branch, self.ns, depth, limit);
                    return visitor.visit_some(TaggedValue { name, value });
                }
                let (depth, limit) = (self.depth, self.limit);
                visitor.visit_some(self.child(branch, self.ns, depth, limit))
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        let schema = self.resolved()?;
        match schema {
            Schema::Enum(_) | Schema::String => {
                // A symbol (or a string) names a unit variant.
                let symbol = SymbolOf(self);
                visitor.visit_enum(symbol)
            }
            Schema::Union(_) => {
                let (branch, bare) = self.branch(schema)?;
                if bare || matches!(branch, Schema::Null) {
                    return Err(Refused);
                }
                let name = self.branch_name(branch)?;
                let depth = self.nested()?;
                let value = self.child(branch, self.ns, depth, limit_of(name));
                visitor.visit_enum(Variant { name, value })
            }
            _ => Err(Refused),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        // The mirror path asks for an object here: a record, a map, or a tagged union.
        match self.resolved()? {
            Schema::Record(_) | Schema::Map(_) | Schema::Union(_) => self.deserialize_any(visitor),
            _ => Err(Refused),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.resolved()? {
            Schema::Array(_) => self.deserialize_any(visitor),
            _ => Err(Refused),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct identifier ignored_any
    }
}

/// A record's fields in schema order, each keyed by its name.
struct Fields<'s, 'c, 'b> {
    fields: std::slice::Iter<'s, RecordField>,
    current: Option<&'s RecordField>,
    reader: Reader<'s, 'c, 'b>,
}

impl<'de, 's, 'c, 'b> MapAccess<'de> for Fields<'s, 'c, 'b> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        match self.fields.next() {
            Some(f) => {
                self.current = Some(f);
                seed.deserialize(Name(&f.name)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        let f = self.current.take().ok_or(Refused)?;
        let (ns, depth) = (self.reader.ns, self.reader.depth);
        seed.deserialize(self.reader.child(&f.schema, ns, depth, limit_of(&f.name)))
    }
}

/// An array's items or a map's entries, block by block, at most [`MAX_LIST_ITEMS`] in all.
struct Blocks<'s, 'c, 'b> {
    reader: Reader<'s, 'c, 'b>,
    left: i64,
    seen: i64,
    done: bool,
    /// A map entry's key, read with [`MapAccess::next_key_seed`], for its value's limit.
    key: Option<&'b str>,
}

impl<'s, 'c, 'b> Blocks<'s, 'c, 'b> {
    /// Whether another item follows, reading the next block's count when one ends.
    fn more(&mut self) -> Result<bool, Refused> {
        if self.done {
            return Ok(false);
        }
        if self.left == 0 {
            let mut n = read_long(self.reader.input).map_err(|_| Refused)?;
            if n == 0 {
                self.done = true;
                return Ok(false);
            }
            if n < 0 {
                read_long(self.reader.input).map_err(|_| Refused)?;
                n = n.checked_neg().ok_or(Refused)?;
            }
            self.seen = self.seen.saturating_add(n);
            if self.seen > MAX_LIST_ITEMS as i64 {
                return Err(Refused);
            }
            self.left = n;
        }
        self.left -= 1;
        Ok(true)
    }

    fn item(&mut self, limit: usize) -> Reader<'s, '_, 'b> {
        let (schema, ns, depth) = (self.reader.schema, self.reader.ns, self.reader.depth);
        self.reader.child(schema, ns, depth, limit)
    }
}

impl<'de, 's, 'c, 'b> SeqAccess<'de> for Blocks<'s, 'c, 'b> {
    type Error = Refused;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Refused> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(self.item(MAX_TEXT_BYTES)).map(Some)
    }
}

impl<'de, 's, 'c, 'b> MapAccess<'de> for Blocks<'s, 'c, 'b> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        if !self.more()? {
            return Ok(None);
        }
        let key = read_str(self.reader.input, usize::MAX)?;
        self.key = Some(key);
        seed.deserialize(Name(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        let key = self.key.take().ok_or(Refused)?;
        seed.deserialize(self.item(limit_of(key)))
    }
}

/// A one-key map: a tagged union branch as the mirror writes it, `{"Branch": value}`.
struct Tagged<'s, 'c, 'b> {
    name: Option<&'s str>,
    value: Option<Reader<'s, 'c, 'b>>,
}

impl<'de, 's, 'c, 'b> MapAccess<'de> for Tagged<'s, 'c, 'b> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        match self.name.take() {
            Some(name) => seed.deserialize(Name(name)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        seed.deserialize(self.value.take().ok_or(Refused)?)
    }
}

/// A present tagged union value: an enum (external tagging) or a one-key map.
struct TaggedValue<'s, 'c, 'b> {
    name: &'s str,
    value: Reader<'s, 'c, 'b>,
}

impl<'de, 's, 'c, 'b> de::Deserializer<'de> for TaggedValue<'s, 'c, 'b> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_map(Tagged {
            name: Some(self.name),
            value: Some(self.value),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_enum(Variant {
            name: self.name,
            value: self.value,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct identifier ignored_any option newtype_struct seq
        tuple tuple_struct map struct
    }
}

/// A union branch as an enum variant: its name, then its value.
struct Variant<'s, 'c, 'b> {
    name: &'s str,
    value: Reader<'s, 'c, 'b>,
}

impl<'de, 's, 'c, 'b> EnumAccess<'de> for Variant<'s, 'c, 'b> {
    type Error = Refused;
    type Variant = Reader<'s, 'c, 'b>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Refused> {
        Ok((seed.deserialize(Name(self.name))?, self.value))
    }
}

impl<'de, 's, 'c, 'b> VariantAccess<'de> for Reader<'s, 'c, 'b> {
    type Error = Refused;

    fn unit_variant(self) -> Result<(), Refused> {
        // `{"Branch": value}` into a unit variant: the mirror path decides.
        Err(Refused)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Refused> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Refused> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

/// An enum symbol (or a string) naming a unit variant.
struct SymbolOf<'s, 'c, 'b>(Reader<'s, 'c, 'b>);

impl<'de, 's, 'c, 'b> EnumAccess<'de> for SymbolOf<'s, 'c, 'b> {
    type Error = Refused;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly), Refused> {
        Ok((seed.deserialize(self.0)?, UnitOnly))
    }
}

struct UnitOnly;

impl<'de> VariantAccess<'de> for UnitOnly {
    type Error = Refused;

    fn unit_variant(self) -> Result<(), Refused> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Refused> {
        Err(Refused)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }
}

/// A field name, map key or variant name.
struct Name<'a>(&'a str);

impl<'de> de::Deserializer<'de> for Name<'_> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_str(self.0)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct identifier ignored_any option newtype_struct seq
        tuple tuple_struct map struct enum
    }
}

impl TopicSchema {
    /// Decode a datum (no header) written with this schema straight into `T`: none where the
    /// mirror path must decide (see the module's documentation).
    pub fn decode_typed<T: de::DeserializeOwned>(&self, datum: &[u8]) -> Option<T> {
        let mut input = datum;
        let reader = Reader {
            ts: self,
            schema: &self.schema,
            ns: &None,
            input: &mut input,
            depth: 0,
            limit: MAX_TEXT_BYTES,
        };
        let value = T::deserialize(reader).ok()?;
        input.is_empty().then_some(value)
    }
}
