//! The commit log: what each commit touched, as index keys per index, so live queries can find the
//! subscriptions whose read ranges overlap a commit without re-running the others.

use std::sync::Arc;

use crate::Timestamp;

/// Stable numeric id of an index (including `by_creation_time` and `by_id`) within a store.
pub type IndexId = u32;

/// A range of index keys a query read: `[start, end)` in encoded-key bytes (`end = None` = unbounded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRange {
    pub index: IndexId,
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    pub ranges: Vec<ReadRange>,
}

/// An index key written (old or new entry) by a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenKey {
    pub index: IndexId,
    pub key: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    pub keys: Vec<WrittenKey>,
}

impl ReadSet {
    pub fn overlaps(&self, _writes: &WriteSet) -> bool {
        todo!()
    }
}

/// In-memory log of recent commits, bounded; subscribers read it to decide what to re-run.
pub struct CommitLog {
    _private: (),
}

impl CommitLog {
    /// Commits after `since`, oldest first: (ts, writes).
    pub fn since(&self, _since: Timestamp) -> Vec<(Timestamp, Arc<WriteSet>)> {
        todo!()
    }
}
