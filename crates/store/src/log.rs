//! The commit log: what each commit touched, as index keys per index, so live queries can find the
//! subscriptions whose read ranges overlap a commit without re-running the others.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Timestamp;

/// Stable numeric id of an index (including `by_creation_time` and `by_id`) within a store.
/// Ids are never reused, so a read set can never be confused with a later index of the same name.
pub type IndexId = u32;

/// A range of index keys a query read: `[start, end)` in encoded-key bytes (`end = None` = unbounded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRange {
    pub index: IndexId,
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl ReadRange {
    pub fn contains(&self, index: IndexId, key: &[u8]) -> bool {
        self.index == index
            && self.start.as_slice() <= key
            && self.end.as_deref().is_none_or(|end| key < end)
    }
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
    /// A bulk commit (an import, a table cleared): it lists no keys, and every read of any
    /// table may have changed. Live queries re-run everything.
    pub everything: bool,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && !self.everything
    }
}

impl ReadSet {
    /// True when some written key falls inside some read range of the same index: the reader
    /// might see a different result now.
    pub fn overlaps(&self, writes: &WriteSet) -> bool {
        writes.everything
            || writes
                .keys
                .iter()
                .any(|w| self.ranges.iter().any(|r| r.contains(w.index, &w.key)))
    }
}

/// In-memory log of recent commits, bounded (the `COMMIT_LOG_CAPACITY` knob), oldest first.
/// Live queries read it to decide what to re-run. Timestamps strictly increase along the log, so
/// "the commits after `ts`" is a binary search, not a scan.
pub struct CommitLog {
    inner: Mutex<LogInner>,
}

struct LogInner {
    entries: VecDeque<(Timestamp, Arc<WriteSet>)>,
    /// Timestamp of the newest entry evicted: commits after it are all still in `entries`.
    evicted_through: Timestamp,
    capacity: usize,
}

impl LogInner {
    /// Index of the first entry newer than `since`.
    fn first_after(&self, since: Timestamp) -> usize {
        self.entries.partition_point(|(ts, _)| *ts <= since)
    }
}

impl CommitLog {
    pub(crate) fn new(capacity: usize, start: Timestamp) -> CommitLog {
        CommitLog {
            inner: Mutex::new(LogInner {
                entries: VecDeque::new(),
                evicted_through: start,
                capacity: capacity.max(1),
            }),
        }
    }

    /// Most commits kept.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    pub(crate) fn push(&self, ts: Timestamp, writes: Arc<WriteSet>) {
        let mut inner = self.inner.lock();
        debug_assert!(inner.entries.back().is_none_or(|(last, _)| *last < ts));
        if inner.entries.len() == inner.capacity {
            if let Some((old, _)) = inner.entries.pop_front() {
                inner.evicted_through = old;
            }
        }
        inner.entries.push_back((ts, writes));
    }

    /// Commits after `since`, oldest first: (ts, writes).
    pub fn since(&self, since: Timestamp) -> Vec<(Timestamp, Arc<WriteSet>)> {
        let inner = self.inner.lock();
        let first = inner.first_after(since);
        inner.entries.range(first..).cloned().collect()
    }

    /// Like [`CommitLog::since`], but `None` when some commit after `since` has been evicted, so
    /// the caller cannot know what changed and must re-run its query.
    pub fn since_complete(&self, since: Timestamp) -> Option<Vec<(Timestamp, Arc<WriteSet>)>> {
        let inner = self.inner.lock();
        if since < inner.evicted_through {
            return None;
        }
        let first = inner.first_after(since);
        Some(inner.entries.range(first..).cloned().collect())
    }

    /// Whether any commit in `(since, through]` overlaps `reads`; `true` also when the log no
    /// longer reaches back to `since` (be safe: re-run).
    pub fn changed_between(&self, since: Timestamp, through: Timestamp, reads: &ReadSet) -> bool {
        let inner = self.inner.lock();
        if since < inner.evicted_through {
            return true;
        }
        let first = inner.first_after(since);
        inner
            .entries
            .range(first..)
            .take_while(|(ts, _)| *ts <= through)
            .any(|(_, writes)| reads.overlaps(writes))
    }

    /// Whether any commit after `since` overlaps `reads`; `true` also when the log no longer
    /// reaches back to `since` (be safe: re-run).
    pub fn changed_since(&self, since: Timestamp, reads: &ReadSet) -> bool {
        self.changed_between(since, Timestamp(u64::MAX), reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(index: IndexId, key: &[u8]) -> WriteSet {
        WriteSet {
            keys: vec![WrittenKey {
                index,
                key: key.to_vec(),
            }],
            everything: false,
        }
    }

    #[test]
    fn overlap_is_per_index_and_half_open() {
        let reads = ReadSet {
            ranges: vec![ReadRange {
                index: 1,
                start: b"b".to_vec(),
                end: Some(b"d".to_vec()),
            }],
        };
        assert!(reads.overlaps(&written(1, b"b")));
        assert!(reads.overlaps(&written(1, b"c\xff")));
        assert!(!reads.overlaps(&written(1, b"d")));
        assert!(!reads.overlaps(&written(1, b"a")));
        assert!(!reads.overlaps(&written(2, b"c")));
        let open = ReadSet {
            ranges: vec![ReadRange {
                index: 1,
                start: vec![],
                end: None,
            }],
        };
        assert!(open.overlaps(&written(1, b"\xff\xff")));
    }

    #[test]
    fn log_is_bounded_and_reports_gaps() {
        let log = CommitLog::new(2, Timestamp(0));
        for t in 1..=3 {
            log.push(Timestamp(t), Arc::new(written(1, &[t as u8])));
        }
        assert_eq!(log.since(Timestamp(0)).len(), 2);
        assert!(log.since_complete(Timestamp(0)).is_none());
        assert_eq!(log.since_complete(Timestamp(1)).unwrap().len(), 2);
        assert_eq!(log.since_complete(Timestamp(2)).unwrap().len(), 1);
        let reads = ReadSet {
            ranges: vec![ReadRange {
                index: 1,
                start: vec![3],
                end: Some(vec![4]),
            }],
        };
        assert!(log.changed_since(Timestamp(2), &reads));
        assert!(!log.changed_since(Timestamp(3), &reads));
        assert!(!log.changed_between(Timestamp(1), Timestamp(2), &reads));
        assert!(log.changed_between(Timestamp(0), Timestamp(1), &reads));
    }

    #[test]
    fn since_finds_the_first_newer_commit_by_binary_search() {
        let log = CommitLog::new(100, Timestamp(0));
        for t in (10..=50).step_by(10) {
            log.push(Timestamp(t), Arc::new(written(1, &[t as u8])));
        }
        let tss =
            |v: Vec<(Timestamp, Arc<WriteSet>)>| v.iter().map(|(t, _)| t.0).collect::<Vec<_>>();
        assert_eq!(tss(log.since(Timestamp(0))), vec![10, 20, 30, 40, 50]);
        assert_eq!(tss(log.since(Timestamp(25))), vec![30, 40, 50]);
        assert_eq!(tss(log.since(Timestamp(30))), vec![40, 50]);
        assert!(log.since(Timestamp(50)).is_empty());
    }
}
