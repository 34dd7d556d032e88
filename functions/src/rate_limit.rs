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
    pub max: u32,
    pub window_ms: f64,
}

/// Waiting-list joins: 3 per 30 minutes per user (the original's `queueJoin` limit).
pub const JOIN_WAITING_LIST: FixedWindow = FixedWindow {
    max: 3,
    window_ms: 30.0 * 60.0 * 1000.0,
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    key: &'a str,
    window_start: f64,
    count: f64,
}

/// Count one event for `key`, or refuse with a ConvexError whose data is the string
/// [`refusal_message`] (the original front end shows `error.data` in a toast).
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
        let message = refusal_message(window_end - now);
        // String data, as the original's `throw new ConvexError(message)`; the message the
        // client builds carries the same text, which the front end matches with `includes`.
        return Err(FnError::with_data(message.clone(), message));
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

/// The original's refusal text, word for word: `N` is `Math.ceil(retryAfter / 60000)`, and
/// "minutes" stays plural even for 1, as there.
pub fn refusal_message(retry_after_ms: f64) -> String {
    let wait_minutes = (retry_after_ms / 60_000.0).ceil();
    format!(
        "You've joined the waiting list too many times. Please wait {wait_minutes} minutes before trying again."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_message_is_the_originals() {
        assert_eq!(
            refusal_message(11.5 * 60_000.0),
            "You've joined the waiting list too many times. Please wait 12 minutes before trying again."
        );
        assert_eq!(
            refusal_message(5_000.0),
            "You've joined the waiting list too many times. Please wait 1 minutes before trying again."
        );
        assert_eq!(
            refusal_message(30.0 * 60_000.0),
            "You've joined the waiting list too many times. Please wait 30 minutes before trying again."
        );
    }
}
