//! The Convex WebSocket sync protocol (wire-protocol.md §4), so `ConvexClient`,
//! `ConvexReactClient` and `useQuery` work unmodified.
//!
//! - [`protocol`]: the messages, exactly as the official client encodes them.
//! - [`hub`]: [`SyncHub`], shared by all connections: commit fan-out through a `watch` channel, a
//!   bounded log of write sets, a per-snapshot memo of query results, metrics.
//! - [`session`]: one connection: its query set, identity and versions; targeted re-runs;
//!   mutation acknowledgement; heartbeat; backpressure.
//!
//! The router upgrades the HTTP request and hands the socket to [`serve`].

pub mod hub;
pub mod protocol;
mod ranges;
pub mod session;

pub use hub::{SyncAuth, SyncHub, SyncMetrics, SyncOptions};
pub use protocol::TokenType;
pub use session::serve;
