//! The Convex CLI's endpoints over real HTTP and WebSocket on loopback: environment variables
//! (bad JSON, wrong types, oversized bodies, bad names and the variable limit get stable codes
//! and write nothing), the log long poll, the `_system/cli/*` queries (bounded pages in both
//! orders), admin impersonation over the sync protocol, and the fast `NotSupported` answers.

mod harness;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::{request, Reply, TestClock, TestServer, ADMIN_KEY};
use serde_json::{json, Value as Json};
use tickethub_runtime::v;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "Convex tickethub-test|0123456789abcdef";
const CLI_CLIENT: &str = "npm-cli-1.48.0";
/// A guard against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

async fn update_env(server: &TestServer, body: &[u8]) -> Reply {
    request(
        server.api,
        "POST",
        "/api/update_environment_variables",
        &[
            ("Authorization", ADMIN),
            ("Content-Type", "application/json"),
            ("Convex-Client", CLI_CLIENT),
        ],
        body,
    )
    .await
}

async fn set_vars(server: &TestServer, changes: Json) -> Reply {
    update_env(server, json!({ "changes": changes }).to_string().as_bytes()).await
}

/// A `_system/...` (or any) function through `/api/function` as the admin, in Convex's encoding.
async fn admin_call(server: &TestServer, path: &str, args: Json) -> Json {
    let body = json!({"path": path, "args": args, "format": "convex_encoded_json"}).to_string();
    let reply = request(
        server.api,
        "POST",
        "/api/function",
        &[
            ("Authorization", ADMIN),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn value(server: &TestServer, path: &str, args: Json) -> Json {
    let reply = admin_call(server, path, args).await;
    assert_eq!(reply["status"], "success", "{reply}");
    reply["value"].clone()
}

#[tokio::test]
async fn env_vars_are_set_read_and_removed() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = set_vars(
        &server,
        json!([{"name": "GREETING", "value": "hello"}, {"name": "OTHER", "value": "x"}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.runtime.env_var("GREETING").as_deref(), Some("hello"));

    let listed = value(
        &server,
        "_system/cli/queryEnvironmentVariables:default",
        json!({}),
    )
    .await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["GREETING", "OTHER"]);
    let got = value(
        &server,
        "_system/cli/queryEnvironmentVariables:get",
        json!({"name": "GREETING"}),
    )
    .await;
    assert_eq!(got, json!({"name": "GREETING", "value": "hello"}));

    // Remove one, change the other; a later change of the same name wins.
    let reply = set_vars(
        &server,
        json!([{"name": "GREETING", "value": null}, {"name": "OTHER", "value": "y"}, {"name": "OTHER", "value": "z"}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.runtime.env_var("GREETING"), None);
    assert_eq!(server.runtime.env_var("OTHER").as_deref(), Some("z"));
    let got = value(
        &server,
        "_system/cli/queryEnvironmentVariables:get",
        json!({"name": "GREETING"}),
    )
    .await;
    assert_eq!(got, Json::Null);

    let listed = request(
        server.api,
        "GET",
        "/api/v1/list_environment_variables",
        &[("Authorization", ADMIN)],
        b"",
    )
    .await;
    assert_eq!(
        listed.json(),
        json!({"environmentVariables": {"OTHER": "z"}})
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_env_updates_get_stable_codes_and_write_nothing() {
    let server = TestServer::start(TestClock::Off).await;
    let check = |reply: Reply, status: u16, code: &str| reply.assert_error(status, code);

    check(update_env(&server, b"{not json").await, 400, "BadJsonBody");
    check(update_env(&server, b"{}").await, 400, "BadJsonBody");
    check(
        update_env(&server, br#"{"changes":[{"name":"A","value":3}]}"#).await,
        400,
        "BadJsonBody",
    );
    check(
        update_env(
            &server,
            br#"{"changes":[{"name":"A","value":"x","extra":1}]}"#,
        )
        .await,
        400,
        "BadJsonBody",
    );
    let huge = format!(
        r#"{{"changes":[{{"name":"A","value":"{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    check(
        update_env(&server, huge.as_bytes()).await,
        413,
        "BodyTooLarge",
    );
    check(
        set_vars(
            &server,
            json!([{"name": "OK", "value": "1"}, {"name": "9LIVES", "value": "1"}]),
        )
        .await,
        400,
        "EnvironmentVariableNameInvalid",
    );
    check(
        set_vars(&server, json!([{"name": "N".repeat(257), "value": "1"}])).await,
        400,
        "EnvironmentVariableNameTooLong",
    );
    check(
        set_vars(
            &server,
            json!([{"name": "BIG", "value": "v".repeat(8 * 1024 + 1)}]),
        )
        .await,
        400,
        "EnvironmentVariableValueTooLarge",
    );
    let too_many: Vec<Json> = (0..101)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": "1"}))
        .collect();
    check(
        set_vars(&server, Json::Array(too_many)).await,
        400,
        "EnvVarLimitMet",
    );
    assert!(
        server.runtime.deployment_env_vars().is_empty(),
        "a refused update wrote nothing"
    );

    // Credentials: none, a user's token, a wrong key; and the wrong method.
    let body = br#"{"changes":[]}"#;
    let no_key = request(
        server.api,
        "POST",
        "/api/update_environment_variables",
        &[],
        body,
    )
    .await;
    no_key.assert_error(401, "MissingAdminKey");
    let user = request(
        server.api,
        "POST",
        "/api/update_environment_variables",
        &[("Authorization", "Bearer good-token")],
        body,
    )
    .await;
    user.assert_error(401, "MissingAdminKey");
    let wrong = request(
        server.api,
        "POST",
        "/api/update_environment_variables",
        &[("Authorization", "Convex tickethub-test|ffff")],
        body,
    )
    .await;
    wrong.assert_error(403, "BadDeployKey");
    let get = request(
        server.api,
        "GET",
        "/api/update_environment_variables",
        &[("Authorization", ADMIN)],
        b"",
    )
    .await;
    get.assert_error(405, "MethodNotAllowed");
    server.stop().await;
}

async fn logs(server: &TestServer, cursor: &str) -> Reply {
    request(
        server.api,
        "GET",
        &format!("/api/stream_function_logs?cursor={cursor}"),
        &[("Authorization", ADMIN), ("Convex-Client", CLI_CLIENT)],
        b"",
    )
    .await
}

#[tokio::test]
async fn the_log_stream_is_a_long_poll_with_a_cursor() {
    let server = TestServer::start(TestClock::Off).await;
    let sent = server
        .post(
            "/api/mutation",
            r#"{"path":"messages:send","args":{"body":"hi"},"format":"json"}"#,
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let first = logs(&server, "0").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let body = first.json();
    let entries = body["entries"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["identifier"] == "messages:send")
        .unwrap_or_else(|| panic!("no messages:send in {body}"));
    assert_eq!(entry["kind"], "Completion");
    assert_eq!(entry["udfType"], "Mutation");
    assert_eq!(entry["error"], Json::Null);
    assert!(entry["timestamp"].as_f64().unwrap() > 1.6e9, "seconds");
    let cursor = body["newCursor"].as_f64().unwrap();
    assert!(cursor >= 1.0);

    // Waiting at the newest cursor: a new call ends the wait with just that call.
    let waiting = {
        let api = server.api;
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = request(
                api,
                "GET",
                &format!("/api/stream_function_logs?cursor={cursor}"),
                &[("Authorization", ADMIN)],
                b"",
            )
            .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failed = server
        .post(
            "/api/query",
            r#"{"path":"messages:fail","args":{},"format":"json"}"#,
        )
        .await;
    assert_eq!(failed.status, 200);
    let (reply, waited) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "it waited: {waited:?}"
    );
    let body = reply.json();
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["identifier"], "messages:fail");
    assert_eq!(entries[0]["udfType"], "Query");
    assert_eq!(entries[0]["error"], "boom", "{body}");
    assert!(body["newCursor"].as_f64().unwrap() > cursor);

    // A cursor from before a restart (beyond the newest entry) starts over.
    let stale = logs(&server, "1000000").await.json();
    assert!(!stale["entries"].as_array().unwrap().is_empty(), "{stale}");
    logs(&server, "abc").await.assert_error(400, "BadRequest");
    logs(&server, "-1").await.assert_error(400, "BadRequest");
    let anonymous = request(
        server.api,
        "GET",
        "/api/stream_function_logs?cursor=0",
        &[],
        b"",
    )
    .await;
    anonymous.assert_error(401, "MissingAdminKey");
    server.stop().await;
}

#[tokio::test]
async fn table_data_pages_in_both_orders_and_is_bounded() {
    let server = TestServer::start(TestClock::Off).await;
    for i in 0..5 {
        let body =
            json!({"path": "messages:send", "args": {"body": format!("m{i}")}, "format": "json"});
        let reply = server.post("/api/mutation", &body.to_string()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let tables = value(
        &server,
        "_system/cli/tables",
        json!({"paginationOpts": {"cursor": null, "numItems": 10000}}),
    )
    .await;
    assert_eq!(
        tables,
        json!({"page": [{"name": "messages"}], "isDone": true, "continueCursor": "end"})
    );

    for (order, expected) in [
        ("asc", ["m0", "m1", "m2", "m3", "m4"]),
        ("desc", ["m4", "m3", "m2", "m1", "m0"]),
    ] {
        let mut cursor = Json::Null;
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let page = value(
                &server,
                "_system/cli/tableData",
                json!({"table": "messages", "order": order, "paginationOpts": {"cursor": cursor, "numItems": 2}}),
            )
            .await;
            let docs = page["page"].as_array().unwrap();
            assert!(docs.len() <= 2);
            bodies.extend(docs.iter().map(|d| d["body"].as_str().unwrap().to_string()));
            cursor = page["continueCursor"].clone();
            if page["isDone"] == true {
                break;
            }
        }
        assert_eq!(bodies, expected, "{order}");
    }

    // Asking for more than a page may hold gives at most CLI_DATA_PAGE_MAX_DOCS.
    let max = *tickethub_knobs::CLI_DATA_PAGE_MAX_DOCS;
    server
        .runtime
        .store()
        .mutate(move |txn| -> Result<(), tickethub_store::StoreError> {
            for i in 0..max + 10 {
                let mut row = tickethub_value::Object::new();
                row.insert(
                    "body".into(),
                    tickethub_value::Value::from(format!("bulk{i}")),
                );
                txn.insert("messages", row)?;
            }
            Ok(())
        })
        .unwrap();
    let page = value(
        &server,
        "_system/cli/tableData",
        json!({"table": "messages", "paginationOpts": {"cursor": null, "numItems": 30000}}),
    )
    .await;
    assert_eq!(page["page"].as_array().unwrap().len(), max);
    assert_eq!(page["isDone"], false);

    let missing = admin_call(
        &server,
        "_system/cli/tableData",
        json!({"table": "nope", "paginationOpts": {"cursor": null, "numItems": 5}}),
    )
    .await;
    assert_eq!(missing["status"], "error");
    assert!(
        missing["errorMessage"]
            .as_str()
            .unwrap()
            .contains("\"nope\" does not exist"),
        "{missing}"
    );

    // Not for users: internal functions are found only with the admin key.
    let anonymous = server
        .post(
            "/api/query",
            r#"{"path":"_system/cli/tables","args":{"paginationOpts":{"cursor":null,"numItems":1}},"format":"json"}"#,
        )
        .await;
    assert_eq!(anonymous.json()["status"], "error");
    server.stop().await;
}

#[derive(serde::Deserialize)]
struct TypedArgs {
    name: String,
}

impl tickethub_runtime::Args for TypedArgs {
    fn validator() -> Option<tickethub_runtime::Validator> {
        Some(v::object([
            ("name", v::string()),
            ("count", v::optional(v::int64())),
            ("tags", v::array(v::union([v::literal("a"), v::null()]))),
        ]))
    }
}

#[tokio::test]
async fn api_spec_lists_functions_with_validators_and_routes() {
    let mut app = harness::test_app();
    app.query("spec/typed:get", |_ctx, args: TypedArgs| Ok(args.name))
        .returns(v::string());
    let server = TestServer::start_with(app, TestClock::Off).await;
    let spec = value(&server, "_system/cli/modules:apiSpec", json!({})).await;
    let spec = spec.as_array().unwrap();
    let find = |identifier: &str| {
        spec.iter()
            .find(|f| f["identifier"] == identifier)
            .unwrap_or_else(|| panic!("no {identifier} in {spec:?}"))
            .clone()
    };
    let typed = find("spec/typed.js:get");
    assert_eq!(typed["functionType"], "Query");
    assert_eq!(typed["visibility"], json!({"kind": "public"}));
    assert_eq!(
        typed["args"],
        json!({"type": "object", "value": {
            "name": {"fieldType": {"type": "string"}, "optional": false},
            "count": {"fieldType": {"type": "bigint"}, "optional": true},
            "tags": {"fieldType": {"type": "array", "value": {"type": "union", "value": [
                {"type": "literal", "value": "a"}, {"type": "null"}]}}, "optional": false},
        }})
    );
    assert_eq!(typed["returns"], json!({"type": "string"}));
    let send = find("messages.js:send");
    assert_eq!(send["functionType"], "Mutation");
    assert_eq!(send["args"], json!({"type": "any"}), "no validator is any");
    assert_eq!(send["returns"], json!({"type": "any"}));
    assert_eq!(
        find("messages.js:secret")["visibility"],
        json!({"kind": "internal"})
    );
    assert_eq!(find("messages.js:ping")["functionType"], "Action");
    assert!(spec.iter().all(|f| !f["identifier"]
        .as_str()
        .unwrap_or("")
        .starts_with("_system/")));
    assert!(
        spec.iter().any(|f| f["functionType"] == "HttpAction"
            && f["method"] == "GET"
            && f["path"] == "/whoami"),
        "{spec:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unsupported_cli_endpoints_answer_400_at_once() {
    let server = TestServer::start(TestClock::Off).await;
    for path in [
        "/api/deploy2/evaluate_schema",
        "/api/run_test_function",
        "/api/push_config",
    ] {
        let reply = request(server.api, "POST", path, &[("Authorization", ADMIN)], b"{}").await;
        reply.assert_error(400, "NotSupported");
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .contains("not supported by tickethub"),
            "{path}: {}",
            reply.text()
        );
    }
    server.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Socket, message: Json) {
    ws.send(Message::Text(message.to_string())).await.unwrap();
}

async fn next(ws: &mut Socket) -> Json {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let json: Json = serde_json::from_str(&text).unwrap();
            if json["type"] != "Ping" {
                return json;
            }
        }
    }
}

/// `run --watch --identity`: an admin Authenticate with `impersonating` runs queries as that
/// user; a wrong key with it is still refused.
#[tokio::test]
async fn admin_impersonation_over_the_sync_protocol() {
    let server = TestServer::start(TestClock::Off).await;
    let url = format!("ws://{}/api/1.48.0/sync", server.api);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut ws, json!({"type": "Connect", "sessionId": "00000000-0000-4000-8000-000000000001", "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0})).await;
    send(
        &mut ws,
        json!({"type": "Authenticate", "tokenType": "Admin", "value": ADMIN_KEY, "baseVersion": 0,
        "impersonating": {"subject": "user_42", "issuer": "https://issuer.example"}}),
    )
    .await;
    let auth = next(&mut ws).await;
    assert_eq!(auth["type"], "Transition", "{auth}");
    send(&mut ws, json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
        "modifications": [{"type": "Add", "queryId": 0, "udfPath": "messages:whoami", "args": [{}], "componentPath": ""}]})).await;
    let transition = next(&mut ws).await;
    assert_eq!(
        transition["modifications"][0]["value"], "user_42",
        "{transition}"
    );

    let (mut bad, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut bad, json!({"type": "Connect", "sessionId": "00000000-0000-4000-8000-000000000002", "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0})).await;
    send(&mut bad, json!({"type": "Authenticate", "tokenType": "Admin", "value": "tickethub-test|ffff", "baseVersion": 0,
        "impersonating": {"subject": "user_42"}})).await;
    assert_eq!(next(&mut bad).await["type"], "AuthError");
    server.stop().await;
}

/// A module shaped like what the `convex` package's `query(...)` registers, written by hand so
/// the push protocol is tested without the CLI (tests/js/push.test.mjs drives the real one).
const HAND_MODULE: &str = r#"
const registered = (flags, invoke) => Object.assign(() => {}, flags, invoke, {
    exportArgs: () => '{"type":"object","value":{"name":{"fieldType":{"type":"string"},"optional":false}}}',
    exportReturns: () => "null",
});
export const hello = registered({ isQuery: true, isPublic: true }, {
    invokeQuery: async (args) => JSON.stringify("hi " + JSON.parse(args)[0].name + " at " + (Date.now() === new Date().getTime())),
});
"#;

#[tokio::test]
async fn a_push_without_the_cli_installs_functions_beside_the_built_in_ones() {
    let server = TestServer::start(TestClock::Off).await;
    let admin = [("Authorization", ADMIN)];
    let hashes = request(server.api, "POST", "/api/get_config_hashes", &admin, b"{}").await;
    assert_eq!(hashes.status, 200, "{}", hashes.text());
    assert_eq!(hashes.json()["config"]["functions"], "convex/");

    let bad = request(server.api, "POST", "/api/deploy2/start_push", &admin, b"{}").await;
    bad.assert_error(400, "BadRequest");

    let body = json!({
        "adminKey": "ignored-when-the-header-is-there",
        "dryRun": false,
        "appDefinition": {
            "definition": null, "dependencies": [], "schema": null,
            "changedModules": [{"path": "greet.js", "source": HAND_MODULE, "environment": "isolate"}],
            "unchangedModuleHashes": [], "udfServerVersion": "1.48.0",
        },
        "componentDefinitions": [], "nodeDependencies": [],
    });
    let started = request(
        server.api,
        "POST",
        "/api/deploy2/start_push",
        &admin,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let analysis = &started.json()["analysis"][""]["functions"]["greet.js"]["functions"][0];
    assert_eq!(analysis["name"], "hello");
    assert_eq!(analysis["udfType"], "Query");

    // Not installed before finish_push.
    let early = request(
        server.api,
        "POST",
        "/api/query",
        &[],
        br#"{"path":"greet:hello","args":{"name":"Ada"}}"#,
    )
    .await;
    assert_eq!(early.json()["status"], "error", "{}", early.text());

    let finish = json!({"startPush": started.json(), "dryRun": false});
    let finished = request(
        server.api,
        "POST",
        "/api/deploy2/finish_push",
        &admin,
        finish.to_string().as_bytes(),
    )
    .await;
    assert_eq!(finished.status, 200, "{}", finished.text());

    let called = request(
        server.api,
        "POST",
        "/api/query",
        &[],
        br#"{"path":"greet:hello","args":{"name":"Ada"}}"#,
    )
    .await;
    assert_eq!(
        called.json()["value"],
        "hi Ada at true",
        "{}",
        called.text()
    );
    let invalid = request(
        server.api,
        "POST",
        "/api/query",
        &[],
        br#"{"path":"greet:hello","args":{}}"#,
    )
    .await;
    assert!(
        invalid.text().contains("ArgumentValidationError"),
        "{}",
        invalid.text()
    );

    // A second finish_push has nothing pending.
    let again = request(
        server.api,
        "POST",
        "/api/deploy2/finish_push",
        &admin,
        finish.to_string().as_bytes(),
    )
    .await;
    again.assert_error(400, "NoPendingPush");
    server.stop().await;
}
