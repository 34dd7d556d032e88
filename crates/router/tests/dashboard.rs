//! The dashboard's admin-only API (`/api/dashboard/*`) and `/metrics`, over real HTTP on
//! loopback: every endpoint, the admin-key refusals, a schema-violating edit refused with nothing
//! written, and the long polls for logs and changes.

mod harness;

use harness::{request, Reply, TestClock, TestServer, ADMIN_KEY, GOOD_TOKEN};
use serde_json::{json, Value as Json};
use tickethub_runtime::{App, NoArgs};

const ADMIN: &str = "Convex tickethub-test|0123456789abcdef";

fn app() -> App {
    let mut app = harness::test_app();
    app.mutation("jobs:later", |ctx, _: NoArgs| {
        ctx.scheduler
            .run_after(3_600_000.0, "messages:send", json!({ "body": "later" }))
    });
    app.mutation("jobs:now", |ctx, _: NoArgs| {
        ctx.scheduler
            .run_after(0.0, "messages:send", json!({ "body": "now" }))
    });
    app
}

async fn start() -> TestServer {
    TestServer::start_with(app(), TestClock::On).await
}

async fn get(server: &TestServer, path: &str) -> Reply {
    request(server.api, "GET", path, &[("Authorization", ADMIN)], b"").await
}

async fn send(server: &TestServer, method: &str, path: &str, body: Json) -> Reply {
    request(
        server.api,
        method,
        path,
        &[
            ("Authorization", ADMIN),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

async fn ok(reply: Reply) -> Json {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn insert_messages(server: &TestServer, bodies: &[&str]) {
    for body in bodies {
        let reply = server
            .post(
                "/api/mutation",
                &json!({"path": "messages:send", "format": "json", "args": [{"body": body}]})
                    .to_string(),
            )
            .await;
        assert_eq!(reply.json()["status"], "success", "{}", reply.text());
    }
}

async fn count(server: &TestServer, table: &str) -> u64 {
    let tables = ok(get(server, "/api/dashboard/tables").await).await;
    tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("no table {table}: {tables}"))["count"]
        .as_u64()
        .unwrap()
}

type Headers<'a> = &'a [(&'a str, &'a str)];

const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/api/dashboard/tables"),
    ("GET", "/api/dashboard/documents?table=messages"),
    ("GET", "/api/dashboard/document?id=x"),
    ("POST", "/api/dashboard/documents"),
    ("PATCH", "/api/dashboard/documents"),
    ("DELETE", "/api/dashboard/documents"),
    ("GET", "/api/dashboard/functions"),
    ("POST", "/api/dashboard/run"),
    ("GET", "/api/dashboard/logs"),
    ("GET", "/api/dashboard/scheduled"),
    ("POST", "/api/dashboard/scheduled/cancel"),
    ("GET", "/api/dashboard/crons"),
    ("GET", "/api/dashboard/schema"),
    ("GET", "/api/dashboard/health"),
    ("GET", "/api/dashboard/changes"),
    ("GET", "/api/dashboard/nope"),
    ("GET", "/metrics"),
];

#[tokio::test]
async fn every_endpoint_refuses_without_the_admin_key() {
    let server = start().await;
    insert_messages(&server, &["secret body"]).await;
    let bearer = format!("Bearer {GOOD_TOKEN}");
    let wrong = "Convex tickethub-test|ffffffffffffffff".to_string();
    for (method, path) in ENDPOINTS {
        let body =
            br#"{"table":"messages","document":{"body":"x"},"id":"x","path":"messages:list"}"#;
        let cases: [(Headers, u16, &str); 3] = [
            (&[], 401, "MissingAdminKey"),
            (
                &[("Authorization", bearer.as_str())],
                401,
                "MissingAdminKey",
            ),
            (&[("Authorization", wrong.as_str())], 403, "BadAdminKey"),
        ];
        for (headers, status, code) in cases {
            let reply = request(server.api, method, path, headers, body).await;
            reply.assert_error(status, code);
            let json = reply.json();
            let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["code", "message"], "{method} {path}: {json}");
            assert!(!reply.text().contains("secret body"), "{}", reply.text());
            assert!(!reply.text().contains(ADMIN_KEY), "{}", reply.text());
        }
    }
    // Nothing was written by the refused edits.
    assert_eq!(count(&server, "messages").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn tables_documents_pages_and_one_document() {
    let server = start().await;
    let bodies = ["b0", "b1", "b2", "b3", "b4", "b5", "b6"];
    insert_messages(&server, &bodies).await;

    let tables = ok(get(&server, "/api/dashboard/tables").await).await;
    let tables = tables["tables"].as_array().unwrap();
    let messages = tables.iter().find(|t| t["name"] == "messages").unwrap();
    assert_eq!(messages["count"], 7);
    assert_eq!(messages["system"], false);
    let jobs = tables
        .iter()
        .find(|t| t["name"] == "_scheduled_functions")
        .unwrap();
    assert_eq!(jobs["system"], true);

    // Newest first, in pages of 3, following the cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = ok(get(
            &server,
            &format!("/api/dashboard/documents?table=messages&limit=3&cursor={cursor}"),
        )
        .await)
        .await;
        pages += 1;
        let page_bodies: Vec<String> = page["display"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["body"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(page["page"].as_array().unwrap().len(), page_bodies.len());
        seen.extend(page_bodies);
        if page["isDone"] == true {
            break;
        }
        cursor = page["continueCursor"].as_str().unwrap().to_string();
        assert!(pages < 10, "paging does not end");
    }
    let newest_first: Vec<String> = bodies.iter().rev().map(|s| s.to_string()).collect();
    assert_eq!(seen, newest_first);

    // Oldest first.
    let asc = ok(get(
        &server,
        "/api/dashboard/documents?table=messages&order=asc&limit=2",
    )
    .await)
    .await;
    assert_eq!(asc["display"][0]["body"], "b0");
    assert_eq!(asc["isDone"], false);

    // By an index: equality, then a range on the index field.
    let eq = ok(get(
        &server,
        "/api/dashboard/documents?table=messages&index=by_body&eq=%5B%22b3%22%5D",
    )
    .await)
    .await;
    assert_eq!(eq["display"].as_array().unwrap().len(), 1);
    assert_eq!(eq["display"][0]["body"], "b3");
    let range = ok(get(
        &server,
        "/api/dashboard/documents?table=messages&index=by_body&order=asc&gte=%22b2%22&lt=%22b5%22",
    )
    .await)
    .await;
    let in_range: Vec<&str> = range["display"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"].as_str().unwrap())
        .collect();
    assert_eq!(in_range, ["b2", "b3", "b4"]);

    // Bad requests say what is wrong.
    get(&server, "/api/dashboard/documents?table=nope")
        .await
        .assert_error(400, "BadRequest");
    get(
        &server,
        "/api/dashboard/documents?table=messages&limit=1001",
    )
    .await
    .assert_error(400, "BadRequest");
    get(
        &server,
        "/api/dashboard/documents?table=messages&index=nope",
    )
    .await
    .assert_error(400, "BadRequest");

    // One document, in both forms.
    let id = eq["page"][0]["_id"].as_str().unwrap().to_string();
    let one = ok(get(&server, &format!("/api/dashboard/document?id={id}")).await).await;
    assert_eq!(one["document"]["body"], "b3");
    assert_eq!(one["display"]["_id"], id.as_str());
    assert_eq!(one["table"], "messages");
    get(&server, "/api/dashboard/document?id=notanid")
        .await
        .assert_error(404, "DocumentNotFound");
    server.stop().await;
}

#[tokio::test]
async fn edits_follow_the_schema_and_a_violation_writes_nothing() {
    let server = start().await;
    let inserted = ok(send(
        &server,
        "POST",
        "/api/dashboard/documents",
        json!({"table": "messages", "document": {"body": "hello"}}),
    )
    .await)
    .await;
    let id = inserted["id"].as_str().unwrap().to_string();
    assert_eq!(count(&server, "messages").await, 1);

    // Insert of the wrong type: refused, with the field, and nothing written.
    let refused = send(
        &server,
        "POST",
        "/api/dashboard/documents",
        json!({"table": "messages", "document": {"body": 5}}),
    )
    .await;
    refused.assert_error(400, "SchemaValidationError");
    assert_eq!(refused.json()["path"], "body", "{}", refused.text());
    assert_eq!(count(&server, "messages").await, 1);

    // A patch of the wrong type, and one removing a required field: refused, document unchanged.
    let refused = send(
        &server,
        "PATCH",
        "/api/dashboard/documents",
        json!({"id": id, "patch": {"body": {"$integer": "AQAAAAAAAAA="}}}),
    )
    .await;
    refused.assert_error(400, "SchemaValidationError");
    assert_eq!(refused.json()["path"], "body", "{}", refused.text());
    let refused = send(
        &server,
        "PATCH",
        "/api/dashboard/documents",
        json!({"id": id, "patch": {"body": {"$undefined": true}}}),
    )
    .await;
    refused.assert_error(400, "SchemaValidationError");
    let doc = ok(get(&server, &format!("/api/dashboard/document?id={id}")).await).await;
    assert_eq!(doc["document"]["body"], "hello");

    // A valid patch is saved.
    ok(send(
        &server,
        "PATCH",
        "/api/dashboard/documents",
        json!({"id": id, "patch": {"body": "edited"}}),
    )
    .await)
    .await;
    let doc = ok(get(&server, &format!("/api/dashboard/document?id={id}")).await).await;
    assert_eq!(doc["document"]["body"], "edited");

    // System tables are the engine's.
    send(
        &server,
        "POST",
        "/api/dashboard/documents",
        json!({"table": "_scheduled_functions", "document": {}}),
    )
    .await
    .assert_error(400, "BadRequest");

    // Delete, then it is gone.
    ok(send(
        &server,
        "DELETE",
        "/api/dashboard/documents",
        json!({"id": id}),
    )
    .await)
    .await;
    get(&server, &format!("/api/dashboard/document?id={id}"))
        .await
        .assert_error(404, "DocumentNotFound");
    send(
        &server,
        "DELETE",
        "/api/dashboard/documents",
        json!({"id": id}),
    )
    .await
    .assert_error(404, "DocumentNotFound");
    assert_eq!(count(&server, "messages").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn functions_and_running_them_as_admin_or_as_a_user() {
    let server = start().await;
    let listed = ok(get(&server, "/api/dashboard/functions").await).await;
    let find = |path: &str| {
        listed["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not listed: {listed}"))
    };
    let send_fn = find("messages:send");
    assert_eq!(send_fn["kind"], "mutation");
    assert_eq!(send_fn["visibility"], "public");
    assert_eq!(find("messages:secret")["visibility"], "internal");
    assert_eq!(find("messages:ping")["kind"], "action");
    let scheduler_list = find("_system/scheduler:list");
    assert_eq!(scheduler_list["args"]["type"], "object");
    assert_eq!(
        scheduler_list["args"]["value"]["state"],
        json!({"fieldType": {"type": "string"}, "optional": true})
    );
    assert!(listed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["method"] == "GET" && r["path"] == "/hello"));

    // Acting as a user: the function sees that identity.
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:whoami", "args": {}, "actAs": {"subject": "user_9", "issuer": "https://issuer.test", "name": "Nine"}}),
    )
    .await)
    .await;
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["value"], "user_9");
    assert!(run["durationMs"].as_f64().unwrap() >= 0.0);
    assert!(run["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    // As admin there is no user; internal functions are reachable.
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:whoami"}),
    )
    .await)
    .await;
    assert_eq!(run["value"], Json::Null);
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:secret", "args": {}}),
    )
    .await)
    .await;
    assert_eq!(run["value"], "internal only");
    // ...but acting as a user they are not.
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:secret", "actAs": {"subject": "u", "issuer": "i"}}),
    )
    .await)
    .await;
    assert_eq!(run["ok"], false);

    // Log lines, errors and error data.
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:send", "args": {"body": "x"}}),
    )
    .await)
    .await;
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(
        run["logLines"],
        json!([{"level": "LOG", "message": "'sending'"}])
    );
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:fail"}),
    )
    .await)
    .await;
    assert_eq!(run["ok"], false);
    assert_eq!(run["error"]["message"], "boom");
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:failWithData"}),
    )
    .await)
    .await;
    assert_eq!(run["error"]["data"]["code"], "SoldOut");
    let run = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:bug"}),
    )
    .await)
    .await;
    assert!(!run.to_string().contains("SQL"), "{run}");
    // Bad input is a clear 400, not a broken answer.
    send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "messages:echo", "args": [1]}),
    )
    .await
    .assert_error(400, "BadRequest");
    let reply = request(
        server.api,
        "POST",
        "/api/dashboard/run",
        &[("Authorization", ADMIN)],
        b"{not json",
    )
    .await;
    reply.assert_error(400, "BadJsonBody");
    server.stop().await;
}

#[tokio::test]
async fn the_log_long_poll_returns_when_a_call_finishes() {
    let server = start().await;
    let first = ok(get(&server, "/api/dashboard/logs?cursor=0&timeoutMs=0").await).await;
    let cursor = first["cursor"].as_u64().unwrap();

    // Nothing new: the poll ends at its timeout with no entries.
    let empty = ok(get(
        &server,
        &format!("/api/dashboard/logs?cursor={cursor}&timeoutMs=20"),
    )
    .await)
    .await;
    assert_eq!(empty["entries"], json!([]));

    // A waiting poll for failures only; successes do not end it.
    let api = server.api;
    let poll = tokio::spawn(async move {
        request(
            api,
            "GET",
            &format!("/api/dashboard/logs?cursor={cursor}&timeoutMs=30000&outcome=failure"),
            &[("Authorization", ADMIN)],
            b"",
        )
        .await
    });
    insert_messages(&server, &["fine"]).await;
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:fail","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(reply.json()["status"], "error");
    let polled = ok(poll.await.unwrap()).await;
    let entries = polled["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{polled}");
    let entry = &entries[0];
    assert_eq!(entry["path"], "messages:fail");
    assert_eq!(entry["kind"], "query");
    assert_eq!(entry["outcome"], "failure");
    assert_eq!(entry["error"], "boom");
    assert!(entry["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(polled["cursor"].as_u64().unwrap() > cursor);

    // The success is there too, with its log line, for a reader without filters; and by path.
    let all = ok(get(&server, &format!("/api/dashboard/logs?cursor={cursor}")).await).await;
    let send_entry = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "messages:send")
        .cloned()
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(send_entry["outcome"], "success");
    assert_eq!(send_entry["kind"], "mutation");
    assert_eq!(send_entry["logLines"][0]["message"], "'sending'");
    let by_path = ok(get(
        &server,
        &format!("/api/dashboard/logs?cursor={cursor}&path=messages:send"),
    )
    .await)
    .await;
    assert!(by_path["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["path"] == "messages:send"));
    // HTTP actions are logged too.
    request(server.api, "GET", "/http/hello?x", &[], b"").await;
    let http = ok(get(
        &server,
        &format!("/api/dashboard/logs?cursor={cursor}&path=GET%20/hello"),
    )
    .await)
    .await;
    assert_eq!(http["entries"][0]["kind"], "httpAction", "{http}");
    get(&server, "/api/dashboard/logs?outcome=maybe")
        .await
        .assert_error(400, "BadRequest");
    server.stop().await;
}

#[tokio::test]
async fn scheduled_jobs_cancel_and_crons() {
    let server = start().await;
    let later = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "jobs:later"}),
    )
    .await)
    .await;
    let later_id = later["value"].as_str().unwrap().to_string();
    let pending = ok(get(&server, "/api/dashboard/scheduled?state=pending").await).await;
    assert!(pending["jobs"].to_string().contains(&later_id), "{pending}");

    ok(send(
        &server,
        "POST",
        "/api/dashboard/scheduled/cancel",
        json!({"id": later_id}),
    )
    .await)
    .await;
    let canceled = ok(get(&server, "/api/dashboard/scheduled?state=canceled").await).await;
    assert!(
        canceled["jobs"].to_string().contains(&later_id),
        "{canceled}"
    );
    send(
        &server,
        "POST",
        "/api/dashboard/scheduled/cancel",
        json!({"id": later_id}),
    )
    .await
    .assert_error(409, "NotPending");

    // A job that already ran cannot be canceled either.
    let now = ok(send(
        &server,
        "POST",
        "/api/dashboard/run",
        json!({"path": "jobs:now"}),
    )
    .await)
    .await;
    let now_id = now["value"].as_str().unwrap().to_string();
    server.runtime.advance_time(0.0).await.unwrap();
    send(
        &server,
        "POST",
        "/api/dashboard/scheduled/cancel",
        json!({"id": now_id}),
    )
    .await
    .assert_error(409, "NotPending");
    // The scheduled run is in the function log, without a request id.
    let logs = ok(get(&server, "/api/dashboard/logs?path=messages:send").await).await;
    assert_eq!(logs["entries"][0]["requestId"], Json::Null, "{logs}");

    send(
        &server,
        "POST",
        "/api/dashboard/scheduled/cancel",
        json!({"id": "nope"}),
    )
    .await
    .assert_error(404, "JobNotFound");
    get(&server, "/api/dashboard/scheduled?state=sideways")
        .await
        .assert_error(400, "BadRequest");
    let crons = ok(get(&server, "/api/dashboard/crons").await).await;
    assert!(crons["crons"].is_array(), "{crons}");
    server.stop().await;
}

#[tokio::test]
async fn schema_health_and_metrics() {
    let server = start().await;
    let schema = ok(get(&server, "/api/dashboard/schema").await).await;
    let messages = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "messages")
        .unwrap()
        .clone();
    assert_eq!(messages["system"], false);
    assert_eq!(messages["fields"][0]["name"], "body");
    assert!(messages["fields"][0]["validator"]
        .as_str()
        .unwrap()
        .contains("string"));
    assert_eq!(
        messages["indexes"],
        json!([{"name": "by_body", "fields": ["body"]}])
    );

    insert_messages(&server, &["a", "b"]).await;
    server.runtime.sample_health();
    let health = ok(get(&server, "/api/dashboard/health").await).await;
    let series = &health["series"];
    for kind in ["query", "mutation", "action", "httpAction"] {
        assert!(series["callsPerSec"][kind].is_array(), "{health}");
        assert!(series["p99Ms"][kind].is_array(), "{health}");
    }
    for name in [
        "commitsPerSec",
        "batchSize",
        "httpConnections",
        "wsConnections",
        "subscriptions",
        "dbBytes",
        "rssBytes",
    ] {
        let points = series[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {health}"));
        assert!(!points.is_empty());
        assert_eq!(points[0].as_array().unwrap().len(), 2);
    }
    let last = |name: &str| {
        series[name].as_array().unwrap().last().unwrap()[1]
            .as_f64()
            .unwrap()
    };
    assert!(last("dbBytes") > 0.0);
    // This very request's connection is open while the sample is taken.
    server.runtime.sample_health();
    let health = ok(get(&server, "/api/dashboard/health").await).await;
    let http = health["series"]["httpConnections"].as_array().unwrap();
    assert!(http.last().unwrap()[1].as_f64().unwrap() >= 0.0);

    let metrics = get(&server, "/metrics").await;
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let text = metrics.text();
    assert!(
        text.contains("# TYPE tickethub_function_calls counter"),
        "{text}"
    );
    assert!(
        text.contains("tickethub_function_calls_total{kind=\"mutation\"} 2"),
        "{text}"
    );
    assert!(text.contains("tickethub_commits_total "), "{text}");
    assert!(text.contains("tickethub_database_bytes "), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn the_changes_long_poll_names_the_written_tables() {
    let server = start().await;
    let start_ts = ok(get(&server, "/api/dashboard/changes").await).await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let quiet = ok(get(
        &server,
        &format!("/api/dashboard/changes?since={start_ts}&timeoutMs=20"),
    )
    .await)
    .await;
    assert_eq!(quiet["tables"], json!([]));
    assert_eq!(quiet["ts"], start_ts.as_str());

    let api = server.api;
    let since = start_ts.clone();
    let poll = tokio::spawn(async move {
        request(
            api,
            "GET",
            &format!("/api/dashboard/changes?since={since}&timeoutMs=30000"),
            &[("Authorization", ADMIN)],
            b"",
        )
        .await
    });
    insert_messages(&server, &["new"]).await;
    let changed = ok(poll.await.unwrap()).await;
    assert!(
        changed["tables"]
            .as_array()
            .unwrap()
            .contains(&json!("messages")),
        "{changed}"
    );
    let ts: u64 = changed["ts"].as_str().unwrap().parse().unwrap();
    assert!(ts > start_ts.parse::<u64>().unwrap());
    server.stop().await;
}
