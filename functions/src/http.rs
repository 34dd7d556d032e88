//! HTTP routes: `POST /clerk-users-webhook`, Clerk's user sync (here), and `POST /stripe-webhook`,
//! Stripe's payment events (in [`crate::payments`]).
//!
//! Status codes (Clerk/Svix retry anything that is not 2xx):
//! - 500 when `CLERK_WEBHOOK_SECRET` is unset or malformed (logged as an ERROR: an operator
//!   must fix the configuration; retries will succeed once they do);
//! - 400 when the signature, headers, timestamp or body do not verify (nothing is written);
//! - 200 once the delivery is applied, recognised as a duplicate, or ignored;
//! - 500 (from the runtime) if applying it fails, so that Clerk retries.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use tickethub_runtime::WebhookVerifier;
use tickethub_runtime::{
    ActionCtx, App, FnError, HttpRequest, HttpResponse, LogLevel, Route, Value,
};

use crate::users::{ClerkEventArgs, ClerkEventResult};

pub const CLERK_WEBHOOK_PATH: &str = "/clerk-users-webhook";
pub const CLERK_WEBHOOK_SECRET_ENV: &str = "CLERK_WEBHOOK_SECRET";

pub fn register(app: &mut App) {
    app.http_route(
        Route::exact(Method::POST, CLERK_WEBHOOK_PATH),
        clerk_users_webhook,
    );
    app.http_route(
        Route::exact(Method::POST, crate::payments::STRIPE_WEBHOOK_PATH),
        crate::payments::stripe_webhook,
    );
}

/// The envelope of a Clerk webhook event.
#[derive(Deserialize)]
struct ClerkEnvelope {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
    /// Milliseconds since the epoch.
    timestamp: Option<f64>,
}

fn text_response(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    response
}

/// A configuration problem: logged as an ERROR both to the function's log lines and to the
/// server log (HTTP actions' function logs are not shown by default), answered with 500.
fn misconfigured(ctx: &ActionCtx, message: String) -> HttpResponse {
    tracing::error!("{message}");
    ctx.log(LogLevel::Error, message);
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Webhook secret not configured",
    )
}

/// A delivery that does not verify: logged as a warning, answered with 400, nothing written.
fn refused(ctx: &ActionCtx, message: String) -> HttpResponse {
    tracing::warn!("{message}");
    ctx.log(LogLevel::Warn, message);
    text_response(StatusCode::BAD_REQUEST, "Error occured")
}

async fn clerk_users_webhook(
    ctx: ActionCtx,
    request: HttpRequest,
) -> Result<HttpResponse, FnError> {
    let secret = ctx
        .env(CLERK_WEBHOOK_SECRET_ENV)
        .filter(|secret| !secret.trim().is_empty());
    let Some(secret) = secret else {
        return Ok(misconfigured(
            &ctx,
            format!("{CLERK_WEBHOOK_SECRET_ENV} is not configured: cannot verify Clerk webhook deliveries"),
        ));
    };
    let verifier = match WebhookVerifier::new(&secret) {
        Ok(verifier) => verifier,
        Err(error) => {
            return Ok(misconfigured(
                &ctx,
                format!("{CLERK_WEBHOOK_SECRET_ENV} is not usable: {error}"),
            ))
        }
    };
    let delivery = match verifier.verify(request.headers(), request.body()) {
        Ok(delivery) => delivery,
        Err(error) => {
            return Ok(refused(
                &ctx,
                format!("Error verifying webhook event ({}): {error}", error.code()),
            ));
        }
    };
    let envelope: ClerkEnvelope = match serde_json::from_value(delivery.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            return Ok(refused(
                &ctx,
                format!("Clerk webhook body is not an event envelope: {error}"),
            ))
        }
    };
    let data: Value = tickethub_runtime::to_value(&envelope.data)
        .map_err(|error| FnError::Internal(error.to_string()))?;
    let result: ClerkEventResult = ctx
        .run_mutation(
            "users:applyClerkEvent",
            ClerkEventArgs {
                svix_id: delivery.id,
                event_type: envelope.event_type,
                data,
                event_timestamp: envelope.timestamp,
            },
        )
        .await?;
    ctx.log(
        LogLevel::Info,
        format!("Clerk webhook delivery handled: {:?}", result.outcome),
    );
    Ok(text_response(StatusCode::OK, ""))
}
