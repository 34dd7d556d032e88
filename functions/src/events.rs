//! Events: listing, search, availability, the organizer's create/update/cancel, joining the
//! waiting list and purchasing a ticket from an offer.
//!
//! Availability: `availableSpots = totalTickets - purchased - activeOffers`, where purchased
//! counts `valid` and `used` tickets and active offers are `offered` waiting-list entries whose
//! `offerExpiresAt` is still in the future. Tickets are counted from the event's `ticketCounts`
//! row (see [`crate::ticket_counts`]), never ticket by ticket.

use serde::{Deserialize, Serialize};
use tickethub_runtime::Args;
use tickethub_runtime::{to_value, App, Doc, FnError, MutationCtx, NoArgs, QueryCtx, Value};

use crate::auth_checks::ensure_acting_for;
use crate::rate_limit::{self, JOIN_WAITING_LIST};
use crate::ticket_counts::{insert_tickets, ticket_counts};
use crate::tickets::{TicketStatus, TICKETS};
use crate::waiting_list::{self, WaitingStatus, OFFER_DURATION_MS, WAITING_LIST};
use crate::{doc_or_null, doc_with, returns, ReadDb};
use tickethub_runtime::v;

pub(crate) const EVENTS: &str = "events";

pub fn register(app: &mut App) {
    app.query("events:get", get)
        .returns(v::array(returns::doc(EVENTS)));
    app.query("events:getById", get_by_id)
        .returns(v::nullable(returns::doc(EVENTS)));
    app.mutation("events:create", create).returns(v::id(EVENTS));
    app.mutation("events:updateEvent", update_event)
        .returns(v::id(EVENTS));
    app.mutation("events:cancelEvent", cancel_event)
        .returns(v::object([("success", v::boolean())]));
    app.query("events:checkAvailability", check_availability)
        .returns(v::object([
            ("available", v::boolean()),
            ("availableSpots", v::number()),
            ("totalTickets", v::number()),
            ("purchasedCount", v::number()),
            ("activeOffers", v::number()),
        ]));
    app.query("events:getEventAvailability", get_event_availability)
        .returns(v::object([
            ("isSoldOut", v::boolean()),
            ("totalTickets", v::number()),
            ("purchasedCount", v::number()),
            ("activeOffers", v::number()),
            ("remainingTickets", v::number()),
        ]));
    app.mutation("events:joinWaitingList", join_waiting_list)
        .returns(v::object([
            ("success", v::boolean()),
            ("status", returns::field(WAITING_LIST, "status")),
            ("message", v::string()),
        ]));
    app.mutation("events:purchaseTicket", purchase_ticket)
        .returns(v::null());
    app.query("events:getUserTickets", get_user_tickets)
        .returns(v::array(returns::doc_with(
            TICKETS,
            [("event", v::nullable(returns::doc(EVENTS)))],
        )));
    app.query("events:getUserWaitingList", get_user_waiting_list)
        .returns(v::array(returns::doc_with(
            WAITING_LIST,
            [("event", v::nullable(returns::doc(EVENTS)))],
        )));
    app.query("events:search", search)
        .returns(v::array(returns::doc(EVENTS)));
    app.query("events:getSellerEvents", get_seller_events)
        .returns(v::array(returns::doc_with(
            EVENTS,
            [(
                "metrics",
                v::object([
                    ("soldTickets", v::number()),
                    ("refundedTickets", v::number()),
                    ("cancelledTickets", v::number()),
                    ("revenue", v::number()),
                ]),
            )],
        )));
}

/// A row of `events`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    #[serde(rename = "_id")]
    pub id: String,
    pub price: f64,
    pub total_tickets: f64,
    /// The organizer's Clerk id.
    pub user_id: String,
    #[serde(rename = "is_cancelled", default)]
    pub is_cancelled: Option<bool>,
}

impl Event {
    pub fn is_cancelled(&self) -> bool {
        self.is_cancelled == Some(true)
    }
}

/// The event `event_id`, or `Event not found`.
pub(crate) fn load_event(db: &impl ReadDb, event_id: &str) -> Result<Event, FnError> {
    match db.get_doc(event_id)? {
        Some(doc) => doc.parse(),
        None => Err(FnError::msg("Event not found")),
    }
}

/// Counts behind both availability queries and the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Availability {
    pub total_tickets: f64,
    /// `valid` + `used` tickets.
    pub purchased_count: f64,
    /// Offers not yet past `offerExpiresAt`.
    pub active_offers: f64,
    /// May be negative when the organizer lowered `totalTickets` below outstanding offers.
    pub available_spots: f64,
}

pub(crate) fn availability(
    db: &impl ReadDb,
    event: &Event,
    now_ms: f64,
) -> Result<Availability, FnError> {
    let purchased_count = ticket_counts(db, &event.id)?.sold();
    let active_offers = waiting_list::active_offers(db, &event.id, now_ms)?.len() as f64;
    Ok(Availability {
        total_tickets: event.total_tickets,
        purchased_count,
        active_offers,
        available_spots: event.total_tickets - (purchased_count + active_offers),
    })
}

fn get(ctx: &QueryCtx, _args: NoArgs) -> Result<Vec<Doc>, FnError> {
    ctx.db
        .query(EVENTS)
        .filter(|doc| !doc_is_cancelled(doc))
        .collect()
}

fn doc_is_cancelled(doc: &Doc) -> bool {
    doc.get("is_cancelled").and_then(Value::as_bool) == Some(true)
}

#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct EventIdArgs {
    #[arg(id = "events")]
    pub event_id: String,
}

fn get_by_id(ctx: &QueryCtx, args: EventIdArgs) -> Result<Option<Doc>, FnError> {
    ctx.db.get(&args.event_id)
}

#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventArgs {
    pub name: String,
    pub description: String,
    pub location: String,
    pub event_date: f64,
    pub price: f64,
    pub total_tickets: f64,
    pub user_id: String,
}

fn create(ctx: &MutationCtx, args: CreateEventArgs) -> Result<String, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    ctx.db.insert(EVENTS, &args)
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEventArgs {
    #[arg(id = "events")]
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub location: String,
    pub event_date: f64,
    pub price: f64,
    pub total_tickets: f64,
}

/// Refuses to go below the tickets already sold. Added capacity is offered to the queue at
/// once (the predecessor left waiting users waiting until some other change ran the queue).
fn update_event(ctx: &MutationCtx, args: UpdateEventArgs) -> Result<String, FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    ensure_acting_for(&ctx.auth, &event.user_id)?;
    let sold = ticket_counts(&ctx.db, &event.id)?.sold();
    if args.total_tickets < sold {
        return Err(FnError::msg(format!(
            "Cannot reduce total tickets below {sold} (number of tickets already sold)"
        )));
    }
    ctx.db.patch_fields(
        &event.id,
        vec![
            ("name".to_string(), Some(Value::from(args.name))),
            (
                "description".to_string(),
                Some(Value::from(args.description)),
            ),
            ("location".to_string(), Some(Value::from(args.location))),
            ("eventDate".to_string(), Some(Value::from(args.event_date))),
            ("price".to_string(), Some(Value::from(args.price))),
            (
                "totalTickets".to_string(),
                Some(Value::from(args.total_tickets)),
            ),
        ],
    )?;
    waiting_list::process_queue(ctx, &event.id)?;
    Ok(event.id)
}

fn cancel_event(ctx: &MutationCtx, args: EventIdArgs) -> Result<Value, FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    ensure_acting_for(&ctx.auth, &event.user_id)?;
    if ticket_counts(&ctx.db, &event.id)?.sold() > 0.0 {
        return Err(FnError::msg(
            "Cannot cancel event with active tickets. Please refund all tickets first.",
        ));
    }
    ctx.db.patch_fields(
        &event.id,
        vec![("is_cancelled".to_string(), Some(Value::Boolean(true)))],
    )?;
    let event_id = event.id.clone();
    let entries = ctx
        .db
        .query(WAITING_LIST)
        .with_index("by_event_status", move |q| q.eq("eventId", event_id))
        .collect()?;
    for entry in entries {
        ctx.db.delete(&entry.id)?;
    }
    Ok(object([("success", Value::Boolean(true))]))
}

/// A small object literal.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn check_availability(ctx: &QueryCtx, args: EventIdArgs) -> Result<Value, FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    let counts = availability(&ctx.db, &event, ctx.now_ms())?;
    Ok(object([
        ("available", Value::Boolean(counts.available_spots > 0.0)),
        ("availableSpots", Value::from(counts.available_spots)),
        ("totalTickets", Value::from(counts.total_tickets)),
        ("purchasedCount", Value::from(counts.purchased_count)),
        ("activeOffers", Value::from(counts.active_offers)),
    ]))
}

fn get_event_availability(ctx: &QueryCtx, args: EventIdArgs) -> Result<Value, FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    let counts = availability(&ctx.db, &event, ctx.now_ms())?;
    let reserved = counts.purchased_count + counts.active_offers;
    Ok(object([
        (
            "isSoldOut",
            Value::Boolean(reserved >= counts.total_tickets),
        ),
        ("totalTickets", Value::from(counts.total_tickets)),
        ("purchasedCount", Value::from(counts.purchased_count)),
        ("activeOffers", Value::from(counts.active_offers)),
        (
            "remainingTickets",
            Value::from((counts.total_tickets - reserved).max(0.0)),
        ),
    ]))
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct JoinWaitingListArgs {
    #[arg(id = "events")]
    pub event_id: String,
    pub user_id: String,
}

/// The result of joining: `{success: true, status, message}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub success: bool,
    pub status: WaitingStatus,
    pub message: String,
}

pub const OFFERED_MESSAGE: &str = "Ticket offered - you have 30 minutes to purchase";
pub const WAITING_MESSAGE: &str =
    "Added to waiting list - you'll be notified when a ticket becomes available";

/// Order of refusals: caller check, rate limit, `Event not found`, cancelled event,
/// `Already in waiting list for this event`. Any refusal rolls the whole mutation back, so a
/// refused join does not count against the rate limit.
fn join_waiting_list(ctx: &MutationCtx, args: JoinWaitingListArgs) -> Result<JoinResult, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    rate_limit::consume(
        ctx,
        JOIN_WAITING_LIST,
        &format!("joinWaitingList:{}", args.user_id),
    )?;
    let event = load_event(&ctx.db, &args.event_id)?;
    if event.is_cancelled() {
        return Err(FnError::msg("Event is no longer active"));
    }
    if waiting_list::current_entry(&ctx.db, &args.user_id, &event.id)?.is_some() {
        return Err(FnError::msg("Already in waiting list for this event"));
    }
    let now = ctx.now_ms();
    let counts = availability(&ctx.db, &event, now)?;
    if counts.available_spots > 0.0 {
        let entry_id = waiting_list::insert_entry(
            ctx,
            &event.id,
            &args.user_id,
            WaitingStatus::Offered,
            Some(now + OFFER_DURATION_MS),
        )?;
        waiting_list::schedule_expiry(ctx, &entry_id, &event.id, now + OFFER_DURATION_MS)?;
        Ok(JoinResult {
            success: true,
            status: WaitingStatus::Offered,
            message: OFFERED_MESSAGE.to_string(),
        })
    } else {
        waiting_list::insert_entry(ctx, &event.id, &args.user_id, WaitingStatus::Waiting, None)?;
        Ok(JoinResult {
            success: true,
            status: WaitingStatus::Waiting,
            message: WAITING_MESSAGE.to_string(),
        })
    }
}

#[derive(Deserialize, Serialize, Args, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInfo {
    pub payment_intent_id: String,
    /// Minor units (cents).
    pub amount: f64,
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseTicketArgs {
    #[arg(id = "events")]
    pub event_id: String,
    pub user_id: String,
    #[arg(id = "waitingList")]
    pub waiting_list_id: String,
    pub payment_info: PaymentInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewTicket<'a> {
    event_id: &'a str,
    user_id: &'a str,
    purchased_at: f64,
    status: TicketStatus,
    payment_intent_id: &'a str,
    amount: f64,
}

/// Turns the user's offer into a `valid` ticket, marks the entry `purchased` and runs the
/// queue, all in this one transaction.
fn purchase_ticket(ctx: &MutationCtx, args: PurchaseTicketArgs) -> Result<Value, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let entry = waiting_list::load_entry(&ctx.db, &args.waiting_list_id)?
        .ok_or_else(|| FnError::msg("Waiting list entry not found"))?;
    if entry.status != WaitingStatus::Offered {
        return Err(FnError::msg(
            "Invalid waiting list status - ticket offer may have expired",
        ));
    }
    if entry.user_id != args.user_id {
        return Err(FnError::msg(
            "Waiting list entry does not belong to this user",
        ));
    }
    if entry.event_id != args.event_id {
        return Err(FnError::msg("Waiting list entry is for a different event"));
    }
    let event = load_event(&ctx.db, &args.event_id)?;
    if event.is_cancelled() {
        return Err(FnError::msg("Event is no longer active"));
    }
    insert_tickets(
        ctx,
        &event.id,
        TicketStatus::Valid,
        [NewTicket {
            event_id: &event.id,
            user_id: &args.user_id,
            purchased_at: ctx.now_ms(),
            status: TicketStatus::Valid,
            payment_intent_id: &args.payment_info.payment_intent_id,
            amount: args.payment_info.amount,
        }],
    )?;
    ctx.db.patch_fields(
        &entry.id,
        vec![(
            "status".to_string(),
            Some(Value::from(WaitingStatus::Purchased.as_str())),
        )],
    )?;
    waiting_list::process_queue(ctx, &event.id)?;
    Ok(Value::Null)
}

fn get_user_tickets(ctx: &QueryCtx, args: UserIdArgs) -> Result<Vec<Value>, FnError> {
    user_rows_with_events(ctx, TICKETS, args.user_id)
}

fn get_user_waiting_list(ctx: &QueryCtx, args: UserIdArgs) -> Result<Vec<Value>, FnError> {
    user_rows_with_events(ctx, WAITING_LIST, args.user_id)
}

/// The caller's own rows of `table` (through its `by_user` index), each with its event joined in.
fn user_rows_with_events(
    ctx: &QueryCtx,
    table: &str,
    user_id: String,
) -> Result<Vec<Value>, FnError> {
    ensure_acting_for(&ctx.auth, &user_id)?;
    let rows = ctx
        .db
        .query(table)
        .with_index("by_user", move |q| q.eq("userId", user_id))
        .collect()?;
    with_events(ctx, rows)
}

/// `{...doc, event}` for each document with an `eventId`.
fn with_events(ctx: &QueryCtx, docs: Vec<Doc>) -> Result<Vec<Value>, FnError> {
    docs.iter()
        .map(|doc| {
            let event = match doc.get_str("eventId") {
                Some(event_id) => doc_or_null(ctx.db.get(event_id)?),
                None => Value::Null,
            };
            Ok(doc_with(doc, "event", event))
        })
        .collect()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UserIdArgs {
    pub user_id: String,
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct SearchArgs {
    pub search_term: String,
}

fn search(ctx: &QueryCtx, args: SearchArgs) -> Result<Vec<Doc>, FnError> {
    let term = args.search_term.to_lowercase();
    let contains = move |doc: &Doc, field: &str| {
        doc.get_str(field)
            .is_some_and(|text| text.to_lowercase().contains(&term))
    };
    ctx.db
        .query(EVENTS)
        .filter(move |doc| {
            !doc_is_cancelled(doc)
                && (contains(doc, "name")
                    || contains(doc, "description")
                    || contains(doc, "location"))
        })
        .collect()
}

/// Sales figures of one event, for the seller dashboard.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub sold_tickets: f64,
    pub refunded_tickets: f64,
    pub cancelled_tickets: f64,
    /// `soldTickets * price`, in major units.
    pub revenue: f64,
}

fn get_seller_events(ctx: &QueryCtx, args: UserIdArgs) -> Result<Vec<Value>, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let organizer = args.user_id.clone();
    let events = ctx
        .db
        .query(EVENTS)
        .with_index("by_user", move |q| q.eq("userId", organizer))
        .collect()?;
    events
        .iter()
        .map(|doc| {
            let event: Event = doc.parse()?;
            let counts = ticket_counts(&ctx.db, &event.id)?;
            let metrics = Metrics {
                sold_tickets: counts.sold(),
                refunded_tickets: counts.refunded,
                cancelled_tickets: counts.cancelled,
                revenue: counts.sold() * event.price,
            };
            let metrics =
                to_value(&metrics).map_err(|error| FnError::Internal(error.to_string()))?;
            Ok(doc_with(doc, "metrics", metrics))
        })
        .collect()
}
