//! Calls, validation, the db API and contexts, against a real store in a temp dir.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use common::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickethub_runtime::{
    canonicalize_path, ActionCtx, App, Args, Caller, Clock, Doc, FnError, FunctionKind, Identity,
    LogLevel, MutationCtx, NoArgs, Order, PaginationOpts, PaginationResult, QueryCtx, ReadAt,
    Route, Value,
};

#[test]
fn path_canonicalization() {
    let check = |input: &str, expected: Result<&str, ()>| {
        let got = canonicalize_path(input).map_err(|_| ());
        assert_eq!(
            got.as_deref(),
            expected.as_deref().map_err(|_| &()),
            "canonicalize({input:?})"
        );
    };
    check("users:getUserById", Ok("users.js:getUserById"));
    check("users.js:getUserById", Ok("users.js:getUserById"));
    check("messages", Ok("messages.js:default"));
    check("a/b:fn", Ok("a/b.js:fn"));
    check("a/b.js:fn", Ok("a/b.js:fn"));
    check("dir.v2/mod_1:_private9", Ok("dir.v2/mod_1.js:_private9"));
    check(":fn", Err(()));
    check("users:", Err(()));
    check("users:9lives", Err(()));
    check("users:bad name!", Err(()));
    check("us-ers:f", Err(()));
    check("a//b:f", Err(()));
    check("a:b:c", Err(()));
    check(
        &format!("{}:f", "m".repeat(64)),
        Ok(&format!("{}.js:f", "m".repeat(64))),
    );
    check(&format!("{}:f", "m".repeat(65)), Err(()));
    check(
        &format!("m:{}", "f".repeat(64)),
        Ok(&format!("m.js:{}", "f".repeat(64))),
    );
    check(&format!("m:{}", "f".repeat(65)), Err(()));
}

#[derive(Deserialize, Serialize, Args)]
struct NewItem {
    name: String,
    n: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

#[derive(Deserialize, Args)]
struct Range {
    lo: f64,
    hi: f64,
}

#[derive(Deserialize, Args)]
#[serde(rename_all = "camelCase")]
struct Page {
    num_items: f64,
    cursor: Option<String>,
}

#[derive(Deserialize, Args)]
struct ById {
    #[arg(id = "items")]
    id: String,
}

fn app() -> App {
    let mut app = App::new();
    app.mutation("items:add", |ctx: &MutationCtx, item: NewItem| {
        ctx.db.insert("items", &item)
    });
    app.internal_query("items:count", |ctx: &QueryCtx, _: NoArgs| {
        Ok(ctx.db.query("items").collect()?.len() as f64)
    });
    app.query("items:all", |ctx: &QueryCtx, _: NoArgs| {
        ctx.db.query("items").collect()
    });
    app.query("items:get", |ctx: &QueryCtx, args: ById| {
        ctx.db.get(&args.id)
    });
    app.query("items:echo", |_ctx: &QueryCtx, v: Value| Ok(v));
    app.query("items:range", |ctx: &QueryCtx, r: Range| {
        ctx.db
            .query("items")
            .with_index("by_n", |q| q.gte("n", r.lo).lt("n", r.hi))
            .order(Order::Desc)
            .collect()
    });
    app.query("items:tagged", |ctx: &QueryCtx, t: Value| {
        let tag = t
            .get("tag")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        ctx.db
            .query("items")
            .with_index("by_tag_n", |q| q.eq("tag", tag).gt("n", 1.0))
            .collect()
    });
    app.query("items:untagged", |ctx: &QueryCtx, _: NoArgs| {
        ctx.db
            .query("items")
            .with_index("by_tag_n", |q| q.eq_undefined("tag"))
            .collect()
    });
    app.query("items:uniqueByName", |ctx: &QueryCtx, v: Value| {
        let name = v.get("name").cloned().unwrap_or(Value::Null);
        ctx.db
            .query("items")
            .filter(move |d| d.get("name") == Some(&name))
            .unique()
    });
    app.query(
        "items:evenPage",
        |ctx: &QueryCtx, p: Page| -> Result<PaginationResult, FnError> {
            ctx.db
                .query("items")
                .filter(|d| d.get_f64("n").is_some_and(|n| n % 2.0 == 0.0))
                .paginate(PaginationOpts {
                    num_items: p.num_items,
                    cursor: p.cursor,
                })
        },
    );
    app.mutation(
        "items:addThenFail",
        |ctx: &MutationCtx, item: NewItem| -> Result<(), FnError> {
            ctx.db.insert("items", &item)?;
            ctx.db.insert("items", &item)?;
            Err(FnError::msg("changed my mind"))
        },
    );
    app.mutation(
        "items:addTwiceInline",
        |ctx: &MutationCtx, item: NewItem| -> Result<Value, FnError> {
            ctx.db.insert("items", &item)?;
            // The inline mutation sees this transaction's write, and its own write is part of it.
            ctx.run_mutation_inline("items:add", &item)?;
            let seen = ctx.run_mutation_inline("items:count", NoArgs::default_value())?;
            if item.tag.as_deref() == Some("fail") {
                return Err(FnError::msg("roll everything back"));
            }
            Ok(seen)
        },
    );
    app.mutation("items:inlineBadArgs", |ctx: &MutationCtx, _: NoArgs| {
        ctx.run_mutation_inline("items:add", json!({"name": 1}))
    });
    app.query(
        "items:logs",
        |ctx: &QueryCtx, _: NoArgs| -> Result<(), FnError> {
            ctx.log(LogLevel::Log, "hi");
            ctx.log(LogLevel::Info, "it's \"quoted\"");
            ctx.log(LogLevel::Error, "line\nbreak");
            Ok(())
        },
    );
    app.query(
        "items:panics",
        |_ctx: &QueryCtx, _: NoArgs| -> Result<(), FnError> { panic!("kaboom") },
    );
    app.mutation(
        "items:panicsAfterWrite",
        |ctx: &MutationCtx, item: NewItem| -> Result<(), FnError> {
            ctx.db.insert("items", &item)?;
            panic!("kaboom in a mutation")
        },
    );
    app.query("items:typed", |_ctx: &QueryCtx, _: NoArgs| {
        Ok(json!({"n": 1}))
    })
    .returns(tickethub_runtime::v::object([(
        "n",
        tickethub_runtime::v::string(),
    )]));
    app.query("items:whoami", |ctx: &QueryCtx, _: NoArgs| {
        Ok(ctx.auth.get_user_identity()?.map(|u| u.subject.clone()))
    });
    app.action(
        "items:viaAction",
        |ctx: ActionCtx, item: NewItem| async move {
            ctx.log(LogLevel::Log, "in the action");
            let id: String = ctx.run_mutation("items:add", &item).await?;
            let count: f64 = ctx.run_query("items:count", json!({})).await?;
            let logs: Value = ctx.run_query("items:logs", json!({})).await?;
            let who: Option<String> = ctx.run_query("items:whoami", json!({})).await?;
            Ok(json!({"id": id, "count": count, "logs": logs.is_null(), "who": who}))
        },
    );
    app.http_route(
        Route::exact(http::Method::GET, "/a/b"),
        |_ctx, _req| async { Ok(http::Response::new(bytes::Bytes::from("exact"))) },
    );
    app.http_route(
        Route::prefix(http::Method::GET, "/a/"),
        |_ctx, _req| async { Ok(http::Response::new(bytes::Bytes::from("short prefix"))) },
    );
    app.http_route(
        Route::prefix(http::Method::GET, "/a/b/"),
        |_ctx, _req| async { Ok(http::Response::new(bytes::Bytes::from("long prefix"))) },
    );
    app.http_route(
        Route::exact(http::Method::POST, "/fail"),
        |_ctx, _req| async { Err(FnError::msg("no way")) },
    );
    app.http_route(
        Route::exact(http::Method::POST, "/crash"),
        |_ctx, _req| async { Err(FnError::Internal("secret detail".into())) },
    );
    app
}

trait DefaultValue {
    fn default_value() -> Value;
}
impl DefaultValue for NoArgs {
    fn default_value() -> Value {
        Value::Object(Default::default())
    }
}

fn item(name: &str, n: f64, tag: Option<&str>) -> Value {
    let mut v = json!({"name": name, "n": n});
    if let Some(tag) = tag {
        v["tag"] = json!(tag);
    }
    common::json(v)
}

fn args(v: serde_json::Value) -> Value {
    common::json(v)
}

fn docs(v: &Value) -> Vec<&Value> {
    v.as_array().expect("array").iter().collect()
}

#[tokio::test]
async fn argument_validation_runs_before_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let message = err(&rt, "items:add", args(json!({"name": 5, "n": 1}))).await;
    assert!(
        message.starts_with("ArgumentValidationError: "),
        "{message}"
    );
    assert!(message.contains("name"), "{message}");
    let message = err(&rt, "items:add", args(json!({"name": "x"}))).await;
    assert!(
        message.starts_with("ArgumentValidationError: ") && message.contains("`n`"),
        "{message}"
    );
    let message = err(
        &rt,
        "items:add",
        args(json!({"name": "x", "n": 1, "extra": true})),
    )
    .await;
    assert!(
        message.starts_with("ArgumentValidationError: ") && message.contains("extra"),
        "{message}"
    );
    // An id of the wrong shape is refused by the validator too.
    let message = err(&rt, "items:get", args(json!({"id": "not-an-id"}))).await;
    assert!(
        message.starts_with("ArgumentValidationError: "),
        "{message}"
    );
    // Nothing ran.
    assert_eq!(
        ok(&rt, "items:all", args(json!({}))).await,
        Value::Array(vec![])
    );
    // A result not matching `.returns(..)`.
    let message = err(&rt, "items:typed", args(json!({}))).await;
    assert!(message.starts_with("ReturnsValidationError: "), "{message}");
}

#[tokio::test]
async fn unknown_internal_and_wrong_kind() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    assert_eq!(
        err(&rt, "items:count", args(json!({}))).await,
        "Could not find public function for 'items:count'."
    );
    assert_eq!(
        err(&rt, "items:nope", args(json!({}))).await,
        "Could not find public function for 'items:nope'."
    );
    assert_eq!(
        err(&rt, "items:bad name!", args(json!({}))).await,
        "Could not find public function for 'items:bad name!'."
    );
    let r = call(&rt, "items:count", args(json!({}))).await;
    assert_eq!(r.outcome.unwrap_err().code(), "FunctionNotFound");
    // The admin key reaches internal functions, under either spelling of the path.
    let admin = call_as(
        &rt,
        Identity::Admin,
        None,
        "items.js:count",
        args(json!({})),
    )
    .await;
    assert_eq!(admin.outcome.unwrap(), Value::Float64(0.0));
    let wrong = call_as(
        &rt,
        Identity::Anonymous,
        Some(FunctionKind::Query),
        "items:add",
        item("x", 1.0, None),
    )
    .await;
    let e = wrong.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Trying to execute items:add as Query, but it is defined as Mutation."
    );
    assert_eq!(e.code(), "WrongFunctionKind");
    let wrong = call_as(
        &rt,
        Identity::Anonymous,
        Some(FunctionKind::Action),
        "items:all",
        args(json!({})),
    )
    .await;
    assert_eq!(
        wrong.outcome.unwrap_err().to_string(),
        "Trying to execute items:all as Action, but it is defined as Query."
    );
}

#[tokio::test]
async fn query_builder() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    for (i, tag) in [
        (1.0, Some("a")),
        (2.0, Some("b")),
        (3.0, Some("a")),
        (4.0, None),
        (5.0, Some("a")),
    ] {
        ok(&rt, "items:add", item(&format!("i{i}"), i, tag)).await;
    }
    // Full scan in creation order.
    let all = ok(&rt, "items:all", args(json!({}))).await;
    let names: Vec<&str> = docs(&all)
        .iter()
        .map(|d| d.get("name").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(names, ["i1", "i2", "i3", "i4", "i5"]);
    assert!(docs(&all)[0].get("_id").unwrap().as_str().is_some());
    assert!(docs(&all)[0]
        .get("_creationTime")
        .unwrap()
        .as_f64()
        .is_some());
    // Range, descending.
    let range = ok(&rt, "items:range", args(json!({"lo": 2, "hi": 5}))).await;
    let ns: Vec<f64> = docs(&range)
        .iter()
        .map(|d| d.get("n").unwrap().as_f64().unwrap())
        .collect();
    assert_eq!(ns, [4.0, 3.0, 2.0]);
    // eq + bound on the next field.
    let tagged = ok(&rt, "items:tagged", args(json!({"tag": "a"}))).await;
    let ns: Vec<f64> = docs(&tagged)
        .iter()
        .map(|d| d.get("n").unwrap().as_f64().unwrap())
        .collect();
    assert_eq!(ns, [3.0, 5.0]);
    // eq(undefined) finds documents without the field.
    let untagged = ok(&rt, "items:untagged", args(json!({}))).await;
    assert_eq!(docs(&untagged).len(), 1);
    assert_eq!(docs(&untagged)[0].get("n"), Some(&Value::Float64(4.0)));
    // get by id, and unique().
    let id = docs(&all)[2].get("_id").unwrap().clone();
    let got = ok(&rt, "items:get", common::obj(&[("id", id)])).await;
    assert_eq!(got.get("name"), Some(&Value::from("i3")));
    assert_eq!(
        ok(&rt, "items:uniqueByName", args(json!({"name": "i2"})))
            .await
            .get("n"),
        Some(&Value::Float64(2.0))
    );
    assert_eq!(
        ok(&rt, "items:uniqueByName", args(json!({"name": "zz"}))).await,
        Value::Null
    );
    ok(&rt, "items:add", item("i2", 9.0, None)).await;
    assert_eq!(
        err(&rt, "items:uniqueByName", args(json!({"name": "i2"}))).await,
        "unique() query returned more than one result from table items"
    );
}

#[tokio::test]
async fn paginate_with_a_filter_through_all_pages() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    for i in 0..23 {
        ok(&rt, "items:add", item(&format!("i{i}"), i as f64, None)).await;
    }
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    for _round in 0..20 {
        let mut a = json!({"numItems": 4});
        if let Some(c) = &cursor {
            a["cursor"] = json!(c);
        }
        let page = ok(&rt, "items:evenPage", args(a)).await;
        let items = page.get("page").unwrap().as_array().unwrap();
        assert!(items.len() <= 4);
        seen.extend(items.iter().map(|d| d.get("n").unwrap().as_f64().unwrap()));
        cursor = Some(
            page.get("continueCursor")
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
        );
        if page.get("isDone") == Some(&Value::Boolean(true)) {
            break;
        }
    }
    let expected: Vec<f64> = (0..23).filter(|i| i % 2 == 0).map(|i| i as f64).collect();
    assert_eq!(seen, expected);
    // A document added after the end is found from the last cursor.
    ok(&rt, "items:add", item("late", 100.0, None)).await;
    let page = ok(
        &rt,
        "items:evenPage",
        args(json!({"numItems": 4, "cursor": cursor})),
    )
    .await;
    let items = page.get("page").unwrap().as_array().unwrap();
    assert_eq!(items.len(), 1);
    // numItems is bounded.
    for bad in [0, 32_001] {
        let message = err(&rt, "items:evenPage", args(json!({"numItems": bad}))).await;
        assert!(message.contains("numItems"), "{message}");
    }
    let message = err(
        &rt,
        "items:evenPage",
        args(json!({"numItems": 3, "cursor": "garbage"})),
    )
    .await;
    assert!(message.to_lowercase().contains("cursor"), "{message}");
}

#[tokio::test]
async fn first_and_take_stop_scanning_early() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new();
    let visited = Arc::new(AtomicUsize::new(0));
    let v = visited.clone();
    app.mutation("t:fill", |ctx: &MutationCtx, _: NoArgs| {
        for i in 0..50 {
            ctx.db
                .insert("items", json!({"name": "x", "n": i as f64}))?;
        }
        Ok(())
    });
    app.query("t:first", move |ctx: &QueryCtx, _: NoArgs| {
        let v = v.clone();
        let first = ctx.db.query("items").filter(move |_d: &Doc| { v.fetch_add(1, AtomicOrdering::SeqCst); true }).first()?;
        let three = ctx.db.query("items").order(Order::Desc).take(3)?;
        Ok(json!({"first": first.and_then(|d| d.get_f64("n")), "three": three.iter().map(|d| d.get_f64("n")).collect::<Vec<_>>()}))
    });
    let rt = runtime(dir.path(), app, Clock::System);
    ok(&rt, "t:fill", args(json!({}))).await;
    let r = ok(&rt, "t:first", args(json!({}))).await;
    assert_eq!(r.get("first"), Some(&Value::Float64(0.0)));
    assert_eq!(
        r.get("three"),
        Some(&Value::Array(vec![49.0.into(), 48.0.into(), 47.0.into()]))
    );
    assert_eq!(
        visited.load(AtomicOrdering::SeqCst),
        1,
        "first() read more than one document"
    );
}

#[tokio::test]
async fn a_failing_mutation_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let r = call(&rt, "items:addThenFail", item("x", 1.0, None)).await;
    assert_eq!(r.outcome.unwrap_err().to_string(), "changed my mind");
    assert!(r.ts.is_none());
    let r = call(&rt, "items:panicsAfterWrite", item("x", 1.0, None)).await;
    let e = r.outcome.unwrap_err();
    assert_eq!(e.code(), "InternalServerError");
    assert!(!e.is_user_visible());
    assert_eq!(
        ok(&rt, "items:all", args(json!({}))).await,
        Value::Array(vec![])
    );
    // The writer survived the panic.
    let ok_call = call(&rt, "items:add", item("y", 2.0, None)).await;
    assert!(ok_call.outcome.is_ok());
    assert!(ok_call.ts.is_some());
    assert_eq!(docs(&ok(&rt, "items:all", args(json!({}))).await).len(), 1);
}

#[tokio::test]
async fn inline_mutations_share_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    // The inline count sees both writes of this transaction.
    assert_eq!(
        ok(&rt, "items:addTwiceInline", item("x", 1.0, None)).await,
        Value::Float64(2.0)
    );
    // A failure after the inline call rolls back the inline call's write too.
    let message = err(&rt, "items:addTwiceInline", item("x", 1.0, Some("fail"))).await;
    assert_eq!(message, "roll everything back");
    assert_eq!(docs(&ok(&rt, "items:all", args(json!({}))).await).len(), 2);
    // Inline calls validate their arguments.
    let message = err(&rt, "items:inlineBadArgs", args(json!({}))).await;
    assert!(
        message.starts_with("ArgumentValidationError: "),
        "{message}"
    );
}

#[tokio::test]
async fn logs_are_captured_and_quoted_like_convex() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let r = call(&rt, "items:logs", args(json!({}))).await;
    assert_eq!(r.outcome.unwrap(), Value::Null);
    let expected = [
        "[LOG] 'hi'",
        "[INFO] `it's \"quoted\"`",
        "[ERROR] 'line\\nbreak'",
    ];
    assert_eq!(r.log_lines, expected);
}

#[test]
fn inspect_string_quotes() {
    use tickethub_runtime::inspect_string as q;
    assert_eq!(q("hi"), "'hi'");
    assert_eq!(q("it's"), "\"it's\"");
    assert_eq!(q("it's \"x\""), "`it's \"x\"`");
    assert_eq!(q("a\\b\tc"), "'a\\\\b\\tc'");
    assert_eq!(q("'\"`"), "'\\'\"`'");
}

#[tokio::test]
async fn actions_call_functions_as_the_caller_and_collect_their_logs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let user = tickethub_runtime::UserIdentity {
        token_identifier: "https://issuer|user_1".into(),
        subject: "user_1".into(),
        issuer: "https://issuer".into(),
        attributes: Default::default(),
    };
    let r = call_as(
        &rt,
        Identity::User(user),
        Some(FunctionKind::Action),
        "items:viaAction",
        item("a", 1.0, None),
    )
    .await;
    let v = r.outcome.unwrap();
    // The action reached an internal query and kept the caller's identity.
    assert_eq!(v.get("count"), Some(&Value::Float64(1.0)));
    assert_eq!(v.get("who"), Some(&Value::from("user_1")));
    assert_eq!(r.log_lines[0], "[LOG] 'in the action'");
    assert!(
        r.log_lines.contains(&"[LOG] 'hi'".to_string()),
        "{:?}",
        r.log_lines
    );
}

#[tokio::test]
async fn panics_become_internal_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let e = call(&rt, "items:panics", args(json!({})))
        .await
        .outcome
        .unwrap_err();
    assert!(matches!(e, FnError::Internal(_)), "{e:?}");
    // Still serving.
    assert_eq!(
        ok(&rt, "items:all", args(json!({}))).await,
        Value::Array(vec![])
    );
}

#[tokio::test]
async fn values_round_trip_through_a_value_argument() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let v = common::obj(&[
        ("i", Value::Int64(i64::MIN)),
        ("b", Value::Bytes(vec![0, 1, 255])),
        ("nan", Value::Float64(f64::NAN)),
        ("negzero", Value::Float64(-0.0)),
        (
            "nested",
            Value::Array(vec![Value::Null, Value::Boolean(true)]),
        ),
    ]);
    let back = ok(&rt, "items:echo", v.clone()).await;
    assert_eq!(back, v);
}

#[tokio::test]
async fn pinned_snapshots_read_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    ok(&rt, "items:add", item("before", 1.0, None)).await;
    let ts = rt.pin_snapshot().await.unwrap();
    ok(&rt, "items:add", item("after", 2.0, None)).await;
    let at = |ts| tickethub_runtime::CallRequest {
        path: "items:all".into(),
        args: args(json!({})),
        expected_kind: Some(FunctionKind::Query),
        caller: Caller {
            identity: Identity::Anonymous,
        },
        read_at: ReadAt::Pinned(ts),
        request_id: tickethub_runtime::RequestId::generate(),
    };
    let r = rt.call(at(ts)).await;
    assert_eq!(r.ts, Some(ts));
    assert_eq!(docs(&r.outcome.unwrap()).len(), 1);
    let latest = call(&rt, "items:all", args(json!({}))).await;
    assert!(latest.ts.unwrap() > ts);
    assert!(latest.read_set.is_some_and(|rs| !rs.ranges.is_empty()));
    // An unknown timestamp in the past is refused clearly.
    let old = tickethub_store::Timestamp(ts.0 - 1);
    let e = rt.call(at(old)).await.outcome.unwrap_err();
    assert!(e.to_string().contains("no longer available"), "{e}");
}

#[tokio::test]
async fn http_routes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    let caller = || Caller {
        identity: Identity::Anonymous,
    };
    let request = |method: http::Method, path: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(bytes::Bytes::new())
            .unwrap()
    };
    let id = tickethub_runtime::RequestId::generate();
    let body = |r: Option<Result<tickethub_runtime::HttpResponse, FnError>>| {
        String::from_utf8(r.unwrap().unwrap().into_body().to_vec()).unwrap()
    };
    assert_eq!(
        body(
            rt.http_action(request(http::Method::GET, "/a/b"), caller(), &id)
                .await
        ),
        "exact"
    );
    assert_eq!(
        body(
            rt.http_action(request(http::Method::GET, "/a/b/c"), caller(), &id)
                .await
        ),
        "long prefix"
    );
    assert_eq!(
        body(
            rt.http_action(request(http::Method::GET, "/a/x"), caller(), &id)
                .await
        ),
        "short prefix"
    );
    // HEAD is served by the GET route (the router drops the body).
    assert_eq!(
        body(
            rt.http_action(request(http::Method::HEAD, "/a/b"), caller(), &id)
                .await
        ),
        "exact"
    );
    assert!(rt
        .http_action(request(http::Method::GET, "/nope"), caller(), &id)
        .await
        .is_none());
    assert!(rt
        .http_action(request(http::Method::DELETE, "/a/b"), caller(), &id)
        .await
        .is_none());
    // Failures come back as errors: the router decides the status and the body.
    let failed = rt
        .http_action(request(http::Method::POST, "/fail"), caller(), &id)
        .await
        .unwrap()
        .unwrap_err();
    assert!(failed.is_user_visible(), "{failed}");
    assert_eq!(failed.to_string(), "no way");
    let crashed = rt
        .http_action(request(http::Method::POST, "/crash"), caller(), &id)
        .await
        .unwrap()
        .unwrap_err();
    assert!(!crashed.is_user_visible(), "{crashed}");
}

#[test]
fn errors_have_codes_and_convex_error_messages() {
    let e = FnError::with_data("nope", json!({"code": "NOPE", "detail": 42}));
    assert_eq!(e.to_string(), "nope");
    assert_eq!(e.code(), "UserError");
    assert_eq!(
        e.data().and_then(|d| d.get("code")),
        Some(&Value::from("NOPE"))
    );
    assert_eq!(FnError::with_data("", "just text").to_string(), "just text");
    assert_eq!(
        FnError::with_data("", json!({"a": 1})).to_string(),
        r#"{"a":1}"#
    );
    assert!(!FnError::Internal("x".into()).is_user_visible());
    assert!(FnError::msg("x").is_user_visible());
}
