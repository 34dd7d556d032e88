//! serde → `Value`: the [`serde::Deserializer`] behind `from_value`.

use std::collections::btree_map;

use serde::de::{self, IntoDeserializer, Visitor};

use super::BridgeError;
use crate::Value;

pub(super) fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, BridgeError> {
    T::deserialize(ValueDeserializer(v))
}

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
