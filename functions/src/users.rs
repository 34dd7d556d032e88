//! The `users` table: one row per Clerk user (`userId` = Clerk id), synced from Clerk's
//! webhooks, plus the organizer's Stripe Connect id, which only Ticket Hub writes.
//!
//! `users:applyClerkEvent` is what a verified webhook delivery runs, in one transaction:
//! svix-id dedupe (`webhookDeliveries`), tombstones for deleted users (`userTombstones`,
//! permanent: Clerk never reuses ids), and per-user event ordering (`clerkSync`) so that a
//! late or retried older update never overwrites newer data. It applies changes through the
//! named mutations `users:upsertUserFromClerk` and `users:deleteUser`, called inline, so
//! those remain the single implementation.

use serde::{Deserialize, Serialize};
use tickethub_runtime::Args;
use tickethub_runtime::{App, Doc, FnError, LogLevel, MutationCtx, NoArgs, QueryCtx, Value};

use crate::auth_checks::{caller_user_id, ensure_acting_for};
use crate::clerk::ClerkUser;
use crate::{returns, ReadDb};
use tickethub_runtime::v;

const USERS: &str = "users";
const WEBHOOK_DELIVERIES: &str = "webhookDeliveries";
const USER_TOMBSTONES: &str = "userTombstones";
const CLERK_SYNC: &str = "clerkSync";

pub fn register(app: &mut App) {
    app.internal_mutation("users:upsertUserFromClerk", upsert_user_from_clerk)
        .returns(v::id(USERS));
    app.internal_mutation("users:deleteUser", delete_user)
        .returns(v::null());
    app.internal_mutation("users:applyClerkEvent", apply_clerk_event)
        .returns(returns::outcome(&[
            "applied",
            "duplicate",
            "stale",
            "tombstoned",
            "ignored",
        ]));
    app.internal_mutation("users:pruneWebhookDeliveries", prune_webhook_deliveries)
        .returns(returns::pruned());
    app.query("users:getUserById", get_user_by_id)
        .returns(v::nullable(returns::doc(USERS)));
    app.query("users:current", current)
        .returns(v::nullable(returns::doc(USERS)));
    app.mutation("users:updateUser", update_user)
        .returns(v::id(USERS));
    app.query("users:getUsersStripeConnectId", get_users_stripe_connect_id)
        .returns(v::nullable(v::string()));
    app.mutation(
        "users:updateOrCreateUserStripeConnectId",
        update_or_create_user_stripe_connect_id,
    )
    .returns(v::null());
}

/// The row of Clerk user `user_id`, if any.
pub(crate) fn find_user(db: &impl ReadDb, user_id: &str) -> Result<Option<Doc>, FnError> {
    let user_id = user_id.to_string();
    db.table(USERS)
        .with_index("by_user_id", move |q| q.eq("userId", user_id))
        .first()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewUser<'a> {
    name: &'a str,
    email: &'a str,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
}

#[derive(Deserialize, Args)]
pub struct UpsertFromClerkArgs {
    /// Clerk's user object, as the webhook delivers it.
    pub data: Value,
}

/// Create or update the row keyed by `data.id`. Patches only the fields Clerk owns (`name`,
/// `email`, `phone`), so `stripeConnectId` survives every update. Returns the row's `_id`.
fn upsert_user_from_clerk(ctx: &MutationCtx, args: UpsertFromClerkArgs) -> Result<String, FnError> {
    let clerk_user: ClerkUser = tickethub_runtime::from_value(&args.data)
        .map_err(|error| FnError::msg(format!("Invalid Clerk user payload: {error}")))?;
    let profile = clerk_user
        .profile()
        .map_err(|error| FnError::msg(error.to_string()))?;
    match find_user(&ctx.db, &profile.user_id)? {
        Some(existing) => {
            ctx.db.patch_fields(
                &existing.id,
                vec![
                    ("name".to_string(), Some(Value::from(profile.name))),
                    ("email".to_string(), Some(Value::from(profile.email))),
                    // Clerk owns the phone: a removed primary phone removes ours.
                    ("phone".to_string(), profile.phone.map(Value::from)),
                ],
            )?;
            Ok(existing.id)
        }
        None => ctx.db.insert(
            USERS,
            NewUser {
                name: &profile.name,
                email: &profile.email,
                user_id: &profile.user_id,
                phone: profile.phone.as_deref(),
            },
        ),
    }
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UserIdArgs {
    pub user_id: String,
}

/// Delete the row if present; a missing user is not an error.
fn delete_user(ctx: &MutationCtx, args: UserIdArgs) -> Result<Value, FnError> {
    if let Some(existing) = find_user(&ctx.db, &args.user_id)? {
        ctx.db.delete(&existing.id)?;
    }
    Ok(Value::Null)
}

fn get_user_by_id(ctx: &QueryCtx, args: UserIdArgs) -> Result<Option<Doc>, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    find_user(&ctx.db, &args.user_id)
}

/// The caller's own row (by identity subject), or null when signed out or not yet synced.
fn current(ctx: &QueryCtx, _args: NoArgs) -> Result<Option<Doc>, FnError> {
    match caller_user_id(&ctx.auth) {
        Some(user_id) => find_user(&ctx.db, &user_id),
        None => Ok(None),
    }
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct UpdateUserArgs {
    pub user_id: String,
    pub name: String,
    pub email: String,
}

/// Upsert by `by_user_id`; returns the document `_id`.
fn update_user(ctx: &MutationCtx, args: UpdateUserArgs) -> Result<String, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    match find_user(&ctx.db, &args.user_id)? {
        Some(existing) => {
            ctx.db.patch_fields(
                &existing.id,
                vec![
                    ("name".to_string(), Some(Value::from(args.name))),
                    ("email".to_string(), Some(Value::from(args.email))),
                ],
            )?;
            Ok(existing.id)
        }
        None => ctx.db.insert(
            USERS,
            NewUser {
                name: &args.name,
                email: &args.email,
                user_id: &args.user_id,
                phone: None,
            },
        ),
    }
}

fn get_users_stripe_connect_id(
    ctx: &QueryCtx,
    args: UserIdArgs,
) -> Result<Option<String>, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    Ok(find_user(&ctx.db, &args.user_id)?
        .and_then(|user| user.get_str("stripeConnectId").map(str::to_string)))
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct StripeConnectArgs {
    pub user_id: String,
    pub stripe_connect_id: String,
}

fn update_or_create_user_stripe_connect_id(
    ctx: &MutationCtx,
    args: StripeConnectArgs,
) -> Result<Value, FnError> {
    ensure_acting_for(&ctx.auth, &args.user_id)?;
    let user = find_user(&ctx.db, &args.user_id)?.ok_or_else(|| FnError::msg("User not found"))?;
    ctx.db.patch_fields(
        &user.id,
        vec![(
            "stripeConnectId".to_string(),
            Some(Value::from(args.stripe_connect_id)),
        )],
    )?;
    Ok(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Clerk deliveries

/// One verified Clerk webhook delivery.
#[derive(Deserialize, Serialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct ClerkEventArgs {
    /// `svix-id`: identical across retries of one message.
    pub svix_id: String,
    /// `user.created`, `user.updated`, `user.deleted`, or anything else (ignored).
    pub event_type: String,
    pub data: Value,
    /// The envelope's `timestamp` (ms), used when `data.updated_at` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_timestamp: Option<f64>,
}

/// What a delivery did.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ClerkEventOutcome {
    /// The change was written.
    Applied,
    /// This svix-id was already processed: acknowledged, not applied again.
    Duplicate,
    /// Older than what we already applied for this user.
    Stale,
    /// The user was deleted; a late create/update must not resurrect them.
    Tombstoned,
    /// An event type Ticket Hub does not handle, or a payload without a user id.
    Ignored,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ClerkEventResult {
    pub outcome: ClerkEventOutcome,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryRow<'a> {
    svix_id: &'a str,
    received_at: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TombstoneRow<'a> {
    user_id: &'a str,
    deleted_at: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncRow<'a> {
    user_id: &'a str,
    last_event_at: f64,
}

fn apply_clerk_event(ctx: &MutationCtx, args: ClerkEventArgs) -> Result<ClerkEventResult, FnError> {
    let svix_id = args.svix_id.clone();
    let seen = ctx
        .db
        .query(WEBHOOK_DELIVERIES)
        .with_index("by_svix_id", move |q| q.eq("svixId", svix_id))
        .first()?;
    if seen.is_some() {
        ctx.log(
            LogLevel::Info,
            format!(
                "Clerk delivery {} already processed; acknowledging",
                args.svix_id
            ),
        );
        return Ok(ClerkEventResult {
            outcome: ClerkEventOutcome::Duplicate,
        });
    }
    ctx.db.insert(
        WEBHOOK_DELIVERIES,
        DeliveryRow {
            svix_id: &args.svix_id,
            received_at: ctx.now_ms(),
        },
    )?;

    let outcome = match args.event_type.as_str() {
        "user.created" | "user.updated" => apply_user_upsert(ctx, &args)?,
        "user.deleted" => apply_user_deletion(ctx, &args)?,
        other => {
            ctx.log(
                LogLevel::Log,
                format!("Ignored Clerk webhook event {other}"),
            );
            ClerkEventOutcome::Ignored
        }
    };
    Ok(ClerkEventResult { outcome })
}

fn user_id_of(data: &Value) -> Option<String> {
    data.get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

fn number_of(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Float64(x) => Some(*x),
        Value::Int64(x) => Some(*x as f64),
        _ => None,
    }
}

fn find_by_user_id(ctx: &MutationCtx, table: &str, user_id: &str) -> Result<Option<Doc>, FnError> {
    let user_id = user_id.to_string();
    ctx.db
        .query(table)
        .with_index("by_user_id", move |q| q.eq("userId", user_id))
        .first()
}

fn apply_user_upsert(
    ctx: &MutationCtx,
    args: &ClerkEventArgs,
) -> Result<ClerkEventOutcome, FnError> {
    let Some(user_id) = user_id_of(&args.data) else {
        ctx.log(
            LogLevel::Warn,
            format!("Clerk {} event without a user id ignored", args.event_type),
        );
        return Ok(ClerkEventOutcome::Ignored);
    };
    if find_by_user_id(ctx, USER_TOMBSTONES, &user_id)?.is_some() {
        ctx.log(
            LogLevel::Info,
            format!(
                "Clerk {} for deleted user {user_id} ignored",
                args.event_type
            ),
        );
        return Ok(ClerkEventOutcome::Tombstoned);
    }
    let event_at = number_of(args.data.get("updated_at")).or(args.event_timestamp);
    let sync = find_by_user_id(ctx, CLERK_SYNC, &user_id)?;
    let last_applied = sync.as_ref().and_then(|row| row.get_f64("lastEventAt"));
    if let (Some(event_at), Some(last_applied)) = (event_at, last_applied) {
        if event_at < last_applied {
            ctx.log(
                LogLevel::Info,
                format!(
                    "Stale Clerk {} for {user_id} ({event_at} < {last_applied}) ignored",
                    args.event_type
                ),
            );
            return Ok(ClerkEventOutcome::Stale);
        }
    }
    ctx.run_mutation_inline(
        "users:upsertUserFromClerk",
        UpsertFromClerkArgsRef { data: &args.data },
    )?;
    if let Some(event_at) = event_at {
        match sync {
            Some(row) => ctx.db.patch(
                &row.id,
                SyncRow {
                    user_id: &user_id,
                    last_event_at: event_at,
                },
            )?,
            None => {
                ctx.db.insert(
                    CLERK_SYNC,
                    SyncRow {
                        user_id: &user_id,
                        last_event_at: event_at,
                    },
                )?;
            }
        }
    }
    Ok(ClerkEventOutcome::Applied)
}

#[derive(Serialize)]
struct UpsertFromClerkArgsRef<'a> {
    data: &'a Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteUserArgsRef<'a> {
    user_id: &'a str,
}

fn apply_user_deletion(
    ctx: &MutationCtx,
    args: &ClerkEventArgs,
) -> Result<ClerkEventOutcome, FnError> {
    let Some(user_id) = user_id_of(&args.data) else {
        ctx.log(
            LogLevel::Warn,
            "Clerk user.deleted event without a user id ignored",
        );
        return Ok(ClerkEventOutcome::Ignored);
    };
    ctx.run_mutation_inline("users:deleteUser", DeleteUserArgsRef { user_id: &user_id })?;
    if find_by_user_id(ctx, USER_TOMBSTONES, &user_id)?.is_none() {
        ctx.db.insert(
            USER_TOMBSTONES,
            TombstoneRow {
                user_id: &user_id,
                deleted_at: ctx.now_ms(),
            },
        )?;
    }
    // The tombstone supersedes any ordering state for this user.
    if let Some(sync) = find_by_user_id(ctx, CLERK_SYNC, &user_id)? {
        ctx.db.delete(&sync.id)?;
    }
    Ok(ClerkEventOutcome::Applied)
}

/// How long a delivery's svix-id is remembered. Svix gives up retrying after about a day; a
/// week also covers manual replays soon after. A replay older than that is applied again, which
/// is still safe: tombstones and `clerkSync` ordering do not expire.
pub const DELIVERY_RETENTION_MS: f64 = 7.0 * 24.0 * 60.0 * 60.0 * 1000.0;

/// Most records one prune run deletes (keeps the transaction small; a full batch runs again).
pub const PRUNE_BATCH: usize = 500;

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PruneResult {
    pub deleted: f64,
    /// The batch was full, so the prune scheduled itself to run again at once.
    pub rescheduled: bool,
}

/// Forget svix-ids older than [`DELIVERY_RETENTION_MS`], at most [`PRUNE_BATCH`] per run.
fn prune_webhook_deliveries(ctx: &MutationCtx, _args: NoArgs) -> Result<PruneResult, FnError> {
    prune_received_before(
        ctx,
        WEBHOOK_DELIVERIES,
        DELIVERY_RETENTION_MS,
        "users:pruneWebhookDeliveries",
    )
}

/// Delete up to [`PRUNE_BATCH`] rows of a dedupe table (one with a `by_received_at` index) that
/// were received more than `retention_ms` ago. When the batch was full, more may be left: the
/// prune (`this_function`) schedules itself again at once instead of waiting for the cron's next
/// tick, so deliveries arriving faster than one batch per tick still cannot grow the table.
pub(crate) fn prune_received_before(
    ctx: &MutationCtx,
    table: &str,
    retention_ms: f64,
    this_function: &str,
) -> Result<PruneResult, FnError> {
    let cutoff = ctx.now_ms() - retention_ms;
    let old = ctx
        .db
        .query(table)
        .with_index("by_received_at", move |q| q.lt("receivedAt", cutoff))
        .take(PRUNE_BATCH)?;
    for record in &old {
        ctx.db.delete(&record.id)?;
    }
    let rescheduled = old.len() >= PRUNE_BATCH;
    if rescheduled {
        ctx.scheduler
            .run_after(0.0, this_function, serde_json::json!({}))?;
    }
    Ok(PruneResult {
        deleted: old.len() as f64,
        rescheduled,
    })
}
