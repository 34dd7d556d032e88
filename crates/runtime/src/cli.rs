//! The `_system/cli/*` queries the official Convex CLI subscribes to over the sync protocol:
//! `npx convex data` (`tables`, `tableData`) and `npx convex function-spec`
//! (`modules:apiSpec`, `convexUrl:cloudUrl`). All are internal: only the admin key reaches them.
//!
//! `tableData` pages are bounded twice, whatever the CLI asks for: at most
//! `CLI_DATA_PAGE_MAX_DOCS` documents, and the page ends after the chunk that reaches
//! `CLI_DATA_PAGE_MAX_BYTES` of document size. The CLI then asks for the next page.

use tickethub_store::Order;
use tickethub_value::validator::{v, validator_json};
use tickethub_value::{limits::size_of, Object, Validator, Value};

use crate::db::PaginationOpts;
use crate::registry::{RoutePath, Visibility, SYSTEM_MODULE_PREFIX};
use crate::{FnError, FunctionKind, QueryCtx, Runtime};

/// Documents read per step while filling a `tableData` page: small enough that the byte bound
/// overshoots by little, large enough that a page costs few scans.
const TABLE_DATA_CHUNK: usize = 128;

/// Args of `_system/cli/tables`: the CLI sends `paginationOpts`; there are few tables, so one
/// page always holds them all.
#[derive(serde::Deserialize)]
struct TablesArgs {}

impl crate::Args for TablesArgs {
    fn validator() -> Option<Validator> {
        Some(v::object([("paginationOpts", v::optional(v::any()))]))
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableDataArgs {
    table: String,
    order: Option<String>,
    pagination_opts: PaginationOpts,
}

impl crate::Args for TableDataArgs {
    fn validator() -> Option<Validator> {
        Some(v::object([
            ("table", v::string()),
            (
                "order",
                v::optional(v::union([v::literal("asc"), v::literal("desc")])),
            ),
            (
                "paginationOpts",
                v::object([
                    ("numItems", v::number()),
                    ("cursor", v::union([v::string(), v::null()])),
                    ("id", v::optional(v::number())),
                    ("maximumRowsRead", v::optional(v::number())),
                    ("maximumBytesRead", v::optional(v::number())),
                ]),
            ),
        ]))
    }
}

fn object(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Object>(),
    )
}

fn pagination_result(page: Vec<Value>, is_done: bool, cursor: String) -> Value {
    object([
        ("page", Value::Array(page)),
        ("isDone", Value::Boolean(is_done)),
        ("continueCursor", Value::from(cursor)),
    ])
}

fn tables(ctx: &QueryCtx, _: TablesArgs) -> Result<Value, FnError> {
    let names = ctx
        .env
        .rt
        .store
        .schema()
        .tables
        .keys()
        .filter(|name| !name.starts_with('_'))
        .map(|name| object([("name", Value::from(name.clone()))]))
        .collect();
    Ok(pagination_result(names, true, "end".to_string()))
}

fn table_data(ctx: &QueryCtx, args: TableDataArgs) -> Result<Value, FnError> {
    if !ctx.env.rt.store.schema().tables.contains_key(&args.table) {
        return Err(FnError::ArgumentValidation(format!(
            "Table \"{}\" does not exist.",
            args.table
        )));
    }
    let order = match args.order.as_deref() {
        Some("asc") => Order::Asc,
        _ => Order::Desc,
    };
    let asked = args.pagination_opts.num_items;
    if !(asked.is_finite() && asked >= 1.0) {
        return Err(FnError::ArgumentValidation(format!(
            "paginationOpts.numItems must be at least 1, got {asked}"
        )));
    }
    let max_docs = (asked as usize).min(*tickethub_knobs::CLI_DATA_PAGE_MAX_DOCS);
    let max_bytes = *tickethub_knobs::CLI_DATA_PAGE_MAX_BYTES;
    let mut page = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = args.pagination_opts.cursor;
    loop {
        let want = (max_docs - page.len()).min(TABLE_DATA_CHUNK);
        let chunk = ctx
            .db
            .query(&args.table)
            .order(order)
            .paginate(PaginationOpts {
                num_items: want as f64,
                cursor: cursor.take(),
            })?;
        for doc in &chunk.page {
            let value = doc.to_value();
            bytes += size_of(&value);
            page.push(value);
        }
        cursor = Some(chunk.continue_cursor);
        if chunk.is_done || page.len() >= max_docs || bytes >= max_bytes {
            return Ok(pagination_result(
                page,
                chunk.is_done,
                cursor.unwrap_or_default(),
            ));
        }
    }
}

fn function_type(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Query => "Query",
        FunctionKind::Mutation => "Mutation",
        FunctionKind::Action => "Action",
        FunctionKind::HttpAction => "HttpAction",
    }
}

/// A validator in Convex's JSON form, as a value; absent means `{type: "any"}`.
fn validator_value(validator: Option<&Validator>) -> Result<Value, FnError> {
    let json = validator_json(validator.unwrap_or(&Validator::Any));
    Value::from_convex_json(&json)
        .map_err(|e| FnError::Internal(format!("encoding a validator: {e}")))
}

/// Every app function (not the built-in `_system/` ones), sorted by path, then the HTTP routes
/// in registration order: Convex's `apiSpec` shape.
fn api_spec(ctx: &QueryCtx, _: crate::NoArgs) -> Result<Vec<Value>, FnError> {
    let rt = Runtime {
        inner: ctx.env.rt.clone(),
    };
    let mut spec = Vec::new();
    for function in rt.functions() {
        if function.path().starts_with(SYSTEM_MODULE_PREFIX) {
            continue;
        }
        let visibility = match function.visibility() {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
        };
        spec.push(object([
            ("identifier", Value::from(function.path().to_string())),
            ("functionType", Value::from(function_type(function.kind()))),
            ("visibility", object([("kind", Value::from(visibility))])),
            ("args", validator_value(function.args_validator())?),
            ("returns", validator_value(function.returns_validator())?),
        ]));
    }
    for route in rt.routes() {
        let path = match &route.path {
            RoutePath::Exact(path) => path.clone(),
            // Convex writes a prefix route as its prefix followed by `*`.
            RoutePath::Prefix(prefix) => format!("{prefix}*"),
        };
        spec.push(object([
            ("functionType", Value::from("HttpAction")),
            ("method", Value::from(route.method.as_str().to_string())),
            ("path", Value::from(path)),
        ]));
    }
    Ok(spec)
}

/// The deployment's URL: `CONVEX_CLOUD_URL` if set, else the API origin file URLs use.
fn cloud_url(ctx: &QueryCtx, _: crate::NoArgs) -> Result<Value, FnError> {
    let rt = Runtime {
        inner: ctx.env.rt.clone(),
    };
    let url = rt.env_var("CONVEX_CLOUD_URL").or_else(|| {
        rt.inner
            .config
            .storage
            .as_ref()
            .map(|s| s.api_origin.clone())
    });
    Ok(url.map_or(Value::Null, Value::from))
}

pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query("_system/cli/tables:default", tables);
    app.internal_query("_system/cli/tableData:default", table_data);
    app.internal_query("_system/cli/modules:apiSpec", api_spec);
    app.internal_query("_system/cli/convexUrl:cloudUrl", cloud_url);
}
