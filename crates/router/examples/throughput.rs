//! Requests per second of a point query over HTTP, next to a bare hyper "hello world" on the same
//! machine, with the same client. Run: `cargo run --release -p tickethub-router --example throughput`
//! (optional args: seconds per phase, connections). The ratio is what matters: both servers share
//! the cores with the load generator.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tickethub_router::{
    AppState, AuthFailure, AuthFailureKind, Authenticator, BoxFuture, GracePeriod, RouterConfig,
    Surface,
};
use tickethub_runtime::{
    App, Args, CallRequest, Caller, FunctionKind, Identity, ReadAt, Runtime, RuntimeConfig,
    UserIdentity, Validator, Value,
};
use tickethub_store::{Schema, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct NoAuth;

impl Authenticator for NoAuth {
    fn is_admin_key(&self, _presented: &str) -> bool {
        false
    }
    fn verify_token<'a>(
        &'a self,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<UserIdentity, AuthFailure>> {
        Box::pin(async {
            Err(AuthFailure {
                kind: AuthFailureKind::NoAuthProvider,
                message: "auth is off".into(),
            })
        })
    }
}

#[derive(Deserialize)]
struct ById {
    id: String,
}

impl Args for ById {
    fn validator() -> Option<Validator> {
        None
    }
}

async fn bare_hello(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"Hello, World!"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Keep-alive connections sending `request` back to back for `duration`.
async fn load(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    connections: usize,
    duration: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                while Instant::now() < deadline {
                    stream.write_all(&request).await.unwrap();
                    read_one_response(&mut stream, &mut buf).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn read_one_response(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await.unwrap();
        assert!(n > 0, "server closed the connection");
        filled += n;
        let data = &buf[..filled];
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&data[..end])
                .unwrap()
                .to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if filled >= end + 4 + len {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                return;
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(3);
    let connections: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("tickethub-throughput-{}", std::process::id()));
        let mut schema = Schema::from_toml("[tables.items]\nfields.n = \"number\"\n").unwrap();
        for table in Runtime::system_tables() {
            schema.add_system_table(table);
        }
        let store = Store::open(&dir, schema, StoreOptions::default()).unwrap();
        let mut app = App::new();
        app.query("items:get", |ctx, args: ById| ctx.db.get(&args.id));
        app.mutation("items:add", |ctx, _: tickethub_runtime::NoArgs| ctx.db.insert("items", serde_json::json!({ "n": 1.0 })));
        let runtime = Runtime::new(app, store, RuntimeConfig { clock: tickethub_runtime::Clock::System, auth_enabled: false, env: Default::default(), ..RuntimeConfig::default() });
        let added = runtime
            .call(CallRequest {
                path: "items:add".into(),
                args: Value::Object(Default::default()),
                expected_kind: Some(FunctionKind::Mutation),
                caller: Caller { identity: Identity::Anonymous },
                read_at: ReadAt::Latest,
                request_id: tickethub_runtime::RequestId::generate(),
            })
            .await;
        let id = added.outcome.unwrap().as_str().unwrap().to_string();

        let state = AppState::new(runtime.clone(), Arc::new(NoAuth), RouterConfig::default());
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_addr = api.local_addr().unwrap();
        tokio::spawn(tickethub_router::serve(api, Surface::Api, state, std::future::pending(), GracePeriod::default()));
        let bare = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_addr = bare.local_addr().unwrap();
        tokio::spawn(bare_hello(bare));

        let hello = format!("GET / HTTP/1.1\r\nHost: {bare_addr}\r\n\r\n").into_bytes();
        let body = format!(r#"{{"path":"items:get","format":"convex_encoded_json","args":[{{"id":"{id}"}}]}}"#);
        let query = format!(
            "POST /api/query HTTP/1.1\r\nHost: {api_addr}\r\nContent-Type: application/json\r\nConvex-Client: npm-1.48.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let duration = Duration::from_secs(seconds);
        // Warm up both, then measure.
        load(bare_addr, Arc::new(hello.clone()), connections, Duration::from_millis(300)).await;
        load(api_addr, Arc::new(query.clone()), connections, Duration::from_millis(300)).await;
        let bare_rps = load(bare_addr, Arc::new(hello), connections, duration).await;
        let query_rps = load(api_addr, Arc::new(query), connections, duration).await;
        println!("bare hyper hello world: {bare_rps:>9.0} req/s");
        println!("point query over HTTP:  {query_rps:>9.0} req/s ({:.0}% of bare)", 100.0 * query_rps / bare_rps);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
