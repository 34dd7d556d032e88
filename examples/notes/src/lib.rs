//! The notes example: a small app of our own on the tickethub runtime, separate from Ticket Hub
//! and written against the runtime's public API only, the way an outside user would.
//!
//! Run it:
//!
//! ```text
//! cargo run -p notes-example --bin notes-server -- serve --data-dir /tmp/notes
//! ```
//!
//! then call it with the official client, e.g.
//! `new ConvexHttpClient("http://127.0.0.1:3210").mutation(api.notes.add, {text: "hi"})`,
//! or `curl http://127.0.0.1:3211/hello`.
//!
//! What it shows: typed argument structs whose validators come from `#[derive(Args)]`;
//! queries reading by index and by id; a mutation returning the new id; a `ConvexError` with
//! data; captured log lines; an internal query (hidden from clients); an action calling a
//! mutation; HTTP actions with an exact route, a prefix route and the caller's identity;
//! `notes:addExpiring`, a note that deletes itself through a scheduled `notes:remove` (the
//! retention soak's load); `notes:scheduleRun`, a job whose runs leave countable notes (the
//! cluster test's check that no job runs twice across a failover).
//! `notes:echo` returns its argument unchanged, so clients can check that every Convex value
//! type (int64, bytes, NaN, -0...) survives a round trip.

use serde::{Deserialize, Serialize};
use tickethub_runtime::{
    ActionCtx, App, Args, Doc, FnError, HttpRequest, HttpResponse, LogLevel, MutationCtx, NoArgs,
    QueryCtx, Route, Value,
};

/// The tables and indexes of this app.
pub const SCHEMA: &str = include_str!("../schema.toml");

/// `notes:echo` takes any value and returns it as it came.
#[derive(Deserialize, Args)]
struct Echo {
    value: Value,
}

/// A new note; also the shape stored in the `notes` table. Absent optional fields are left out
/// of the document rather than stored as null.
#[derive(Deserialize, Serialize, Args)]
struct NewNote {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<String>,
}

#[derive(Deserialize, Args)]
struct ById {
    #[arg(id = "notes")]
    id: String,
}

#[derive(Deserialize, Args)]
struct ByAuthor {
    author: String,
}

#[derive(Deserialize, Args)]
struct Text {
    text: String,
}

/// What `notes:fail` throws, as `ConvexError` data. `detail` is an `f64` so clients see a
/// plain JS number (a Rust integer would be an int64, a JS bigint).
#[derive(Serialize)]
struct Refusal {
    code: &'static str,
    detail: f64,
}

fn echo(_ctx: &QueryCtx, args: Echo) -> Result<Value, FnError> {
    Ok(args.value)
}

fn add(ctx: &MutationCtx, note: NewNote) -> Result<String, FnError> {
    ctx.db.insert("notes", &note)
}

fn list(ctx: &QueryCtx, _: NoArgs) -> Result<Vec<Doc>, FnError> {
    ctx.db.query("notes").collect()
}

fn get(ctx: &QueryCtx, args: ById) -> Result<Option<Doc>, FnError> {
    ctx.db.get(&args.id)
}

fn by_author(ctx: &QueryCtx, args: ByAuthor) -> Result<Vec<Doc>, FnError> {
    ctx.db
        .query("notes")
        .with_index("by_author", |q| q.eq("author", args.author))
        .collect()
}

fn fail(_ctx: &MutationCtx, _: NoArgs) -> Result<(), FnError> {
    Err(FnError::with_data(
        "nope",
        Refusal {
            code: "NOPE",
            detail: 42.0,
        },
    ))
}

fn logs(ctx: &QueryCtx, _: NoArgs) -> Result<(), FnError> {
    ctx.log(LogLevel::Log, "hello");
    ctx.log(LogLevel::Warn, "careful");
    Ok(())
}

/// A note that deletes itself: `notes:remove` is scheduled to run `ttlMs` after the insert.
#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
struct Expiring {
    text: String,
    ttl_ms: f64,
}

fn add_expiring(ctx: &MutationCtx, args: Expiring) -> Result<String, FnError> {
    let note = NewNote {
        text: args.text,
        tags: None,
        author: None,
    };
    let id = ctx.db.insert("notes", &note)?;
    ctx.scheduler
        .run_after(args.ttl_ms, "notes:remove", serde_json::json!({ "id": id }))?;
    Ok(id)
}

/// Delete a note if it is still there (an expiry racing a manual delete is not an error).
fn remove(ctx: &MutationCtx, args: ById) -> Result<bool, FnError> {
    if ctx.db.get(&args.id)?.is_none() {
        return Ok(false);
    }
    ctx.db.delete(&args.id)?;
    Ok(true)
}

/// The author of the notes scheduled runs leave (`notes:recordRun`).
const RUN_AUTHOR: &str = "scheduler";

/// `notes:scheduleRun`: schedule a job whose every run leaves one note (author `scheduler`,
/// text `key`), as a mutation or as an action calling that mutation. Counting the notes per key
/// shows how often each job ran: the cluster test checks that none ran twice across a failover.
#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
struct ScheduleRun {
    key: String,
    delay_ms: f64,
    via_action: bool,
}

#[derive(Deserialize, Serialize, Args)]
struct RunKey {
    key: String,
}

fn schedule_run(ctx: &MutationCtx, args: ScheduleRun) -> Result<String, FnError> {
    let target = if args.via_action {
        "notes:recordRunViaAction"
    } else {
        "notes:recordRun"
    };
    ctx.scheduler
        .run_after(args.delay_ms, target, RunKey { key: args.key })
}

fn record_run(ctx: &MutationCtx, args: RunKey) -> Result<String, FnError> {
    let note = NewNote {
        text: args.key,
        tags: None,
        author: Some(RUN_AUTHOR.to_string()),
    };
    ctx.db.insert("notes", &note)
}

async fn record_run_via_action(ctx: ActionCtx, args: RunKey) -> Result<String, FnError> {
    ctx.run_mutation("notes:recordRun", args).await
}

/// Most `_scheduled_functions` rows [`scheduled_rows`] counts.
const SCHEDULED_ROWS_COUNTED: usize = 20_000;

/// How many rows `_scheduled_functions` holds (pending and finished), up to 20,000: the
/// retention soak watches this stay bounded.
fn scheduled_rows(ctx: &QueryCtx, _: NoArgs) -> Result<f64, FnError> {
    let rows = ctx
        .db
        .query("_scheduled_functions")
        .take(SCHEDULED_ROWS_COUNTED)?;
    Ok(rows.len() as f64)
}

fn count(ctx: &QueryCtx, _: NoArgs) -> Result<f64, FnError> {
    Ok(ctx.db.query("notes").collect()?.len() as f64)
}

async fn add_via_action(ctx: ActionCtx, args: Text) -> Result<String, FnError> {
    let note = NewNote {
        text: args.text,
        tags: None,
        author: None,
    };
    ctx.run_mutation("notes:add", note).await
}

fn throws(_ctx: &QueryCtx, _: NoArgs) -> Result<(), FnError> {
    Err(FnError::msg("boom"))
}

fn response(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<bytes::Bytes>,
) -> Result<HttpResponse, FnError> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.into())
        .map_err(|e| FnError::Internal(e.to_string()))
}

async fn hello(_ctx: ActionCtx, _request: HttpRequest) -> Result<HttpResponse, FnError> {
    response(
        http::StatusCode::OK,
        "text/plain; charset=utf-8",
        "hello from notes",
    )
}

async fn echo_body(_ctx: ActionCtx, request: HttpRequest) -> Result<HttpResponse, FnError> {
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    response(http::StatusCode::OK, &content_type, request.into_body())
}

async fn whoami(ctx: ActionCtx, _request: HttpRequest) -> Result<HttpResponse, FnError> {
    // A bad token makes this fail, and the failure becomes a 500 response.
    let identity = ctx.auth.get_user_identity()?;
    let json = serde_json::to_string(&identity).map_err(|e| FnError::Internal(e.to_string()))?;
    response(http::StatusCode::OK, "application/json", json)
}

/// The app: every function and route of the example.
pub fn app() -> App {
    let mut app = App::new();
    app.query("notes:echo", echo);
    app.mutation("notes:add", add);
    app.query("notes:list", list);
    app.query("notes:get", get);
    app.query("notes:byAuthor", by_author);
    app.mutation("notes:fail", fail);
    app.query("notes:logs", logs);
    app.internal_query("notes:count", count);
    app.mutation("notes:addExpiring", add_expiring);
    app.internal_mutation("notes:remove", remove);
    app.internal_query("notes:scheduledRows", scheduled_rows);
    app.action("notes:addViaAction", add_via_action);
    app.mutation("notes:scheduleRun", schedule_run);
    app.internal_mutation("notes:recordRun", record_run);
    app.internal_action("notes:recordRunViaAction", record_run_via_action);
    app.query("notes:throws", throws);

    app.http_route(Route::exact(http::Method::GET, "/hello"), hello);
    app.http_route(Route::prefix(http::Method::POST, "/echo/"), echo_body);
    app.http_route(Route::exact(http::Method::GET, "/whoami"), whoami);
    app
}
