//! Graceful shutdown: in-flight requests finish; new connections are refused.

mod harness;

use std::sync::Arc;

use harness::*;
use tickethub_runtime::NoArgs;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_and_new_ones_are_refused() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let mut app = test_app();
    {
        let (started, release) = (started.clone(), release.clone());
        app.action("slow:wait", move |_ctx, _: NoArgs| {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                Ok("done")
            }
        });
    }
    let server = TestServer::start_with(app, TestClock::Off).await;
    let api = server.api;
    let in_flight = tokio::spawn(async move {
        request(
            api,
            "POST",
            "/api/action",
            &[],
            br#"{"path":"slow:wait","format":"json","args":[{}]}"#,
        )
        .await
    });
    started.notified().await;
    let stopping = tokio::spawn(server.stop());
    // Shutdown has begun while the action is still running: the listener stops accepting.
    loop {
        match tokio::net::TcpStream::connect(api).await {
            Err(_) => break,
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    release.notify_one();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["value"], "done");
    stopping.await.unwrap();
}
