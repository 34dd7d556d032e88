//! The WebSocket sync endpoint with a raw client: args refused as `/api/*` refuses them, the cap
//! on actions per connection, wake-ups only for the sessions a commit touches, and the cap on
//! open connections (which WebSockets count against too).

mod harness;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use harness::*;
use serde_json::{json, Value as Json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A guard against a hung test, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(server: &TestServer) -> Socket {
    let url = format!("ws://{}/api/1.48.0/sync", server.api);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(
        &mut ws,
        json!({"type": "Connect", "sessionId": "00000000-0000-4000-8000-000000000000",
               "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0}),
    )
    .await;
    ws
}

async fn send(ws: &mut Socket, message: Json) {
    ws.send(Message::Text(message.to_string())).await.unwrap();
}

/// The next message other than a Ping.
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

async fn subscribe(ws: &mut Socket, version: u32, path: &str, args: Json) -> Json {
    send(
        ws,
        json!({"type": "ModifyQuerySet", "baseVersion": version, "newVersion": version + 1,
               "modifications": [{"type": "Add", "queryId": version, "udfPath": path, "args": args}]}),
    )
    .await;
    let transition = next(ws).await;
    assert_eq!(transition["type"], "Transition", "{transition}");
    transition["modifications"][0].clone()
}

#[tokio::test]
async fn bad_args_are_refused_with_the_code_and_message_of_the_http_api() {
    let server = TestServer::start(TestClock::Off).await;
    let bad = json!({"n": {"$integer": "not base64!"}});
    let http = server
        .post(
            "/api/query",
            &json!({"path": "messages:echo", "args": bad, "format": "convex_encoded_json"})
                .to_string(),
        )
        .await;
    http.assert_error(400, "InvalidValue");
    let expected = format!("InvalidValue: {}", http.json()["message"].as_str().unwrap());

    let mut ws = connect(&server).await;
    // `messages:echo` takes any value: before the fix it answered with the refusal as a string.
    let update = subscribe(&mut ws, 0, "messages:echo", json!([bad])).await;
    assert_eq!(update["type"], "QueryFailed", "{update}");
    assert_eq!(update["errorMessage"], expected.as_str());

    let update = subscribe(&mut ws, 1, "messages:echo", json!([5])).await;
    assert_eq!(
        update["errorMessage"],
        "BadRequest: Function arguments must be an object."
    );

    send(
        &mut ws,
        json!({"type": "Mutation", "requestId": 0, "udfPath": "messages:send",
               "args": [{"body": {"$integer": "not base64!"}}]}),
    )
    .await;
    let response = next(&mut ws).await;
    assert_eq!(response["type"], "MutationResponse", "{response}");
    assert_eq!(response["success"], false);
    assert!(
        response["result"]
            .as_str()
            .unwrap()
            .starts_with("InvalidValue: Invalid function arguments"),
        "{response}"
    );

    send(
        &mut ws,
        json!({"type": "Action", "requestId": 1, "udfPath": "messages:ping", "args": [{}, {}]}),
    )
    .await;
    let response = next(&mut ws).await;
    assert_eq!(response["type"], "ActionResponse", "{response}");
    assert_eq!(
        response["result"],
        "BadRequest: \"args\" must be an array holding one object, or an object."
    );
    server.stop().await;
}

#[tokio::test]
async fn actions_beyond_the_per_connection_cap_fail_at_once() {
    let server = TestServer::start(TestClock::Off).await;
    let limit = *tickethub_knobs::SYNC_MAX_ACTIONS_PER_CONNECTION as u32;
    let mut ws = connect(&server).await;
    let action = |id: u32| json!({"type": "Action", "requestId": id, "udfPath": "messages:wait", "args": [{}]});
    for id in 0..limit {
        send(&mut ws, action(id)).await;
    }
    // All `limit` actions are waiting at the gate: one more is refused without waiting.
    send(&mut ws, action(limit)).await;
    let refused = next(&mut ws).await;
    assert_eq!(refused["type"], "ActionResponse", "{refused}");
    assert_eq!(refused["requestId"], limit);
    assert_eq!(refused["success"], false);
    assert!(
        refused["result"]
            .as_str()
            .unwrap()
            .starts_with("TooManyConcurrentActions: "),
        "{refused}"
    );

    ACTION_GATE.add_permits(limit as usize);
    for _ in 0..limit {
        let done = next(&mut ws).await;
        assert_eq!(
            (done["success"].clone(), done["result"].clone()),
            (json!(true), json!("done"))
        );
    }
    // The finished actions gave their places back.
    ACTION_GATE.add_permits(1);
    send(&mut ws, action(limit + 1)).await;
    let done = next(&mut ws).await;
    assert_eq!(done["requestId"], limit + 1);
    assert_eq!(done["success"], true, "{done}");
    server.stop().await;
}

async fn sessions_woken(server: &TestServer) -> u64 {
    let reply = request(
        server.api,
        "GET",
        "/api/sync_metrics",
        &[("Authorization", &format!("Convex {ADMIN_KEY}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["sessionsWoken"].as_u64().unwrap()
}

#[tokio::test]
async fn a_commit_wakes_only_the_sessions_whose_ranges_it_touches() {
    let server = TestServer::start(TestClock::Off).await;
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut ws = connect(&server).await;
        let update = subscribe(
            &mut ws,
            0,
            "messages:byBody",
            json!([{"body": format!("idle-{i}")}]),
        )
        .await;
        assert_eq!(update["value"], 0.0, "{update}");
        idle.push(ws);
    }
    let mut hot = connect(&server).await;
    let update = subscribe(&mut hot, 0, "messages:byBody", json!([{"body": "hot"}])).await;
    assert_eq!(update["value"], 0.0, "{update}");

    let before = sessions_woken(&server).await;
    server
        .post(
            "/api/mutation",
            r#"{"path":"messages:send","args":{"body":"hot"}}"#,
        )
        .await;
    let transition = next(&mut hot).await;
    assert_eq!(transition["modifications"][0]["value"], 1.0, "{transition}");
    // The hot session was counted before it was woken; no idle one was.
    assert_eq!(sessions_woken(&server).await - before, 1);

    // An unrelated write wakes nobody.
    server
        .post(
            "/api/mutation",
            r#"{"path":"messages:send","args":{"body":"nobody reads this"}}"#,
        )
        .await;
    // Its commit is dispatched before the next one, which wakes the hot session again.
    server
        .post(
            "/api/mutation",
            r#"{"path":"messages:send","args":{"body":"hot"}}"#,
        )
        .await;
    let transition = next(&mut hot).await;
    assert_eq!(transition["modifications"][0]["value"], 2.0, "{transition}");
    assert_eq!(sessions_woken(&server).await - before, 2);
    drop(idle);
    server.stop().await;
}

/// Send a keep-alive request on `stream` and read its reply.
async fn keep_alive_get(stream: &mut TcpStream, addr: std::net::SocketAddr) -> Reply {
    let head = format!("GET /instance_name HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(PATIENCE, read_reply(stream))
        .await
        .expect("a reply in time")
}

#[tokio::test]
async fn connections_over_the_cap_get_503_too_many_connections() {
    let server =
        TestServer::start_with_config(test_app(), TestClock::Off, |c| c.max_connections = 2).await;
    let mut first = TcpStream::connect(server.api).await.unwrap();
    assert_eq!(keep_alive_get(&mut first, server.api).await.status, 200);
    // The cap covers both ports, and a WebSocket keeps its place after the upgrade.
    let ws = connect(&server).await;

    let mut third = TcpStream::connect(server.site).await.unwrap();
    let refused = keep_alive_get(&mut third, server.site).await;
    refused.assert_error(503, "TooManyConnections");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("2 open connections"),
        "{}",
        refused.text()
    );

    // Closing the WebSocket frees its place (the server notices asynchronously).
    drop(ws);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut again = TcpStream::connect(server.api).await.unwrap();
        let reply = keep_alive_get(&mut again, server.api).await;
        if reply.status == 200 {
            break;
        }
        reply.assert_error(503, "TooManyConnections");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);
    server.stop().await;
}
