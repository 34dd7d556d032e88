//! Tickets: the user's tickets, ticket details, an event's valid tickets, and status changes
//! by the event's organizer.

use serde::{Deserialize, Serialize};
use tickethub_runtime::Args;
use tickethub_runtime::{App, Doc, FnError, MutationCtx, QueryCtx, Value};

use crate::auth_checks::ensure_acting_for;
use crate::events::load_event;
use crate::events::EVENTS;
use crate::ticket_counts::set_ticket_status;
use crate::{doc_or_null, doc_with, returns};
use tickethub_runtime::v;

pub(crate) const TICKETS: &str = "tickets";

pub fn register(app: &mut App) {
    app.query("tickets:getUserTickets", get_user_tickets)
        .returns(v::array(returns::doc(TICKETS)));
    app.query("tickets:getUserTicketForEvent", get_user_ticket_for_event)
        .returns(v::nullable(returns::doc(TICKETS)));
    app.query("tickets:getTicketWithDetails", get_ticket_with_details)
        .returns(v::nullable(returns::doc_with(
            TICKETS,
            [("event", v::nullable(returns::doc(EVENTS)))],
        )));
    app.query(
        "tickets:getValidTicketsForEvent",
        get_valid_tickets_for_event,
    )
    .returns(v::array(returns::doc(TICKETS)));
    app.mutation("tickets:updateTicketStatus", update_ticket_status)
        .returns(v::null());
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Valid,
    Used,
    Refunded,
    Cancelled,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Valid => "valid",
            TicketStatus::Used => "used",
            TicketStatus::Refunded => "refunded",
            TicketStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<TicketStatus> {
        [
            TicketStatus::Valid,
            TicketStatus::Used,
            TicketStatus::Refunded,
            TicketStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Valid and used tickets hold a seat; refunded and cancelled ones do not.
    pub fn is_sold(self) -> bool {
        match self {
            TicketStatus::Valid | TicketStatus::Used => true,
            TicketStatus::Refunded | TicketStatus::Cancelled => false,
        }
    }
}

/// A row of `tickets` (the fields the app reads).
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ticket {
    #[serde(rename = "_id")]
    pub id: String,
    pub event_id: String,
    pub status: TicketStatus,
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UserIdArgs {
    pub user_id: String,
}

/// The query shown in the seed document, plus the caller check.
fn get_user_tickets(ctx: &QueryCtx, args: UserIdArgs) -> Result<Vec<Doc>, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let user_id = args.user_id;
    ctx.db
        .query(TICKETS)
        .with_index("by_user", move |q| q.eq("userId", user_id))
        .collect()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UserEventArgs {
    #[arg(id = "events")]
    pub event_id: String,
    pub user_id: String,
}

fn get_user_ticket_for_event(ctx: &QueryCtx, args: UserEventArgs) -> Result<Option<Doc>, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let UserEventArgs { event_id, user_id } = args;
    ctx.db
        .query(TICKETS)
        .with_index("by_user_event", move |q| {
            q.eq("userId", user_id).eq("eventId", event_id)
        })
        .first()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct TicketIdArgs {
    #[arg(id = "tickets")]
    pub ticket_id: String,
}

/// `{...ticket, event}` or null.
fn get_ticket_with_details(ctx: &QueryCtx, args: TicketIdArgs) -> Result<Value, FnError> {
    let Some(ticket) = ctx.db.get(&args.ticket_id)? else {
        return Ok(Value::Null);
    };
    let event = match ticket.get_str("eventId") {
        Some(event_id) => doc_or_null(ctx.db.get(event_id)?),
        None => Value::Null,
    };
    Ok(doc_with(&ticket, "event", event))
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct EventIdArgs {
    #[arg(id = "events")]
    pub event_id: String,
}

fn get_valid_tickets_for_event(ctx: &QueryCtx, args: EventIdArgs) -> Result<Vec<Doc>, FnError> {
    let event_id = args.event_id;
    ctx.db
        .query(TICKETS)
        .with_index("by_event", move |q| q.eq("eventId", event_id))
        .filter(|doc| matches!(doc.get_str("status"), Some("valid") | Some("used")))
        .collect()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTicketStatusArgs {
    #[arg(id = "tickets")]
    pub ticket_id: String,
    #[arg(one_of("valid", "used", "refunded", "cancelled"))]
    pub status: String,
}

/// Only the event's organizer (or the admin) may change a ticket's status.
fn update_ticket_status(ctx: &MutationCtx, args: UpdateTicketStatusArgs) -> Result<Value, FnError> {
    let ticket: Ticket = ctx
        .db
        .get(&args.ticket_id)?
        .ok_or_else(|| FnError::msg("Ticket not found"))?
        .parse()?;
    let event = load_event(&ctx.db, &ticket.event_id)?;
    ensure_acting_for(&ctx.auth, &event.user_id)?;
    // The argument validator admits the four statuses only.
    let status = TicketStatus::parse(&args.status)
        .ok_or_else(|| FnError::msg(format!("Unknown ticket status {}", args.status)))?;
    set_ticket_status(ctx, &ticket, status)?;
    Ok(Value::Null)
}
