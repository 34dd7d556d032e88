//! Event images: the original's `convex/storage.ts`, under the same names.
//!
//! - `storage:generateUploadUrl` (mutation): a one-time upload URL (an hour). Signed-in callers
//!   only when auth is on, so anonymous clients cannot fill the disk.
//! - `storage:getUrl {storageId}` (query): the file's URL, or null.
//! - `storage:updateEventImage {eventId, storageId: id("_storage") | null}` (mutation): sets or
//!   clears `events.imageStorageId`; only the event's organizer (or the admin key).
//! - `storage:deleteImage {storageId}` (mutation): deletes the file. The predecessor let anyone
//!   delete any file; here a file some event shows may be deleted only by that event's organizer.

use serde::Deserialize;
use tickethub_runtime::{v, App, Args, FnError, MutationCtx, NoArgs, QueryCtx, Validator, Value};

use crate::auth_checks::{actor, ensure_acting_for, Actor, NOT_AUTHENTICATED};
use crate::events::{load_event, EVENTS};

const IMAGE_FIELD: &str = "imageStorageId";

pub fn register(app: &mut App) {
    app.mutation("storage:generateUploadUrl", generate_upload_url)
        .returns(v::string());
    app.query("storage:getUrl", get_url)
        .returns(v::nullable(v::string()));
    app.mutation("storage:updateEventImage", update_event_image)
        .returns(v::null());
    app.mutation("storage:deleteImage", delete_image)
        .returns(v::null());
}

fn ensure_signed_in(ctx: &MutationCtx) -> Result<(), FnError> {
    match actor(&ctx.auth) {
        Actor::Anonymous => Err(FnError::msg(NOT_AUTHENTICATED)),
        Actor::Unchecked | Actor::Admin | Actor::User(_) => Ok(()),
    }
}

fn generate_upload_url(ctx: &MutationCtx, _: NoArgs) -> Result<String, FnError> {
    ensure_signed_in(ctx)?;
    ctx.storage.generate_upload_url()
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
pub struct StorageIdArgs {
    #[arg(id = "_storage")]
    pub storage_id: String,
}

fn get_url(ctx: &QueryCtx, args: StorageIdArgs) -> Result<Option<String>, FnError> {
    ctx.storage.get_url(&args.storage_id)
}

/// `{eventId: v.id("events"), storageId: v.union(v.id("_storage"), v.null())}`: the storage id
/// is required but may be null, which `#[derive(Args)]` does not express (its `Option` field is
/// `v.optional`), so the validator is written out.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEventImageArgs {
    pub event_id: String,
    pub storage_id: Option<String>,
}

impl Args for UpdateEventImageArgs {
    fn validator() -> Option<Validator> {
        Some(v::object([
            ("eventId", v::id(EVENTS)),
            ("storageId", v::union([v::id("_storage"), v::null()])),
        ]))
    }
}

fn update_event_image(ctx: &MutationCtx, args: UpdateEventImageArgs) -> Result<(), FnError> {
    let event = load_event(&ctx.db, &args.event_id)?;
    ensure_acting_for(&ctx.auth, &event.user_id)?;
    if let Some(storage_id) = &args.storage_id {
        if ctx.db.get(storage_id)?.is_none() {
            return Err(FnError::msg(format!(
                "Storage ID \"{storage_id}\" does not exist."
            )));
        }
    }
    ctx.db.patch_fields(
        &event.id,
        vec![(IMAGE_FIELD.to_string(), args.storage_id.map(Value::from))],
    )
}

fn delete_image(ctx: &MutationCtx, args: StorageIdArgs) -> Result<(), FnError> {
    ensure_signed_in(ctx)?;
    let storage_id = args.storage_id;
    let shown_by = ctx
        .db
        .query(EVENTS)
        .with_index("by_image", |q| q.eq(IMAGE_FIELD, storage_id.clone()))
        .collect()?;
    for event in shown_by {
        let organizer = event.get_str("userId").unwrap_or_default();
        ensure_acting_for(&ctx.auth, organizer)?;
    }
    ctx.storage.delete(&storage_id)
}
