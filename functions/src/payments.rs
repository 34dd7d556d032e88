//! Stripe payments: `POST /stripe-webhook`, the transactions a verified event runs, and the
//! organizer's view of paid checkouts that could not become tickets.
//!
//! Each Stripe event is applied exactly once. The mutation that applies it first looks its
//! id up in `stripeEvents` and records it there in the same transaction, so a redelivery
//! (Stripe retries until it sees a 2xx, and resends on request) changes nothing.
//!
//! A completed checkout runs `events:purchaseTicket`, as the original's Next.js route did.
//! When the purchase is refused (the offer expired, the event was cancelled, the metadata is
//! wrong) the buyer has paid all the same: that transaction is rolled back whole, and a second
//! one records the refusal in `purchaseRefusals` (with the event id, again exactly once) for
//! the organizer to refund; Stripe gets a 2xx so it stops retrying. A refusal is final (an
//! expired or purchased offer never becomes `offered` again, a cancelled event stays
//! cancelled), so deciding it in its own transaction cannot disagree with a later retry.
//!
//! Status codes:
//! - 500 when `STRIPE_WEBHOOK_SECRET` is unset or unusable (logged as an ERROR);
//! - 413 for a body over [`tickethub_runtime::stripe::MAX_BODY_BYTES`] (1 MiB); 400 for a missing, malformed or wrong signature,
//!   a timestamp outside the window, or a body that is not a Stripe event (nothing written);
//! - 200 `{"received": true, "outcome": ...}` once the event is applied, refused and
//!   recorded, recognised as a duplicate, or ignored;
//! - 500 (from the runtime) if applying it fails, so that Stripe retries.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tickethub_runtime::stripe::{StripeSignatureError, StripeVerifier, SIGNATURE_HEADER};
use tickethub_runtime::{v, Args};

use crate::returns;
use tickethub_runtime::{
    ActionCtx, App, Auth, Doc, FnError, HttpRequest, HttpResponse, Identity, LogLevel, MutationCtx,
    NoArgs, QueryCtx, Value,
};

use crate::auth_checks::ensure_acting_for;
use crate::events::{load_event, PaymentInfo};
use crate::stripe::{ChargeRefunded, CheckoutCompleted, StripeEnvelope, StripeEvent};
use crate::tickets::{TicketStatus, TICKETS};
use crate::users::{prune_received_before, PruneResult};
use crate::ReadDb;

pub const STRIPE_WEBHOOK_PATH: &str = "/stripe-webhook";
pub const STRIPE_WEBHOOK_SECRET_ENV: &str = "STRIPE_WEBHOOK_SECRET";

const STRIPE_EVENTS: &str = "stripeEvents";
const PURCHASE_REFUSALS: &str = "purchaseRefusals";

/// How long an applied event id is remembered. Stripe retries for up to three days and keeps
/// events resendable for 30. A checkout resent after that still issues no second ticket: the
/// ticket's payment intent is checked too.
pub const STRIPE_EVENT_RETENTION_MS: f64 = 30.0 * 24.0 * 60.0 * 60.0 * 1000.0;

pub fn register(app: &mut App) {
    let outcome = || returns::outcome(&["applied", "refused", "duplicate", "ignored"]);
    app.internal_mutation("payments:applyCheckoutCompleted", apply_checkout_completed)
        .returns(outcome());
    app.internal_mutation("payments:recordPurchaseRefusal", record_purchase_refusal)
        .returns(outcome());
    app.internal_mutation("payments:applyChargeRefunded", apply_charge_refunded)
        .returns(outcome());
    app.internal_mutation("payments:pruneStripeEvents", prune_stripe_events)
        .returns(returns::pruned());
    app.query("payments:getPurchaseRefusals", get_purchase_refusals)
        .returns(v::array(returns::doc(PURCHASE_REFUSALS)));
    app.internal_query("payments:getStripeEvent", get_stripe_event)
        .returns(v::nullable(returns::doc(STRIPE_EVENTS)));
}

// ---------------------------------------------------------------------------------------------
// The HTTP action

/// What a delivery did.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StripeEventOutcome {
    /// The ticket was issued, or marked refunded.
    Applied,
    /// The purchase was refused and recorded in `purchaseRefusals`.
    Refused,
    /// This event (or this payment's ticket) was already processed: nothing changed.
    Duplicate,
    /// Nothing for Ticket Hub to do (another event type, a partial refund, an unknown charge).
    Ignored,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StripeEventResult {
    pub outcome: StripeEventOutcome,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

#[derive(Serialize)]
struct ReceivedBody {
    received: bool,
    outcome: StripeEventOutcome,
}

fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A configuration problem: an ERROR in the function log and the server log, answered 500.
fn misconfigured(ctx: &ActionCtx, message: String) -> HttpResponse {
    tracing::error!("{message}");
    ctx.log(LogLevel::Error, &message);
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &ErrorBody {
            code: "WebhookSecretNotConfigured",
            message: "The Stripe webhook secret is not configured on this server.".to_string(),
        },
    )
}

/// A delivery that is not an authentic Stripe event: a warning, a 4xx, nothing written. The
/// message is shown in Stripe's dashboard, so it says what to fix.
fn refused(ctx: &ActionCtx, status: StatusCode, code: &str, message: String) -> HttpResponse {
    let line = format!("Stripe webhook delivery refused ({code}): {message}");
    tracing::warn!("{line}");
    ctx.log(LogLevel::Warn, line);
    json_response(status, &ErrorBody { code, message })
}

fn signature_refusal(ctx: &ActionCtx, error: StripeSignatureError) -> HttpResponse {
    let status = match error {
        StripeSignatureError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StripeSignatureError::InvalidSecret { .. }
        | StripeSignatureError::MissingHeader
        | StripeSignatureError::MalformedHeader { .. }
        | StripeSignatureError::NoV1Signature
        | StripeSignatureError::InvalidSignature
        | StripeSignatureError::TimestampTooOld { .. }
        | StripeSignatureError::TimestampTooNew { .. } => StatusCode::BAD_REQUEST,
    };
    refused(ctx, status, error.code(), error.to_string())
}

/// `POST /stripe-webhook`.
pub async fn stripe_webhook(ctx: ActionCtx, request: HttpRequest) -> Result<HttpResponse, FnError> {
    let secret = ctx
        .env(STRIPE_WEBHOOK_SECRET_ENV)
        .filter(|secret| !secret.trim().is_empty());
    let Some(secret) = secret else {
        return Ok(misconfigured(
            &ctx,
            format!("{STRIPE_WEBHOOK_SECRET_ENV} is not configured: cannot verify Stripe webhook deliveries"),
        ));
    };
    let verifier = match StripeVerifier::new(&secret) {
        Ok(verifier) => verifier,
        Err(error) => {
            return Ok(misconfigured(
                &ctx,
                format!("{STRIPE_WEBHOOK_SECRET_ENV} is not usable: {error}"),
            ))
        }
    };
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|value| value.as_bytes());
    if let Err(error) = verifier.verify(signature, request.body()) {
        return Ok(signature_refusal(&ctx, error));
    }
    let envelope: StripeEnvelope = match serde_json::from_slice(request.body()) {
        Ok(envelope) => envelope,
        Err(error) => {
            let code = if error.is_data() {
                "InvalidEvent"
            } else {
                "PayloadNotJson"
            };
            return Ok(refused(
                &ctx,
                StatusCode::BAD_REQUEST,
                code,
                format!("The body is signed but is not a Stripe event: {error}"),
            ));
        }
    };

    // The verified signature is the authority here, not the request's caller: the purchase
    // and refund run as the admin, for whichever user the session names.
    let mut webhook = ctx.clone();
    webhook.auth = Auth::new(Identity::Admin, ctx.auth.enabled());
    let outcome = match envelope.event() {
        StripeEvent::CheckoutCompleted(checkout) => {
            apply_checkout(&webhook, &envelope, checkout).await?
        }
        StripeEvent::ChargeRefunded(refund) => apply_refund(&webhook, &envelope, refund).await?,
        StripeEvent::Other => {
            ctx.log(
                LogLevel::Log,
                format!(
                    "Ignored Stripe event {} of type {}",
                    envelope.id, envelope.event_type
                ),
            );
            StripeEventOutcome::Ignored
        }
    };
    ctx.log(
        LogLevel::Info,
        format!(
            "Stripe event {} ({}) handled: {outcome:?}",
            envelope.id, envelope.event_type
        ),
    );
    Ok(json_response(
        StatusCode::OK,
        &ReceivedBody {
            received: true,
            outcome,
        },
    ))
}

/// A refused purchase: the purchase's own checks said no (its message), or its arguments were
/// not valid ids. Anything else (storage, internal) is an error Stripe should retry.
fn is_refusal(error: &FnError) -> bool {
    match error {
        FnError::Message(_) | FnError::Convex { .. } | FnError::ArgumentValidation(_) => true,
        FnError::ReturnsValidation(_)
        | FnError::NotFound(_)
        | FnError::WrongKind { .. }
        | FnError::Unauthenticated(_)
        | FnError::Store(_)
        | FnError::Internal(_) => false,
    }
}

async fn apply_checkout(
    ctx: &ActionCtx,
    envelope: &StripeEnvelope,
    checkout: CheckoutCompleted,
) -> Result<StripeEventOutcome, FnError> {
    let reason = match checkout.purchase() {
        Ok(purchase) => {
            let applied: Result<StripeEventResult, FnError> = ctx
                .run_mutation(
                    "payments:applyCheckoutCompleted",
                    CheckoutCompletedArgs {
                        stripe_event_id: envelope.id.clone(),
                        event_type: envelope.event_type.clone(),
                        event_id: purchase.event_id,
                        user_id: purchase.user_id,
                        waiting_list_id: purchase.waiting_list_id,
                        payment_info: purchase.payment_info,
                    },
                )
                .await;
            match applied {
                Ok(result) => return Ok(result.outcome),
                Err(error) if is_refusal(&error) => error.to_string(),
                Err(error) => return Err(error),
            }
        }
        Err(missing) => missing.to_string(),
    };
    let result: StripeEventResult = ctx
        .run_mutation(
            "payments:recordPurchaseRefusal",
            PurchaseRefusalArgs {
                stripe_event_id: envelope.id.clone(),
                event_type: envelope.event_type.clone(),
                event_id: checkout.event_id,
                user_id: checkout.user_id,
                waiting_list_id: checkout.waiting_list_id,
                payment_intent_id: checkout.payment_intent_id,
                amount: checkout.amount,
                reason,
            },
        )
        .await?;
    Ok(result.outcome)
}

async fn apply_refund(
    ctx: &ActionCtx,
    envelope: &StripeEnvelope,
    refund: ChargeRefunded,
) -> Result<StripeEventOutcome, FnError> {
    let Some(payment_intent_id) = refund.payment_intent_id else {
        ctx.log(
            LogLevel::Warn,
            format!(
                "Stripe event {}: charge {} has no payment intent; ignored",
                envelope.id,
                refund.charge_id.as_deref().unwrap_or("?")
            ),
        );
        return Ok(StripeEventOutcome::Ignored);
    };
    let result: StripeEventResult = ctx
        .run_mutation(
            "payments:applyChargeRefunded",
            ChargeRefundedArgs {
                stripe_event_id: envelope.id.clone(),
                event_type: envelope.event_type.clone(),
                payment_intent_id,
                fully_refunded: refund.fully_refunded,
            },
        )
        .await?;
    Ok(result.outcome)
}

// ---------------------------------------------------------------------------------------------
// The transactions

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StripeEventRow<'a> {
    stripe_event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    outcome: StripeEventOutcome,
    received_at: f64,
}

/// The record of Stripe event `stripe_event_id`, once it was processed.
fn stripe_event(db: &impl ReadDb, stripe_event_id: &str) -> Result<Option<Doc>, FnError> {
    let stripe_event_id = stripe_event_id.to_string();
    db.table(STRIPE_EVENTS)
        .with_index("by_stripe_event_id", move |q| {
            q.eq("stripeEventId", stripe_event_id)
        })
        .first()
}

fn already_processed(ctx: &MutationCtx, stripe_event_id: &str) -> Result<bool, FnError> {
    Ok(stripe_event(&ctx.db, stripe_event_id)?.is_some())
}

fn record_processed(
    ctx: &MutationCtx,
    stripe_event_id: &str,
    event_type: &str,
    outcome: StripeEventOutcome,
) -> Result<(), FnError> {
    ctx.db.insert(
        STRIPE_EVENTS,
        StripeEventRow {
            stripe_event_id,
            event_type,
            outcome,
            received_at: ctx.now_ms(),
        },
    )?;
    Ok(())
}

fn duplicate(ctx: &MutationCtx, stripe_event_id: &str) -> StripeEventResult {
    ctx.log(
        LogLevel::Info,
        format!("Stripe event {stripe_event_id} already processed; acknowledging"),
    );
    StripeEventResult {
        outcome: StripeEventOutcome::Duplicate,
    }
}

/// The tickets paid with `payment_intent_id` (one per checkout).
fn tickets_paid_with(db: &impl ReadDb, payment_intent_id: &str) -> Result<Vec<Doc>, FnError> {
    let payment_intent_id = payment_intent_id.to_string();
    db.table(TICKETS)
        .with_index("by_payment_intent", move |q| {
            q.eq("paymentIntentId", payment_intent_id)
        })
        .collect()
}

/// One verified `checkout.session.completed` whose metadata names a purchase.
#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutCompletedArgs {
    pub stripe_event_id: String,
    pub event_type: String,
    /// Plain strings: `events:purchaseTicket` validates them as ids, and a refusal of bad
    /// metadata is recorded like any other.
    pub event_id: String,
    pub user_id: String,
    pub waiting_list_id: String,
    pub payment_info: PaymentInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseTicketArgsRef<'a> {
    event_id: &'a str,
    user_id: &'a str,
    waiting_list_id: &'a str,
    payment_info: &'a PaymentInfo,
}

/// Issues the ticket through `events:purchaseTicket`, inline. If the purchase refuses, this
/// whole transaction fails with its message (nothing recorded), and the webhook records the
/// refusal with `payments:recordPurchaseRefusal`.
fn apply_checkout_completed(
    ctx: &MutationCtx,
    args: CheckoutCompletedArgs,
) -> Result<StripeEventResult, FnError> {
    if already_processed(ctx, &args.stripe_event_id)? {
        return Ok(duplicate(ctx, &args.stripe_event_id));
    }
    let payment_intent_id = &args.payment_info.payment_intent_id;
    if !tickets_paid_with(&ctx.db, payment_intent_id)?.is_empty() {
        // Another event for the same payment, or a resend after the id was pruned.
        ctx.log(
            LogLevel::Info,
            format!("A ticket for payment {payment_intent_id} already exists; acknowledging"),
        );
        record_processed(
            ctx,
            &args.stripe_event_id,
            &args.event_type,
            StripeEventOutcome::Duplicate,
        )?;
        return Ok(StripeEventResult {
            outcome: StripeEventOutcome::Duplicate,
        });
    }
    ctx.run_mutation_inline(
        "events:purchaseTicket",
        PurchaseTicketArgsRef {
            event_id: &args.event_id,
            user_id: &args.user_id,
            waiting_list_id: &args.waiting_list_id,
            payment_info: &args.payment_info,
        },
    )?;
    record_processed(
        ctx,
        &args.stripe_event_id,
        &args.event_type,
        StripeEventOutcome::Applied,
    )?;
    Ok(StripeEventResult {
        outcome: StripeEventOutcome::Applied,
    })
}

/// A paid checkout that did not become a ticket. Fields are those the session had.
#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseRefusalArgs {
    pub stripe_event_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// Why: the purchase's refusal message, or the field the session lacked.
    pub reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefusalRow<'a> {
    stripe_event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_list_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_intent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<f64>,
    reason: &'a str,
    refused_at: f64,
}

fn record_purchase_refusal(
    ctx: &MutationCtx,
    args: PurchaseRefusalArgs,
) -> Result<StripeEventResult, FnError> {
    if already_processed(ctx, &args.stripe_event_id)? {
        return Ok(duplicate(ctx, &args.stripe_event_id));
    }
    if let Some(payment_intent_id) = &args.payment_intent_id {
        if !tickets_paid_with(&ctx.db, payment_intent_id)?.is_empty() {
            // A concurrent delivery of this payment issued the ticket in between.
            record_processed(
                ctx,
                &args.stripe_event_id,
                &args.event_type,
                StripeEventOutcome::Duplicate,
            )?;
            return Ok(StripeEventResult {
                outcome: StripeEventOutcome::Duplicate,
            });
        }
    }
    ctx.db.insert(
        PURCHASE_REFUSALS,
        RefusalRow {
            stripe_event_id: &args.stripe_event_id,
            event_id: args.event_id.as_deref(),
            user_id: args.user_id.as_deref(),
            waiting_list_id: args.waiting_list_id.as_deref(),
            payment_intent_id: args.payment_intent_id.as_deref(),
            amount: args.amount,
            reason: &args.reason,
            refused_at: ctx.now_ms(),
        },
    )?;
    record_processed(
        ctx,
        &args.stripe_event_id,
        &args.event_type,
        StripeEventOutcome::Refused,
    )?;
    ctx.log(
        LogLevel::Warn,
        format!(
            "Paid checkout {} refused ({}); recorded for the organizer to refund payment {}",
            args.stripe_event_id,
            args.reason,
            args.payment_intent_id.as_deref().unwrap_or("?")
        ),
    );
    Ok(StripeEventResult {
        outcome: StripeEventOutcome::Refused,
    })
}

/// One verified `charge.refunded` with a payment intent.
#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRefundedArgs {
    pub stripe_event_id: String,
    pub event_type: String,
    pub payment_intent_id: String,
    /// False for a partial refund: the ticket keeps its seat.
    pub fully_refunded: bool,
}

/// Marks the payment's ticket `refunded`; for a refused purchase, stamps its refusal
/// `refundedAt` so the organizer sees it settled. Frees no seat for the queue on its own: a
/// refund usually precedes cancelling the event, which must not hand out new offers.
fn apply_charge_refunded(
    ctx: &MutationCtx,
    args: ChargeRefundedArgs,
) -> Result<StripeEventResult, FnError> {
    if already_processed(ctx, &args.stripe_event_id)? {
        return Ok(duplicate(ctx, &args.stripe_event_id));
    }
    let outcome = refund_outcome(ctx, &args)?;
    record_processed(ctx, &args.stripe_event_id, &args.event_type, outcome)?;
    Ok(StripeEventResult { outcome })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateTicketStatusArgsRef<'a> {
    ticket_id: &'a str,
    status: TicketStatus,
}

fn refund_outcome(
    ctx: &MutationCtx,
    args: &ChargeRefundedArgs,
) -> Result<StripeEventOutcome, FnError> {
    let payment_intent_id = &args.payment_intent_id;
    if !args.fully_refunded {
        ctx.log(
            LogLevel::Info,
            format!("Partial refund of payment {payment_intent_id}: the ticket stays valid"),
        );
        return Ok(StripeEventOutcome::Ignored);
    }
    let tickets = tickets_paid_with(&ctx.db, payment_intent_id)?;
    if !tickets.is_empty() {
        // Through the app's own status change (as the admin), so whatever it keeps in step
        // with a ticket's status stays in step.
        for ticket in &tickets {
            ctx.run_mutation_inline(
                "tickets:updateTicketStatus",
                UpdateTicketStatusArgsRef {
                    ticket_id: &ticket.id,
                    status: TicketStatus::Refunded,
                },
            )?;
        }
        return Ok(StripeEventOutcome::Applied);
    }
    let payment = payment_intent_id.clone();
    let refusals = ctx
        .db
        .query(PURCHASE_REFUSALS)
        .with_index("by_payment_intent", move |q| {
            q.eq("paymentIntentId", payment)
        })
        .collect()?;
    if refusals.is_empty() {
        ctx.log(
            LogLevel::Warn,
            format!("Refund of payment {payment_intent_id}: no ticket or refused purchase has it"),
        );
        return Ok(StripeEventOutcome::Ignored);
    }
    for refusal in &refusals {
        ctx.db.patch_fields(
            &refusal.id,
            vec![("refundedAt".to_string(), Some(Value::from(ctx.now_ms())))],
        )?;
    }
    Ok(StripeEventOutcome::Applied)
}

/// Forget event ids older than [`STRIPE_EVENT_RETENTION_MS`], at most `PRUNE_BATCH` per run.
fn prune_stripe_events(ctx: &MutationCtx, _args: NoArgs) -> Result<PruneResult, FnError> {
    prune_received_before(
        ctx,
        STRIPE_EVENTS,
        STRIPE_EVENT_RETENTION_MS,
        "payments:pruneStripeEvents",
    )
}

// ---------------------------------------------------------------------------------------------
// The organizer's view

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct EventIdArgs {
    #[arg(id = "events")]
    pub event_id: String,
}

/// The paid checkouts of one event that did not become tickets, oldest first; only the
/// event's organizer (or the admin) may read them. `refundedAt` is set once Stripe reports
/// the payment refunded.
fn get_purchase_refusals(ctx: &QueryCtx, args: EventIdArgs) -> Result<Vec<Doc>, FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    ensure_acting_for(&ctx.auth, &event.user_id)?;
    let event_id = event.id;
    ctx.db
        .query(PURCHASE_REFUSALS)
        .with_index("by_event", move |q| q.eq("eventId", event_id))
        .collect()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct StripeEventIdArgs {
    pub stripe_event_id: String,
}

/// Whether (and how) a Stripe event was processed: its `stripeEvents` row, or null. Internal:
/// for operators (with the admin key) answering "did this delivery do anything?".
fn get_stripe_event(ctx: &QueryCtx, args: StripeEventIdArgs) -> Result<Option<Doc>, FnError> {
    stripe_event(&ctx.db, &args.stripe_event_id)
}
