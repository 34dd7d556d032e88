//! Tickets per status of each event, one `ticketCounts` row per event.
//!
//! Availability, the organizer's limits and seller metrics need counts, and an event may hold
//! more tickets than one query may read (32,000 documents). So every ticket write goes through
//! [`insert_ticket`] or [`set_ticket_status`], which adjust the event's row in the same
//! transaction; readers read that one row. Mutations run one at a time, so the row never
//! drifts from the tickets.
//!
//! An event whose tickets were written before counts existed has no row: readers then count
//! its tickets through the `by_event` index (as before), and the first ticket write creates the
//! row from that count.

use serde::{Deserialize, Serialize};
use tickethub_runtime::{FnError, MutationCtx};

use crate::tickets::{Ticket, TicketStatus, TICKETS};
use crate::ReadDb;

const TICKET_COUNTS: &str = "ticketCounts";

/// How many tickets of one event are in each status.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct TicketCounts {
    pub valid: f64,
    pub used: f64,
    pub refunded: f64,
    pub cancelled: f64,
}

impl TicketCounts {
    /// Valid and used tickets: the seats taken.
    pub fn sold(&self) -> f64 {
        self.valid + self.used
    }

    fn slot(&mut self, status: TicketStatus) -> &mut f64 {
        match status {
            TicketStatus::Valid => &mut self.valid,
            TicketStatus::Used => &mut self.used,
            TicketStatus::Refunded => &mut self.refunded,
            TicketStatus::Cancelled => &mut self.cancelled,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    event_id: &'a str,
    #[serde(flatten)]
    counts: TicketCounts,
}

/// The event's row id (if it has one) and its counts.
fn load_row(db: &impl ReadDb, event_id: &str) -> Result<(Option<String>, TicketCounts), FnError> {
    let key = event_id.to_string();
    let row = db
        .table(TICKET_COUNTS)
        .with_index("by_event", move |q| q.eq("eventId", key))
        .first()?;
    match row {
        Some(row) => {
            let counts = row.parse()?;
            Ok((Some(row.id), counts))
        }
        None => Ok((None, count_by_scan(db, event_id)?)),
    }
}

/// Counting ticket by ticket: only for events whose tickets predate `ticketCounts`.
fn count_by_scan(db: &impl ReadDb, event_id: &str) -> Result<TicketCounts, FnError> {
    let key = event_id.to_string();
    let mut counts = TicketCounts::default();
    for doc in db
        .table(TICKETS)
        .with_index("by_event", move |q| q.eq("eventId", key))
        .collect()?
    {
        let ticket: Ticket = doc.parse()?;
        *counts.slot(ticket.status) += 1.0;
    }
    Ok(counts)
}

/// The event's ticket counts (one indexed read).
pub(crate) fn ticket_counts(db: &impl ReadDb, event_id: &str) -> Result<TicketCounts, FnError> {
    Ok(load_row(db, event_id)?.1)
}

/// A change to one event's tickets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Added {
        status: TicketStatus,
        count: f64,
    },
    Moved {
        from: TicketStatus,
        to: TicketStatus,
    },
}

fn record(ctx: &MutationCtx, event_id: &str, change: Change) -> Result<(), FnError> {
    let (row_id, mut counts) = load_row(&ctx.db, event_id)?;
    match change {
        Change::Added { status, count } => *counts.slot(status) += count,
        Change::Moved { from, to } => {
            *counts.slot(from) -= 1.0;
            *counts.slot(to) += 1.0;
        }
    }
    let row = Row { event_id, counts };
    match row_id {
        Some(id) => ctx.db.patch(&id, row),
        None => ctx.db.insert(TICKET_COUNTS, row).map(drop),
    }
}

/// New tickets of `event_id` (rows to insert into `tickets`, all in `status`), counted with
/// one update of the event's row. Returns their ids.
pub fn insert_tickets<T: Serialize>(
    ctx: &MutationCtx,
    event_id: &str,
    status: TicketStatus,
    tickets: impl IntoIterator<Item = T>,
) -> Result<Vec<String>, FnError> {
    // Counted before writing: an event without a row yet is counted by scanning its tickets,
    // and that scan must not see these.
    let tickets: Vec<T> = tickets.into_iter().collect();
    let change = Change::Added {
        status,
        count: tickets.len() as f64,
    };
    record(ctx, event_id, change)?;
    let ids = tickets
        .into_iter()
        .map(|ticket| ctx.db.insert(TICKETS, ticket))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// Move `ticket` to `status`, counted.
pub(crate) fn set_ticket_status(
    ctx: &MutationCtx,
    ticket: &Ticket,
    status: TicketStatus,
) -> Result<(), FnError> {
    // Counted before writing, for the same reason as in [`insert_tickets`].
    if ticket.status != status {
        record(
            ctx,
            &ticket.event_id,
            Change::Moved {
                from: ticket.status,
                to: status,
            },
        )?;
    }
    ctx.db.patch_fields(
        &ticket.id,
        vec![(
            "status".to_string(),
            Some(tickethub_runtime::Value::from(status.as_str())),
        )],
    )?;
    Ok(())
}
