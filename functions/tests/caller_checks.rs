//! With an auth provider configured, functions that act for a `userId` require the caller to
//! be that user (or the admin). Without one, nothing is checked.

mod common;

use common::{str_field, user, AuthMode, Hub};
use serde_json::json;
use tickethub_runtime::{Identity, Value};

fn new_event(organizer: &str) -> serde_json::Value {
    json!({"name": "Rust Conf", "description": "Talks", "location": "Berlin", "eventDate": 1.8e12,
           "price": 49.99, "totalTickets": 2, "userId": organizer})
}

#[tokio::test]
async fn a_user_acts_only_for_themselves() {
    let hub = Hub::new(AuthMode::Enabled);
    let alice = user("user_alice");
    hub.call(
        &alice,
        "users:updateUser",
        json!({"userId": "user_alice", "name": "Alice", "email": "a@example.org"}),
    )
    .await
    .expect("alice updates herself");
    let own = hub
        .call(&alice, "users:getUserById", json!({"userId": "user_alice"}))
        .await
        .unwrap();
    assert_eq!(str_field(&own, "name"), "Alice");
    let current = hub.call(&alice, "users:current", json!({})).await.unwrap();
    assert_eq!(str_field(&current, "userId"), "user_alice");

    let mallory = user("user_mallory");
    for (path, args) in [
        ("users:getUserById", json!({"userId": "user_alice"})),
        (
            "users:getUsersStripeConnectId",
            json!({"userId": "user_alice"}),
        ),
        (
            "users:updateUser",
            json!({"userId": "user_alice", "name": "pwned", "email": "m@example.org"}),
        ),
        (
            "users:updateOrCreateUserStripeConnectId",
            json!({"userId": "user_alice", "stripeConnectId": "acct_m"}),
        ),
        ("tickets:getUserTickets", json!({"userId": "user_alice"})),
        ("events:getUserTickets", json!({"userId": "user_alice"})),
        ("events:getUserWaitingList", json!({"userId": "user_alice"})),
        ("events:getSellerEvents", json!({"userId": "user_alice"})),
        ("events:create", new_event("user_alice")),
    ] {
        assert_eq!(
            hub.error(&mallory, path, args.clone()).await,
            "Not authorized to act for user user_alice",
            "{path}"
        );
        assert_eq!(
            hub.error(&Identity::Anonymous, path, args).await,
            "Not authenticated",
            "{path}"
        );
    }
    assert_eq!(
        str_field(
            &hub.admin("users:getUserById", json!({"userId": "user_alice"}))
                .await,
            "name"
        ),
        "Alice"
    );
    assert_eq!(
        hub.call(&Identity::Anonymous, "users:current", json!({}))
            .await
            .unwrap(),
        Value::Null
    );
}

#[tokio::test]
async fn organizer_only_changes_to_events_and_tickets() {
    let hub = Hub::new(AuthMode::Enabled);
    let alice = user("user_alice");
    let bob = user("user_bob");
    let event_id = hub
        .call(&alice, "events:create", new_event("user_alice"))
        .await
        .unwrap();
    let event_id = event_id.as_str().unwrap().to_string();
    let update = json!({"eventId": event_id, "name": "Hacked", "description": "x", "location": "y",
                        "eventDate": 1.8e12, "price": 1, "totalTickets": 2});
    assert_eq!(
        hub.error(&bob, "events:updateEvent", update.clone()).await,
        "Not authorized to act for user user_alice"
    );
    assert_eq!(
        hub.error(&bob, "events:cancelEvent", json!({"eventId": event_id}))
            .await,
        "Not authorized to act for user user_alice"
    );

    // Bob may join and buy for himself, but not release or buy with someone else's entry.
    let joined = hub
        .call(
            &bob,
            "events:joinWaitingList",
            json!({"eventId": event_id, "userId": "user_bob"}),
        )
        .await
        .unwrap();
    assert_eq!(str_field(&joined, "status"), "offered");
    assert_eq!(
        hub.error(
            &bob,
            "events:joinWaitingList",
            json!({"eventId": event_id, "userId": "user_carol"})
        )
        .await,
        "Not authorized to act for user user_carol"
    );
    let position = hub
        .call(
            &bob,
            "waitingList:getQueuePosition",
            json!({"eventId": event_id, "userId": "user_bob"}),
        )
        .await
        .unwrap();
    let entry_id = str_field(&position, "_id").to_string();
    assert_eq!(
        hub.error(
            &alice,
            "waitingList:releaseTicket",
            json!({"eventId": event_id, "waitingListId": entry_id})
        )
        .await,
        "Not authorized to act for user user_bob"
    );
    hub.call(
        &bob,
        "events:purchaseTicket",
        json!({"eventId": event_id, "userId": "user_bob", "waitingListId": entry_id,
               "paymentInfo": {"paymentIntentId": "pi_1", "amount": 4999}}),
    )
    .await
    .expect("bob buys his own offer");
    let ticket = hub
        .call(
            &bob,
            "tickets:getUserTicketForEvent",
            json!({"eventId": event_id, "userId": "user_bob"}),
        )
        .await
        .unwrap();
    let ticket_id = str_field(&ticket, "_id").to_string();
    assert_eq!(
        hub.error(
            &bob,
            "tickets:updateTicketStatus",
            json!({"ticketId": ticket_id, "status": "used"})
        )
        .await,
        "Not authorized to act for user user_alice"
    );
    hub.call(
        &alice,
        "tickets:updateTicketStatus",
        json!({"ticketId": ticket_id, "status": "used"}),
    )
    .await
    .unwrap();
    let details = hub
        .call(
            &bob,
            "tickets:getTicketWithDetails",
            json!({"ticketId": ticket_id}),
        )
        .await
        .unwrap();
    assert_eq!(str_field(&details, "status"), "used");
    assert_eq!(
        str_field(details.get("event").unwrap(), "name"),
        "Rust Conf"
    );
    hub.call(&alice, "events:updateEvent", update)
        .await
        .expect("the organizer updates");
}

#[tokio::test]
async fn with_auth_off_nothing_is_checked() {
    let hub = Hub::new(AuthMode::Disabled);
    hub.call(
        &Identity::Anonymous,
        "events:create",
        new_event("user_alice"),
    )
    .await
    .expect("anyone may create");
    hub.call(
        &user("user_bob"),
        "users:getUserById",
        json!({"userId": "user_alice"}),
    )
    .await
    .expect("no check");
}
