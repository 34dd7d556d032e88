//! HTTP actions on the site port and under `/http/` on the API port.

mod harness;

use harness::*;

#[tokio::test]
async fn routing_exact_prefix_method_and_mounts() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = request(server.site, "GET", "/hello?x=1", &[], b"").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello x=1"));
    // The same action under /http/ on the API port.
    let reply = request(server.api, "GET", "/http/hello?y=2", &[], b"").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello y=2"));
    // Prefix routes see the full path.
    let reply = request(server.site, "POST", "/files/a/b.txt", &[], b"12345").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "/files/a/b.txt 5 bytes")
    );
    let reply = request(server.api, "POST", "/http/files/c", &[], b"").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "/files/c 0 bytes")
    );
    // Wrong method, unknown path: 404 text.
    let reply = request(server.site, "POST", "/hello", &[], b"").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (404, "No HttpAction routed for /hello")
    );
    let reply = request(server.api, "GET", "/http/nowhere", &[], b"").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (404, "No HttpAction routed for /nowhere")
    );
    // HEAD is GET without a body.
    let reply = request(server.site, "HEAD", "/hello", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    // No automatic CORS on HTTP actions.
    let reply = request(
        server.site,
        "GET",
        "/hello",
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_action_is_a_500_with_a_request_id() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = request(server.site, "GET", "/fail", &[], b"").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let json = reply.json();
    let code = json["code"].as_str().unwrap().to_string();
    assert!(code.starts_with("[Request ID: "), "{code}");
    assert!(
        code.ends_with("] Server Error: Uncaught Error: the action failed"),
        "{code}"
    );
    assert_eq!(json["trace"], "Uncaught Error: the action failed");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // An internal failure says only "Server Error", under a request id.
    let reply = request(server.site, "GET", "/crash", &[], b"").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let json = reply.json();
    let code = json["code"].as_str().unwrap();
    assert!(
        code.starts_with("[Request ID: ") && code.ends_with("] Server Error"),
        "{code}"
    );
    assert_eq!(json["trace"], "");
    assert!(!reply.text().contains("SELECT"), "{}", reply.text());
    // The server keeps serving.
    let reply = request(server.site, "GET", "/hello", &[], b"").await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn bad_tokens_do_not_stop_http_actions() {
    let server = TestServer::start(TestClock::Off).await;
    let reply = request(
        server.site,
        "GET",
        "/whoami",
        &[("Authorization", "Bearer good-token")],
        b"",
    )
    .await;
    assert_eq!(reply.text(), "user_1");
    let reply = request(server.site, "GET", "/whoami", &[], b"").await;
    assert_eq!(reply.text(), "anonymous");
    let reply = request(
        server.site,
        "GET",
        "/whoami",
        &[("Authorization", "Bearer forged")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().starts_with("error: "), "{}", reply.text());
    server.stop().await;
}

#[tokio::test]
async fn http_action_bodies_are_limited_to_20_mib() {
    let server = TestServer::start(TestClock::Off).await;
    let body = vec![b'x'; 18 * 1024 * 1024];
    let reply = request(server.site, "POST", "/files/big", &[], &body).await;
    assert_eq!(
        (reply.status, reply.text()),
        (200, format!("/files/big {} bytes", body.len()))
    );
    let mut stream = tokio::net::TcpStream::connect(server.site).await.unwrap();
    let head = format!(
        "POST /files/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        21 * 1024 * 1024
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let reply = read_reply(&mut stream).await;
    reply.assert_error(413, "BodyTooLarge");
    server.stop().await;
}
