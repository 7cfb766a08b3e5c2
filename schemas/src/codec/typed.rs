//! Avro's binary encoding written straight from a record's `Serialize`, walking the schema as
//! serde walks the value: no JSON mirror is built (building it was most of an output's
//! encoding cost, and most of all for the wide `AnalyticsWindow`).
//!
//! It writes exactly what [`TopicSchema::encode`] writes from the JSON mirror (tested on
//! every output of a workload, `schemas/tests/roundtrip.rs`). What it does not handle the
//! way the mirror does (a field out of the schema's order, a union chosen by shape, a
//! non-finite float) is a [`Mismatch`], and the caller encodes through the mirror instead,
//! which also names the field of any real error.

use apache_avro::schema::{Namespace, RecordField, UnionSchema};
use apache_avro::Schema;
use serde::ser::{self, Impossible, Serialize};

use super::{write_bytes, write_long, TopicSchema};
use crate::limits::Path;

/// The value does not take the typed path here; encode through the JSON mirror.
#[derive(Debug)]
pub struct Mismatch;

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not encodable straight from the type")
    }
}

impl std::error::Error for Mismatch {}

impl ser::Error for Mismatch {
    fn custom<T: std::fmt::Display>(_: T) -> Mismatch {
        Mismatch
    }
}

/// Serializes one value of `schema` into `out`.
pub struct Typed<'a, 's> {
    pub ts: &'s TopicSchema,
    pub schema: &'s Schema,
    pub ns: &'s Namespace,
    pub out: &'a mut Vec<u8>,
}

impl<'a, 's> Typed<'a, 's> {
    fn resolved(&self) -> Result<&'s Schema, Mismatch> {
        self.ts.resolve(self.schema, self.ns).map_err(|_| Mismatch)
    }

    /// The schema a present value is written with: an optional field's (a union of null and
    /// one type) other branch, its index written first; else the schema itself.
    fn present(&mut self) -> Result<&'s Schema, Mismatch> {
        let schema = self.resolved()?;
        let Schema::Union(u) = schema else {
            return Ok(schema);
        };
        let variants = u.variants();
        let mut others = (0..variants.len()).filter(|i| !matches!(variants[*i], Schema::Null));
        let nullable = variants.iter().any(|s| matches!(s, Schema::Null));
        match (others.next(), others.next(), nullable) {
            (Some(only), None, true) => {
                write_long(only as i64, self.out);
                self.ts
                    .resolve(&variants[only], self.ns)
                    .map_err(|_| Mismatch)
            }
            _ => Err(Mismatch),
        }
    }

    fn long(mut self, v: i64) -> Result<(), Mismatch> {
        match self.present()? {
            Schema::Long => write_long(v, self.out),
            Schema::Int => write_long(i64::from(i32::try_from(v).map_err(|_| Mismatch)?), self.out),
            Schema::Double => self.out.extend_from_slice(&(v as f64).to_le_bytes()),
            Schema::Float => self.out.extend_from_slice(&(v as f32).to_le_bytes()),
            _ => return Err(Mismatch),
        }
        Ok(())
    }

    fn with(self, schema: &'s Schema, ns: &'s Namespace) -> Typed<'a, 's> {
        Typed {
            ts: self.ts,
            schema,
            ns,
            out: self.out,
        }
    }

    /// The branch of a union of named types that `variant` names: (index, schema).
    fn branch(&self, u: &'s UnionSchema, variant: &str) -> Result<(usize, &'s Schema), Mismatch> {
        for (i, s) in u.variants().iter().enumerate() {
            // A reference names its type itself: no need to look it up to compare.
            let name = match s {
                Schema::Ref { name } => Some(name),
                other => super::schema_name(other),
            };
            if let Some(name) = name {
                if name.name == variant || name.fullname(None) == variant {
                    return Ok((i, s));
                }
            }
        }
        Err(Mismatch)
    }
}

impl<'a, 's> ser::Serializer for Typed<'a, 's> {
    type Ok = ();
    type Error = Mismatch;
    type SerializeSeq = Block<'a, 's>;
    type SerializeTuple = Impossible<(), Mismatch>;
    type SerializeTupleStruct = Impossible<(), Mismatch>;
    type SerializeTupleVariant = Impossible<(), Mismatch>;
    type SerializeMap = Block<'a, 's>;
    type SerializeStruct = Fields<'a, 's>;
    type SerializeStructVariant = Impossible<(), Mismatch>;

    fn serialize_bool(mut self, v: bool) -> Result<(), Mismatch> {
        match self.present()? {
            Schema::Boolean => self.out.push(u8::from(v)),
            _ => return Err(Mismatch),
        }
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Mismatch> {
        self.long(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Mismatch> {
        self.long(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Mismatch> {
        self.long(i64::try_from(v).map_err(|_| Mismatch)?)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Mismatch> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(mut self, v: f64) -> Result<(), Mismatch> {
        if !v.is_finite() {
            return Err(Mismatch);
        }
        match self.present()? {
            Schema::Double => self.out.extend_from_slice(&v.to_le_bytes()),
            Schema::Float => self.out.extend_from_slice(&(v as f32).to_le_bytes()),
            _ => return Err(Mismatch),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Mismatch> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(mut self, v: &str) -> Result<(), Mismatch> {
        match self.present()? {
            Schema::String => write_bytes(v.as_bytes(), self.out),
            // Bytes are mirrored as a string of code points up to U+00FF, one per byte.
            Schema::Bytes => {
                let bytes = v
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| Mismatch)?;
                write_bytes(&bytes, self.out);
            }
            Schema::Enum(e) => {
                let i = e.symbols.iter().position(|s| s == v).ok_or(Mismatch)?;
                write_long(i as i64, self.out);
            }
            _ => return Err(Mismatch),
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Mismatch> {
        Err(Mismatch)
    }
    fn serialize_none(self) -> Result<(), Mismatch> {
        match self.resolved()? {
            Schema::Null => {}
            Schema::Union(u) => {
                let i = u
                    .variants()
                    .iter()
                    .position(|s| matches!(s, Schema::Null))
                    .ok_or(Mismatch)?;
                write_long(i as i64, self.out);
            }
            _ => return Err(Mismatch),
        }
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), Mismatch> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Mismatch> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Mismatch> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Mismatch> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Mismatch> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Mismatch> {
        // `{"Variant": value}`: a union of named types, the branch by name. A union of null
        // and one type takes the value by shape in the mirror: not here.
        let Schema::Union(u) = self.resolved()? else {
            return Err(Mismatch);
        };
        if u.variants().iter().any(|s| matches!(s, Schema::Null)) && u.variants().len() == 2 {
            return Err(Mismatch);
        }
        let (i, branch) = self.branch(u, variant)?;
        write_long(i as i64, self.out);
        let ns = self.ns;
        v.serialize(self.with(branch, ns))
    }
    fn serialize_seq(mut self, len: Option<usize>) -> Result<Block<'a, 's>, Mismatch> {
        let (Schema::Array(a), Some(len)) = (self.present()?, len) else {
            return Err(Mismatch);
        };
        if len > 0 {
            write_long(len as i64, self.out);
        }
        Ok(Block {
            ts: self.ts,
            schema: &a.items,
            ns: self.ns,
            out: self.out,
            left: len,
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_map(mut self, len: Option<usize>) -> Result<Block<'a, 's>, Mismatch> {
        let (Schema::Map(m), Some(len)) = (self.present()?, len) else {
            return Err(Mismatch);
        };
        if len > 0 {
            write_long(len as i64, self.out);
        }
        Ok(Block {
            ts: self.ts,
            schema: &m.types,
            ns: self.ns,
            out: self.out,
            left: len,
        })
    }
    fn serialize_struct(mut self, _: &'static str, _: usize) -> Result<Fields<'a, 's>, Mismatch> {
        let Schema::Record(r) = self.present()? else {
            return Err(Mismatch);
        };
        let ns = if r.name.namespace.is_some() {
            &r.name.namespace
        } else {
            self.ns
        };
        Ok(Fields {
            ts: self.ts,
            fields: &r.fields,
            lookup: &r.lookup,
            ns,
            next: 0,
            out: self.out,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Mismatch> {
        Err(Mismatch)
    }
}

/// An array's items or a map's entries (keys as strings), each value with the item or
/// value schema (the namespace is the enclosing one), ended by Avro's empty block.
pub struct Block<'a, 's> {
    ts: &'s TopicSchema,
    schema: &'s Schema,
    ns: &'s Namespace,
    out: &'a mut Vec<u8>,
    left: usize,
}

impl Block<'_, '_> {
    fn value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Mismatch> {
        v.serialize(Typed {
            ts: self.ts,
            schema: self.schema,
            ns: self.ns,
            out: self.out,
        })
    }

    /// Count one more item against the announced length.
    fn count(&mut self) -> Result<(), Mismatch> {
        self.left = self.left.checked_sub(1).ok_or(Mismatch)?;
        Ok(())
    }

    fn end(self) -> Result<(), Mismatch> {
        if self.left != 0 {
            return Err(Mismatch);
        }
        self.out.push(0);
        Ok(())
    }
}

impl ser::SerializeSeq for Block<'_, '_> {
    type Ok = ();
    type Error = Mismatch;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Mismatch> {
        self.count()?;
        self.value(v)
    }
    fn end(self) -> Result<(), Mismatch> {
        Block::end(self)
    }
}

impl ser::SerializeMap for Block<'_, '_> {
    type Ok = ();
    type Error = Mismatch;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), Mismatch> {
        self.count()?;
        // Map keys are strings (an id, a form field's name): taken through the JSON mirror,
        // which is what the mirror path writes them from. Maps are rare in records, so the
        // small value built per key costs little.
        match serde_json::to_value(k) {
            Ok(serde_json::Value::String(key)) => {
                write_bytes(key.as_bytes(), self.out);
                Ok(())
            }
            _ => Err(Mismatch),
        }
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Mismatch> {
        self.value(v)
    }
    fn end(self) -> Result<(), Mismatch> {
        Block::end(self)
    }
}

/// A record's fields in the schema's order; a field the value skips takes its default.
pub struct Fields<'a, 's> {
    ts: &'s TopicSchema,
    fields: &'s [RecordField],
    lookup: &'s std::collections::BTreeMap<String, usize>,
    ns: &'s Namespace,
    next: usize,
    out: &'a mut Vec<u8>,
}

impl Fields<'_, '_> {
    /// Write the defaults of the fields before `until` not yet written.
    fn defaults_until(&mut self, until: usize) -> Result<(), Mismatch> {
        while self.next < until {
            let f = &self.fields[self.next];
            let default = f.default.as_ref().ok_or(Mismatch)?;
            self.ts
                .write(default, &f.schema, self.ns, &Path::Root, self.out)
                .map_err(|_| Mismatch)?;
            self.next += 1;
        }
        Ok(())
    }
}

impl ser::SerializeStruct for Fields<'_, '_> {
    type Ok = ();
    type Error = Mismatch;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Mismatch> {
        let i = match self.fields.get(self.next) {
            Some(f) if f.name == key => self.next,
            _ => *self.lookup.get(key).ok_or(Mismatch)?,
        };
        if i < self.next {
            return Err(Mismatch);
        }
        self.defaults_until(i)?;
        v.serialize(Typed {
            ts: self.ts,
            schema: &self.fields[i].schema,
            ns: self.ns,
            out: self.out,
        })?;
        self.next = i + 1;
        Ok(())
    }
    fn end(mut self) -> Result<(), Mismatch> {
        self.defaults_until(self.fields.len())
    }
}
