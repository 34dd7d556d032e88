//! `Value` → serde: the [`serde::Serializer`] behind `to_value`.

use std::fmt;

use serde::ser::{self, Serialize};

use super::BridgeError;
use crate::{Object, Value};

pub(super) fn to_value<T: Serialize + ?Sized>(t: &T) -> Result<Value, BridgeError> {
    t.serialize(ValueSerializer)
}

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
