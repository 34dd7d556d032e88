//! The HTTP ceiling: a bare hyper HTTP/1.1 server that reads the request body and answers a
//! fixed small JSON document. The bench binary runs it as a child process (`bench hello-server`)
//! so it is measured like every other server: its own pid, its own memory.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Roughly the size of a small `getUserById` answer, so both send similar bytes.
const ANSWER: &str = r#"{"status":"success","value":{"_id":"hello","name":"Hello World","email":"hello@example.com","userId":"hello"}}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body like a real endpoint would.
    let _ = request.into_body().collect().await;
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
        .expect("static response is valid"))
}

/// Serve forever on `addr` (the runtime's worker threads default to the core count).
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
