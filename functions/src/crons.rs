//! Recurring jobs.

use tickethub_runtime::{App, CronSchedule, Value};

/// Sweeps offers whose scheduled expiry did not run (e.g. the server was down at the time).
pub const CLEANUP_EXPIRED_OFFERS: &str = "cleanup-expired-offers";

/// Forgets webhook delivery ids past their retention, so the dedupe table stays bounded.
pub const PRUNE_WEBHOOK_DELIVERIES: &str = "prune-webhook-deliveries";

/// Forgets Stripe event ids past their retention, so that dedupe table stays bounded too.
pub const PRUNE_STRIPE_EVENTS: &str = "prune-stripe-events";

pub fn register(app: &mut App) {
    app.cron(
        CLEANUP_EXPIRED_OFFERS,
        CronSchedule::Interval { ms: 60_000 },
        "waitingList:cleanupExpiredOffers",
        Value::Object(Default::default()),
    );
    app.cron(
        PRUNE_WEBHOOK_DELIVERIES,
        CronSchedule::Interval { ms: 60 * 60 * 1000 },
        "users:pruneWebhookDeliveries",
        Value::Object(Default::default()),
    );
    app.cron(
        PRUNE_STRIPE_EVENTS,
        CronSchedule::Interval { ms: 60 * 60 * 1000 },
        "payments:pruneStripeEvents",
        Value::Object(Default::default()),
    );
}
