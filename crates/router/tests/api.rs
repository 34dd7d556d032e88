//! `/api/*` end to end over loopback: function calls in both formats, errors, limits, auth, CORS.

mod harness;

use harness::*;
use tokio::io::AsyncWriteExt;

const LIST: &str = r#"{"path":"messages:list","format":"convex_encoded_json","args":[{}]}"#;

#[tokio::test]
async fn query_mutation_action_in_both_formats() {
    let server = TestServer::start(TestClock::Off).await;
    // Mutation, args wrapped in an array as the official client sends them.
    let reply = server
        .post(
            "/api/mutation",
            r#"{"path":"messages:send","format":"convex_encoded_json","args":[{"body":"hi"}]}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["status"], "success");
    assert!(json["value"].is_string(), "an id: {json}");
    assert_eq!(json["logLines"], serde_json::json!(["[LOG] 'sending'"]));
    // Plain-object args are accepted too; `convex_json` is an alias.
    let reply = server
        .post(
            "/api/mutation",
            r#"{"path":"messages.js:send","format":"convex_json","args":{"body":"yo"}}"#,
        )
        .await;
    assert_eq!(reply.json()["status"], "success", "{}", reply.text());
    let reply = server.post("/api/query", LIST).await;
    assert_eq!(reply.json()["value"], serde_json::json!(["hi", "yo"]));
    let reply = server
        .post(
            "/api/action",
            r#"{"path":"messages:ping","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(reply.json()["value"], "pong", "{}", reply.text());

    // int64 and bytes survive convex_encoded_json; `json` (alias convex_clean_json) flattens them.
    let echo = r#"{"path":"messages:echo","format":"convex_encoded_json","args":[{"n":{"$integer":"AQAAAAAAAAA="},"b":{"$bytes":"AQID"}}]}"#;
    let reply = server.post("/api/query", echo).await;
    assert_eq!(
        reply.json()["value"],
        serde_json::json!({"n":{"$integer":"AQAAAAAAAAA="},"b":{"$bytes":"AQID"}})
    );
    let clean = r#"{"path":"messages:echo","format":"convex_clean_json","args":[{"n":1,"s":"x"}]}"#;
    let reply = server.post("/api/query", clean).await;
    assert_eq!(reply.json()["value"], serde_json::json!({"n":1.0,"s":"x"}));
    server.stop().await;
}

#[tokio::test]
async fn function_errors_are_200_with_status_error() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:fail","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["status"], "error");
    assert!(
        json["errorMessage"].as_str().unwrap().contains("boom"),
        "{json}"
    );
    assert!(
        json.get("errorData").is_none(),
        "no errorData for a plain error: {json}"
    );

    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:failWithData","format":"convex_encoded_json","args":[{}]}"#,
        )
        .await;
    let json = reply.json();
    assert_eq!(json["status"], "error");
    assert_eq!(
        json["errorData"],
        serde_json::json!({"code":"SoldOut","left":0.0}),
        "{json}"
    );
    server.stop().await;
}

#[tokio::test]
async fn internal_failures_are_500s_that_leak_nothing() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:bug","format":"json","args":[{}]}"#,
        )
        .await;
    reply.assert_error(500, "InternalServerError");
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("[Request ID: "), "{message}");
    for secret in ["SELECT", "/var/lib", "SQL"] {
        assert!(!reply.text().contains(secret), "{}", reply.text());
    }
    server.assert_still_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn internal_and_unknown_functions_look_the_same() {
    let server = TestServer::start(TestClock::Off).await;
    let internal = server
        .post(
            "/api/query",
            r#"{"path":"messages:secret","format":"json","args":[{}]}"#,
        )
        .await;
    let unknown = server
        .post(
            "/api/query",
            r#"{"path":"messages:nope","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(
        internal.json()["errorMessage"],
        "Could not find public function for 'messages:secret'."
    );
    assert_eq!(
        unknown.json()["errorMessage"],
        "Could not find public function for 'messages:nope'."
    );
    assert_eq!(internal.status, unknown.status);

    // The admin key may call internal functions, through /api/function with unwrapped args.
    let admin = format!("Convex {ADMIN_KEY}");
    let reply = server
        .post_with(
            "/api/function",
            &[("Authorization", &admin)],
            br#"{"path":"messages:secret","format":"convex_encoded_json","args":{}}"#,
        )
        .await;
    assert_eq!(reply.json()["value"], "internal only", "{}", reply.text());
    // ... and through the kind-specific endpoints.
    let reply = server
        .post_with(
            "/api/query",
            &[("Authorization", &admin)],
            br#"{"path":"messages:secret","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(reply.json()["value"], "internal only", "{}", reply.text());
    // A wrong admin key is refused before anything runs.
    let reply = server
        .post_with(
            "/api/function",
            &[("Authorization", "Convex wrong")],
            br#"{"path":"messages:secret","args":{}}"#,
        )
        .await;
    reply.assert_error(403, "BadAdminKey");
    server.stop().await;
}

#[tokio::test]
async fn wrong_kind_is_a_function_error() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = server.post("/api/mutation", LIST).await;
    assert_eq!(reply.status, 200);
    let message = reply.json()["errorMessage"].as_str().unwrap().to_string();
    assert!(
        message.contains("as Mutation, but it is defined as Query"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn run_endpoint_defaults_to_json() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = server
        .post("/api/run/messages/echo", r#"{"args":{"n":2}}"#)
        .await;
    assert_eq!(
        reply.json()["value"],
        serde_json::json!({"n": 2.0}),
        "{}",
        reply.text()
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_the_server_keeps_serving() {
    let server = TestServer::start(TestClock::Off).await;
    let client = [("Convex-Client", "npm-1.48.0")];

    let reply = server.post("/api/query", "{this is not json").await;
    reply.assert_error(400, "BadJsonBody");
    server.assert_still_serving().await;

    let reply = server
        .post("/api/query", r#"{"format":"json","args":[{}]}"#)
        .await;
    reply.assert_error(400, "MissingPath");
    server.assert_still_serving().await;

    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:list","format":"yaml","args":[{}]}"#,
        )
        .await;
    reply.assert_error(400, "BadFormat");
    server.assert_still_serving().await;

    let deep = format!(
        r#"{{"path":"messages:echo","format":"json","args":[{{"x":{}{}}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let reply = server.post("/api/query", &deep).await;
    reply.assert_error(400, "BadJsonBody");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("nested too deeply"));
    server.assert_still_serving().await;

    let reply = server
        .post_with(
            "/api/query",
            &[("Convex-Client", "npm-one.two")],
            LIST.as_bytes(),
        )
        .await;
    reply.assert_error(400, "InvalidClientVersion");
    server.assert_still_serving().await;

    let reply = server
        .post_with(
            "/api/query",
            &[client[0], ("Authorization", "Basic dXNlcjpwYXNz")],
            LIST.as_bytes(),
        )
        .await;
    reply.assert_error(401, "InvalidAuthHeader");
    server.assert_still_serving().await;

    let reply = server.post("/api/nope", LIST).await;
    reply.assert_error(404, "NotFound");
    let reply = request(server.api, "GET", "/nothing/here", &[], b"").await;
    reply.assert_error(404, "NotFound");
    server.assert_still_serving().await;

    let reply = request(server.api, "GET", "/api/query", &[], b"").await;
    reply.assert_error(405, "MethodNotAllowed");

    // Args of the wrong shape and undecodable values.
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:list","format":"json","args":[1]}"#,
        )
        .await;
    reply.assert_error(400, "BadRequest");
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:echo","format":"convex_encoded_json","args":[{"$bad":1}]}"#,
        )
        .await;
    reply.assert_error(400, "InvalidValue");
    server.assert_still_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_reading_them() {
    let server = TestServer::start(TestClock::Off).await;
    // A declared 17 MiB body: refused from the headers alone (nothing of the body is sent).
    let mut stream = tokio::net::TcpStream::connect(server.api).await.unwrap();
    let head = format!(
        "POST /api/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        17 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    reply.assert_error(413, "BodyTooLarge");
    drop(stream);
    server.assert_still_serving().await;

    // A chunked body with no declared length is counted as it streams in.
    let mut stream = tokio::net::TcpStream::connect(server.api).await.unwrap();
    let head = "POST /api/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    for _ in 0..17 {
        stream.write_all(&framed).await.unwrap();
    }
    let reply = read_reply(&mut stream).await;
    reply.assert_error(413, "BodyTooLarge");
    drop(stream);
    server.assert_still_serving().await;

    // A declared 17 MiB body that is sent in full: the server drains it so the client, still
    // writing when the 413 comes, is not reset and can read the answer.
    let mut stream = tokio::net::TcpStream::connect(server.api).await.unwrap();
    let body = vec![b' '; 17 * 1024 * 1024];
    let head = format!(
        "POST /api/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let reply = read_reply(&mut stream).await;
    reply.assert_error(413, "BodyTooLarge");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_before_functions_run() {
    let server = TestServer::start(TestClock::Off).await;
    let whoami = br#"{"path":"messages:whoami","format":"json","args":[{}]}"#;
    let reply = server
        .post_with(
            "/api/query",
            &[("Authorization", "Bearer good-token")],
            whoami,
        )
        .await;
    assert_eq!(reply.json()["value"], "user_1", "{}", reply.text());
    let reply = server
        .post_with("/api/query", &[("Authorization", "Bearer forged")], whoami)
        .await;
    reply.assert_error(401, "Unauthenticated");
    let auth = format!("Bearer {FOREIGN_TOKEN}");
    let reply = server
        .post_with("/api/query", &[("Authorization", &auth)], whoami)
        .await;
    reply.assert_error(401, "NoAuthProvider");
    // A mutation with a bad token must not write.
    let send = br#"{"path":"messages:send","format":"json","args":[{"body":"x"}]}"#;
    let reply = server
        .post_with("/api/mutation", &[("Authorization", "Bearer forged")], send)
        .await;
    reply.assert_error(401, "Unauthenticated");
    let reply = server.post("/api/query", LIST).await;
    assert_eq!(reply.json()["value"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_mirrored_origin() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = request(
        server.api,
        "OPTIONS",
        "/api/query",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,convex-client,authorization",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type,convex-client,authorization")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("86400"));
    let methods = reply.header("access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "OPTIONS", "PATCH", "DELETE", "PUT"] {
        assert!(methods.contains(m), "{methods}");
    }
    // Actual requests (and errors) carry the mirrored origin too.
    let reply = server
        .post_with(
            "/api/query",
            &[("Origin", "https://app.example")],
            LIST.as_bytes(),
        )
        .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let reply = server
        .post_with("/api/query", &[("Origin", "https://app.example")], b"nope")
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    server.stop().await;
}

#[tokio::test]
async fn consistent_query_and_batch() {
    let server = TestServer::start(TestClock::Off).await;
    let send = |body: &'static str| {
        let server = &server;
        async move {
            let text = format!(
                r#"{{"path":"messages:send","format":"json","args":[{{"body":"{body}"}}]}}"#
            );
            assert_eq!(
                server.post("/api/mutation", &text).await.json()["status"],
                "success"
            );
        }
    };
    send("first").await;
    // query_ts takes no body, like the official client's getTimestamp().
    let reply = server.post_with("/api/query_ts", &[], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ts = reply.json()["ts"].as_str().unwrap().to_string();
    send("second").await;
    let at_ts = format!(
        r#"{{"path":"messages:list","format":"convex_encoded_json","args":[{{}}],"ts":"{ts}"}}"#
    );
    let reply = server.post("/api/query_at_ts", &at_ts).await;
    assert_eq!(
        reply.json()["value"],
        serde_json::json!(["first"]),
        "{}",
        reply.text()
    );
    let reply = server
        .post(
            "/api/query_at_ts",
            r#"{"path":"messages:list","args":[{}],"ts":"not base64!"}"#,
        )
        .await;
    reply.assert_error(400, "BadRequest");

    let batch = r#"{"queries":[
        {"path":"messages:list","format":"json","args":[{}]},
        {"path":"messages:fail","format":"json","args":[{}]},
        {"path":"messages:echo","format":"convex_encoded_json","args":[{"n":{"$integer":"AgAAAAAAAAA="}}]}
    ]}"#;
    let reply = server.post("/api/query_batch", batch).await;
    let json = reply.json();
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["value"], serde_json::json!(["first", "second"]));
    assert_eq!(results[1]["status"], "error");
    assert_eq!(
        results[2]["value"],
        serde_json::json!({"n":{"$integer":"AgAAAAAAAAA="}})
    );
    server.stop().await;
}

#[tokio::test]
async fn instance_name_and_test_clock_route() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = request(server.api, "GET", "/instance_name", &[], b"").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "tickethub"));
    let admin = format!("Convex {ADMIN_KEY}");
    let reply = server
        .post_with(
            "/api/test/advance_time",
            &[("Authorization", &admin)],
            br#"{"ms":1000}"#,
        )
        .await;
    reply.assert_error(404, "NotFound");
    server.stop().await;

    let server = TestServer::start(TestClock::On).await;
    let reply = server
        .post_with("/api/test/advance_time", &[], br#"{"ms":1000}"#)
        .await;
    reply.assert_error(401, "AdminKeyRequired");
    let before = server.runtime.now_ms();
    let reply = server
        .post_with(
            "/api/test/advance_time",
            &[("Authorization", &admin)],
            br#"{"ms":60000}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let now = reply.json()["now"].as_f64().unwrap();
    assert!(now >= before + 60000.0, "{now} vs {before}");
    server.stop().await;
}
