//! The app scales with its data: an event with more tickets than one query may read
//! (32,000 documents) still answers its availability and metrics, because tickets are counted
//! from the event's `ticketCounts` row rather than one by one.

mod common;

use common::{num_field, AuthMode, Hub, WEBHOOK_SECRET};
use serde::Deserialize;
use serde_json::json;
use ticket_hub_functions::ticket_counts::insert_tickets;
use ticket_hub_functions::tickets::TicketStatus;
use tickethub_runtime::{Args, FnError, MutationCtx, Value};

/// Tickets per seeding mutation: a mutation may write at most 16,000 documents.
const BATCH: f64 = 11_000.0;
const BATCHES: usize = 3;
const SOLD: f64 = BATCH * BATCHES as f64;
const TOTAL_TICKETS: f64 = 40_000.0;
const PRICE: f64 = 50.0;

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
struct SeedArgs {
    #[arg(id = "events")]
    event_id: String,
    count: f64,
    /// Distinguishes the payment intents of different batches.
    batch: f64,
}

/// Inserts `count` valid tickets through the app's own counted insert.
fn seed_tickets(ctx: &MutationCtx, args: SeedArgs) -> Result<Value, FnError> {
    let tickets = (0..args.count as usize).map(|i| {
        json!({
            "eventId": args.event_id,
            "userId": format!("buyer_{}_{i}", args.batch),
            "purchasedAt": 1.7e12,
            "status": "valid",
            "paymentIntentId": format!("pi_{}_{i}", args.batch),
            "amount": PRICE * 100.0,
        })
    });
    insert_tickets(ctx, &args.event_id, TicketStatus::Valid, tickets)?;
    Ok(Value::Null)
}

#[tokio::test]
async fn an_event_with_more_tickets_than_one_query_may_read_still_answers() {
    let mut app = ticket_hub_functions::app();
    app.internal_mutation("test:seedTickets", seed_tickets);
    let hub = Hub::with_app(
        app,
        AuthMode::Disabled,
        [("CLERK_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    );
    let event_id = hub
        .admin(
            "events:create",
            json!({"name": "Stadium", "description": "A very big show", "location": "Wembley",
                   "eventDate": 1.8e12, "price": PRICE, "totalTickets": TOTAL_TICKETS,
                   "userId": "user_org"}),
        )
        .await;
    let event_id = event_id.as_str().unwrap().to_string();
    for batch in 0..BATCHES {
        hub.admin(
            "test:seedTickets",
            json!({"eventId": event_id, "count": BATCH, "batch": batch}),
        )
        .await;
    }

    let availability = hub
        .admin("events:checkAvailability", json!({"eventId": event_id}))
        .await;
    assert_eq!(num_field(&availability, "purchasedCount"), SOLD);
    assert_eq!(num_field(&availability, "activeOffers"), 0.0);
    assert_eq!(num_field(&availability, "totalTickets"), TOTAL_TICKETS);
    assert_eq!(
        num_field(&availability, "availableSpots"),
        TOTAL_TICKETS - SOLD
    );
    assert_eq!(availability.get("available"), Some(&Value::Boolean(true)));

    let summary = hub
        .admin("events:getEventAvailability", json!({"eventId": event_id}))
        .await;
    assert_eq!(
        num_field(&summary, "remainingTickets"),
        TOTAL_TICKETS - SOLD
    );
    assert_eq!(summary.get("isSoldOut"), Some(&Value::Boolean(false)));

    // Seller metrics read the same counts.
    let seller = hub
        .admin("events:getSellerEvents", json!({"userId": "user_org"}))
        .await;
    let events = seller.as_array().unwrap();
    assert_eq!(events.len(), 1);
    let metrics = events[0].get("metrics").unwrap();
    assert_eq!(num_field(metrics, "soldTickets"), SOLD);
    assert_eq!(num_field(metrics, "revenue"), SOLD * PRICE);

    // The organizer's limit sees every sold ticket too.
    let error = hub
        .error(
            &tickethub_runtime::Identity::Admin,
            "events:updateEvent",
            json!({"eventId": event_id, "name": "Stadium", "description": "A very big show",
                   "location": "Wembley", "eventDate": 1.8e12, "price": PRICE,
                   "totalTickets": SOLD - 1.0}),
        )
        .await;
    assert_eq!(
        error,
        format!("Cannot reduce total tickets below {SOLD} (number of tickets already sold)")
    );
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
struct UncountedArgs {
    #[arg(id = "events")]
    event_id: String,
    #[arg(one_of("valid", "used", "refunded", "cancelled"))]
    status: String,
}

/// A ticket written the way the app wrote them before `ticketCounts` existed.
fn insert_uncounted(ctx: &MutationCtx, args: UncountedArgs) -> Result<String, FnError> {
    ctx.db.insert(
        "tickets",
        json!({"eventId": args.event_id, "userId": "old_buyer", "purchasedAt": 1.6e12,
               "status": args.status}),
    )
}

#[tokio::test]
async fn tickets_written_before_counts_existed_are_counted_and_the_first_counted_write_starts_from_them(
) {
    let mut app = ticket_hub_functions::app();
    app.internal_mutation("test:insertUncounted", insert_uncounted);
    app.internal_mutation("test:seedTickets", seed_tickets);
    let hub = Hub::with_app(
        app,
        AuthMode::Disabled,
        [("CLERK_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    );
    let event_id = hub
        .admin(
            "events:create",
            json!({"name": "Old show", "description": "From before", "location": "Leeds",
                   "eventDate": 1.8e12, "price": PRICE, "totalTickets": 10,
                   "userId": "user_org"}),
        )
        .await;
    let event_id = event_id.as_str().unwrap().to_string();
    let mut valid = Vec::new();
    for status in ["valid", "valid", "used", "refunded"] {
        let id = hub
            .admin(
                "test:insertUncounted",
                json!({"eventId": event_id, "status": status}),
            )
            .await;
        if status == "valid" {
            valid.push(id.as_str().unwrap().to_string());
        }
    }
    let sold = |availability: &Value| num_field(availability, "purchasedCount");
    let check = json!({"eventId": event_id});
    assert_eq!(
        sold(&hub.admin("events:checkAvailability", check.clone()).await),
        3.0
    );

    // The first counted write (a refund) creates the row from the tickets already there.
    hub.admin(
        "tickets:updateTicketStatus",
        json!({"ticketId": valid[0], "status": "refunded"}),
    )
    .await;
    assert_eq!(
        sold(&hub.admin("events:checkAvailability", check.clone()).await),
        2.0
    );
    hub.admin(
        "test:seedTickets",
        json!({"eventId": event_id, "count": 2, "batch": 0}),
    )
    .await;
    assert_eq!(
        sold(&hub.admin("events:checkAvailability", check.clone()).await),
        4.0
    );
    let seller = hub
        .admin("events:getSellerEvents", json!({"userId": "user_org"}))
        .await;
    let metrics = seller.as_array().unwrap()[0]
        .get("metrics")
        .unwrap()
        .clone();
    assert_eq!(num_field(&metrics, "soldTickets"), 4.0);
    assert_eq!(num_field(&metrics, "refundedTickets"), 2.0);
    assert_eq!(num_field(&metrics, "cancelledTickets"), 0.0);
}
