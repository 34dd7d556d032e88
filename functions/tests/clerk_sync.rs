//! Clerk user sync through the signed webhook: mapping, dedupe, ordering, tombstones, and
//! that Clerk never overwrites the Stripe Connect id.

mod common;

use common::{str_field, AuthMode, Hub};
use serde_json::{json, Value as Json};
use tickethub_runtime::Value;

fn clerk_user(id: &str, first: &str, updated_at: u64) -> Json {
    json!({
        "id": id, "object": "user",
        "first_name": first, "last_name": "Lovelace", "username": null,
        "primary_email_address_id": "idn_2email1",
        "email_addresses": [
            {"id": "idn_2email0", "object": "email_address", "email_address": "old@example.org", "linked_to": []},
            {"id": "idn_2email1", "object": "email_address", "email_address": "ada@example.org", "linked_to": []}
        ],
        "primary_phone_number_id": "idn_2phone1",
        "phone_numbers": [{"id": "idn_2phone1", "object": "phone_number", "phone_number": "+15555550100"}],
        "public_metadata": {}, "private_metadata": {}, "unsafe_metadata": {},
        "created_at": 1764000000000u64, "updated_at": updated_at
    })
}

fn event(kind: &str, data: Json) -> Json {
    json!({"data": data, "object": "event", "type": kind, "timestamp": 1764000200000u64,
           "instance_id": "ins_test", "event_attributes": {"http_request": {"client_ip": "", "user_agent": ""}}})
}

async fn user_row(hub: &Hub, user_id: &str) -> Value {
    hub.admin("users:getUserById", json!({"userId": user_id}))
        .await
}

#[tokio::test]
async fn created_user_uses_the_primary_email_by_id() {
    let hub = Hub::new(AuthMode::Enabled);
    let (status, _) = hub
        .deliver(
            "msg_1",
            &event("user.created", clerk_user("user_ada", "Ada", 100)),
        )
        .await;
    assert_eq!(status, 200);
    let row = user_row(&hub, "user_ada").await;
    assert_eq!(str_field(&row, "name"), "Ada Lovelace");
    assert_eq!(str_field(&row, "email"), "ada@example.org");
    assert_eq!(str_field(&row, "phone"), "+15555550100");
    assert_eq!(str_field(&row, "userId"), "user_ada");
    assert!(row.get("stripeConnectId").is_none());
}

#[tokio::test]
async fn updates_keep_the_stripe_connect_id() {
    let hub = Hub::new(AuthMode::Enabled);
    hub.deliver(
        "msg_1",
        &event("user.created", clerk_user("user_ada", "Ada", 100)),
    )
    .await;
    hub.admin(
        "users:updateOrCreateUserStripeConnectId",
        json!({"userId": "user_ada", "stripeConnectId": "acct_1"}),
    )
    .await;
    let mut updated = clerk_user("user_ada", "Augusta", 200);
    updated["phone_numbers"] = json!([]);
    updated["primary_phone_number_id"] = json!(null);
    let (status, _) = hub.deliver("msg_2", &event("user.updated", updated)).await;
    assert_eq!(status, 200);
    let row = user_row(&hub, "user_ada").await;
    assert_eq!(str_field(&row, "name"), "Augusta Lovelace");
    assert_eq!(str_field(&row, "stripeConnectId"), "acct_1");
    assert!(row.get("phone").is_none(), "Clerk removed the phone: {row}");
    let connect = hub
        .admin(
            "users:getUsersStripeConnectId",
            json!({"userId": "user_ada"}),
        )
        .await;
    assert_eq!(connect, Value::String("acct_1".into()));
}

#[tokio::test]
async fn a_retried_delivery_is_acknowledged_but_applied_once() {
    let hub = Hub::new(AuthMode::Enabled);
    let created = event("user.created", clerk_user("user_ada", "Ada", 100));
    assert_eq!(hub.deliver("msg_1", &created).await.0, 200);
    // The organizer renames themselves through the app; a retry of the old delivery must not undo it.
    hub.admin(
        "users:updateUser",
        json!({"userId": "user_ada", "name": "Ada L.", "email": "ada@example.org"}),
    )
    .await;
    assert_eq!(hub.deliver("msg_1", &created).await.0, 200);
    assert_eq!(
        str_field(&user_row(&hub, "user_ada").await, "name"),
        "Ada L."
    );
    let outcome = hub
        .admin(
            "users:applyClerkEvent",
            json!({"svixId": "msg_1", "eventType": "user.created", "data": clerk_user("user_ada", "Ada", 100)}),
        )
        .await;
    assert_eq!(str_field(&outcome, "outcome"), "duplicate");
}

#[tokio::test]
async fn an_older_update_arriving_late_is_ignored() {
    let hub = Hub::new(AuthMode::Enabled);
    hub.deliver(
        "msg_new",
        &event("user.updated", clerk_user("user_ada", "Newer", 300)),
    )
    .await;
    let (status, _) = hub
        .deliver(
            "msg_old",
            &event("user.updated", clerk_user("user_ada", "Older", 200)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        str_field(&user_row(&hub, "user_ada").await, "name"),
        "Newer Lovelace"
    );
}

#[tokio::test]
async fn a_deleted_user_is_never_resurrected() {
    let hub = Hub::new(AuthMode::Enabled);
    hub.deliver(
        "msg_1",
        &event("user.created", clerk_user("user_ada", "Ada", 100)),
    )
    .await;
    let deleted = event(
        "user.deleted",
        json!({"id": "user_ada", "object": "user", "deleted": true}),
    );
    assert_eq!(hub.deliver("msg_2", &deleted).await.0, 200);
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
    // A retry of the creation, and even an update claiming to be newer, arrive after the deletion.
    assert_eq!(
        hub.deliver(
            "msg_1",
            &event("user.created", clerk_user("user_ada", "Ada", 100))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        hub.deliver(
            "msg_3",
            &event("user.updated", clerk_user("user_ada", "Ada", 900))
        )
        .await
        .0,
        200
    );
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
    // Deleting a user we never had is fine too.
    let unknown = event(
        "user.deleted",
        json!({"id": "user_never", "object": "user", "deleted": true}),
    );
    assert_eq!(hub.deliver("msg_4", &unknown).await.0, 200);
}

#[tokio::test]
async fn other_event_types_are_acknowledged() {
    let hub = Hub::new(AuthMode::Enabled);
    let (status, _) = hub
        .deliver("msg_s", &event("session.created", json!({"id": "sess_1"})))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_writes_nothing() {
    let hub = Hub::new(AuthMode::Enabled);
    let body = event("user.created", clerk_user("user_ada", "Ada", 100));
    let (status, _) = hub
        .deliver_signed("msg_1", &body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .await;
    assert_eq!(status, 400);
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
    // Unsigned.
    let request = http::Request::builder()
        .method("POST")
        .uri("/clerk-users-webhook")
        .body(bytes::Bytes::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    assert_eq!(hub.post(request).await.0, 400);
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
    // The same delivery properly signed goes through (the failed attempts did not mark it seen).
    assert_eq!(hub.deliver("msg_1", &body).await.0, 200);
    assert_eq!(
        str_field(&user_row(&hub, "user_ada").await, "email"),
        "ada@example.org"
    );
}

#[tokio::test]
async fn a_missing_secret_is_a_server_error_not_a_panic() {
    let hub = Hub::with_env(AuthMode::Enabled, []);
    let (status, _) = hub
        .deliver(
            "msg_1",
            &event("user.created", clerk_user("user_ada", "Ada", 100)),
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
}

#[tokio::test]
async fn upsert_directly_maps_names_and_never_touches_stripe() {
    let hub = Hub::new(AuthMode::Disabled);
    let mut data = clerk_user("user_bob", "", 100);
    data["last_name"] = json!(null);
    data["username"] = json!("bobby");
    hub.admin("users:upsertUserFromClerk", json!({"data": data.clone()}))
        .await;
    assert_eq!(
        str_field(&user_row(&hub, "user_bob").await, "name"),
        "bobby"
    );
    hub.admin(
        "users:updateOrCreateUserStripeConnectId",
        json!({"userId": "user_bob", "stripeConnectId": "acct_9"}),
    )
    .await;
    data["username"] = json!(null);
    hub.admin("users:upsertUserFromClerk", json!({"data": data}))
        .await;
    let row = user_row(&hub, "user_bob").await;
    assert_eq!(str_field(&row, "name"), "ada@example.org");
    assert_eq!(str_field(&row, "stripeConnectId"), "acct_9");
    hub.admin("users:deleteUser", json!({"userId": "user_bob"}))
        .await;
    hub.admin("users:deleteUser", json!({"userId": "user_bob"}))
        .await;
    assert_eq!(user_row(&hub, "user_bob").await, Value::Null);
    let missing = hub
        .error(
            &tickethub_runtime::Identity::Admin,
            "users:updateOrCreateUserStripeConnectId",
            json!({"userId": "user_bob", "stripeConnectId": "acct_9"}),
        )
        .await;
    assert_eq!(missing, "User not found");
}

#[tokio::test]
async fn delivery_ids_are_forgotten_after_a_week_but_tombstones_stay() {
    let hub = Hub::new(AuthMode::Enabled);
    hub.deliver(
        "msg_1",
        &event("user.created", clerk_user("user_ada", "Ada", 100)),
    )
    .await;
    let deleted = event(
        "user.deleted",
        json!({"id": "user_ada", "object": "user", "deleted": true}),
    );
    hub.deliver("msg_2", &deleted).await;
    let kept = hub.admin("users:pruneWebhookDeliveries", json!({})).await;
    assert_eq!(common::num_field(&kept, "deleted"), 0.0);
    hub.rt.advance_time(8.0 * 24.0 * 3_600_000.0).await.unwrap();
    // Whether the hourly cron got there first or this run does it, afterwards nothing is left.
    hub.admin("users:pruneWebhookDeliveries", json!({})).await;
    let again = hub.admin("users:pruneWebhookDeliveries", json!({})).await;
    assert_eq!(common::num_field(&again, "deleted"), 0.0);
    // A replay of the creation is no longer recognised as a duplicate, yet it cannot resurrect.
    let outcome = hub
        .admin(
            "users:applyClerkEvent",
            json!({"svixId": "msg_1", "eventType": "user.created", "data": clerk_user("user_ada", "Ada", 100)}),
        )
        .await;
    assert_eq!(str_field(&outcome, "outcome"), "tombstoned");
    assert_eq!(user_row(&hub, "user_ada").await, Value::Null);
}

#[tokio::test]
async fn a_full_prune_batch_runs_again_until_the_backlog_is_gone() {
    let hub = Hub::new(AuthMode::Enabled);
    // Start the scheduler's clock for the crons (the first look sets their next runs).
    hub.rt.advance_time(0.0).await.unwrap();
    // More deliveries than one prune batch holds (500), all of them past retention at once.
    let deliveries = ticket_hub_functions::users::PRUNE_BATCH * 2 + 100;
    for i in 0..deliveries {
        hub.admin(
            "users:applyClerkEvent",
            json!({"svixId": format!("bulk_{i}"), "eventType": "user.updated",
                   "data": clerk_user("user_bulk", "Bulk", 100 + i as u64)}),
        )
        .await;
    }
    let stored = |hub: &Hub| {
        let snapshot = hub.rt.store().read().unwrap();
        let query = tickethub_store::IndexQuery::full_scan(
            "webhookDeliveries",
            tickethub_store::Order::Asc,
        );
        use tickethub_store::DocReader;
        snapshot.collect(&query, None).unwrap().len()
    };
    assert_eq!(stored(&hub), deliveries);
    // The hourly cron fires once after the jump; its full batches re-run it right away, and
    // advance_time waits for those runs too.
    hub.rt.advance_time(8.0 * 24.0 * 3_600_000.0).await.unwrap();
    assert_eq!(stored(&hub), 0, "the prune stopped after one batch");
}
