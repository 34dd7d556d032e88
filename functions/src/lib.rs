//! Ticket Hub: an event-ticketing marketplace backend written in the Convex functions model,
//! using only the runtime's public API (the way an outside user would write an app).
//!
//! Module map:
//! - [`users`]: the `users` table: Clerk-synced profile rows, Stripe Connect ids, `users:current`,
//!   and `users:applyClerkEvent`, the one transaction a verified Clerk delivery runs.
//! - [`events`]: events, availability, joining the waiting list, purchasing, seller metrics.
//! - [`tickets`]: ticket look-ups and status changes.
//! - [`ticket_counts`]: tickets per status of each event, kept with every ticket write, so
//!   counts read one row however many tickets an event has.
//! - [`waiting_list`]: queue positions, offers (30 minutes), expiry, release, `processQueue`.
//! - [`http`]: HTTP routes (`POST /clerk-users-webhook`, `POST /stripe-webhook`).
//! - [`payments`]: the Stripe webhook: a completed checkout issues the ticket, a refund marks it
//!   `refunded`, each event exactly once (`stripeEvents`); refused purchases are kept in
//!   `purchaseRefusals` for the organizer to refund (`payments:getPurchaseRefusals`).
//! - [`crons`]: recurring jobs (`cleanup-expired-offers`, every minute).
//! - [`auth_checks`]: "may this caller act for that user?" (no check when auth is off).
//! - [`rate_limit`]: a fixed-window limiter stored in the `rateLimits` table.
//! - [`storage`]: event images: upload URLs, file URLs, setting an event's image, deleting one.
//! - `returns`: return validators shared by the modules (documents derived from `schema.toml`).
//! - [`clerk`]: mapping Clerk's user JSON to our row (primary email by id, name fallbacks).
//! - [`stripe`]: mapping Stripe's event JSON to a purchase or a refund.
//!
//! Tables (see `schema.toml`): `users`, `events`, `tickets`, `waitingList`, and app-internal
//! bookkeeping: `webhookDeliveries` (svix-id dedupe), `userTombstones` (deleted Clerk users
//! are never resurrected), `clerkSync` (latest applied Clerk event time per user),
//! `rateLimits`, `ticketCounts`, `stripeEvents` (Stripe event-id dedupe), `purchaseRefusals`.

pub mod auth_checks;
pub mod clerk;
pub mod crons;
pub mod events;
pub mod http;
pub mod payments;
pub mod rate_limit;
pub(crate) mod returns;
pub mod storage;
pub mod stripe;
pub mod ticket_counts;
pub mod tickets;
pub mod users;
pub mod waiting_list;

use tickethub_runtime::{App, DatabaseReader, DatabaseWriter, Doc, FnError, Query, Value};

/// The app's tables, fields and indexes (the server opens the store with it).
pub const SCHEMA: &str = include_str!("../../schema.toml");

/// Every function, route and cron of Ticket Hub.
pub fn app() -> App {
    let mut app = App::new();
    users::register(&mut app);
    events::register(&mut app);
    tickets::register(&mut app);
    waiting_list::register(&mut app);
    payments::register(&mut app);
    http::register(&mut app);
    crons::register(&mut app);
    storage::register(&mut app);
    app
}

/// `{...doc, [key]: value}`: a document with one joined field, as the predecessor's
/// `{...ticket, event}` returns.
pub(crate) fn doc_with(doc: &Doc, key: &str, value: Value) -> Value {
    let mut object = match doc.to_value() {
        Value::Object(object) => object,
        // `Doc::to_value` always yields an object; keep the fields if that ever changes.
        _ => doc.fields.clone(),
    };
    object.insert(key.to_string(), value);
    Value::Object(object)
}

/// A document as a value, or `null`.
pub(crate) fn doc_or_null(doc: Option<Doc>) -> Value {
    doc.map_or(Value::Null, |doc| doc.to_value())
}

/// Reads shared by queries and mutations: helpers such as availability counts run in both.
pub(crate) trait ReadDb {
    fn get_doc(&self, id: &str) -> Result<Option<Doc>, FnError>;
    fn table(&self, table: &str) -> Query<'_>;
}

impl ReadDb for DatabaseReader<'_> {
    fn get_doc(&self, id: &str) -> Result<Option<Doc>, FnError> {
        self.get(id)
    }
    fn table(&self, table: &str) -> Query<'_> {
        self.query(table)
    }
}

impl ReadDb for DatabaseWriter<'_> {
    fn get_doc(&self, id: &str) -> Result<Option<Doc>, FnError> {
        self.get(id)
    }
    fn table(&self, table: &str) -> Query<'_> {
        self.query(table)
    }
}
