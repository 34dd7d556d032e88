//! `/api/dashboard/*` and `/metrics`: the admin-only JSON API behind the browser dashboard, and
//! the same health figures in the Prometheus text format.
//!
//! Every endpoint needs `Authorization: Convex <admin key>`: none (or a user token) is 401
//! `MissingAdminKey`, a wrong key 403 `BadAdminKey`, and nothing else is said. Data is read through
//! the store's snapshots (paged, never a whole table) and written through the runtime's writer
//! with the store's schema checks; functions run through `Runtime::call`. Errors are
//! `{code, message}`, plus `path` (the field) for schema violations.
//!
//! Values in and out use Convex's JSON encoding (`{"$integer": …}`, `{"$bytes": …}`); each
//! document also comes in display form (`123n` for int64, bytes as base64), as Convex's dashboard
//! shows it. Commit timestamps are decimal strings (they exceed 2^53).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tickethub_runtime::observe::KINDS;
use tickethub_runtime::{
    CallRequest, CallResult, Caller, CancelOutcome, FnError, FunctionKind, Identity, ReadAt,
    RequestId, RoutePath, Runtime, UserIdentity, Visibility,
};
use tickethub_store::{
    Backend, Bound, DocReader, IndexQuery, Order, PageRequest, StoreError, Timestamp,
};
use tickethub_value::{DocumentId, Object, Validator, Value};

use crate::body::{parse_json, read_api_body};
use crate::credentials::{resolve_identity, CredentialPolicy};
use crate::error::{json_response, ApiError, ErrorCode};
use crate::{AppState, ResponseBody};

/// Most documents one page may hold.
pub const MAX_PAGE: usize = 1000;
/// Longest a long poll (`logs`, `changes`) waits.
pub const MAX_POLL: Duration = Duration::from_secs(30);
/// Most log entries one `logs` answer carries.
const MAX_LOG_ENTRIES: usize = 1000;

/// A failure of a dashboard endpoint: a system error, with the field path for schema violations.
#[derive(Debug)]
struct DashError {
    error: ApiError,
    path: Option<String>,
}

impl From<ApiError> for DashError {
    fn from(error: ApiError) -> DashError {
        DashError { error, path: None }
    }
}

impl DashError {
    fn new(code: ErrorCode, message: impl Into<String>) -> DashError {
        ApiError::new(code, message).into()
    }
    fn into_response(self) -> Response<ResponseBody> {
        let mut body = json!({
            "code": self.error.code.as_str(),
            "message": self.error.message,
        });
        if let Some(path) = self.path {
            body["path"] = Json::String(path);
        }
        json_response(self.error.code.status(), body.to_string().into_bytes())
    }
}

type Answer = Result<Response<ResponseBody>, DashError>;

pub(crate) fn is_dashboard_api(path: &str) -> bool {
    path.starts_with("/api/dashboard/")
}

/// `/api/dashboard/*`. Never fails: errors become responses. No CORS: only the dashboard's own
/// origin (the API port) uses these.
pub async fn handle(state: Arc<AppState>, request: Request<Incoming>) -> Response<ResponseBody> {
    let request_id = RequestId::generate();
    let mut response = match route(&state, request, &request_id).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn route(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    request_id: &RequestId,
) -> Answer {
    require_admin(state, request.headers()).await?;
    let path = request.uri().path().to_string();
    let rest = path.strip_prefix("/api/dashboard/").unwrap_or("");
    let query = Params::parse(request.uri().query());
    let method = request.method().clone();
    match (method.clone(), rest) {
        (Method::GET, "tables") => tables(state).await,
        (Method::GET, "documents") => documents(state, &query).await,
        (Method::GET, "document") => document(state, &query).await,
        (Method::POST, "documents") => insert(state, &body(state, request).await?).await,
        (Method::PATCH, "documents") => patch(state, &body(state, request).await?).await,
        (Method::DELETE, "documents") => delete(state, &body(state, request).await?).await,
        (Method::GET, "functions") => Ok(functions(state)),
        (Method::POST, "run") => run(state, &body(state, request).await?, request_id).await,
        (Method::GET, "logs") => logs(state, &query).await,
        (Method::GET, "scheduled") => scheduled(state, &query, request_id).await,
        (Method::POST, "scheduled/cancel") => cancel(state, &body(state, request).await?).await,
        (Method::GET, "crons") => crons(state, request_id).await,
        (Method::GET, "schema") => Ok(schema(state)),
        (Method::GET, "health") => Ok(health(state)),
        (Method::GET, "changes") => changes(state, &query).await,
        (
            _,
            "tables" | "documents" | "document" | "functions" | "run" | "logs" | "scheduled"
            | "scheduled/cancel" | "crons" | "schema" | "health" | "changes",
        ) => Err(DashError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}."),
        )),
        _ => Err(crate::api::not_found(&path).into()),
    }
}

/// Admin key or nothing. A missing header and a user's token are both "no admin key" (401); a
/// wrong key is 403. The message never says more.
async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), DashError> {
    let missing = || {
        DashError::new(
            ErrorCode::MissingAdminKey,
            "The dashboard needs the admin key: send Authorization: Convex <admin key>.",
        )
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(missing());
    };
    let is_admin_scheme = value
        .to_str()
        .is_ok_and(|v| v.trim_start().to_ascii_lowercase().starts_with("convex "));
    if !is_admin_scheme {
        return Err(missing());
    }
    match resolve_identity(
        headers,
        state.authenticator.as_ref(),
        CredentialPolicy::Reject,
    )
    .await
    {
        Ok(Identity::Admin) => Ok(()),
        Err(e) if e.code == ErrorCode::BadAdminKey => Err(DashError::new(
            ErrorCode::BadAdminKey,
            "The admin key is not this deployment's.",
        )),
        _ => Err(missing()),
    }
}

async fn body(state: &AppState, request: Request<Incoming>) -> Result<Json, DashError> {
    let (parts, body) = request.into_parts();
    let bytes = read_api_body(state, &parts.headers, body).await?;
    Ok(parse_json::<Json>(&bytes)?)
}

fn ok(body: Json) -> Answer {
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

fn bad(message: impl Into<String>) -> DashError {
    DashError::new(ErrorCode::BadRequest, message)
}

// ---- query strings ----------------------------------------------------------------------------

struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    fn required(&self, name: &str) -> Result<&str, DashError> {
        self.get(name)
            .ok_or_else(|| bad(format!("The query parameter `{name}` is required.")))
    }
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, DashError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("`{name}` must be a non-negative integer.")))
            })
            .transpose()
    }
    /// A Convex-JSON value given as JSON text.
    fn value(&self, name: &str) -> Result<Option<Value>, DashError> {
        self.get(name)
            .map(|text| {
                let json: Json = serde_json::from_str(text)
                    .map_err(|e| bad(format!("`{name}` is not JSON: {e}")))?;
                Value::from_convex_json(&json)
                    .map_err(|e| bad(format!("`{name}` is not a Convex value: {e}")))
            })
            .transpose()
    }
    fn poll_timeout(&self) -> Result<Duration, DashError> {
        let ms: u64 = self.number("timeoutMs")?.unwrap_or(0);
        Ok(Duration::from_millis(ms).min(MAX_POLL))
    }
}

// ---- reading ------------------------------------------------------------------------------------

/// Run `f` on a fresh snapshot, on the blocking pool (a reader may have to be waited for).
async fn read<R, F>(state: &AppState, f: F) -> Result<R, DashError>
where
    R: Send + 'static,
    F: FnOnce(&tickethub_store::ReadTxn) -> Result<R, DashError> + Send + 'static,
{
    let store = state.runtime.store().clone();
    tokio::task::spawn_blocking(move || {
        let txn = store.read().map_err(store_error)?;
        f(&txn)
    })
    .await
    .map_err(|e| DashError::from(ApiError::internal(format_args!("dashboard read: {e}"))))?
}

fn store_error(e: StoreError) -> DashError {
    match e {
        StoreError::UnknownTable(t) => bad(format!("There is no table named {t:?}.")),
        e if e.is_user_error() => bad(e.to_string()),
        e => ApiError::internal(format_args!("dashboard: {e}")).into(),
    }
}

/// Document counts per table as of a commit timestamp. Counting reads the table's
/// `by_creation_time` entries (about 175 ms for a million), so a count is reused until the commit
/// log shows a write to its table.
#[derive(Default)]
pub struct CountCache {
    counts: std::sync::Mutex<HashMap<String, (Timestamp, u64)>>,
}

impl CountCache {
    fn get(&self, table: &str) -> Option<(Timestamp, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(table).copied()
    }
    fn put(&self, table: &str, at: Timestamp, count: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.insert(table.to_string(), (at, count));
    }
}

/// Whether a commit in `(from, to]` wrote to `table`; true when the log no longer reaches back.
fn table_written(
    store: &tickethub_store::Store,
    table: &str,
    from: Timestamp,
    to: Timestamp,
) -> bool {
    let Some(commits) = store.commit_log().since_complete(from) else {
        return true;
    };
    commits
        .iter()
        .filter(|(ts, _)| *ts <= to)
        .any(|(_, writes)| {
            writes
                .keys
                .iter()
                .any(|k| store.table_of_index(k.index).as_deref() == Some(table))
        })
}

async fn tables(state: &Arc<AppState>) -> Answer {
    let names: Vec<String> = state
        .runtime
        .store()
        .schema()
        .tables
        .keys()
        .cloned()
        .collect();
    let shared = state.clone();
    let tables = read(state, move |txn| {
        let store = shared.runtime.store();
        let at = txn.ts();
        names
            .iter()
            .map(|name| {
                let cached = shared.dashboard_counts.get(name);
                let count = match cached {
                    Some((ts, n))
                        if ts == at || (ts < at && !table_written(store, name, ts, at)) =>
                    {
                        n
                    }
                    _ => {
                        let n = txn.count(name).map_err(store_error)?;
                        shared.dashboard_counts.put(name, at, n);
                        n
                    }
                };
                Ok(json!({"name": name, "system": name.starts_with('_'), "count": count}))
            })
            .collect::<Result<Vec<_>, DashError>>()
    })
    .await?;
    ok(json!({ "tables": tables }))
}

/// The fields a query on `index` of `table` may constrain, in order.
fn index_fields(state: &AppState, table: &str, index: &str) -> Result<Vec<String>, DashError> {
    let schema = state.runtime.store().schema();
    let def = schema
        .tables
        .get(table)
        .ok_or_else(|| bad(format!("There is no table named {table:?}.")))?;
    let mut fields: Vec<String> = match index {
        "by_id" => return Ok(vec!["_id".into()]),
        "by_creation_time" => vec![],
        name => def
            .indexes
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| bad(format!("Table {table:?} has no index named {name:?}.")))?
            .fields
            .clone(),
    };
    fields.push("_creationTime".into());
    fields.push("_id".into());
    Ok(fields)
}

async fn documents(state: &AppState, params: &Params) -> Answer {
    let table = params.required("table")?.to_string();
    let index = params
        .get("index")
        .unwrap_or("by_creation_time")
        .to_string();
    let limit: usize = params.number("limit")?.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(bad(format!("`limit` must be between 1 and {MAX_PAGE}.")));
    }
    let order = match params.get("order").unwrap_or("desc") {
        "desc" => Order::Desc,
        "asc" => Order::Asc,
        other => return Err(bad(format!("`order` must be asc or desc, got {other:?}."))),
    };
    let fields = index_fields(state, &table, &index)?;
    let eq_values = match params.value("eq")? {
        None => vec![],
        Some(Value::Array(values)) => values,
        Some(_) => {
            return Err(bad(
                "`eq` must be a JSON array of values for the index's leading fields.",
            ))
        }
    };
    if eq_values.len() > fields.len() {
        return Err(bad(format!(
            "`eq` has {} values but index {index} has {} fields ({}).",
            eq_values.len(),
            fields.len(),
            fields.join(", ")
        )));
    }
    let eq = fields
        .iter()
        .cloned()
        .zip(eq_values.into_iter().map(Some))
        .collect::<Vec<_>>();
    let next = fields.get(eq.len()).cloned();
    let bound = |name: &str, inclusive: bool| -> Result<Option<Bound>, DashError> {
        let Some(value) = params.value(name)? else {
            return Ok(None);
        };
        let field = next
            .clone()
            .ok_or_else(|| bad("Range bounds need an index field after the `eq` values."))?;
        Ok(Some(Bound {
            field,
            value,
            inclusive,
        }))
    };
    let lower = match (bound("gte", true)?, bound("gt", false)?) {
        (Some(_), Some(_)) => return Err(bad("Give at most one of `gte` and `gt`.")),
        (a, b) => a.or(b),
    };
    let upper = match (bound("lte", true)?, bound("lt", false)?) {
        (Some(_), Some(_)) => return Err(bad("Give at most one of `lte` and `lt`.")),
        (a, b) => a.or(b),
    };
    let query = IndexQuery {
        table,
        index,
        eq,
        lower,
        upper,
        order,
    };
    let page = PageRequest {
        cursor: params.get("cursor").map(str::to_string),
        num_items: limit,
    };
    let page = read(state, move |txn| {
        txn.paginate(&query, &page).map_err(store_error)
    })
    .await?;
    let values: Vec<Value> = page.page.iter().map(|d| d.to_value()).collect();
    ok(json!({
        "page": values.iter().map(Value::to_convex_json).collect::<Vec<_>>(),
        "display": values.iter().map(display).collect::<Vec<_>>(),
        "continueCursor": page.continue_cursor,
        "isDone": page.is_done,
    }))
}

fn not_found(id: &str) -> DashError {
    DashError::new(
        ErrorCode::DocumentNotFound,
        format!("No document has the id {id:?}."),
    )
}

async fn document(state: &AppState, params: &Params) -> Answer {
    let id = params.required("id")?.to_string();
    let Ok(decoded) = DocumentId::decode(&id) else {
        return Err(not_found(&id));
    };
    // One snapshot for both, on the blocking pool (on Postgres, taking one is a round trip).
    let (doc, table) = read(state, move |txn| {
        let doc = txn.get(decoded).map_err(store_error)?;
        Ok((doc, txn.table_name(decoded.table)))
    })
    .await?;
    let Some(doc) = doc else {
        return Err(not_found(&id));
    };
    let value = doc.to_value();
    ok(json!({ "document": value.to_convex_json(), "display": display(&value), "table": table }))
}

/// Convex's display form: int64 as `123n`, bytes as base64, other numbers as JSON numbers
/// (NaN and infinities as text).
pub fn display(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Int64(n) => Json::String(format!("{n}n")),
        Value::Float64(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Value::Boolean(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(tickethub_value::json::base64_encode(b)),
        Value::Array(items) => Json::Array(items.iter().map(display).collect()),
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), display(v)))
                .collect(),
        ),
    }
}

// ---- writing ------------------------------------------------------------------------------------

fn string_field<'a>(body: &'a Json, name: &str) -> Result<&'a str, DashError> {
    body.get(name)
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("The body needs a string `{name}`.")))
}

/// A Convex-JSON object of fields; `_id` and `_creationTime` are the engine's.
fn fields_of(json: Option<&Json>, what: &str) -> Result<Object, DashError> {
    let json = json.ok_or_else(|| bad(format!("The body needs an object `{what}`.")))?;
    let value = Value::from_convex_json(json).map_err(|e| DashError {
        error: ApiError::new(ErrorCode::InvalidValue, format!("`{what}`: {e}")),
        path: None,
    })?;
    let Value::Object(mut fields) = value else {
        return Err(bad(format!("`{what}` must be an object.")));
    };
    fields.remove("_id");
    fields.remove("_creationTime");
    Ok(fields)
}

/// The field path in a Convex validation message (`Path: .a.b[2]` → `a.b[2]`), or the field a
/// "missing the required field `x`" message names.
fn validation_path(message: &str) -> Option<String> {
    if let Some(rest) = message.split("Path: ").nth(1) {
        let path = rest.split_whitespace().next().unwrap_or("");
        return Some(path.trim_start_matches('.').to_string());
    }
    let after = message.split("field `").nth(1)?;
    Some(after.split('`').next()?.to_string())
}

fn write_error(e: FnError) -> DashError {
    match e {
        FnError::Store(StoreError::SchemaMismatch { table, reason }) => {
            let message = reason.to_string();
            DashError {
                path: validation_path(&message),
                error: ApiError::new(
                    ErrorCode::SchemaValidationError,
                    format!("The document does not match the schema of table {table:?}: {message}"),
                ),
            }
        }
        FnError::Store(
            StoreError::PatchMissing(id)
            | StoreError::DeleteMissing(id)
            | StoreError::ReplaceMissing(id),
        ) => not_found(&id.encode()),
        FnError::Store(StoreError::UnknownTable(t)) => {
            bad(format!("There is no table named {t:?}."))
        }
        FnError::Store(e) if e.is_user_error() => bad(e.to_string()),
        FnError::Store(e) => ApiError::internal(format_args!("dashboard write: {e}")).into(),
        FnError::Internal(detail) => {
            ApiError::internal(format_args!("dashboard write: {detail}")).into()
        }
        other => bad(other.to_string()),
    }
}

async fn insert(state: &AppState, body: &Json) -> Answer {
    let table = string_field(body, "table")?.to_string();
    let fields = fields_of(body.get("document"), "document")?;
    let id = state
        .runtime
        .admin_insert(table, fields)
        .await
        .map_err(write_error)?;
    ok(json!({ "id": id }))
}

/// `{id, patch: {field: value | {"$undefined": true}}, remove?: [field]}`: a shallow merge; a
/// field given as `{"$undefined": true}` or listed in `remove` is removed (Convex's `undefined`).
async fn patch(state: &AppState, body: &Json) -> Answer {
    let id = string_field(body, "id")?.to_string();
    let mut changes = Vec::new();
    let patch = body
        .get("patch")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut set = serde_json::Map::new();
    for (field, value) in patch {
        if value == json!({"$undefined": true}) {
            changes.push((field, None));
        } else {
            set.insert(field, value);
        }
    }
    for (field, value) in fields_of(Some(&Json::Object(set)), "patch")? {
        changes.push((field, Some(value)));
    }
    if let Some(remove) = body.get("remove") {
        let remove = remove
            .as_array()
            .ok_or_else(|| bad("`remove` must be an array of field names."))?;
        for field in remove {
            let field = field
                .as_str()
                .ok_or_else(|| bad("`remove` must be an array of field names."))?;
            changes.push((field.to_string(), None));
        }
    }
    if changes.iter().any(|(f, _)| f.starts_with('_')) {
        return Err(bad(
            "System fields (`_id`, `_creationTime`) cannot be changed.",
        ));
    }
    state
        .runtime
        .admin_patch(id.clone(), changes)
        .await
        .map_err(write_error)?;
    ok(json!({ "id": id }))
}

async fn delete(state: &AppState, body: &Json) -> Answer {
    let id = string_field(body, "id")?.to_string();
    state
        .runtime
        .admin_delete(id.clone())
        .await
        .map_err(write_error)?;
    ok(json!({ "id": id }))
}

// ---- functions ----------------------------------------------------------------------------------

/// A canonical path as people write it: `messages.js:send` → `messages:send` (as Convex's
/// dashboard and `npx convex logs` show it; both forms are accepted as input).
fn display_path(path: &str) -> String {
    match path.split_once(".js:") {
        Some((module, function)) => format!("{module}:{function}"),
        None => path.to_string(),
    }
}

fn kind_name(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Query => "query",
        FunctionKind::Mutation => "mutation",
        FunctionKind::Action => "action",
        FunctionKind::HttpAction => "httpAction",
    }
}

/// Convex's JSON form of a validator: one implementation, in the value crate (the CLI's
/// `function-spec` uses it too).
pub use tickethub_value::validator::validator_json;

fn functions(state: &AppState) -> Response<ResponseBody> {
    let functions: Vec<Json> = state
        .runtime
        .functions()
        .iter()
        .map(|f| {
            json!({
                "path": display_path(f.path()),
                "kind": kind_name(f.kind()),
                "visibility": match f.visibility() {
                    Visibility::Public => "public",
                    Visibility::Internal => "internal",
                },
                "args": f.args_validator().map(validator_json),
                "argsText": f.args_validator().map(Validator::describe),
            })
        })
        .collect();
    let routes: Vec<Json> = state
        .runtime
        .routes()
        .iter()
        .map(|r| match &r.path {
            RoutePath::Exact(p) => json!({"method": r.method.as_str(), "path": p, "prefix": false}),
            RoutePath::Prefix(p) => json!({"method": r.method.as_str(), "path": p, "prefix": true}),
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "functions": functions, "routes": routes })
            .to_string()
            .into_bytes(),
    )
}

#[derive(Deserialize)]
struct ActAs {
    subject: String,
    issuer: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

/// `[LEVEL] 'message'` → `{level, message}` (the message as captured, quoted like Node prints it).
fn log_line_json(line: &str) -> Json {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((level, message)) => json!({"level": level, "message": message}),
        None => json!({"level": "LOG", "message": line}),
    }
}

fn error_json(error: &FnError, request_id: &RequestId) -> Json {
    match error {
        FnError::Convex { message, data } => {
            json!({"message": message, "data": data.to_convex_json()})
        }
        FnError::Internal(detail) => {
            tracing::error!(request_id = %request_id, "dashboard run: internal error: {detail}");
            json!({"message": format!("[Request ID: {request_id}] Server Error")})
        }
        other => json!({"message": other.to_string()}),
    }
}

async fn run(state: &AppState, body: &Json, request_id: &RequestId) -> Answer {
    let path = string_field(body, "path")?.to_string();
    let args = match body.get("args") {
        None | Some(Json::Null) => Value::Object(Object::new()),
        Some(json) => Value::from_convex_json(json).map_err(|e| DashError {
            error: ApiError::new(ErrorCode::InvalidValue, format!("`args`: {e}")),
            path: None,
        })?,
    };
    if !matches!(args, Value::Object(_)) {
        return Err(bad("`args` must be an object."));
    }
    let identity = match body.get("actAs") {
        None | Some(Json::Null) => Identity::Admin,
        Some(json) => {
            let act: ActAs = serde_json::from_value(json.clone())
                .map_err(|e| bad(format!("`actAs` needs string `subject` and `issuer`: {e}")))?;
            let mut attributes = Object::new();
            for (k, v) in act.rest {
                if let Ok(v) = Value::from_convex_json(&v) {
                    attributes.insert(k, v);
                }
            }
            Identity::User(UserIdentity {
                token_identifier: format!("{}|{}", act.issuer, act.subject),
                subject: act.subject,
                issuer: act.issuer,
                attributes,
            })
        }
    };
    let started = Instant::now();
    let CallResult {
        outcome, log_lines, ..
    } = state
        .runtime
        .call(CallRequest {
            path,
            args,
            expected_kind: None,
            caller: Caller { identity },
            read_at: ReadAt::Latest,
            request_id: request_id.clone(),
        })
        .await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut answer = json!({
        "ok": outcome.is_ok(),
        "logLines": log_lines.iter().map(|l| log_line_json(l)).collect::<Vec<_>>(),
        "durationMs": duration_ms,
        "requestId": request_id.to_string(),
    });
    match outcome {
        Ok(value) => answer["value"] = value.to_convex_json(),
        Err(e) => answer["error"] = error_json(&e, request_id),
    }
    ok(answer)
}

// ---- logs ---------------------------------------------------------------------------------------

async fn logs(state: &AppState, params: &Params) -> Answer {
    let log = &state.runtime.observer().log;
    let path_filter = params.get("path").map(display_path);
    let outcome_filter = match params.get("outcome") {
        None => None,
        Some(o @ ("success" | "failure")) => Some(o.to_string()),
        Some(other) => {
            return Err(bad(format!(
                "`outcome` must be success or failure, got {other:?}."
            )))
        }
    };
    let mut cursor: u64 = params.number("cursor")?.unwrap_or(0);
    let deadline = Instant::now() + params.poll_timeout()?;
    loop {
        let entries = log.after(cursor, MAX_LOG_ENTRIES);
        if let Some(last) = entries.last() {
            cursor = last.id;
        }
        let matching: Vec<Json> = entries
            .iter()
            .filter(|e| {
                path_filter
                    .as_deref()
                    .is_none_or(|p| display_path(&e.path) == p)
            })
            .filter(|e| {
                outcome_filter
                    .as_deref()
                    .is_none_or(|o| e.outcome.as_str() == o)
            })
            .map(|e| {
                json!({
                    "id": e.id,
                    "timestamp": e.timestamp_ms,
                    "path": display_path(&e.path),
                    "kind": e.kind.map(kind_name),
                    "durationMs": e.duration_ms,
                    "outcome": e.outcome.as_str(),
                    "logLines": e.log_lines.iter().map(|l| log_line_json(l)).collect::<Vec<_>>(),
                    "error": e.error,
                    "errorData": e.error_data.as_ref().map(Value::to_convex_json),
                    "requestId": e.request_id,
                })
            })
            .collect();
        let now = Instant::now();
        if !matching.is_empty() || now >= deadline {
            return ok(json!({ "entries": matching, "cursor": cursor }));
        }
        log.wait_after(cursor, deadline - now).await;
    }
}

// ---- schedules ----------------------------------------------------------------------------------

async fn system_list(
    state: &AppState,
    path: &str,
    args: Object,
    request_id: &RequestId,
) -> Result<Json, DashError> {
    let result = state
        .runtime
        .call(CallRequest {
            path: path.to_string(),
            args: Value::Object(args),
            expected_kind: Some(FunctionKind::Query),
            caller: Caller {
                identity: Identity::Admin,
            },
            read_at: ReadAt::Latest,
            request_id: request_id.clone(),
        })
        .await;
    match result.outcome {
        Ok(value) => Ok(value.to_convex_json()),
        Err(FnError::Internal(detail)) => {
            Err(ApiError::internal_for(request_id, format_args!("{path}: {detail}")).into())
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

async fn scheduled(state: &AppState, params: &Params, request_id: &RequestId) -> Answer {
    let mut args = Object::new();
    if let Some(s) = params.get("state") {
        args.insert("state".into(), Value::from(s));
    }
    if let Some(limit) = params.number::<u32>("limit")? {
        args.insert("limit".into(), Value::Float64(f64::from(limit)));
    }
    let jobs = system_list(state, "_system/scheduler:list", args, request_id).await?;
    ok(json!({ "jobs": jobs }))
}

async fn crons(state: &AppState, request_id: &RequestId) -> Answer {
    let crons = system_list(state, "_system/crons:list", Object::new(), request_id).await?;
    ok(json!({ "crons": crons }))
}

async fn cancel(state: &AppState, body: &Json) -> Answer {
    let id = string_field(body, "id")?.to_string();
    match state.runtime.cancel_pending_job(id.clone()).await {
        Ok(CancelOutcome::Canceled) => ok(json!({ "id": id, "canceled": true })),
        Ok(CancelOutcome::NotPending(state)) => Err(DashError::new(
            ErrorCode::NotPending,
            format!("Job {id} is {state}, not pending; only pending jobs can be canceled."),
        )),
        Ok(CancelOutcome::NoSuchJob) => Err(DashError::new(
            ErrorCode::JobNotFound,
            format!("No scheduled job has the id {id:?}."),
        )),
        Err(e) => Err(write_error(e)),
    }
}

// ---- schema, health, changes --------------------------------------------------------------------

fn schema(state: &AppState) -> Response<ResponseBody> {
    let tables: Vec<Json> = state
        .runtime
        .store()
        .schema()
        .tables
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "system": t.name.starts_with('_'),
                "validate": t.validate,
                "fields": t.fields.iter().map(|(name, v)| json!({"name": name, "validator": v.describe()})).collect::<Vec<_>>(),
                "indexes": t.indexes.iter().map(|i| json!({"name": i.name, "fields": i.fields})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "tables": tables }).to_string().into_bytes(),
    )
}

fn samples(runtime: &Runtime) -> Vec<Arc<tickethub_runtime::HealthSample>> {
    let samples = runtime.observer().samples();
    if samples.is_empty() {
        // The sampler has not run yet (just started, or a test without background tasks).
        // On Postgres a sample queries the database with the blocking client: off the worker.
        if runtime.store().reads_wait_on_network() {
            return vec![tokio::task::block_in_place(|| runtime.sample_health())];
        }
        return vec![runtime.sample_health()];
    }
    samples
}

fn gauge(sample: &tickethub_runtime::HealthSample, name: &str) -> f64 {
    sample
        .gauges
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0.0, |(_, v)| *v)
}

fn health(state: &AppState) -> Response<ResponseBody> {
    let samples = samples(&state.runtime);
    let series = |f: &dyn Fn(&tickethub_runtime::HealthSample) -> f64| -> Json {
        Json::Array(samples.iter().map(|s| json!([s.unix_ms, f(s)])).collect())
    };
    let by_kind = |f: &dyn Fn(&tickethub_runtime::HealthSample, usize) -> f64| -> Json {
        let mut out = serde_json::Map::new();
        for (i, kind) in KINDS.iter().enumerate() {
            out.insert(kind_name(*kind).to_string(), series(&|s| f(s, i)));
        }
        Json::Object(out)
    };
    let store = state.runtime.store();
    let body = json!({
        "now": state.runtime.now_ms(),
        // Cluster mode: which node answered and what it does (`single` outside a cluster).
        "node": {
            "role": store.role().as_str(),
            "nodeId": store.node_id(),
            "leaderUrl": store.leader_url(),
        },
        "series": {
            "callsPerSec": by_kind(&|s, i| s.calls_per_sec[i]),
            "p50Ms": by_kind(&|s, i| s.p50_ms[i]),
            "p99Ms": by_kind(&|s, i| s.p99_ms[i]),
            "commitsPerSec": series(&|s| s.commits_per_sec),
            "batchSize": series(&|s| s.batch_size),
            "httpConnections": series(&|s| gauge(s, "httpConnections")),
            "wsConnections": series(&|s| gauge(s, "wsConnections")),
            "subscriptions": series(&|s| gauge(s, "subscriptions")),
            "dbBytes": series(&|s| s.db_bytes),
            "rssBytes": series(&|s| s.rss_bytes),
        }
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn changes(state: &AppState, params: &Params) -> Answer {
    let store = state.runtime.store();
    let Some(since) = params.number::<u64>("since")? else {
        // No position yet: hand out the current one.
        return ok(json!({ "ts": store.latest_ts().0.to_string(), "tables": [] }));
    };
    let since = Timestamp(since);
    if store.latest_ts() <= since {
        state
            .runtime
            .observer()
            .wait_commit_after(since, params.poll_timeout()?)
            .await;
    }
    let mut tables = BTreeSet::new();
    let mut ts = since;
    let complete = match store.commit_log().since_complete(since) {
        Some(commits) => {
            for (commit_ts, writes) in commits {
                ts = ts.max(commit_ts);
                for key in &writes.keys {
                    if let Some(table) = store.table_of_index(key.index) {
                        tables.insert(table.to_string());
                    }
                }
            }
            true
        }
        None => {
            // Too far behind for the log: say every table may have changed.
            ts = store.latest_ts();
            tables.extend(store.schema().tables.keys().cloned());
            false
        }
    };
    ok(json!({ "ts": ts.0.to_string(), "tables": tables, "complete": complete }))
}

// ---- /metrics -----------------------------------------------------------------------------------

/// `GET /metrics` on the API port, admin key required (the figures describe the deployment's
/// load and are not for the public): the health figures in the Prometheus/OpenMetrics text
/// format.
pub async fn metrics(state: Arc<AppState>, request: Request<Incoming>) -> Response<ResponseBody> {
    if let Err(e) = require_admin(&state, request.headers()).await {
        return e.into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::new(ErrorCode::MethodNotAllowed, "Use GET for /metrics.").into_response();
    }
    match encode_metrics(&state.runtime) {
        Ok(text) => {
            let mut response = Response::new(ResponseBody::from(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(e) => ApiError::internal(format_args!("encoding /metrics: {e}")).into_response(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// `tickethub_store_backend{backend="…"} 1`: which storage engine the deployment runs on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

/// `tickethub_cluster_leader{role="…"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn encode_metrics(runtime: &Runtime) -> Result<String, std::fmt::Error> {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::AtomicU64;

    type FGauge = Gauge<f64, AtomicU64>;
    let observer = runtime.observer();
    let totals = observer.totals();
    let latest = samples(runtime)
        .last()
        .cloned()
        .expect("at least one sample");
    let mut registry = Registry::with_prefix("tickethub");

    let calls = Family::<KindLabel, Counter>::default();
    let failures = Family::<KindLabel, Counter>::default();
    let rate = Family::<KindLabel, FGauge>::default();
    let p50 = Family::<KindLabel, FGauge>::default();
    let p99 = Family::<KindLabel, FGauge>::default();
    for (i, kind) in KINDS.iter().enumerate() {
        let label = KindLabel {
            kind: kind_name(*kind),
        };
        calls.get_or_create(&label).inc_by(totals.calls[i]);
        failures.get_or_create(&label).inc_by(totals.failures[i]);
        rate.get_or_create(&label).set(latest.calls_per_sec[i]);
        p50.get_or_create(&label).set(latest.p50_ms[i] / 1000.0);
        p99.get_or_create(&label).set(latest.p99_ms[i] / 1000.0);
    }
    registry.register(
        "function_calls",
        "Function calls since start, by kind",
        calls,
    );
    registry.register(
        "function_failures",
        "Function calls that failed since start, by kind",
        failures,
    );
    registry.register(
        "function_calls_per_second",
        "Function calls per second over the last sample interval, by kind",
        rate,
    );
    registry.register(
        "function_duration_p50_seconds",
        "Median function duration over the last sample interval, by kind",
        p50,
    );
    registry.register(
        "function_duration_p99_seconds",
        "99th percentile function duration over the last sample interval, by kind",
        p99,
    );
    let counter = |n: u64| {
        let c: Counter = Counter::default();
        c.inc_by(n);
        c
    };
    let gauge_of = |v: f64| {
        let g = FGauge::default();
        g.set(v);
        g
    };
    registry.register(
        "commits",
        "Durable commits since start",
        counter(totals.commits),
    );
    registry.register(
        "commit_batches",
        "Group-commit batches since start",
        counter(totals.batches),
    );
    registry.register(
        "commits_per_second",
        "Commits per second over the last sample interval",
        gauge_of(latest.commits_per_sec),
    );
    registry.register(
        "commit_batch_size",
        "Mean commits per batch over the last sample interval",
        gauge_of(latest.batch_size),
    );
    registry.register(
        "http_connections",
        "Open HTTP connections (both ports)",
        gauge_of(gauge(&latest, "httpConnections")),
    );
    registry.register(
        "websocket_connections",
        "Open WebSocket sync connections",
        gauge_of(gauge(&latest, "wsConnections")),
    );
    registry.register(
        "subscriptions",
        "Live query subscriptions",
        gauge_of(gauge(&latest, "subscriptions")),
    );
    registry.register(
        "database_bytes",
        "Database size on disk (file and WAL)",
        gauge_of(latest.db_bytes),
    );
    registry.register(
        "resident_memory_bytes",
        "Resident memory of the process",
        gauge_of(latest.rss_bytes),
    );
    // An info-style gauge: one series, labelled with the engine, always 1.
    let backend = Family::<BackendLabel, Gauge>::default();
    backend
        .get_or_create(&BackendLabel {
            backend: backend_name(runtime.store().backend()),
        })
        .set(1);
    registry.register(
        "store_backend",
        "The storage engine holding the deployment's documents (sqlite or postgres), always 1",
        backend,
    );
    // Cluster mode: 1 on the leader, 0 on a follower; `role` says which (single outside a
    // cluster). A balancer or an alert can watch it.
    let role = runtime.store().role();
    let leader = Family::<RoleLabel, Gauge>::default();
    leader
        .get_or_create(&RoleLabel {
            role: role.as_str(),
        })
        .set(i64::from(role != tickethub_store::NodeRole::Follower));
    registry.register(
        "cluster_leader",
        "Whether this node writes (1: the cluster's leader or a single server; 0: a follower)",
        leader,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_form() {
        let mut o = Object::new();
        o.insert("n".into(), Value::Int64(123));
        o.insert("b".into(), Value::Bytes(vec![1, 2, 3]));
        o.insert("s".into(), Value::from("<img src=x>"));
        assert_eq!(
            display(&Value::Object(o)),
            json!({"n": "123n", "b": "AQID", "s": "<img src=x>"})
        );
    }

    #[test]
    fn validation_paths() {
        assert_eq!(
            validation_path("Value does not match validator.\nPath: .firstName\nValue: 1")
                .as_deref(),
            Some("firstName")
        );
        assert_eq!(
            validation_path("Object is missing the required field `email`. Consider").as_deref(),
            Some("email")
        );
        assert_eq!(validation_path("nothing here"), None);
    }
}
