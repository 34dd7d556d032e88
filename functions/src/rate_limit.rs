//! A fixed-window rate limiter whose state lives in the `rateLimits` table
//! (`key`, `windowStart`, `count`; index `by_key`).
//!
//! Because it runs inside the caller's mutation, a refused or failed call leaves no trace:
//! only calls that commit are counted.

use serde::Serialize;
use tickethub_runtime::{FnError, MutationCtx};

const TABLE: &str = "rateLimits";

/// One limit: at most `max` events per `window_ms`, per key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedWindow {
    /// Shown in the refusal message ("join at most 3 waiting lists").
    pub action: &'static str,
    pub max: u32,
    pub window_ms: f64,
}

/// Waiting-list joins: 3 per 30 minutes per user.
pub const JOIN_WAITING_LIST: FixedWindow = FixedWindow {
    action: "join at most 3 waiting lists",
    max: 3,
    window_ms: 30.0 * 60.0 * 1000.0,
};

/// The `data` of the ConvexError a refusal throws.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimited {
    /// Always `"RateLimited"`.
    pub kind: &'static str,
    /// Milliseconds until the window resets.
    pub retry_after_ms: f64,
    pub message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    key: &'a str,
    window_start: f64,
    count: f64,
}

/// Count one event for `key`, or refuse with a ConvexError carrying [`RateLimited`].
pub fn consume(ctx: &MutationCtx, limit: FixedWindow, key: &str) -> Result<(), FnError> {
    let now = ctx.now_ms();
    let existing = ctx
        .db
        .query(TABLE)
        .with_index("by_key", |q| q.eq("key", key))
        .first()?;
    let Some(row) = existing else {
        ctx.db.insert(
            TABLE,
            Row {
                key,
                window_start: now,
                count: 1.0,
            },
        )?;
        return Ok(());
    };
    let window_start = row.get_f64("windowStart").unwrap_or(0.0);
    let count = row.get_f64("count").unwrap_or(0.0);
    let window_end = window_start + limit.window_ms;
    if now >= window_end {
        ctx.db.patch(
            &row.id,
            Row {
                key,
                window_start: now,
                count: 1.0,
            },
        )?;
        return Ok(());
    }
    if count >= f64::from(limit.max) {
        let retry_after_ms = window_end - now;
        let message = refusal_message(limit, retry_after_ms);
        return Err(FnError::with_data(
            message.clone(),
            RateLimited {
                kind: "RateLimited",
                retry_after_ms,
                message,
            },
        ));
    }
    ctx.db.patch(
        &row.id,
        Row {
            key,
            window_start,
            count: count + 1.0,
        },
    )?;
    Ok(())
}

/// `Rate limit exceeded: you can join at most 3 waiting lists per 30 minutes. Try again in 12 minutes.`
pub fn refusal_message(limit: FixedWindow, retry_after_ms: f64) -> String {
    let window_minutes = (limit.window_ms / 60_000.0).round();
    // Round up: "try again in 0 minutes" would be wrong until the window really ends.
    let wait_minutes = (retry_after_ms / 60_000.0).ceil().max(1.0);
    let unit = if wait_minutes == 1.0 {
        "minute"
    } else {
        "minutes"
    };
    format!(
        "Rate limit exceeded: you can {} per {window_minutes} minutes. Try again in {wait_minutes} {unit}.",
        limit.action
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_message_rounds_the_wait_up() {
        assert_eq!(
            refusal_message(JOIN_WAITING_LIST, 11.5 * 60_000.0),
            "Rate limit exceeded: you can join at most 3 waiting lists per 30 minutes. Try again in 12 minutes."
        );
        assert_eq!(
            refusal_message(JOIN_WAITING_LIST, 5_000.0),
            "Rate limit exceeded: you can join at most 3 waiting lists per 30 minutes. Try again in 1 minute."
        );
    }
}
