//! Between `Value` and serde types, for typed function arguments and results.
//! Integers become int64, floats float64 (so a Rust `f64` is a Convex `number`, an `i64` an `int64`).
//!
//! Serializing (`to_value`): unit and `None` → null; `u64` above `i64::MAX` → error; byte
//! buffers (`serde_bytes`) → bytes, while a plain `Vec<u8>` is an array of int64;
//! structs and maps → objects (map keys must be strings, chars or integers, which are
//! written in decimal); sequences and tuples → arrays; unit variants → their name as a
//! string; other variants → `{variant: content}` (serde's externally tagged form).
//!
//! Deserializing (`from_value`): the inverse. Two conveniences, because JavaScript clients
//! send every `number` as a float64: a Rust integer field accepts a float64 holding an exact
//! integer in range, and a Rust float field accepts an int64.

use std::collections::btree_map;
use std::fmt;

use serde::de::{self, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use crate::{Object, Value};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Message(String),
}

impl BridgeError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        "InvalidValue"
    }
}

impl ser::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError::Message(msg.to_string())
    }
}

impl de::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError::Message(msg.to_string())
    }
}

pub fn to_value<T: serde::Serialize + ?Sized>(t: &T) -> Result<Value, BridgeError> {
    t.serialize(ValueSerializer)
}

pub fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, BridgeError> {
    T::deserialize(ValueDeserializer(v))
}

// ---------------------------------------------------------------------------------------
// Serializer

struct ValueSerializer;

fn int_value<N: TryInto<i64> + fmt::Display + Copy>(n: N) -> Result<Value, BridgeError> {
    n.try_into()
        .map(Value::Int64)
        .map_err(|_| BridgeError::Message(format!("Integer {n} does not fit in an int64")))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = BridgeError;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = VariantSeqSerializer;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = VariantMapSerializer;

    fn serialize_bool(self, v: bool) -> Result<Value, BridgeError> {
        Ok(Value::Boolean(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, BridgeError> {
        int_value(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, BridgeError> {
        Ok(Value::Int64(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, BridgeError> {
        int_value(v)
    }
    fn serialize_u128(self, v: u128) -> Result<Value, BridgeError> {
        int_value(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, BridgeError> {
        Ok(Value::Float64(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, BridgeError> {
        Ok(Value::Float64(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, BridgeError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, BridgeError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, BridgeError> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, BridgeError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, BridgeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, BridgeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, BridgeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, BridgeError> {
        Ok(Value::String(variant.to_string()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, BridgeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, BridgeError> {
        let mut fields = Object::new();
        fields.insert(variant.to_string(), value.serialize(ValueSerializer)?);
        Ok(Value::Object(fields))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer, BridgeError> {
        Ok(SeqSerializer(Vec::with_capacity(
            len.unwrap_or(0).min(1024),
        )))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer, BridgeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqSerializer, BridgeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSeqSerializer, BridgeError> {
        Ok(VariantSeqSerializer {
            variant,
            items: SeqSerializer(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapSerializer, BridgeError> {
        Ok(MapSerializer {
            fields: Object::new(),
            pending_key: None,
        })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<MapSerializer, BridgeError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<VariantMapSerializer, BridgeError> {
        Ok(VariantMapSerializer {
            variant,
            fields: Object::new(),
        })
    }
}

struct SeqSerializer(Vec<Value>);

impl ser::SerializeSeq for SeqSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BridgeError> {
        self.0.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, BridgeError> {
        Ok(Value::Array(self.0))
    }
}
impl ser::SerializeTuple for SeqSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BridgeError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, BridgeError> {
        ser::SerializeSeq::end(self)
    }
}
impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BridgeError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, BridgeError> {
        ser::SerializeSeq::end(self)
    }
}

struct VariantSeqSerializer {
    variant: &'static str,
    items: SeqSerializer,
}

impl ser::SerializeTupleVariant for VariantSeqSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BridgeError> {
        ser::SerializeSeq::serialize_element(&mut self.items, value)
    }
    fn end(self) -> Result<Value, BridgeError> {
        let mut fields = Object::new();
        fields.insert(self.variant.to_string(), Value::Array(self.items.0));
        Ok(Value::Object(fields))
    }
}

struct MapSerializer {
    fields: Object,
    pending_key: Option<String>,
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), BridgeError> {
        self.pending_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BridgeError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| BridgeError::Message("map value serialized before its key".into()))?;
        self.fields.insert(key, value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, BridgeError> {
        Ok(Value::Object(self.fields))
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), BridgeError> {
        self.fields
            .insert(key.to_string(), value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, BridgeError> {
        Ok(Value::Object(self.fields))
    }
}

struct VariantMapSerializer {
    variant: &'static str,
    fields: Object,
}

impl ser::SerializeStructVariant for VariantMapSerializer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), BridgeError> {
        self.fields
            .insert(key.to_string(), value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, BridgeError> {
        let mut outer = Object::new();
        outer.insert(self.variant.to_string(), Value::Object(self.fields));
        Ok(Value::Object(outer))
    }
}

/// Object keys are strings; chars and integers are accepted and written as text.
struct KeySerializer;

fn key_error() -> BridgeError {
    BridgeError::Message("object keys must be strings".into())
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = BridgeError;
    type SerializeSeq = ser::Impossible<String, BridgeError>;
    type SerializeTuple = ser::Impossible<String, BridgeError>;
    type SerializeTupleStruct = ser::Impossible<String, BridgeError>;
    type SerializeTupleVariant = ser::Impossible<String, BridgeError>;
    type SerializeMap = ser::Impossible<String, BridgeError>;
    type SerializeStruct = ser::Impossible<String, BridgeError>;
    type SerializeStructVariant = ser::Impossible<String, BridgeError>;

    fn serialize_str(self, v: &str) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_char(self, v: char) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, BridgeError> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, BridgeError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, BridgeError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_f32(self, _: f32) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, BridgeError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, BridgeError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, BridgeError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, BridgeError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, BridgeError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, BridgeError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, BridgeError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, BridgeError> {
        Err(key_error())
    }
}

// ---------------------------------------------------------------------------------------
// Deserializer

struct ValueDeserializer<'a>(&'a Value);

impl<'a> ValueDeserializer<'a> {
    fn invalid_type(&self, exp: &dyn de::Expected) -> BridgeError {
        let unexpected = match self.0 {
            Value::Null => de::Unexpected::Unit,
            Value::Int64(x) => de::Unexpected::Signed(*x),
            Value::Float64(x) => de::Unexpected::Float(*x),
            Value::Boolean(b) => de::Unexpected::Bool(*b),
            Value::String(s) => de::Unexpected::Str(s),
            Value::Bytes(b) => de::Unexpected::Bytes(b),
            Value::Array(_) => de::Unexpected::Seq,
            Value::Object(_) => de::Unexpected::Map,
        };
        de::Error::invalid_type(unexpected, exp)
    }

    /// Integer targets accept a float64 that holds an exact integer (JS numbers are floats).
    fn visit_integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
        match self.0 {
            Value::Float64(x)
                if x.fract() == 0.0
                    && *x >= -9.223_372_036_854_776e18
                    && *x < 9.223_372_036_854_776e18 =>
            {
                visitor.visit_i64(*x as i64)
            }
            _ => de::Deserializer::deserialize_any(self, visitor),
        }
    }
}

macro_rules! integer_methods {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
                self.visit_integer(visitor)
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for ValueDeserializer<'a> {
    type Error = BridgeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Int64(x) => visitor.visit_i64(*x),
            Value::Float64(x) => visitor.visit_f64(*x),
            Value::Boolean(b) => visitor.visit_bool(*b),
            Value::String(s) => visitor.visit_str(s),
            Value::Bytes(b) => visitor.visit_bytes(b),
            Value::Array(items) => {
                let mut seq = SeqDeserializer { iter: items.iter() };
                let out = visitor.visit_seq(&mut seq)?;
                match seq.iter.len() {
                    0 => Ok(out),
                    left => Err(de::Error::invalid_length(
                        items.len(),
                        &format!("{} elements", items.len() - left).as_str(),
                    )),
                }
            }
            Value::Object(fields) => visitor.visit_map(MapDeserializer {
                iter: fields.iter(),
                pending: None,
            }),
        }
    }

    integer_methods!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BridgeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BridgeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(fields) if fields.len() == 1 => {
                let (variant, content) = fields.iter().next().expect("one field");
                visitor.visit_enum(EnumDeserializer { variant, content })
            }
            _ => Err(self.invalid_type(&"a string or an object with one field (an enum)")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BridgeError> {
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDeserializer<'a> {
    iter: std::slice::Iter<'a, Value>,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqDeserializer<'a> {
    type Error = BridgeError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, BridgeError> {
        match self.iter.next() {
            Some(v) => seed.deserialize(ValueDeserializer(v)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDeserializer<'a> {
    iter: btree_map::Iter<'a, String, Value>,
    pending: Option<&'a Value>,
}

impl<'de, 'a> de::MapAccess<'de> for MapDeserializer<'a> {
    type Error = BridgeError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, BridgeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.pending = Some(v);
                let key: de::value::StrDeserializer<'_, BridgeError> =
                    k.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, BridgeError> {
        let value = self
            .pending
            .take()
            .ok_or_else(|| BridgeError::Message("map value requested before its key".into()))?;
        seed.deserialize(ValueDeserializer(value))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumDeserializer<'a> {
    variant: &'a str,
    content: &'a Value,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDeserializer<'a> {
    type Error = BridgeError;
    type Variant = ValueDeserializer<'a>;
    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), BridgeError> {
        let name: de::value::StrDeserializer<'_, BridgeError> = self.variant.into_deserializer();
        Ok((seed.deserialize(name)?, ValueDeserializer(self.content)))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for ValueDeserializer<'a> {
    type Error = BridgeError;
    fn unit_variant(self) -> Result<(), BridgeError> {
        match self.0 {
            Value::Null => Ok(()),
            _ => Err(self.invalid_type(&"null (a unit variant)")),
        }
    }
    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, BridgeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, BridgeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BridgeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::test_support::arb_value;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(rename_all = "camelCase")]
    struct Ticket {
        user_id: String,
        seat_count: i64,
        price: f64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        promo_code: Option<String>,
        note: Option<String>,
        tags: Vec<String>,
        status: Status,
        extra: BTreeMap<String, u32>,
        payload: Value,
        flag: bool,
        pair: (i32, String),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(rename_all = "camelCase")]
    enum Status {
        Open,
        OnHold { until: f64 },
        Sold(String),
        Moved(i64, i64),
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn ticket() -> Ticket {
        Ticket {
            user_id: "u1".into(),
            seat_count: 2,
            price: 10.5,
            promo_code: None,
            note: None,
            tags: vec!["a".into()],
            status: Status::Open,
            extra: [("k".to_string(), 7)].into_iter().collect(),
            payload: Value::Bytes(vec![1, 2]),
            flag: true,
            pair: (3, "x".into()),
        }
    }

    #[test]
    fn struct_to_value_shape() {
        let v = to_value(&ticket()).unwrap();
        let expected = obj(vec![
            ("userId", Value::from("u1")),
            ("seatCount", Value::Int64(2)),
            ("price", Value::Float64(10.5)),
            ("note", Value::Null),
            ("tags", Value::Array(vec![Value::from("a")])),
            ("status", Value::from("open")),
            ("extra", obj(vec![("k", Value::Int64(7))])),
            ("payload", Value::Bytes(vec![1, 2])),
            ("flag", Value::Boolean(true)),
            (
                "pair",
                Value::Array(vec![Value::Int64(3), Value::from("x")]),
            ),
        ]);
        assert_eq!(v, expected);
        // skip_serializing_if dropped promoCode entirely.
        assert!(v.get("promoCode").is_none());
    }

    #[test]
    fn round_trips_including_enum_variants() {
        for status in [
            Status::Open,
            Status::OnHold { until: 5.0 },
            Status::Sold("bob".into()),
            Status::Moved(1, -2),
        ] {
            let t = Ticket {
                status,
                promo_code: Some("P".into()),
                note: Some("n".into()),
                ..ticket()
            };
            let v = to_value(&t).unwrap();
            let back: Ticket = from_value(&v).unwrap();
            assert_eq!(back, t);
        }
        assert_eq!(
            to_value(&Status::OnHold { until: 5.0 }).unwrap(),
            obj(vec![("onHold", obj(vec![("until", Value::Float64(5.0))]))])
        );
    }

    #[test]
    fn missing_option_fields_and_js_numbers() {
        // A JS client sends seatCount as a float64 and leaves out optional fields.
        let v = obj(vec![
            ("userId", Value::from("u1")),
            ("seatCount", Value::Float64(2.0)),
            ("price", Value::Int64(10)),
            ("tags", Value::Array(vec![])),
            ("status", Value::from("open")),
            ("extra", obj(vec![("k", Value::Float64(7.0))])),
            ("payload", Value::Null),
            ("flag", Value::Boolean(false)),
            (
                "pair",
                Value::Array(vec![Value::Float64(3.0), Value::from("x")]),
            ),
        ]);
        let t: Ticket = from_value(&v).unwrap();
        assert_eq!(t.seat_count, 2);
        assert_eq!(t.price, 10.0);
        assert_eq!(t.promo_code, None);
        assert_eq!(t.note, None);
        // A fractional float is not silently truncated into an integer.
        let mut bad = v.clone().into_object().unwrap();
        bad.insert("seatCount".into(), Value::Float64(2.5));
        let err = from_value::<Ticket>(&Value::Object(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2.5"), "{err}");
        let mut bad = v.into_object().unwrap();
        bad.insert("userId".into(), Value::Int64(1));
        assert!(from_value::<Ticket>(&Value::Object(bad)).is_err());
    }

    #[test]
    fn integer_edges() {
        assert!(to_value(&u64::MAX).is_err());
        assert_eq!(
            to_value(&(i64::MAX as u64)).unwrap(),
            Value::Int64(i64::MAX)
        );
        assert!(from_value::<u8>(&Value::Int64(300)).is_err());
        assert_eq!(from_value::<u8>(&Value::Int64(200)).unwrap(), 200);
        assert_eq!(to_value(&()).unwrap(), Value::Null);
        assert_eq!(to_value(&None::<i32>).unwrap(), Value::Null);
        assert_eq!(from_value::<Option<i64>>(&Value::Null).unwrap(), None);
        assert_eq!(
            from_value::<Option<i64>>(&Value::Int64(4)).unwrap(),
            Some(4)
        );
        assert!(from_value::<(i64, i64)>(&Value::Array(vec![Value::Int64(1)])).is_err());
        let map: BTreeMap<i32, bool> = [(5, true)].into_iter().collect();
        assert_eq!(
            to_value(&map).unwrap(),
            obj(vec![("5", Value::Boolean(true))])
        );
    }

    proptest! {
        #[test]
        fn value_round_trips_through_serde(v in arb_value()) {
            let through = to_value(&v).unwrap();
            prop_assert_eq!(&through, &v);
            let back: Value = from_value(&v).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
