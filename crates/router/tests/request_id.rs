//! One request id per request: the id a client sees in a 500's text is the one the runtime's log
//! line for that function call carries (the router makes it and passes it to the runtime).

mod harness;

use std::io::Write;
use std::sync::{Arc, Mutex};

use harness::*;

/// Log output captured for the whole test binary (this file has one test, so nothing else logs).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The id inside `[Request ID: <id>]`.
fn request_id_in(text: &str) -> String {
    let start = text.find("[Request ID: ").expect("a request id") + "[Request ID: ".len();
    let end = start + text[start..].find(']').expect("a closing bracket");
    text[start..end].to_string()
}

#[tokio::test]
async fn the_error_text_and_the_function_log_share_one_request_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let server = TestServer::start(TestClock::Off).await;

    // An internal failure of a query over /api/query.
    let reply = server
        .post(
            "/api/query",
            r#"{"path":"messages:bug","format":"json","args":[{}]}"#,
        )
        .await;
    reply.assert_error(500, "InternalServerError");
    let id = request_id_in(reply.json()["message"].as_str().unwrap());
    let lines = captured.lines();
    assert!(
        lines
            .iter()
            // The line names the canonical path itself (no span is needed at INFO).
            .any(|l| l.contains("function call")
                && l.contains("messages.js:bug")
                && l.contains(&id)),
        "no function-call log line with request id {id}:\n{}",
        lines.join("\n")
    );

    // A failing HTTP action.
    let reply = request(server.site, "GET", "/fail", &[], b"").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let id = request_id_in(reply.json()["code"].as_str().unwrap());
    let lines = captured.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("function call") && l.contains("/fail") && l.contains(&id)),
        "no function-call log line with request id {id}:\n{}",
        lines.join("\n")
    );
    server.stop().await;
}
