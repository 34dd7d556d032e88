//! A tiny app and an in-process server on loopback ports, driven with raw HTTP/1.1 so every byte
//! the server sees is under the test's control.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tickethub_router::{
    AppState, AuthFailure, AuthFailureKind, Authenticator, BoxFuture, GracePeriod, RouterConfig,
    Surface,
};
use tickethub_runtime::{
    App, Args, Clock, FnError, Identity, LogLevel, NoArgs, Route, Runtime, RuntimeConfig,
    UserIdentity, Validator,
};
use tickethub_store::{Schema, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ADMIN_KEY: &str = "tickethub-test|0123456789abcdef";
pub const GOOD_TOKEN: &str = "good-token";
pub const FOREIGN_TOKEN: &str = "token-from-unknown-issuer";

/// Admin key and tokens known to the test; no cryptography involved.
pub struct FakeAuthenticator;

impl Authenticator for FakeAuthenticator {
    fn is_admin_key(&self, presented: &str) -> bool {
        presented == ADMIN_KEY
    }
    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<UserIdentity, AuthFailure>> {
        Box::pin(async move {
            match token {
                GOOD_TOKEN => Ok(UserIdentity {
                    token_identifier: "https://issuer.test|user_1".into(),
                    subject: "user_1".into(),
                    issuer: "https://issuer.test".into(),
                    attributes: Default::default(),
                }),
                FOREIGN_TOKEN => Err(AuthFailure {
                    kind: AuthFailureKind::NoAuthProvider,
                    message: "No auth provider found matching the given token".into(),
                }),
                _ => Err(AuthFailure {
                    kind: AuthFailureKind::Unauthenticated,
                    message: "Could not verify token".into(),
                }),
            }
        })
    }
}

#[derive(Deserialize)]
pub struct SendArgs {
    pub body: String,
}

impl Args for SendArgs {
    fn validator() -> Option<Validator> {
        None
    }
}

const SCHEMA: &str = r#"
[tables.messages]
fields.body = "string"
indexes.by_body = ["body"]
"#;

/// `messages:wait` actions wait here for a permit; tests add permits to let them finish.
pub static ACTION_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

pub fn test_app() -> App {
    let mut app = App::new();
    app.query("messages:list", |ctx, _: NoArgs| {
        let docs = ctx.db.query("messages").collect()?;
        Ok(docs
            .into_iter()
            .map(|d| d.get_str("body").unwrap_or_default().to_string())
            .collect::<Vec<_>>())
    });
    app.mutation("messages:send", |ctx, args: SendArgs| {
        ctx.log(LogLevel::Log, "sending");
        ctx.db
            .insert("messages", serde_json::json!({ "body": args.body }))
    });
    app.query("messages:echo", |_ctx, args: tickethub_runtime::Value| {
        Ok(args)
    });
    app.query("messages:fail", |_ctx, _: NoArgs| -> Result<(), FnError> {
        Err(FnError::msg("boom"))
    });
    app.query(
        "messages:failWithData",
        |_ctx, _: NoArgs| -> Result<(), FnError> {
            Err(FnError::with_data(
                "",
                serde_json::json!({ "code": "SoldOut", "left": 0.0 }),
            ))
        },
    );
    app.query("messages:whoami", |ctx, _: NoArgs| {
        Ok(ctx.auth.get_user_identity()?.map(|u| u.subject.clone()))
    });
    app.query("messages:bug", |_ctx, _: NoArgs| -> Result<(), FnError> {
        Err(FnError::Internal(
            "SQL failed: SELECT * FROM documents at /var/lib/tickethub/db".into(),
        ))
    });
    app.internal_query("messages:secret", |_ctx, _: NoArgs| Ok("internal only"));
    app.action("messages:ping", |_ctx, _: NoArgs| async move { Ok("pong") });
    app.action("messages:wait", |_ctx, _: NoArgs| async move {
        ACTION_GATE
            .acquire()
            .await
            .map_err(|_| FnError::msg("gate closed"))?
            .forget();
        Ok("done")
    });
    app.query("messages:byBody", |ctx, args: SendArgs| {
        let body = args.body;
        let docs = ctx
            .db
            .query("messages")
            .with_index("by_body", move |q| q.eq("body", body))
            .collect()?;
        Ok(docs.len() as f64)
    });
    app.http_route(
        Route::exact(http::Method::GET, "/hello"),
        |_ctx, request| async move {
            let query = request.uri().query().unwrap_or("").to_string();
            Ok(http::Response::new(bytes::Bytes::from(format!(
                "hello {query}"
            ))))
        },
    );
    app.http_route(
        Route::prefix(http::Method::POST, "/files/"),
        |_ctx, request| async move {
            let text = format!("{} {} bytes", request.uri().path(), request.body().len());
            Ok(http::Response::new(bytes::Bytes::from(text)))
        },
    );
    app.http_route(
        Route::exact(http::Method::GET, "/whoami"),
        |ctx, _request| async move {
            let text = match ctx.auth.get_user_identity() {
                Ok(Some(user)) => user.subject.clone(),
                Ok(None) => "anonymous".to_string(),
                Err(e) => format!("error: {e}"),
            };
            Ok(http::Response::new(bytes::Bytes::from(text)))
        },
    );
    app.http_route(
        Route::exact(http::Method::GET, "/fail"),
        |_ctx, _request| async move {
            Err::<http::Response<bytes::Bytes>, _>(FnError::msg("the action failed"))
        },
    );
    app.http_route(
        Route::exact(http::Method::GET, "/crash"),
        |_ctx, _request| async move {
            Err::<http::Response<bytes::Bytes>, _>(FnError::Internal(
                "SQL failed: SELECT * FROM documents".into(),
            ))
        },
    );
    app
}

pub struct TestServer {
    pub api: SocketAddr,
    pub site: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    pub runtime: Runtime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TestClock {
    On,
    Off,
}

impl TestServer {
    pub async fn start(clock: TestClock) -> TestServer {
        TestServer::start_with(test_app(), clock).await
    }

    pub async fn start_with(app: App, clock: TestClock) -> TestServer {
        TestServer::start_with_config(app, clock, |_| {}).await
    }

    /// Like [`TestServer::start_with`], with the router's configuration adjusted by `adjust`.
    pub async fn start_with_config(
        app: App,
        clock: TestClock,
        adjust: impl FnOnce(&mut RouterConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut schema = Schema::from_toml(SCHEMA).unwrap();
        for table in Runtime::system_tables() {
            schema.add_system_table(table);
        }
        let store = Store::open(
            dir.path(),
            schema,
            StoreOptions {
                readers: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let clock = match clock {
            TestClock::On => Clock::Test,
            TestClock::Off => Clock::System,
        };
        let runtime = Runtime::new(
            app,
            store,
            RuntimeConfig {
                clock,
                auth_enabled: true,
                env: Default::default(),
                ..RuntimeConfig::default()
            },
        );
        let mut config = RouterConfig {
            clock,
            ..RouterConfig::default()
        };
        adjust(&mut config);
        let state = AppState::new(runtime.clone(), Arc::new(FakeAuthenticator), config);
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = api_listener.local_addr().unwrap();
        let site = site_listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_rx = futures_util::future::FutureExt::shared(async move {
            let _ = stop_rx.await;
        });
        let tasks = vec![
            tokio::spawn(tickethub_router::serve(
                api_listener,
                Surface::Api,
                state.clone(),
                stop_rx.clone(),
                GracePeriod::default(),
            )),
            tokio::spawn(tickethub_router::serve(
                site_listener,
                Surface::Site,
                state,
                stop_rx,
                GracePeriod::default(),
            )),
        ];
        TestServer {
            api,
            site,
            stop: Some(stop_tx),
            tasks,
            _dir: dir,
            runtime,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        self.runtime.shutdown().await;
        self.runtime.store().close().unwrap();
    }

    /// POST JSON to the API port with the official client's headers.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(path, &[("Convex-Client", "npm-1.48.0")], body.as_bytes())
            .await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        request(self.api, "POST", path, headers, body).await
    }

    /// A known-good query, to show the server still serves after a bad request.
    pub async fn assert_still_serving(&self) {
        let reply = self
            .post(
                "/api/query",
                r#"{"path":"messages:list","format":"json","args":[{}]}"#,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["status"], "success", "{}", reply.text());
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Assert a system error: status and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let json = self.json();
        assert_eq!(json["code"], code, "{}", self.text());
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text()
        );
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_reply(&mut stream).await
}

/// Read one response: up to its `Content-Length` when it has one (the server may keep the
/// connection open to drain a refused body), else to the end of the connection.
pub async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| raw.len() >= end + 4 + len) {
                return parse_reply(&raw);
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return parse_reply(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

pub fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub fn identity_is_admin(identity: &Identity) -> bool {
    matches!(identity, Identity::Admin)
}
