//! The waiting-list story: two tickets, three users; offers, a purchase, an expiry on the test
//! clock, a release; plus availability, queue positions, the rate limit and cancellation.

mod common;

use common::{num_field, str_field, user, AuthMode, Hub};
use serde_json::json;
use tickethub_runtime::{FnError, Identity, Value};

const MINUTE: f64 = 60_000.0;

async fn create_event(hub: &Hub, total: f64) -> String {
    let id = hub
        .admin(
            "events:create",
            json!({"name": "Rust Conf", "description": "Talks about Rust", "location": "Berlin",
                   "eventDate": 1.8e12, "price": 50, "totalTickets": total, "userId": "user_org"}),
        )
        .await;
    id.as_str().unwrap().to_string()
}

async fn join(hub: &Hub, event_id: &str, who: &str) -> Result<Value, FnError> {
    hub.call(
        &user(who),
        "events:joinWaitingList",
        json!({"eventId": event_id, "userId": who}),
    )
    .await
}

async fn entry(hub: &Hub, event_id: &str, who: &str) -> Value {
    hub.call(
        &user(who),
        "waitingList:getQueuePosition",
        json!({"eventId": event_id, "userId": who}),
    )
    .await
    .unwrap()
}

async fn status(hub: &Hub, event_id: &str, who: &str) -> String {
    str_field(&entry(hub, event_id, who).await, "status").to_string()
}

#[tokio::test]
async fn two_tickets_three_users() {
    let hub = Hub::new(AuthMode::Enabled);
    let event_id = create_event(&hub, 2.0).await;

    let first = join(&hub, &event_id, "user_1").await.unwrap();
    assert_eq!(str_field(&first, "status"), "offered");
    assert_eq!(
        str_field(&first, "message"),
        "Ticket offered - you have 30 minutes to purchase"
    );
    assert_eq!(first.get("success"), Some(&Value::Boolean(true)));
    assert_eq!(
        str_field(&join(&hub, &event_id, "user_2").await.unwrap(), "status"),
        "offered"
    );
    let third = join(&hub, &event_id, "user_3").await.unwrap();
    assert_eq!(str_field(&third, "status"), "waiting");
    assert_eq!(
        str_field(&third, "message"),
        "Added to waiting list - you'll be notified when a ticket becomes available"
    );
    assert_eq!(
        join(&hub, &event_id, "user_3")
            .await
            .unwrap_err()
            .to_string(),
        "Already in waiting list for this event"
    );

    let availability = hub
        .admin("events:checkAvailability", json!({"eventId": event_id}))
        .await;
    assert_eq!(availability.get("available"), Some(&Value::Boolean(false)));
    assert_eq!(num_field(&availability, "availableSpots"), 0.0);
    assert_eq!(num_field(&availability, "activeOffers"), 2.0);
    assert_eq!(num_field(&availability, "purchasedCount"), 0.0);
    assert_eq!(num_field(&availability, "totalTickets"), 2.0);
    assert_eq!(
        num_field(&entry(&hub, &event_id, "user_3").await, "position"),
        3.0
    );
    assert_eq!(
        num_field(&entry(&hub, &event_id, "user_1").await, "position"),
        1.0
    );

    // user_1 buys; user_3 still waits (one sold, one offered).
    let offer_1 = str_field(&entry(&hub, &event_id, "user_1").await, "_id").to_string();
    assert_eq!(
        hub.error(
            &user("user_2"),
            "events:purchaseTicket",
            json!({"eventId": event_id, "userId": "user_2", "waitingListId": offer_1,
                   "paymentInfo": {"paymentIntentId": "pi_x", "amount": 5000}})
        )
        .await,
        "Waiting list entry does not belong to this user"
    );
    hub.call(
        &user("user_1"),
        "events:purchaseTicket",
        json!({"eventId": event_id, "userId": "user_1", "waitingListId": offer_1,
               "paymentInfo": {"paymentIntentId": "pi_1", "amount": 5000}}),
    )
    .await
    .unwrap();
    assert_eq!(status(&hub, &event_id, "user_1").await, "purchased");
    assert_eq!(status(&hub, &event_id, "user_3").await, "waiting");
    let tickets = hub
        .call(
            &user("user_1"),
            "events:getUserTickets",
            json!({"userId": "user_1"}),
        )
        .await
        .unwrap();
    let tickets = tickets.as_array().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(str_field(&tickets[0], "status"), "valid");
    assert_eq!(str_field(&tickets[0], "paymentIntentId"), "pi_1");
    assert_eq!(
        str_field(tickets[0].get("event").unwrap(), "name"),
        "Rust Conf"
    );

    // user_2 lets the offer lapse: the scheduled expiry passes it on to user_3.
    hub.rt.advance_time(29.0 * MINUTE).await.unwrap();
    assert_eq!(status(&hub, &event_id, "user_2").await, "offered");
    hub.rt.advance_time(2.0 * MINUTE).await.unwrap();
    let lapsed = hub
        .call(
            &user("user_2"),
            "events:getUserWaitingList",
            json!({"userId": "user_2"}),
        )
        .await
        .unwrap();
    assert_eq!(
        str_field(&lapsed.as_array().unwrap()[0], "status"),
        "expired"
    );
    assert_eq!(
        entry(&hub, &event_id, "user_2").await,
        Value::Null,
        "expired entries have no position"
    );
    let third = entry(&hub, &event_id, "user_3").await;
    assert_eq!(str_field(&third, "status"), "offered");
    assert!(num_field(&third, "offerExpiresAt") > hub.rt.now_ms());

    // user_3 releases it; nobody is waiting, so the spot is free again.
    let offer_3 = str_field(&third, "_id").to_string();
    hub.call(
        &user("user_3"),
        "waitingList:releaseTicket",
        json!({"eventId": event_id, "waitingListId": offer_3}),
    )
    .await
    .unwrap();
    assert_eq!(
        hub.error(
            &user("user_3"),
            "waitingList:releaseTicket",
            json!({"eventId": event_id, "waitingListId": offer_3})
        )
        .await,
        "No valid ticket offer found"
    );
    let summary = hub
        .admin("events:getEventAvailability", json!({"eventId": event_id}))
        .await;
    assert_eq!(summary.get("isSoldOut"), Some(&Value::Boolean(false)));
    assert_eq!(num_field(&summary, "remainingTickets"), 1.0);
    assert_eq!(num_field(&summary, "purchasedCount"), 1.0);

    let seller = hub
        .admin("events:getSellerEvents", json!({"userId": "user_org"}))
        .await;
    let metrics = seller.as_array().unwrap()[0]
        .get("metrics")
        .unwrap()
        .clone();
    assert_eq!(num_field(&metrics, "soldTickets"), 1.0);
    assert_eq!(num_field(&metrics, "revenue"), 50.0);

    // The organizer cannot shrink below what is sold, nor cancel with sold tickets.
    let shrink = json!({"eventId": event_id, "name": "Rust Conf", "description": "d", "location": "l",
                        "eventDate": 1.8e12, "price": 50, "totalTickets": 0});
    assert_eq!(
        hub.error(&Identity::Admin, "events:updateEvent", shrink)
            .await,
        "Cannot reduce total tickets below 1 (number of tickets already sold)"
    );
    assert_eq!(
        hub.error(
            &Identity::Admin,
            "events:cancelEvent",
            json!({"eventId": event_id})
        )
        .await,
        "Cannot cancel event with active tickets. Please refund all tickets first."
    );
}

#[tokio::test]
async fn an_expired_offer_passes_to_the_next_in_line_and_cleanup_is_idempotent() {
    let hub = Hub::new(AuthMode::Disabled);
    let event_id = create_event(&hub, 1.0).await;
    join(&hub, &event_id, "user_1").await.unwrap();
    join(&hub, &event_id, "user_2").await.unwrap();
    // Nothing is past its time yet; the sweep returns null, as the original's does.
    let before = hub
        .admin("waitingList:cleanupExpiredOffers", json!({}))
        .await;
    assert_eq!(before, Value::Null);
    assert_eq!(status(&hub, &event_id, "user_1").await, "offered");
    hub.rt.advance_time(31.0 * MINUTE).await.unwrap();
    assert_eq!(status(&hub, &event_id, "user_2").await, "offered");
    assert_eq!(entry(&hub, &event_id, "user_1").await, Value::Null);
    // Whether the scheduled expiry or the cron got there first, a second sweep changes nothing.
    let after = hub
        .admin("waitingList:cleanupExpiredOffers", json!({}))
        .await;
    assert_eq!(after, Value::Null);
    assert_eq!(status(&hub, &event_id, "user_2").await, "offered");
    assert_eq!(entry(&hub, &event_id, "user_1").await, Value::Null);
}

#[tokio::test]
async fn joins_are_rate_limited_per_user() {
    let hub = Hub::new(AuthMode::Enabled);
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(create_event(&hub, 5.0).await);
    }
    for event_id in &events[..3] {
        join(&hub, event_id, "user_1").await.unwrap();
    }
    hub.rt.advance_time(18.0 * MINUTE).await.unwrap();
    match join(&hub, &events[3], "user_1").await {
        Err(FnError::Convex { message, data }) => {
            // The original front end's text, as string data (it shows `error.data` in a toast).
            let expected = "You've joined the waiting list too many times. Please wait 12 minutes before trying again.";
            assert_eq!(message, expected);
            assert_eq!(data, Value::String(expected.into()));
        }
        other => panic!("expected a rate-limit ConvexError, got {other:?}"),
    }
    // Someone else is not affected; the window ends and user_1 may join again.
    join(&hub, &events[3], "user_2").await.unwrap();
    hub.rt.advance_time(13.0 * MINUTE).await.unwrap();
    join(&hub, &events[3], "user_1").await.unwrap();
}

#[tokio::test]
async fn cancelling_clears_the_queue_and_search_hides_the_event() {
    let hub = Hub::new(AuthMode::Disabled);
    let event_id = create_event(&hub, 1.0).await;
    join(&hub, &event_id, "user_1").await.unwrap();
    let found = hub
        .admin("events:search", json!({"searchTerm": "RUST"}))
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(
        hub.admin("events:search", json!({"searchTerm": "python"}))
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        hub.admin("events:cancelEvent", json!({"eventId": event_id}))
            .await
            .get("success"),
        Some(&Value::Boolean(true))
    );
    assert_eq!(entry(&hub, &event_id, "user_1").await, Value::Null);
    assert_eq!(
        hub.admin("events:get", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        hub.admin("events:search", json!({"searchTerm": "rust"}))
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // The scheduled expiry of the deleted entry is a no-op.
    hub.rt.advance_time(31.0 * MINUTE).await.unwrap();
}
