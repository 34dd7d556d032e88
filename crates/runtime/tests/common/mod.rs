//! Shared harness: a real store in a temp dir, with the runtime's system tables.
#![allow(dead_code)]

use std::path::Path;

use tickethub_runtime::{
    App, CallRequest, CallResult, Caller, Clock, FunctionKind, Identity, ReadAt, Runtime,
    RuntimeConfig, Value,
};
use tickethub_store::{Schema, Store, StoreOptions};

pub const SCHEMA: &str = r#"
[tables.items]
fields.name = "string"
fields.n = "number"
fields.tag = "optional(string)"
indexes.by_n = ["n"]
indexes.by_tag_n = ["tag", "n"]

[tables.counters]
fields.name = "string"
fields.value = "number"
indexes.by_name = ["name"]
"#;

pub fn open_store(dir: &Path) -> Store {
    let mut schema = Schema::from_toml(SCHEMA).expect("schema");
    for table in Runtime::system_tables() {
        schema.add_system_table(table);
    }
    Store::open(dir, schema, StoreOptions::default()).expect("open store")
}

pub fn runtime(dir: &Path, app: App, clock: Clock) -> Runtime {
    Runtime::new(
        app,
        open_store(dir),
        RuntimeConfig {
            clock,
            ..RuntimeConfig::default()
        },
    )
}

pub fn obj(pairs: &[(&str, Value)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

pub fn json(v: serde_json::Value) -> Value {
    Value::from_clean_json(&v).expect("clean json")
}

pub async fn call_as(
    rt: &Runtime,
    identity: Identity,
    kind: Option<FunctionKind>,
    path: &str,
    args: Value,
) -> CallResult {
    rt.call(CallRequest {
        path: path.to_string(),
        args,
        expected_kind: kind,
        caller: Caller { identity },
        read_at: ReadAt::Latest,
        request_id: tickethub_runtime::RequestId::generate(),
    })
    .await
}

pub async fn call(rt: &Runtime, path: &str, args: Value) -> CallResult {
    call_as(rt, Identity::Anonymous, None, path, args).await
}

/// Call and expect success.
pub async fn ok(rt: &Runtime, path: &str, args: Value) -> Value {
    let result = call(rt, path, args).await;
    match result.outcome {
        Ok(v) => v,
        Err(e) => panic!("{path} failed: {e}"),
    }
}

/// Call and expect failure; the error's text.
pub async fn err(rt: &Runtime, path: &str, args: Value) -> String {
    match call(rt, path, args).await.outcome {
        Ok(v) => panic!("{path} succeeded with {v}"),
        Err(e) => e.to_string(),
    }
}

/// `{name}`: which counter of the `counters` table a test job bumps or reads.
#[derive(serde::Deserialize, tickethub_runtime::Args)]
pub struct Name {
    pub name: String,
}

/// The value of counter `name` (0 when it was never bumped).
pub fn counter(
    ctx: &tickethub_runtime::QueryCtx,
    name: &str,
) -> Result<f64, tickethub_runtime::FnError> {
    let row = ctx
        .db
        .query("counters")
        .with_index("by_name", |q| q.eq("name", name))
        .first()?;
    Ok(row.and_then(|d| d.get_f64("value")).unwrap_or(0.0))
}

/// Add one to counter `name`, creating it at 1.
pub fn bump(
    ctx: &tickethub_runtime::MutationCtx,
    name: &str,
) -> Result<(), tickethub_runtime::FnError> {
    match ctx
        .db
        .query("counters")
        .with_index("by_name", |q| q.eq("name", name))
        .first()?
    {
        Some(row) => ctx.db.patch(
            &row.id,
            serde_json::json!({"value": row.get_f64("value").unwrap_or(0.0) + 1.0}),
        ),
        None => ctx
            .db
            .insert("counters", serde_json::json!({"name": name, "value": 1.0}))
            .map(|_| ()),
    }
}
