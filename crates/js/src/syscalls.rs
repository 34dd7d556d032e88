//! The `Convex.asyncSyscall` operations of the `convex` npm package (1.48), over the runtime's
//! query and mutation contexts. Arguments and results are Convex JSON, as the package sends and
//! expects them. `tickethub/queryBatch` is the prelude's own: the next documents of a query
//! stream (`queryStream` / `queryStreamNext` are kept in JavaScript).

use serde_json::{json, Value as Json};
use tickethub_runtime::{
    DatabaseReader, Doc, FnError, IndexRange, Order, PaginationOpts, Query, Value,
};

use crate::host::Invocation;

pub(crate) fn bad_args(op: &str, what: impl std::fmt::Display) -> FnError {
    FnError::Internal(format!("syscall {op}: {what}"))
}

fn str_field<'j>(op: &str, args: &'j Json, name: &str) -> Result<&'j str, FnError> {
    args.get(name)
        .and_then(Json::as_str)
        .ok_or_else(|| bad_args(op, format_args!("`{name}` must be a string")))
}

/// A Convex JSON value, or `None` for `{"$undefined": null}` (JS `undefined`).
fn value_or_undefined(json: &Json) -> Result<Option<Value>, FnError> {
    if json
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("$undefined"))
    {
        return Ok(None);
    }
    Value::from_convex_json(json)
        .map(Some)
        .map_err(|e| FnError::msg(format!("Invalid value: {e}")))
}

fn object_value(op: &str, json: Option<&Json>) -> Result<Value, FnError> {
    let json = json.ok_or_else(|| bad_args(op, "`value` is missing"))?;
    match Value::from_convex_json(json).map_err(|e| FnError::msg(format!("Invalid value: {e}")))? {
        object @ Value::Object(_) => Ok(object),
        other => Err(FnError::msg(format!(
            "The value written must be an object, got {}",
            other.type_name()
        ))),
    }
}

/// A function handle (`createFunctionHandle`) is this prefix and the function's canonical path.
const HANDLE_PREFIX: &str = "function://";

/// The function a scheduler, `runUdf` or action syscall names: by `name`, or by a function
/// handle. Components' `reference`s are not supported yet: they say so.
pub(crate) fn function_name<'j>(op: &str, args: &'j Json) -> Result<&'j str, FnError> {
    if let Some(name) = args.get("name").and_then(Json::as_str) {
        return Ok(name);
    }
    if let Some(handle) = args.get("functionHandle").and_then(Json::as_str) {
        return handle
            .strip_prefix(HANDLE_PREFIX)
            .ok_or_else(|| FnError::msg(format!("{op}: {handle:?} is not a function handle")));
    }
    if args.get("reference").is_some() {
        return Err(FnError::msg(format!(
            "{op}: calling a component's function is not supported by tickethub yet"
        )));
    }
    Err(bad_args(op, "`name` must be a string"))
}

/// `1.0/createFunctionHandle`: a handle for a function that exists now (it may be gone by the
/// time the handle is used, as in Convex; the call then fails as for any missing function).
pub(crate) fn function_handle(
    runtime: &tickethub_runtime::Runtime,
    op: &str,
    args: &Json,
) -> Result<Json, FnError> {
    let path = runtime.function_path(function_name(op, args)?)?;
    Ok(json!(format!("{HANDLE_PREFIX}{path}")))
}

/// A syscall's answer that is an optional serializable value (an identity, file metadata):
/// its Convex JSON, or `null`.
pub(crate) fn optional_json<T: serde::Serialize>(
    what: &str,
    value: Option<T>,
) -> Result<Json, FnError> {
    match value {
        None => Ok(Json::Null),
        Some(value) => Ok(tickethub_runtime::to_value(&value)
            .map_err(|e| FnError::Internal(format!("{what}: {e}")))?
            .to_convex_json()),
    }
}

fn doc_json(doc: &Doc) -> Json {
    doc.to_value().to_convex_json()
}

fn reader<'c>(invocation: &'c Invocation<'_, '_>) -> DatabaseReader<'c> {
    match invocation {
        Invocation::Query(ctx) => ctx.db,
        Invocation::Mutation(ctx) => ctx.db.reader(),
    }
}

fn writer<'c, 'a>(
    invocation: &'c Invocation<'_, 'a>,
    op: &str,
) -> Result<&'c tickethub_runtime::MutationCtx<'a>, FnError> {
    match invocation {
        Invocation::Mutation(ctx) => Ok(ctx),
        Invocation::Query(_) => Err(FnError::msg(format!(
            "{op} is not allowed in a query: queries cannot write"
        ))),
    }
}

/// Service one syscall; the result is the JSON the package expects back.
pub(crate) fn service(
    invocation: &Invocation<'_, '_>,
    op: &str,
    args: &str,
) -> Result<Json, FnError> {
    let args: Json =
        serde_json::from_str(args).map_err(|e| bad_args(op, format_args!("not JSON: {e}")))?;
    match op {
        "1.0/get" => {
            let id = str_field(op, &args, "id")?;
            Ok(reader(invocation)
                .get(id)?
                .as_ref()
                .map_or(Json::Null, doc_json))
        }
        "1.0/insert" => {
            let ctx = writer(invocation, "insert")?;
            let table = str_field(op, &args, "table")?;
            let id = ctx.db.insert(table, object_value(op, args.get("value"))?)?;
            Ok(json!({ "_id": id }))
        }
        "1.0/shallowMerge" => {
            let ctx = writer(invocation, "patch")?;
            let id = str_field(op, &args, "id")?;
            let fields = args
                .get("value")
                .and_then(Json::as_object)
                .ok_or_else(|| FnError::msg("patch() expects an object"))?
                .iter()
                .map(|(k, v)| Ok((k.clone(), value_or_undefined(v)?)))
                .collect::<Result<Vec<_>, FnError>>()?;
            ctx.db.patch_fields(id, fields)?;
            Ok(Json::Null)
        }
        "1.0/replace" => {
            let ctx = writer(invocation, "replace")?;
            let id = str_field(op, &args, "id")?;
            ctx.db.replace(id, object_value(op, args.get("value"))?)?;
            Ok(Json::Null)
        }
        "1.0/remove" => {
            let ctx = writer(invocation, "delete")?;
            ctx.db.delete(str_field(op, &args, "id")?)?;
            Ok(Json::Null)
        }
        "tickethub/queryBatch" | "1.0/queryPage" => {
            let query_json = args
                .get("query")
                .ok_or_else(|| bad_args(op, "`query` is missing"))?;
            let (size_field, cursor) = if op == "1.0/queryPage" {
                ("pageSize", args.get("cursor").and_then(Json::as_str))
            } else {
                ("batch", args.get("cursor").and_then(Json::as_str))
            };
            let size = args
                .get(size_field)
                .and_then(Json::as_f64)
                .ok_or_else(|| bad_args(op, format_args!("`{size_field}` must be a number")))?;
            let db = reader(invocation);
            let query = build_query(&db, query_json)?;
            let page = query.paginate(PaginationOpts {
                num_items: size.max(1.0),
                cursor: cursor.map(str::to_string),
            })?;
            Ok(json!({
                "page": page.page.iter().map(doc_json).collect::<Vec<_>>(),
                "isDone": page.is_done,
                "continueCursor": page.continue_cursor,
            }))
        }
        "1.0/count" => {
            let table = str_field(op, &args, "table")?;
            let count = reader(invocation).query(table).collect()?.len();
            Ok(json!(count as f64))
        }
        "1.0/getUserIdentity" => {
            let auth = match invocation {
                Invocation::Query(ctx) => &ctx.auth,
                Invocation::Mutation(ctx) => &ctx.auth,
            };
            optional_json("identity", auth.get_user_identity()?)
        }
        "1.0/schedule" => {
            let ctx = writer(invocation, "ctx.scheduler")?;
            let path = function_name(op, &args)?;
            let seconds = args
                .get("ts")
                .and_then(Json::as_f64)
                .ok_or_else(|| bad_args(op, "`ts` must be a number of seconds"))?;
            let job_args = object_value(op, args.get("args"))?;
            let id = ctx.scheduler.run_at(seconds * 1000.0, path, job_args)?;
            Ok(json!(id))
        }
        "1.0/createFunctionHandle" => function_handle(&invocation.runtime(), op, &args),
        "1.0/storageGetUrl" => {
            let id = str_field(op, &args, "storageId")?;
            let url = match invocation {
                Invocation::Query(ctx) => ctx.storage.get_url(id)?,
                Invocation::Mutation(ctx) => ctx.storage.get_url(id)?,
            };
            Ok(json!(url))
        }
        "1.0/storageGetMetadata" => {
            let id = str_field(op, &args, "storageId")?;
            let meta = match invocation {
                Invocation::Query(ctx) => ctx.storage.get_metadata(id)?,
                Invocation::Mutation(ctx) => ctx.storage.get_metadata(id)?,
            };
            optional_json("metadata", meta)
        }
        "1.0/storageGenerateUploadUrl" => {
            let ctx = writer(invocation, "ctx.storage.generateUploadUrl")?;
            Ok(json!(ctx.storage.generate_upload_url()?))
        }
        "1.0/storageDelete" => {
            let ctx = writer(invocation, "ctx.storage.delete")?;
            ctx.storage.delete(str_field(op, &args, "storageId")?)?;
            Ok(Json::Null)
        }
        "1.0/cancel_job" => {
            let ctx = writer(invocation, "ctx.scheduler.cancel")?;
            ctx.scheduler.cancel(str_field(op, &args, "id")?)?;
            Ok(Json::Null)
        }
        other => Err(FnError::msg(format!(
            "The syscall {other} is not supported by tickethub's JavaScript runtime yet"
        ))),
    }
}

// ---- queries --------------------------------------------------------------------------------

/// A filter expression of the `convex` package's query builder.
enum Expr {
    Field(Vec<String>),
    Literal(Option<Value>),
    Compare(Comparison, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Copy)]
enum Comparison {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

fn parse_expr(json: &Json) -> Result<Expr, FnError> {
    let object = json
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| FnError::msg(format!("Invalid filter expression {json}")))?;
    let (op, operand) = object.iter().next().expect("one entry");
    let pair = |operand: &Json| -> Result<(Box<Expr>, Box<Expr>), FnError> {
        match operand.as_array().map(Vec::as_slice) {
            Some([a, b]) => Ok((Box::new(parse_expr(a)?), Box::new(parse_expr(b)?))),
            _ => Err(FnError::msg(format!("{op} takes two operands"))),
        }
    };
    let list = |operand: &Json| -> Result<Vec<Expr>, FnError> {
        operand
            .as_array()
            .ok_or_else(|| FnError::msg(format!("{op} takes a list")))?
            .iter()
            .map(parse_expr)
            .collect()
    };
    let compare = |c: Comparison| -> Result<Expr, FnError> {
        let (a, b) = pair(operand)?;
        Ok(Expr::Compare(c, a, b))
    };
    match op.as_str() {
        "$field" => Ok(Expr::Field(
            operand
                .as_str()
                .ok_or_else(|| FnError::msg("$field takes a field path"))?
                .split('.')
                .map(str::to_string)
                .collect(),
        )),
        "$literal" => Ok(Expr::Literal(value_or_undefined(operand)?)),
        "$eq" => compare(Comparison::Eq),
        "$neq" => compare(Comparison::Neq),
        "$lt" => compare(Comparison::Lt),
        "$lte" => compare(Comparison::Lte),
        "$gt" => compare(Comparison::Gt),
        "$gte" => compare(Comparison::Gte),
        "$and" => Ok(Expr::And(list(operand)?)),
        "$or" => Ok(Expr::Or(list(operand)?)),
        "$not" => Ok(Expr::Not(Box::new(parse_expr(operand)?))),
        other => Err(FnError::msg(format!(
            "The filter operator {other} is not supported by tickethub yet"
        ))),
    }
}

fn field_of(doc: &Doc, path: &[String]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let mut value = match first.as_str() {
        "_id" => Value::String(doc.id.clone()),
        "_creationTime" => Value::Float64(doc.creation_time),
        name => doc.get(name)?.clone(),
    };
    for name in rest {
        value = value.get(name)?.clone();
    }
    Some(value)
}

/// Evaluate; `None` is `undefined`, which sorts before every value, as in Convex.
fn eval(expr: &Expr, doc: &Doc) -> Option<Value> {
    let truthy = |e: &Expr| eval(e, doc) == Some(Value::Boolean(true));
    match expr {
        Expr::Field(path) => field_of(doc, path),
        Expr::Literal(value) => value.clone(),
        Expr::Compare(c, a, b) => {
            let (a, b) = (eval(a, doc), eval(b, doc));
            Some(Value::Boolean(match c {
                Comparison::Eq => a == b,
                Comparison::Neq => a != b,
                Comparison::Lt => a < b,
                Comparison::Lte => a <= b,
                Comparison::Gt => a > b,
                Comparison::Gte => a >= b,
            }))
        }
        Expr::And(items) => Some(Value::Boolean(items.iter().all(truthy))),
        Expr::Or(items) => Some(Value::Boolean(items.iter().any(truthy))),
        Expr::Not(inner) => Some(Value::Boolean(!truthy(inner))),
    }
}

fn order_of(source: &Json) -> Option<Order> {
    match source.get("order").and_then(Json::as_str) {
        Some("desc") => Some(Order::Desc),
        Some("asc") => Some(Order::Asc),
        _ => None,
    }
}

/// The package's serialized query (`{source, operators}`) as a runtime [`Query`]. Filters run
/// while scanning; `limit` is applied by the caller (the prelude counts what it yields).
fn build_query<'d>(db: &'d DatabaseReader<'_>, json: &Json) -> Result<Query<'d>, FnError> {
    let source = json
        .get("source")
        .ok_or_else(|| FnError::msg("A query without a source"))?;
    let mut query = match source.get("type").and_then(Json::as_str) {
        Some("FullTableScan") => {
            let table = source
                .get("tableName")
                .and_then(Json::as_str)
                .ok_or_else(|| FnError::msg("A table scan without a table"))?;
            db.query(table)
        }
        Some("IndexRange") => {
            let full = source
                .get("indexName")
                .and_then(Json::as_str)
                .ok_or_else(|| FnError::msg("An index range without an index"))?;
            let (table, index) = full
                .split_once('.')
                .ok_or_else(|| FnError::msg(format!("Invalid index name {full:?}")))?;
            let mut bounds = Vec::new();
            for b in source
                .get("range")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let kind = b
                    .get("type")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let field = b
                    .get("fieldPath")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let value = value_or_undefined(b.get("value").unwrap_or(&Json::Null))?;
                bounds.push((kind, field, value));
            }
            db.query(table)
                .with_index(index, move |mut range: IndexRange| {
                    for (kind, field, value) in bounds {
                        range = match (kind.as_str(), value) {
                            ("Eq", None) => range.eq_undefined(&field),
                            ("Eq", Some(v)) => range.eq(&field, v),
                            ("Gt", Some(v)) => range.gt(&field, v),
                            ("Gte", Some(v)) => range.gte(&field, v),
                            ("Lt", Some(v)) => range.lt(&field, v),
                            ("Lte", Some(v)) => range.lte(&field, v),
                            // An unknown bound or a range bound on `undefined`: nothing matches a
                            // bound on nothing, so let the store refuse the malformed range.
                            (_, _) => range.gt(&field, Value::Null).lt(&field, Value::Null),
                        };
                    }
                    range
                })
        }
        Some("Search") => {
            return Err(FnError::msg(
                "Search indexes are not supported by tickethub yet",
            ))
        }
        other => return Err(FnError::msg(format!("Unknown query source {other:?}"))),
    };
    if let Some(order) = order_of(source) {
        query = query.order(order);
    }
    let mut limited = false;
    for operator in json
        .get("operators")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(filter) = operator.get("filter") {
            if limited {
                return Err(FnError::msg(
                    "A filter after a limit is not supported by tickethub yet",
                ));
            }
            let expr = parse_expr(filter)?;
            query = query.filter(move |doc| eval(&expr, doc) == Some(Value::Boolean(true)));
        } else if operator.get("limit").is_some() {
            limited = true;
        }
    }
    Ok(query)
}
