//! Several nodes over one Postgres (cluster mode, `--node-id`): one leader writes, every node
//! reads, and leadership moves through the database when the leader dies.
//!
//! - **The lease** is the `writer_lease` row: an epoch, the holder, its advertised URL and
//!   `renewed_at`, always on the database's clock (`now()`), so the nodes' clocks do not matter.
//!   The leader's watcher renews it every `ttl / 3`; every commit checks the epoch in its own
//!   transaction (the fencing token, `postgres.rs`). A node takes the lease over only once
//!   `renewed_at < now() - ttl`, bumping the epoch in the same statement, so a leader that was
//!   paused (SIGSTOP) and wakes late can no longer commit. No advisory lock: a paused leader
//!   keeps its session, and that must not block the takeover.
//! - **Followers** open the store without a writer (snapshots read Postgres's latest committed
//!   state); the runtime forwards their mutations and actions to the leader's URL.
//! - **The commit log** (`commit_log` table) carries each commit's write set, written by the
//!   leader in the commit's transaction, followed by a NOTIFY. A follower's watcher LISTENs on a
//!   dedicated connection, and also polls every `poll_every` and after a reconnect (a NOTIFY can
//!   be lost), then feeds the commits into the store's commit log and hooks, so live queries
//!   work on every node unchanged. Each row names the commit before it (`prev_ts`): a follower
//!   that finds a gap (rows trimmed while it was away) feeds a commit that invalidates
//!   everything.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use postgres::fallible_iterator::FallibleIterator;

use crate::log::WrittenKey;
use crate::postgres::{Conn, PgWriter};
use crate::store::Inner;
use crate::{CommitInfo, PostgresLocation, Store, StoreError, Timestamp, WriteSet};

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// This node's name (`--node-id`), shown in the lease row, logs and metrics.
    pub node_id: String,
    /// How the other nodes reach this one over HTTP (`--advertise-url`), stored in the lease row
    /// while this node leads.
    pub advertise_url: String,
    /// How long a lease lives without renewal: the failover time (`--lease-ttl-ms`).
    pub lease_ttl: Duration,
    /// Longest a follower goes without reading the commit log when no NOTIFY arrives.
    pub poll_every: Duration,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Not in cluster mode.
    Single,
    Leader,
    Follower,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Single => "single",
            NodeRole::Leader => "leader",
            NodeRole::Follower => "follower",
        }
    }
}

const ROLE_FOLLOWER: u8 = 0;
const ROLE_LEADER: u8 = 1;

/// Commit-log rows one poll reads at most (it reads again at once while rows keep coming).
const FEED_PAGE: i64 = 1000;
/// How far back (in commit-timestamp nanoseconds) the leader keeps commit-log rows: followers
/// that fall further behind see a gap and re-run every live query.
const COMMIT_LOG_KEEP_NS: i64 = 5 * 60 * 1_000_000_000;
/// How often the leader trims the commit log.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// The state the store and the watcher thread share.
pub(crate) struct ClusterState {
    options: ClusterOptions,
    role: AtomicU8,
    leader_url: RwLock<Option<String>>,
    closed: AtomicBool,
    /// The database, for a follower's read-only catalog refresh ([`ClusterState::follower_catalog`]).
    at: PostgresLocation,
    durable: bool,
}

impl ClusterState {
    pub(crate) fn role(&self) -> NodeRole {
        match self.role.load(Ordering::Acquire) {
            ROLE_LEADER => NodeRole::Leader,
            _ => NodeRole::Follower,
        }
    }
    pub(crate) fn leader_url(&self) -> Option<String> {
        self.leader_url.read().clone()
    }
    pub(crate) fn node_id(&self) -> &str {
        &self.options.node_id
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
    /// On a follower: the catalog of `schema` as the leader migrated the database to it, found
    /// by the same migration run in a transaction that is rolled back (as at a follower's
    /// start). The leader commits a push's tables before its modules, so a follower that
    /// reloads the push on seeing the modules' commit finds every table and index in place.
    pub(crate) fn follower_catalog(
        &self,
        schema: &crate::Schema,
    ) -> Result<crate::catalog::Catalog, StoreError> {
        Ok(crate::postgres::dry_run_migration(&self.at, self.durable, schema)?.catalog)
    }
}

/// The commit log's NOTIFY channel: one per schema, so deployments sharing a database do not
/// wake each other.
fn channel(schema: &str) -> String {
    format!("tickethub_commits_{schema}")
}

/// A write set as one `bytea`: per key, the index id and the key's length (both u32 big endian),
/// then the key.
pub(crate) fn encode_keys(writes: &WriteSet) -> Vec<u8> {
    let mut out = Vec::with_capacity(writes.keys.iter().map(|k| 8 + k.key.len()).sum());
    for key in &writes.keys {
        out.extend_from_slice(&key.index.to_be_bytes());
        out.extend_from_slice(&(key.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&key.key);
    }
    out
}

fn decode_keys(mut bytes: &[u8]) -> Result<Vec<WrittenKey>, StoreError> {
    let mut keys = Vec::new();
    let malformed = || StoreError::storage("a malformed commit-log row");
    while !bytes.is_empty() {
        let (head, rest) = bytes.split_at_checked(8).ok_or_else(malformed)?;
        let index = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        let (key, rest) = rest.split_at_checked(len).ok_or_else(malformed)?;
        keys.push(WrittenKey {
            index,
            key: key.to_vec(),
        });
        bytes = rest;
    }
    Ok(keys)
}

/// Try to take the lease: only when it is missing or expired on the database's clock. Returns the
/// new epoch when this node now leads.
fn try_take_lease(conn: &mut Conn, options: &ClusterOptions) -> Result<Option<i64>, StoreError> {
    let ttl_ms = options.lease_ttl.as_millis() as f64;
    let rows = conn.query(
        "INSERT INTO writer_lease (id, epoch, holder, advertise_url) VALUES (1, 1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET epoch = writer_lease.epoch + 1, holder = excluded.holder, \
         advertise_url = excluded.advertise_url, acquired_at = now(), renewed_at = now() \
         WHERE writer_lease.renewed_at < now() - make_interval(secs => $3::float8 / 1000.0) \
         RETURNING epoch",
        &[&options.node_id, &options.advertise_url, &ttl_ms],
    )?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// The lease as a node sees it.
struct LeaseRow {
    epoch: i64,
    holder: String,
    advertise_url: String,
    expired: bool,
}

fn read_lease(conn: &mut Conn, ttl: Duration) -> Result<Option<LeaseRow>, StoreError> {
    let ttl_ms = ttl.as_millis() as f64;
    let rows = conn.query(
        "SELECT epoch, holder, advertise_url, renewed_at < now() - make_interval(secs => $1::float8 / 1000.0) FROM writer_lease WHERE id = 1",
        &[&ttl_ms],
    )?;
    Ok(rows.first().map(|r| LeaseRow {
        epoch: r.get(0),
        holder: r.get(1),
        advertise_url: r.get(2),
        expired: r.get(3),
    }))
}

/// Read the commit-log rows after `after`; `None` when none are new.
fn read_commits(conn: &mut Conn, after: Timestamp) -> Result<Vec<CommitInfo>, StoreError> {
    let rows = conn.query(
        "SELECT ts, prev_ts, everything, keys FROM commit_log WHERE ts > $1 ORDER BY ts LIMIT $2",
        &[&(after.0 as i64), &FEED_PAGE],
    )?;
    let mut commits = Vec::with_capacity(rows.len() + 1);
    for (i, row) in rows.iter().enumerate() {
        let ts = Timestamp(row.get::<_, i64>(0) as u64);
        let prev = Timestamp(row.get::<_, i64>(1) as u64);
        if i == 0 && prev > after {
            // Rows between `after` and this one were trimmed: which keys they wrote is unknown,
            // so every live query re-runs.
            commits.push(CommitInfo {
                ts: prev,
                writes: Arc::new(WriteSet {
                    keys: Vec::new(),
                    everything: true,
                }),
            });
        }
        commits.push(CommitInfo {
            ts,
            writes: Arc::new(WriteSet {
                keys: decode_keys(row.get(3))?,
                everything: row.get(2),
            }),
        });
    }
    Ok(commits)
}

/// Open a cluster node: take the lease if it is free (this node leads: migrate and write), else
/// follow (no writer; the schema is checked in a transaction that is rolled back).
pub(crate) fn open(
    at: &PostgresLocation,
    cluster: ClusterOptions,
    schema: crate::Schema,
    options: crate::StoreOptions,
) -> Result<Store, StoreError> {
    crate::postgres::check_schema_name(&at.schema)?;
    // Creates the schema when missing, as the writer does.
    let mut conn = PgWriter::connect_writer(at, true)?;
    conn.client.batch_execute(crate::postgres::CREATE_TABLES)?;
    let options_durable = options.durable;
    let taken = try_take_lease(&mut conn, &cluster)?;
    let state = Arc::new(ClusterState {
        options: cluster.clone(),
        role: AtomicU8::new(ROLE_FOLLOWER),
        leader_url: RwLock::new(None),
        closed: AtomicBool::new(false),
        at: at.clone(),
        durable: options.durable,
    });
    let store = match taken {
        Some(epoch) => {
            let writer = PgWriter::for_cluster(at, options.durable, epoch, channel(&at.schema))?;
            state.role.store(ROLE_LEADER, Ordering::Release);
            *state.leader_url.write() = Some(cluster.advertise_url.clone());
            tracing::info!(node = %cluster.node_id, epoch, role = "leader", "cluster: this node took the lease and leads");
            crate::postgres::open_node(at, schema, options, Some(writer), state.clone())?
        }
        None => {
            tracing::info!(node = %cluster.node_id, role = "follower", "cluster: another node leads; this node follows");
            crate::postgres::open_node(at, schema, options, None, state.clone())?
        }
    };
    let weak = store.downgrade();
    let at = at.clone();
    let durable = options_durable;
    std::thread::Builder::new()
        .name("cluster-watcher".into())
        .spawn(move || Watcher::new(weak, at, state, durable).run())
        .map_err(|e| StoreError::storage(format!("spawning the cluster watcher: {e}")))?;
    Ok(store)
}

/// The watcher thread: renews the lease while leading, follows the commit log otherwise, and
/// takes over when the lease expires.
struct Watcher {
    store: Weak<Inner>,
    at: PostgresLocation,
    state: Arc<ClusterState>,
    durable: bool,
    conn: Option<Conn>,
    /// The newest commit fed (followers) or made (leader).
    seen: Timestamp,
    /// The epoch this node holds while leading.
    epoch: Option<i64>,
    last_trim: Instant,
}

impl Watcher {
    fn new(
        store: Weak<Inner>,
        at: PostgresLocation,
        state: Arc<ClusterState>,
        durable: bool,
    ) -> Watcher {
        let seen = Store::from_weak(&store)
            .map(|s| s.latest_ts())
            .unwrap_or_default();
        Watcher {
            store,
            at,
            state,
            durable,
            conn: None,
            seen,
            epoch: None,
            last_trim: Instant::now(),
        }
    }

    fn run(mut self) {
        if self.state.role() == NodeRole::Leader {
            // The epoch taken at open is the lease row's current one.
            self.epoch = self.read_epoch();
        }
        let renew_every = self.state.options.lease_ttl / 3;
        let wait = self.state.options.poll_every.min(renew_every);
        while !self.state.is_closed() {
            let Some(store) = Store::from_weak(&self.store) else {
                return;
            };
            if let Err(e) = self.step(&store) {
                tracing::warn!(node = %self.state.options.node_id, error = %e, "cluster: a watcher step failed; retrying");
                self.conn = None;
                drop(store);
                std::thread::sleep(wait.min(Duration::from_millis(500)));
                continue;
            }
            drop(store);
            self.wait(wait);
        }
    }

    fn read_epoch(&mut self) -> Option<i64> {
        let ttl = self.state.options.lease_ttl;
        let conn = self.conn().ok()?;
        read_lease(conn, ttl).ok().flatten().map(|l| l.epoch)
    }

    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.as_ref().is_none_or(Conn::is_closed) {
            let mut conn = Conn::connect(&self.at, "watcher")?;
            conn.client
                .batch_execute(&format!("LISTEN \"{}\"", channel(&self.at.schema)))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Wait for a NOTIFY, at most `wait`; then drain the ones already queued.
    fn wait(&mut self, wait: Duration) {
        let Some(conn) = self.conn.as_mut() else {
            std::thread::sleep(wait);
            return;
        };
        let mut notifications = conn.client.notifications();
        let mut iter = notifications.timeout_iter(wait);
        if let Ok(Some(_)) = iter.next() {
            // More may be queued; one read of the log covers them all.
            drop(iter);
            let mut pending = notifications.iter();
            while let Ok(Some(_)) = pending.next() {}
        }
    }

    fn step(&mut self, store: &Store) -> Result<(), StoreError> {
        let options = self.state.options.clone();
        let lease = read_lease(self.conn()?, options.lease_ttl)?;
        match (self.epoch, lease) {
            (Some(ours), Some(lease)) if lease.epoch == ours => {
                // Still leading: renew, and now and then trim the commit log.
                let renewed = self.conn()?.execute(
                    "UPDATE writer_lease SET renewed_at = now() WHERE id = 1 AND epoch = $1",
                    &[&ours],
                )?;
                if renewed != 1 {
                    self.deposed(store, "the lease moved while renewing");
                } else if self.last_trim.elapsed() >= TRIM_EVERY {
                    self.last_trim = Instant::now();
                    self.conn()?.execute(
                        "DELETE FROM commit_log WHERE ts < (SELECT max(ts) FROM commit_log) - $1",
                        &[&COMMIT_LOG_KEEP_NS],
                    )?;
                }
                self.seen = store.latest_ts();
                Ok(())
            }
            (Some(_), lease) => {
                let holder = lease.as_ref().map(|l| l.holder.clone()).unwrap_or_default();
                self.deposed(store, &format!("node {holder:?} holds the lease now"));
                // Writes sent here go to the new leader at once, not after the next poll.
                *self.state.leader_url.write() = lease
                    .filter(|l| !l.expired && !l.advertise_url.is_empty())
                    .map(|l| l.advertise_url);
                self.follow(store)
            }
            (None, lease) => {
                let expired = lease.as_ref().is_none_or(|l| l.expired);
                *self.state.leader_url.write() = lease
                    .as_ref()
                    .filter(|l| !l.expired && !l.advertise_url.is_empty())
                    .map(|l| l.advertise_url.clone());
                self.follow(store)?;
                if expired {
                    self.take_over(store)?;
                }
                Ok(())
            }
        }
    }

    /// Feed the commits made since the last one seen.
    fn follow(&mut self, store: &Store) -> Result<(), StoreError> {
        loop {
            let seen = self.seen;
            let commits = read_commits(self.conn()?, seen)?;
            let Some(last) = commits.last() else {
                return Ok(());
            };
            self.seen = last.ts;
            let full = commits.len() as i64 >= FEED_PAGE;
            store.feed_commits(&commits);
            if !full {
                return Ok(());
            }
        }
    }

    fn take_over(&mut self, store: &Store) -> Result<(), StoreError> {
        let options = self.state.options.clone();
        let Some(epoch) = try_take_lease(self.conn()?, &options)? else {
            return Ok(());
        };
        // From here the old leader cannot commit (its epoch check fails): what the log holds now
        // is everything, so feed it all before writing anything new.
        self.follow(store)?;
        let mut writer =
            PgWriter::for_cluster(&self.at, self.durable, epoch, channel(&self.at.schema))?;
        let stored = writer.stored_meta()?;
        store.promote(
            Box::new(writer),
            stored.last_ts.max(self.seen),
            stored.last_creation,
        )?;
        self.epoch = Some(epoch);
        self.state.role.store(ROLE_LEADER, Ordering::Release);
        *self.state.leader_url.write() = Some(options.advertise_url.clone());
        tracing::info!(node = %options.node_id, epoch, role = "leader", last_ts = stored.last_ts.0, "cluster: the lease had expired; this node took it over and leads");
        Ok(())
    }

    fn deposed(&mut self, store: &Store, why: &str) {
        tracing::error!(node = %self.state.options.node_id, role = "follower", "cluster: this node lost the lease ({why}); it stops writing and follows");
        self.epoch = None;
        self.state.role.store(ROLE_FOLLOWER, Ordering::Release);
        *self.state.leader_url.write() = None;
        store.demote();
        self.seen = store.latest_ts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sets_round_trip_through_the_commit_log_encoding() {
        let writes = WriteSet {
            keys: vec![
                WrittenKey {
                    index: 7,
                    key: vec![1, 2, 3],
                },
                WrittenKey {
                    index: u32::MAX,
                    key: Vec::new(),
                },
            ],
            everything: false,
        };
        assert_eq!(decode_keys(&encode_keys(&writes)).unwrap(), writes.keys);
        assert!(decode_keys(&[0, 0, 0, 1, 0, 0, 0, 9, 1]).is_err());
    }
}
