//! The on-disk body encoding: a compact, self-describing binary form of a document's fields.
//!
//! Chosen over JSON text because it round-trips every Convex type (int64 vs float64, bytes,
//! NaN and -0.0) without special forms and decodes without a JSON parser. Layout: one tag byte,
//! then the payload; lengths are LEB128 varints; numbers are 8 bytes little endian.

use tickethub_value::{Object, Value};

const TAG_NULL: u8 = 0;
const TAG_INT64: u8 = 1;
const TAG_FLOAT64: u8 = 2;
const TAG_FALSE: u8 = 3;
const TAG_TRUE: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_ARRAY: u8 = 7;
const TAG_OBJECT: u8 = 8;

/// Deepest nesting the decoder follows; well above the 16-level document cap, so only a corrupt
/// body can reach it, and it keeps a corrupt body from overflowing the stack.
const MAX_DECODE_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt document body at byte {offset}: {reason}")]
pub struct CorruptBody {
    pub offset: usize,
    pub reason: &'static str,
}

pub fn encode_fields(fields: &Object) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_object(fields, &mut out);
    out
}

pub fn decode_fields(bytes: &[u8]) -> Result<Object, CorruptBody> {
    let mut reader = Reader { bytes, pos: 0 };
    match reader.value(0)? {
        Value::Object(o) if reader.pos == bytes.len() => Ok(o),
        Value::Object(_) => Err(reader.corrupt("trailing bytes")),
        _ => Err(CorruptBody {
            offset: 0,
            reason: "body is not an object",
        }),
    }
}

fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(s: &[u8], out: &mut Vec<u8>) {
    put_varint(s.len() as u64, out);
    out.extend_from_slice(s);
}

fn encode_object(fields: &Object, out: &mut Vec<u8>) {
    out.push(TAG_OBJECT);
    put_varint(fields.len() as u64, out);
    for (k, v) in fields {
        put_str(k.as_bytes(), out);
        encode_value(v, out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Int64(x) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Float64(x) => {
            out.push(TAG_FLOAT64);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Boolean(false) => out.push(TAG_FALSE),
        Value::Boolean(true) => out.push(TAG_TRUE),
        Value::String(s) => {
            out.push(TAG_STRING);
            put_str(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            put_str(b, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            put_varint(items.len() as u64, out);
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Object(o) => encode_object(o, out),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: &'static str) -> CorruptBody {
        CorruptBody {
            offset: self.pos,
            reason,
        }
    }
    fn byte(&mut self) -> Result<u8, CorruptBody> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.corrupt("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptBody> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.corrupt("length past end"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn varint(&mut self) -> Result<usize, CorruptBody> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| self.corrupt("length overflow"));
            }
        }
        Err(self.corrupt("varint too long"))
    }
    fn eight(&mut self) -> Result<[u8; 8], CorruptBody> {
        let s = self.take(8)?;
        Ok(s.try_into().expect("took 8 bytes"))
    }
    fn string(&mut self) -> Result<String, CorruptBody> {
        let n = self.varint()?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.corrupt("invalid utf-8"))
    }
    fn value(&mut self, depth: usize) -> Result<Value, CorruptBody> {
        if depth > MAX_DECODE_DEPTH {
            return Err(self.corrupt("nesting too deep"));
        }
        Ok(match self.byte()? {
            TAG_NULL => Value::Null,
            TAG_INT64 => Value::Int64(i64::from_le_bytes(self.eight()?)),
            TAG_FLOAT64 => Value::Float64(f64::from_bits(u64::from_le_bytes(self.eight()?))),
            TAG_FALSE => Value::Boolean(false),
            TAG_TRUE => Value::Boolean(true),
            TAG_STRING => Value::String(self.string()?),
            TAG_BYTES => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            TAG_ARRAY => {
                let n = self.varint()?;
                // Cap the pre-allocation: `n` comes from disk and is checked only as items decode.
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            TAG_OBJECT => {
                let n = self.varint()?;
                let mut fields = Object::new();
                for _ in 0..n {
                    let k = self.string()?;
                    let v = self.value(depth + 1)?;
                    fields.insert(k, v);
                }
                Value::Object(fields)
            }
            _ => {
                return Err(CorruptBody {
                    offset: self.pos - 1,
                    reason: "unknown tag",
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let mut inner = Object::new();
        inner.insert("z".into(), Value::Bytes(vec![0, 255, 7]));
        let mut fields = Object::new();
        fields.insert("n".into(), Value::Null);
        fields.insert("i".into(), Value::Int64(-5));
        fields.insert("f".into(), Value::Float64(-0.0));
        fields.insert("nan".into(), Value::Float64(f64::NAN));
        fields.insert("b".into(), Value::Boolean(true));
        fields.insert("s".into(), Value::String("héllo".repeat(50)));
        fields.insert(
            "a".into(),
            Value::Array(vec![Value::Boolean(false), Value::Object(inner)]),
        );
        let bytes = encode_fields(&fields);
        let back = decode_fields(&bytes).unwrap();
        assert_eq!(back, fields);
        // -0.0 and 0.0 are distinct under the total order, so this checks bit-exactness.
        assert_ne!(back.get("f"), Some(&Value::Float64(0.0)));
    }

    #[test]
    fn rejects_corrupt_input() {
        assert!(decode_fields(&[]).is_err());
        assert!(decode_fields(&[TAG_NULL]).is_err());
        assert!(decode_fields(&[TAG_OBJECT, 1, 1, b'a', TAG_STRING, 200]).is_err());
        assert!(decode_fields(&[TAG_OBJECT, 0, 0]).is_err());
        assert!(decode_fields(&[TAG_OBJECT, 1, 1, b'a', 99]).is_err());
    }
}
