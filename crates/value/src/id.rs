//! Convex document IDs: varint(table number) ++ 16-byte internal id (14 random bytes +
//! 2-byte big-endian day number) ++ 2-byte footer (Fletcher-16, little endian), base32 with the
//! lowercase Crockford alphabet, no padding. Decoding is strict.

/// A table's number; user tables start at 10001.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableNumber(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId {
    pub table: TableNumber,
    pub internal: [u8; 16],
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("Invalid ID \"{id}\": {reason}")]
    Malformed { id: String, reason: &'static str },
}

impl DocumentId {
    /// A fresh random id for `table`, stamped with today's day number (days since the epoch).
    pub fn new_random(_table: TableNumber, _unix_ms: u64) -> DocumentId {
        todo!()
    }
    pub fn encode(&self) -> String {
        todo!()
    }
    pub fn decode(_s: &str) -> Result<DocumentId, IdError> {
        todo!()
    }
}

impl std::fmt::Display for DocumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}
