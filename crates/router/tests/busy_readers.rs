//! Every reader busy (held by pinned snapshots or slow queries) must not stall the server: a
//! query waiting for a reader waits off the async workers, so other requests are still answered.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::*;

/// Readers in the harness's store.
const READERS: usize = 2;
/// Queries sent while every reader is held: several times the worker threads, so that a query
/// waiting on a worker would leave none free.
const WAITING_QUERIES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_is_answered_while_every_reader_is_busy() {
    let server = TestServer::start(TestClock::Off).await;
    let store = server.runtime.store().clone();
    let held: Vec<_> = (0..READERS).map(|_| store.read().unwrap()).collect();
    assert!(store.try_read().unwrap().is_none(), "every reader is held");

    let api = server.api;
    let waiting: Vec<_> = (0..WAITING_QUERIES)
        .map(|_| {
            tokio::spawn(async move {
                request(
                    api,
                    "POST",
                    "/api/query",
                    &[("Convex-Client", "npm-1.48.0")],
                    br#"{"path":"messages:list","format":"json","args":[{}]}"#,
                )
                .await
            })
        })
        .collect();
    // Give the queries time to reach the reader pool (not an assertion: the request below must
    // be answered however long they take).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // From a plain thread with an OS read timeout: if every worker were stuck, no timer of the
    // test's runtime would fire. Generous: it only bounds how long a broken server hangs the test.
    let reply = std::thread::spawn(move || blocking_get(api, "/instance_name"))
        .join()
        .unwrap()
        .expect("a plain request is answered while every reader is busy");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // Once readers come back, the waiting queries run.
    drop(held);
    for query in waiting {
        let reply = query.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["status"], "success", "{}", reply.text());
    }
    server.stop().await;
}

fn blocking_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
