//! The waiting list: each entry is `waiting`, `offered` (with `offerExpiresAt`), `purchased`
//! or `expired`. An offer lasts [`OFFER_DURATION_MS`]; its expiry is scheduled when it is made
//! (`waitingList:expireOffer`), and a cron sweeps any offer whose job did not run
//! (`waitingList:cleanupExpiredOffers`). Every change that can free a spot runs the queue in
//! the same transaction, so spots never sit idle between two mutations.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tickethub_runtime::Args;
use tickethub_runtime::{App, Doc, FnError, LogLevel, MutationCtx, NoArgs, Order, QueryCtx, Value};

use crate::auth_checks::ensure_acting_for;
use crate::events::{availability, Event};
use crate::{doc_with, returns, ReadDb};
use tickethub_runtime::v;

pub(crate) const WAITING_LIST: &str = "waitingList";

/// How long a ticket offer lasts: 30 minutes.
pub const OFFER_DURATION_MS: f64 = 30.0 * 60.0 * 1000.0;

pub fn register(app: &mut App) {
    app.query("waitingList:getQueuePosition", get_queue_position)
        .returns(v::nullable(returns::doc_with(
            WAITING_LIST,
            [("position", v::number())],
        )));
    app.mutation("waitingList:processQueue", process_queue_fn)
        .returns(v::null());
    app.internal_mutation("waitingList:expireOffer", expire_offer)
        .returns(v::null());
    app.internal_mutation("waitingList:cleanupExpiredOffers", cleanup_expired_offers)
        .returns(v::null());
    app.mutation("waitingList:releaseTicket", release_ticket)
        .returns(v::null());
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WaitingStatus {
    Waiting,
    Offered,
    Purchased,
    Expired,
}

impl WaitingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingStatus::Waiting => "waiting",
            WaitingStatus::Offered => "offered",
            WaitingStatus::Purchased => "purchased",
            WaitingStatus::Expired => "expired",
        }
    }
}

/// A row of `waitingList`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaitingEntry {
    #[serde(rename = "_id")]
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    pub status: WaitingStatus,
}

pub(crate) fn load_entry(db: &impl ReadDb, id: &str) -> Result<Option<WaitingEntry>, FnError> {
    db.get_doc(id)?.map(|doc| doc.parse()).transpose()
}

/// The user's entry for the event that is not `expired` (at most one, enforced on join).
pub(crate) fn current_entry(
    db: &impl ReadDb,
    user_id: &str,
    event_id: &str,
) -> Result<Option<Doc>, FnError> {
    let (user_id, event_id) = (user_id.to_string(), event_id.to_string());
    db.table(WAITING_LIST)
        .with_index("by_user_event", move |q| {
            q.eq("userId", user_id).eq("eventId", event_id)
        })
        .filter(|doc| doc.get_str("status") != Some(WaitingStatus::Expired.as_str()))
        .first()
}

/// `offered` entries whose offer has not yet expired at `now_ms`. Only those are read (the
/// index ends in `offerExpiresAt`), not the expired offers the sweep has yet to mark.
pub(crate) fn active_offers(
    db: &impl ReadDb,
    event_id: &str,
    now_ms: f64,
) -> Result<Vec<Doc>, FnError> {
    let event_id = event_id.to_string();
    db.table(WAITING_LIST)
        .with_index("by_event_status_expiry", move |q| {
            q.eq("eventId", event_id)
                .eq("status", WaitingStatus::Offered.as_str())
                .gt("offerExpiresAt", now_ms)
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewEntry<'a> {
    event_id: &'a str,
    user_id: &'a str,
    status: WaitingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    offer_expires_at: Option<f64>,
}

pub(crate) fn insert_entry(
    ctx: &MutationCtx,
    event_id: &str,
    user_id: &str,
    status: WaitingStatus,
    offer_expires_at: Option<f64>,
) -> Result<String, FnError> {
    ctx.db.insert(
        WAITING_LIST,
        NewEntry {
            event_id,
            user_id,
            status,
            offer_expires_at,
        },
    )
}

#[derive(Deserialize, Serialize, Args, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ExpireOfferArgs {
    #[arg(id = "waitingList")]
    pub waiting_list_id: String,
    #[arg(id = "events")]
    pub event_id: String,
}

/// Schedule `waitingList:expireOffer` for the offer at its expiry time.
pub(crate) fn schedule_expiry(
    ctx: &MutationCtx,
    entry_id: &str,
    event_id: &str,
    at_ms: f64,
) -> Result<(), FnError> {
    ctx.scheduler.run_at(
        at_ms,
        "waitingList:expireOffer",
        ExpireOfferArgs {
            waiting_list_id: entry_id.to_string(),
            event_id: event_id.to_string(),
        },
    )?;
    Ok(())
}

/// Offer free spots to the oldest `waiting` entries. Returns how many offers were made.
/// A cancelled event offers nothing.
pub(crate) fn process_queue(ctx: &MutationCtx, event_id: &str) -> Result<usize, FnError> {
    let event: Event = match ctx.db.get(event_id)? {
        Some(doc) => doc.parse()?,
        None => return Err(FnError::msg("Event not found")),
    };
    if event.is_cancelled() {
        return Ok(0);
    }
    let now = ctx.now_ms();
    let free = availability(&ctx.db, &event, now)?.available_spots;
    if free < 1.0 {
        return Ok(0);
    }
    let event_key = event.id.clone();
    let next = ctx
        .db
        .query(WAITING_LIST)
        .with_index("by_event_status", move |q| {
            q.eq("eventId", event_key)
                .eq("status", WaitingStatus::Waiting.as_str())
        })
        .order(Order::Asc)
        .take(free.floor() as usize)?;
    let expires_at = now + OFFER_DURATION_MS;
    for entry in &next {
        ctx.db.patch_fields(
            &entry.id,
            vec![
                (
                    "status".to_string(),
                    Some(Value::from(WaitingStatus::Offered.as_str())),
                ),
                ("offerExpiresAt".to_string(), Some(Value::from(expires_at))),
            ],
        )?;
        schedule_expiry(ctx, &entry.id, &event.id, expires_at)?;
    }
    Ok(next.len())
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct EventIdArgs {
    #[arg(id = "events")]
    pub event_id: String,
}

fn process_queue_fn(ctx: &MutationCtx, args: EventIdArgs) -> Result<Value, FnError> {
    process_queue(ctx, &args.event_id)?;
    Ok(Value::Null)
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct QueuePositionArgs {
    #[arg(id = "events")]
    pub event_id: String,
    pub user_id: String,
}

/// The user's non-expired entry with `position` = 1 + the `waiting`/`offered` entries of the
/// event created before it; or null.
fn get_queue_position(ctx: &QueryCtx, args: QueuePositionArgs) -> Result<Value, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let Some(entry) = current_entry(&ctx.db, &args.user_id, &args.event_id)? else {
        return Ok(Value::Null);
    };
    // Only the entries ahead are read: the index ends in `_creationTime`.
    let mut ahead = 0usize;
    for status in [WaitingStatus::Waiting, WaitingStatus::Offered] {
        let event_id = args.event_id.clone();
        ahead += ctx
            .db
            .query(WAITING_LIST)
            .with_index("by_event_status", move |q| {
                q.eq("eventId", event_id)
                    .eq("status", status.as_str())
                    .lt("_creationTime", entry.creation_time)
            })
            .collect()?
            .len();
    }
    Ok(doc_with(
        &entry,
        "position",
        Value::from((ahead + 1) as f64),
    ))
}

/// Expire one offer (no-op unless it is still `offered`), then run the queue.
fn expire_offer(ctx: &MutationCtx, args: ExpireOfferArgs) -> Result<Value, FnError> {
    let Some(entry) = load_entry(&ctx.db, &args.waiting_list_id)? else {
        return Ok(Value::Null);
    };
    if entry.status != WaitingStatus::Offered {
        return Ok(Value::Null);
    }
    mark_expired(ctx, &entry.id)?;
    if ctx.db.get(&entry.event_id)?.is_some() {
        process_queue(ctx, &entry.event_id)?;
    }
    Ok(Value::Null)
}

fn mark_expired(ctx: &MutationCtx, entry_id: &str) -> Result<(), FnError> {
    ctx.db.patch_fields(
        entry_id,
        vec![(
            "status".to_string(),
            Some(Value::from(WaitingStatus::Expired.as_str())),
        )],
    )
}

/// Offers one cleanup run expires at most; a full batch schedules the next run at once, so a
/// backlog drains over several bounded transactions instead of one unbounded one.
pub const CLEANUP_BATCH: usize = 1_000;

/// Expire every offer past its time, then run each affected event's queue. Returns null, as
/// the original does.
fn cleanup_expired_offers(ctx: &MutationCtx, _args: NoArgs) -> Result<Value, FnError> {
    let now = ctx.now_ms();
    let expired = ctx
        .db
        .query(WAITING_LIST)
        .with_index("by_status_expiry", move |q| {
            q.eq("status", WaitingStatus::Offered.as_str())
                .lte("offerExpiresAt", now)
        })
        .take(CLEANUP_BATCH)?;
    let mut events = BTreeSet::new();
    for entry in &expired {
        mark_expired(ctx, &entry.id)?;
        if let Some(event_id) = entry.get_str("eventId") {
            events.insert(event_id.to_string());
        }
    }
    for event_id in &events {
        // An event deleted out from under its entries has no queue to run.
        if ctx.db.get(event_id)?.is_some() {
            process_queue(ctx, event_id)?;
        }
    }
    if !expired.is_empty() {
        ctx.log(
            LogLevel::Info,
            format!(
                "Expired {} ticket offers across {} events",
                expired.len(),
                events.len()
            ),
        );
    }
    if expired.len() == CLEANUP_BATCH {
        ctx.scheduler.run_after(
            0.0,
            "waitingList:cleanupExpiredOffers",
            Value::Object(Default::default()),
        )?;
    }
    Ok(Value::Null)
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseTicketArgs {
    #[arg(id = "events")]
    pub event_id: String,
    #[arg(id = "waitingList")]
    pub waiting_list_id: String,
}

/// The offer's owner gives it back: the entry becomes `expired` and the next in line gets it.
fn release_ticket(ctx: &MutationCtx, args: ReleaseTicketArgs) -> Result<Value, FnError> {
    let entry = load_entry(&ctx.db, &args.waiting_list_id)?
        .filter(|entry| entry.status == WaitingStatus::Offered)
        .ok_or_else(|| FnError::msg("No valid ticket offer found"))?;
    ensure_acting_for(&ctx.auth, &entry.user_id)?;
    mark_expired(ctx, &entry.id)?;
    process_queue(ctx, &entry.event_id)?;
    Ok(Value::Null)
}
