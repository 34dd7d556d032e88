//! The workloads, written once and spoken in each peer's HTTP dialect: tickethub's Convex JSON
//! RPC (`POST /api/query|mutation`), PocketBase's records REST API, and the hello server.
//!
//! User ids are `<tag>-<n>`: seeded users use the tag `seed`, each measured run its own tag, so
//! "create" always inserts a new row and "read" always finds one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::Mutex;

use crate::loadgen::{Op, OpKind, OpMeta, Rejected, Workload};

/// The Svix signing secret the benchmark gives tickethub (`CLERK_WEBHOOK_SECRET`).
pub const WEBHOOK_SECRET: &str = "whsec_GKD6mNaUjR4+6IY8kdGCDlfPOycgkoel";

/// The Stripe endpoint secret the benchmark gives tickethub (`STRIPE_WEBHOOK_SECRET`).
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_bench0f7e3a9c51d24b86a0e1c7d93f5b2a64";

/// Which server dialect requests are written in.
#[derive(Clone, Debug)]
pub enum Api {
    /// tickethub: Convex JSON RPC on the API port; `admin_key` is sent as `Convex <key>`.
    Convex { admin_key: Option<String> },
    /// PocketBase records API on the `users` collection.
    PocketBase,
    /// The bare hyper server: any request gets the fixed answer.
    Hello,
}

/// What share of requests does what.
#[derive(Clone, Debug)]
pub enum Mix {
    /// Every request creates a new user (durable write).
    Create,
    /// Every request reads a seeded user by an indexed field.
    Read,
    /// `read_percent` reads, the rest creates.
    Mixed { read_percent: u32 },
    /// Updates of seeded users; `hot_percent` of them go to one hot user (seed 0).
    Update { hot_percent: u32 },
    /// Signed Clerk `user.created` deliveries to `/clerk-users-webhook`.
    Webhook,
    /// Signed Stripe `charge.refunded` deliveries to `/stripe-webhook`, each a new event for a
    /// payment no ticket has: verified, parsed, and one durable transaction (the event-id
    /// dedupe lookup and record, the payment-intent lookups).
    StripeWebhook,
}

/// Seeded users (`seed-0 .. seed-<count-1>`) and, for PocketBase, their record ids (needed to
/// PATCH).
#[derive(Default)]
pub struct SeedIds {
    pub count: u64,
    /// PocketBase record id per seed index, filled while seeding.
    pub record_ids: Mutex<Vec<Option<String>>>,
}

pub fn seed_user_id(n: u64) -> String {
    format!("seed-{n}")
}

pub struct UsersWorkload {
    api: Api,
    mix: Mix,
    /// Prefix of user ids this workload creates.
    tag: String,
    seed: Arc<SeedIds>,
    counter: AtomicU64,
    /// Stop after this many requests (seeding); `None` = until the time is up.
    limit: Option<u64>,
    webhook: svix::webhooks::Webhook,
}

impl UsersWorkload {
    pub fn new(api: Api, mix: Mix, tag: &str, seed: Arc<SeedIds>) -> UsersWorkload {
        UsersWorkload {
            api,
            mix,
            tag: tag.to_string(),
            seed,
            counter: AtomicU64::new(0),
            limit: None,
            webhook: svix::webhooks::Webhook::new(WEBHOOK_SECRET)
                .expect("the benchmark's webhook secret is well-formed"),
        }
    }

    /// A workload that creates exactly `count` users `seed-0 .. seed-<count-1>`.
    pub fn seeding(api: Api, seed: Arc<SeedIds>, count: u64) -> UsersWorkload {
        *seed.record_ids.lock().expect("seed lock") = vec![None; count as usize];
        let mut w = UsersWorkload::new(api, Mix::Create, "seed", seed);
        w.limit = Some(count);
        w
    }

    fn random_seed(&self, rng: &mut SmallRng) -> u64 {
        rng.gen_range(0..self.seed.count.max(1))
    }

    fn create(&self, seq: u64) -> Op {
        let user_id = format!("{}-{seq}", self.tag);
        let name = format!("Bench User {seq}");
        let email = format!("{user_id}@bench.example");
        let request = match &self.api {
            Api::Convex { admin_key } => convex_call(
                "mutation",
                "users:updateUser",
                &format!(r#"{{"userId":"{user_id}","name":"{name}","email":"{email}"}}"#),
                admin_key.as_deref(),
            ),
            Api::PocketBase => json_request(
                Method::POST,
                "/api/collections/users/records",
                format!(r#"{{"userId":"{user_id}","name":"{name}","email":"{email}"}}"#),
            ),
            Api::Hello => hello_request(),
        };
        Op {
            meta: OpMeta {
                kind: OpKind::Create,
                seq,
                ack: Some(user_id),
            },
            request,
        }
    }

    fn read(&self, n: u64) -> Op {
        let user_id = seed_user_id(n);
        let request = match &self.api {
            Api::Convex { admin_key } => convex_call(
                "query",
                "users:getUserById",
                &format!(r#"{{"userId":"{user_id}"}}"#),
                admin_key.as_deref(),
            ),
            Api::PocketBase => empty_request(
                Method::GET,
                &format!(
                    "/api/collections/users/records?filter=userId%3D%27{user_id}%27&perPage=1&skipTotal=1"
                ),
            ),
            Api::Hello => hello_request(),
        };
        Op {
            meta: OpMeta {
                kind: OpKind::Read,
                seq: n,
                ack: None,
            },
            request,
        }
    }

    fn update(&self, n: u64, seq: u64) -> Op {
        let user_id = seed_user_id(n);
        let name = format!("Renamed {seq}");
        let request = match &self.api {
            Api::Convex { admin_key } => convex_call(
                "mutation",
                "users:updateUser",
                &format!(
                    r#"{{"userId":"{user_id}","name":"{name}","email":"{user_id}@bench.example"}}"#
                ),
                admin_key.as_deref(),
            ),
            Api::PocketBase => {
                let record = self.seed.record_ids.lock().expect("seed lock")[n as usize]
                    .clone()
                    .unwrap_or_default();
                json_request(
                    Method::PATCH,
                    &format!("/api/collections/users/records/{record}"),
                    format!(r#"{{"name":"{name}"}}"#),
                )
            }
            Api::Hello => hello_request(),
        };
        Op {
            meta: OpMeta {
                kind: OpKind::Update,
                seq: n,
                ack: None,
            },
            request,
        }
    }

    fn webhook_delivery(&self, seq: u64) -> Op {
        let clerk_id = format!("user_{}_{seq}", self.tag.replace('-', "_"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let body = clerk_user_created(&clerk_id, seq, now.as_millis() as u64);
        let msg_id = format!("msg_bench_{}_{seq}", self.tag.replace('-', "_"));
        let timestamp = now.as_secs() as i64;
        let signature = self
            .webhook
            .sign(&msg_id, timestamp, body.as_bytes())
            .expect("a UTF-8 body signs");
        let request = Request::builder()
            .method(Method::POST)
            .uri("/clerk-users-webhook")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("svix-id", msg_id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        Op {
            meta: OpMeta {
                kind: OpKind::Webhook,
                seq,
                ack: Some(clerk_id),
            },
            request,
        }
    }

    fn stripe_delivery(&self, seq: u64) -> Op {
        let tag = self.tag.replace('-', "_");
        let event_id = format!("evt_bench_{tag}_{seq}");
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let body = stripe_charge_refunded(&event_id, &format!("pi_bench_{tag}_{seq}"), timestamp);
        let signature = stripe_signature(STRIPE_WEBHOOK_SECRET, timestamp, body.as_bytes());
        let request = Request::builder()
            .method(Method::POST)
            .uri("/stripe-webhook")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        Op {
            meta: OpMeta {
                kind: OpKind::Webhook,
                seq,
                ack: Some(event_id),
            },
            request,
        }
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret bytes, "<t>.<body>")>`: Stripe's scheme, so the benchmark
/// can sign at load (the end-to-end tests sign with Stripe's own npm package).
pub fn stripe_signature(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp_secs}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A Stripe `charge.refunded` event (the fields Ticket Hub reads, and a few it does not).
pub fn stripe_charge_refunded(event_id: &str, payment_intent_id: &str, created: i64) -> String {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "api_version": "2025-02-24.acacia",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "type": "charge.refunded",
        "data": {"object": {
            "id": format!("ch_{event_id}"),
            "object": "charge",
            "amount": 4999,
            "amount_refunded": 4999,
            "currency": "usd",
            "payment_intent": payment_intent_id,
            "refunded": true,
            "status": "succeeded"
        }}
    })
    .to_string()
}

impl Workload for UsersWorkload {
    fn next(&self, _worker: usize, rng: &mut SmallRng) -> Option<Op> {
        let seq = self.counter.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|l| seq >= l) {
            return None;
        }
        Some(match &self.mix {
            Mix::Create => self.create(seq),
            Mix::Read => self.read(self.random_seed(rng)),
            Mix::Mixed { read_percent } => {
                if rng.gen_range(0..100) < *read_percent {
                    self.read(self.random_seed(rng))
                } else {
                    self.create(seq)
                }
            }
            Mix::Update { hot_percent } => {
                let n = if rng.gen_range(0..100) < *hot_percent {
                    0
                } else {
                    // The cold ones never include the hot user.
                    rng.gen_range(1..self.seed.count.max(2))
                };
                self.update(n, seq)
            }
            Mix::Webhook => self.webhook_delivery(seq),
            Mix::StripeWebhook => self.stripe_delivery(seq),
        })
    }

    fn check(&self, meta: &OpMeta, status: StatusCode, body: &[u8]) -> Result<(), Rejected> {
        if status != StatusCode::OK {
            return Err(Rejected(format!(
                "{:?}: HTTP {status}: {}",
                meta.kind,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        match (&self.api, meta.kind) {
            (Api::Convex { .. }, OpKind::Webhook) | (Api::Hello, _) => Ok(()),
            (Api::Convex { .. }, kind) => {
                if !contains(body, br#""status":"success""#) {
                    return Err(Rejected(format!(
                        "{kind:?}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )));
                }
                if kind == OpKind::Read && contains(body, br#""value":null"#) {
                    return Err(Rejected(format!("{kind:?}: seeded user not found")));
                }
                Ok(())
            }
            (Api::PocketBase, OpKind::Read) => {
                if contains(body, br#""items":[]"#) {
                    return Err(Rejected("Read: seeded user not found".into()));
                }
                Ok(())
            }
            (Api::PocketBase, OpKind::Create) => {
                if self.limit.is_some() {
                    // Seeding: remember the record id for later PATCHes.
                    let record: serde_json::Value = serde_json::from_slice(body)
                        .map_err(|e| Rejected(format!("Create: bad JSON: {e}")))?;
                    let id = record["id"].as_str().map(str::to_string);
                    if id.is_none() {
                        return Err(Rejected("Create: no record id".into()));
                    }
                    self.seed.record_ids.lock().expect("seed lock")[meta.seq as usize] = id;
                }
                Ok(())
            }
            (Api::PocketBase, _) => Ok(()),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `POST /api/<kind>` with Convex's JSON RPC body; `args_json` is one argument object.
pub fn convex_call(
    kind: &str,
    path: &str,
    args_json: &str,
    admin_key: Option<&str>,
) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"path":"{path}","format":"json","args":[{args_json}]}}"#);
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/{kind}"))
        .header("host", "127.0.0.1")
        .header("content-type", "application/json");
    if let Some(key) = admin_key {
        builder = builder.header("authorization", format!("Convex {key}"));
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("valid request")
}

fn json_request(method: Method, uri: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request")
}

fn empty_request(method: Method, uri: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

/// The hello server gets the same bytes a `getUserById` query sends.
fn hello_request() -> Request<Full<Bytes>> {
    convex_call("query", "users:getUserById", r#"{"userId":"seed-1"}"#, None)
}

/// A Clerk-shaped `user.created` event (see the Clerk/Svix spec).
pub fn clerk_user_created(clerk_id: &str, seq: u64, now_ms: u64) -> String {
    serde_json::json!({
        "data": {
            "id": clerk_id,
            "object": "user",
            "first_name": "Bench",
            "last_name": format!("User{seq}"),
            "username": null,
            "image_url": "https://img.example/bench.png",
            "primary_email_address_id": "idn_primary",
            "email_addresses": [
                {"id": "idn_other", "object": "email_address", "email_address": format!("old-{clerk_id}@bench.example"), "verification": {"status": "verified", "strategy": "email_code"}, "linked_to": []},
                {"id": "idn_primary", "object": "email_address", "email_address": format!("{clerk_id}@bench.example"), "verification": {"status": "verified", "strategy": "email_code"}, "linked_to": []}
            ],
            "primary_phone_number_id": null,
            "phone_numbers": [],
            "public_metadata": {}, "private_metadata": {}, "unsafe_metadata": {},
            "external_id": null,
            "created_at": now_ms,
            "updated_at": now_ms,
            "last_sign_in_at": null,
            "password_enabled": true,
            "two_factor_enabled": false
        },
        "object": "event",
        "type": "user.created",
        "timestamp": now_ms,
        "instance_id": "ins_bench",
        "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "bench"}}
    })
    .to_string()
}
