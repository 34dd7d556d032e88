//! Slow and greedy clients, one limit each, with the limits set small so each test is quick:
//! a header trickle (slowloris) is cut off, a trickled body gets 408 `BodyReadTimeout`, a
//! WebSocket frame over the size limit is refused with close code 1009 before its payload is
//! read, and a connection may not subscribe more queries than its cap
//! (`TooManySubscriptions`). After each, the server still serves. The cap on open connections
//! is tested in `sync.rs`.

mod harness;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::*;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The limits under test, small enough that waiting them out is quick.
const HEADER_TIMEOUT: Duration = Duration::from_millis(400);
const BODY_TIMEOUT: Duration = Duration::from_millis(400);
/// Without the limit under test, the server's default would hold out far past this (hyper's own
/// header default is 30 s); with it, the server acts well within.
const PATIENCE: Duration = Duration::from_secs(5);

async fn server() -> TestServer {
    TestServer::start_with_config(test_app(), TestClock::Off, |config| {
        config.timeouts.header = HEADER_TIMEOUT;
        config.timeouts.body = BODY_TIMEOUT;
        config.sync.max_queries_per_connection = 3;
        config.sync.max_message_bytes = 64 * 1024;
    })
    .await
}

/// Reads until the server closes the connection; returns what it sent, or `None` if it did not
/// close within [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_header_trickle_is_cut_off_at_the_header_timeout() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.api).await.unwrap();
    let started = Instant::now();
    // One byte of a never-ending header every 50 ms, as slowloris sends: the server must not wait
    // for it forever. The trickle runs beside the reader until the server hangs up.
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        let head = b"POST /api/query HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        writer.write_all(head).await.unwrap();
        loop {
            if writer.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(PATIENCE, async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
    };
    let outcome = tokio::select! {
        () = trickle => Ok(()),
        closed = closed => closed,
    };
    assert!(
        outcome.is_ok(),
        "the server kept a trickling connection open for over {PATIENCE:?}"
    );
    let held = started.elapsed();
    assert!(
        held >= HEADER_TIMEOUT,
        "closed after {held:?}, before the timeout"
    );
    server.assert_still_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_gets_408_body_read_timeout() {
    let server = server().await;
    let body = br#"{"path":"messages:list","format":"json","args":[{}]}"#;
    let mut stream = TcpStream::connect(server.api).await.unwrap();
    let head = format!(
        "POST /api/query HTTP/1.1\r\nHost: x\r\nConvex-Client: npm-1.48.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A few bytes of the body, then nothing: the rest never comes.
    stream.write_all(&body[..10]).await.unwrap();
    let started = Instant::now();
    let raw = read_until_closed(&mut stream)
        .await
        .expect("the server answered and closed within the patience");
    let reply = parse_reply(&raw);
    reply.assert_error(408, "BodyReadTimeout");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(started.elapsed() >= BODY_TIMEOUT);
    server.assert_still_serving().await;
    server.stop().await;
}

async fn connect(server: &TestServer) -> Socket {
    let url = format!("ws://{}/api/1.48.0/sync", server.api);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let connect = json!({"type": "Connect", "sessionId": "00000000-0000-4000-8000-000000000000",
                         "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0});
    ws.send(Message::Text(connect.to_string())).await.unwrap();
    ws
}

/// The next message other than a Ping, or `None` when the socket closed.
async fn next(ws: &mut Socket) -> Option<Message> {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time");
        match message {
            Some(Ok(Message::Text(text))) if text.contains("\"Ping\"") => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_frame_over_the_limit_is_closed_with_1009() {
    let server = server().await;
    let mut ws = connect(&server).await;
    // 1 MiB against a 64 KiB limit (the tungstenite default would take it: 64 MiB).
    let big = format!(
        r#"{{"type":"Mutation","requestId":0,"udfPath":"messages:send","args":[{{"body":"{}"}}]}}"#,
        "x".repeat(1 << 20)
    );
    ws.send(Message::Text(big)).await.unwrap();
    let close = match next(&mut ws).await {
        Some(Message::Close(frame)) => frame,
        Some(other) => panic!("expected a close, got {other:?}"),
        None => panic!("the socket ended without a close frame"),
    };
    let frame = close.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert!(frame.reason.contains("65536"), "{frame:?}");
    // Nothing was written, and the server still serves.
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:list","format":"json","args":[{}]}"#,
        )
        .await;
    assert_eq!(reply.json()["value"], json!([]), "{}", reply.text());
    server.stop().await;
}

fn add(version: u32) -> Message {
    let modify = json!({"type": "ModifyQuerySet", "baseVersion": version, "newVersion": version + 1,
        "modifications": [{"type": "Add", "queryId": version, "udfPath": "messages:list", "args": [{}]}]});
    Message::Text(modify.to_string())
}

#[tokio::test]
async fn subscriptions_beyond_the_cap_close_with_too_many_subscriptions() {
    let server = server().await;
    let mut ws = connect(&server).await;
    for version in 0..3 {
        ws.send(add(version)).await.unwrap();
        let Some(Message::Text(text)) = next(&mut ws).await else {
            panic!("expected a Transition for query {version}");
        };
        let transition: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(transition["type"], "Transition", "{transition}");
    }
    ws.send(add(3)).await.unwrap();
    let Some(Message::Text(text)) = next(&mut ws).await else {
        panic!("expected a FatalError");
    };
    let fatal: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(fatal["type"], "FatalError", "{fatal}");
    let error = fatal["error"].as_str().unwrap();
    assert!(error.starts_with("TooManySubscriptions:"), "{error}");
    assert!(error.contains('3'), "{error}");
    // Then the connection closes.
    match next(&mut ws).await {
        None | Some(Message::Close(_)) => {}
        Some(other) => panic!("expected the socket to close, got {other:?}"),
    }
    // Removing a query frees its place: at the cap, a Remove then an Add in one message is fine.
    let mut ws = connect(&server).await;
    for version in 0..3 {
        ws.send(add(version)).await.unwrap();
        assert!(matches!(next(&mut ws).await, Some(Message::Text(_))));
    }
    let swap = json!({"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4,
        "modifications": [{"type": "Remove", "queryId": 0},
                          {"type": "Add", "queryId": 3, "udfPath": "messages:list", "args": [{}]}]});
    ws.send(Message::Text(swap.to_string())).await.unwrap();
    let Some(Message::Text(text)) = next(&mut ws).await else {
        panic!("expected a Transition");
    };
    let transition: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(transition["type"], "Transition", "{transition}");
    server.stop().await;
}
