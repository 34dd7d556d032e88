//! The notes app's functions, run through the runtime on a real store (no HTTP).

use serde_json::json;
use tickethub_runtime::{
    CallRequest, CallResult, Caller, FunctionKind, Identity, ReadAt, RequestId, Runtime,
    RuntimeConfig, Schema, Store, StoreOptions, Value,
};

fn runtime(dir: &std::path::Path) -> Runtime {
    let mut schema = Schema::from_toml(notes_example::SCHEMA).unwrap();
    for table in Runtime::system_tables() {
        schema.add_system_table(table);
    }
    let store = Store::open(dir, schema, StoreOptions::default()).unwrap();
    Runtime::new(notes_example::app(), store, RuntimeConfig::default())
}

async fn call(rt: &Runtime, kind: FunctionKind, path: &str, args: serde_json::Value) -> CallResult {
    rt.call(CallRequest {
        path: path.into(),
        args: Value::from_clean_json(&args).unwrap(),
        expected_kind: Some(kind),
        caller: Caller {
            identity: Identity::Anonymous,
        },
        read_at: ReadAt::Latest,
        request_id: tickethub_runtime::RequestId::generate(),
    })
    .await
}

#[tokio::test]
async fn notes_functions() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    use FunctionKind::*;

    let id = call(
        &rt,
        Mutation,
        "notes:add",
        json!({"text": "first", "tags": ["a"], "author": "ada"}),
    )
    .await
    .outcome
    .unwrap();
    call(&rt, Mutation, "notes:add", json!({"text": "second"}))
        .await
        .outcome
        .unwrap();
    let list = call(&rt, Query, "notes:list", json!({}))
        .await
        .outcome
        .unwrap();
    let texts: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.get("text").unwrap().clone())
        .collect();
    assert_eq!(texts, [Value::from("first"), Value::from("second")]);
    // Absent optional fields are not stored as null.
    assert!(list.as_array().unwrap()[1].get("author").is_none());

    let got = call(
        &rt,
        Query,
        "notes:get",
        json!({ "id": id.as_str().unwrap() }),
    )
    .await
    .outcome
    .unwrap();
    assert_eq!(got.get("author"), Some(&Value::from("ada")));
    let by = call(&rt, Query, "notes:byAuthor", json!({"author": "ada"}))
        .await
        .outcome
        .unwrap();
    assert_eq!(by.as_array().unwrap().len(), 1);

    let e = call(&rt, Mutation, "notes:fail", json!({}))
        .await
        .outcome
        .unwrap_err();
    assert_eq!(e.to_string(), "nope");
    assert_eq!(e.data().unwrap().get("detail"), Some(&Value::Float64(42.0)));

    let logs = call(&rt, Query, "notes:logs", json!({})).await;
    assert_eq!(logs.outcome.unwrap(), Value::Null);
    assert_eq!(logs.log_lines, ["[LOG] 'hello'", "[WARN] 'careful'"]);

    let e = call(&rt, Query, "notes:count", json!({}))
        .await
        .outcome
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Could not find public function for 'notes:count'."
    );

    let via = call(
        &rt,
        Action,
        "notes:addViaAction",
        json!({"text": "from an action"}),
    )
    .await
    .outcome
    .unwrap();
    let doc = call(
        &rt,
        Query,
        "notes:get",
        json!({ "id": via.as_str().unwrap() }),
    )
    .await
    .outcome
    .unwrap();
    assert_eq!(doc.get("text"), Some(&Value::from("from an action")));

    assert_eq!(
        call(&rt, Query, "notes:throws", json!({}))
            .await
            .outcome
            .unwrap_err()
            .to_string(),
        "boom"
    );
    let int = Value::Object([("value".to_string(), Value::Int64(7))].into());
    let echoed = rt
        .call(CallRequest {
            path: "notes:echo".into(),
            args: int,
            expected_kind: Some(Query),
            caller: Caller {
                identity: Identity::Anonymous,
            },
            read_at: ReadAt::Latest,
            request_id: tickethub_runtime::RequestId::generate(),
        })
        .await;
    assert_eq!(echoed.outcome.unwrap(), Value::Int64(7));
}

#[tokio::test]
async fn notes_http_routes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let anonymous = || Caller {
        identity: Identity::Anonymous,
    };
    let get = |path: &str| http::Request::get(path).body(bytes::Bytes::new()).unwrap();
    let hello = rt
        .http_action(get("/hello"), anonymous(), &RequestId::generate())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello.body().as_ref(), b"hello from notes");
    let echo = http::Request::post("/echo/a/b")
        .header("content-type", "application/json")
        .body(bytes::Bytes::from("{\"hi\":1}"))
        .unwrap();
    let echoed = rt
        .http_action(echo, anonymous(), &RequestId::generate())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed.headers()["content-type"], "application/json");
    assert_eq!(echoed.body().as_ref(), b"{\"hi\":1}");
    let me = rt
        .http_action(get("/whoami"), anonymous(), &RequestId::generate())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (me.status().as_u16(), me.body().as_ref()),
        (200, b"null".as_ref())
    );
    let bad = rt
        .http_action(
            get("/whoami"),
            Caller {
                identity: Identity::InvalidToken("expired".into()),
            },
            &RequestId::generate(),
        )
        .await
        .unwrap();
    // The action fails; the router answers that with a 500.
    assert!(bad.is_err());
}
