//! Every function of Ticket Hub declares a return validator, and real results satisfy them.
//!
//! The runtime checks each result against its function's validator (a mismatch fails the call
//! with `ReturnsValidationError`), so the story below only has to call every function with data
//! in the tables: a result of the wrong shape would fail the call.

mod common;

use common::{str_field, user, AuthMode, Hub};
use serde_json::json;
use tickethub_runtime::{Schema, Validator, Value};

#[test]
fn every_function_declares_what_it_returns() {
    let app = ticket_hub_functions::app();
    let missing: Vec<&str> = app
        .functions()
        .filter(|spec| spec.returns_validator().is_none())
        .map(|spec| spec.path())
        .collect();
    assert!(missing.is_empty(), "no return validator: {missing:?}");
    assert!(app.functions().count() >= 42);
}

/// Tables named by `v.id(..)` anywhere in `validator`.
fn id_tables<'v>(validator: &'v Validator, out: &mut Vec<&'v str>) {
    match validator {
        Validator::Id(table) => out.push(table),
        Validator::Array(inner) | Validator::Optional(inner) => id_tables(inner, out),
        Validator::Record(keys, values) => {
            id_tables(keys, out);
            id_tables(values, out);
        }
        Validator::Object(fields) => fields.values().for_each(|v| id_tables(v, out)),
        Validator::Union(members) => members.iter().for_each(|v| id_tables(v, out)),
        Validator::Null
        | Validator::Float64
        | Validator::Int64
        | Validator::Boolean
        | Validator::String
        | Validator::Bytes
        | Validator::Literal(_)
        | Validator::Any => {}
    }
}

#[test]
fn return_validators_name_only_tables_that_exist() {
    let schema = Schema::from_toml(ticket_hub_functions::SCHEMA).unwrap();
    let app = ticket_hub_functions::app();
    for spec in app.functions() {
        let mut tables = Vec::new();
        id_tables(spec.returns_validator().unwrap(), &mut tables);
        for table in tables {
            assert!(
                schema.tables.contains_key(table) || table == "_storage",
                "{} returns an id of unknown table `{table}`",
                spec.path()
            );
        }
    }
}

/// Every public query and the mutations of the purchase path, on real rows: each call's
/// result passed its return validator, or the call would have failed.
#[tokio::test]
async fn real_results_satisfy_the_return_validators() {
    let hub = Hub::new(AuthMode::Enabled);
    let buyer = user("user_buyer");
    let event_id = hub
        .admin(
            "events:create",
            json!({"name": "Rust Conf", "description": "Talks", "location": "Berlin",
                   "eventDate": 1.8e12, "price": 50, "totalTickets": 2, "userId": "user_org"}),
        )
        .await;
    let event_id = event_id.as_str().unwrap().to_string();
    hub.admin(
        "users:updateUser",
        json!({"userId": "user_buyer", "name": "Ada", "email": "ada@example.org"}),
    )
    .await;
    let joined = hub
        .call(
            &buyer,
            "events:joinWaitingList",
            json!({"eventId": event_id, "userId": "user_buyer"}),
        )
        .await
        .unwrap();
    assert_eq!(str_field(&joined, "status"), "offered");
    let entry = hub
        .call(
            &buyer,
            "waitingList:getQueuePosition",
            json!({"eventId": event_id, "userId": "user_buyer"}),
        )
        .await
        .unwrap();
    let entry_id = str_field(&entry, "_id").to_string();
    hub.call(
        &buyer,
        "events:purchaseTicket",
        json!({"eventId": event_id, "userId": "user_buyer", "waitingListId": entry_id,
               "paymentInfo": {"paymentIntentId": "pi_1", "amount": 5000}}),
    )
    .await
    .unwrap();
    let tickets = hub
        .call(
            &buyer,
            "tickets:getUserTickets",
            json!({"userId": "user_buyer"}),
        )
        .await
        .unwrap();
    let Value::Array(tickets) = tickets else {
        panic!("tickets:getUserTickets returned {tickets}");
    };
    let ticket_id = str_field(&tickets[0], "_id").to_string();

    let calls = [
        ("events:get", json!({})),
        ("events:getById", json!({"eventId": event_id})),
        ("events:checkAvailability", json!({"eventId": event_id})),
        ("events:getEventAvailability", json!({"eventId": event_id})),
        ("events:getUserTickets", json!({"userId": "user_buyer"})),
        ("events:getUserWaitingList", json!({"userId": "user_buyer"})),
        ("events:search", json!({"searchTerm": "rust"})),
        ("events:getSellerEvents", json!({"userId": "user_org"})),
        (
            "tickets:getUserTicketForEvent",
            json!({"eventId": event_id, "userId": "user_buyer"}),
        ),
        (
            "tickets:getTicketWithDetails",
            json!({"ticketId": ticket_id}),
        ),
        (
            "tickets:getValidTicketsForEvent",
            json!({"eventId": event_id}),
        ),
        (
            "waitingList:getQueuePosition",
            json!({"eventId": event_id, "userId": "user_buyer"}),
        ),
        ("users:getUserById", json!({"userId": "user_buyer"})),
        (
            "users:getUsersStripeConnectId",
            json!({"userId": "user_buyer"}),
        ),
        ("payments:getPurchaseRefusals", json!({"eventId": event_id})),
        (
            "payments:getStripeEvent",
            json!({"stripeEventId": "evt_none"}),
        ),
        ("users:pruneWebhookDeliveries", json!({})),
        ("payments:pruneStripeEvents", json!({})),
        ("waitingList:cleanupExpiredOffers", json!({})),
    ];
    for (path, args) in calls {
        hub.admin(path, args).await;
    }
    let with_details = hub
        .admin(
            "tickets:getTicketWithDetails",
            json!({"ticketId": ticket_id}),
        )
        .await;
    assert!(matches!(with_details.get("event"), Some(Value::Object(_))));
}
