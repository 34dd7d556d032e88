//! `--export-import`: snapshot export and import of 1M users (`--users N` changes it).
//!
//! The users are seeded through the store's bulk path in-process (not over HTTP). Then a
//! tickethub server on that data dir exports a ZIP through the CLI's endpoints
//! (`/api/export/request/zip`, `_system/cli/exports:getLatest`, `/api/export/zip/<ts>`), and a
//! second server on an empty data dir imports it through the upload protocol (5 MiB parts, as
//! the CLI sends them) and `/api/perform_import`. Each phase is timed on the server's own state
//! (request → `completed`), and the server's peak resident memory (VmHWM, reset before each
//! phase) is read from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tickethub_store::BulkError;
use tickethub_value::{Object, Value};

use crate::procs::ServerProc;
use crate::servers::{start_tickethub, ADMIN_KEY};

/// Users per bulk transaction while seeding.
const SEED_CHUNK: u64 = 100_000;
/// The CLI's default part size.
const PART_BYTES: usize = 5 << 20;

#[derive(Debug, Serialize)]
pub struct EximReport {
    pub command: String,
    pub users: u64,
    pub seed_secs: f64,
    pub zip_mb: f64,
    pub export_secs: f64,
    pub export_docs_per_sec: f64,
    /// The exporting server's peak RSS during the export, and its RSS before it.
    pub export_peak_rss_mib: f64,
    pub export_base_rss_mib: f64,
    pub upload_secs: f64,
    /// Upload finished → `waiting_for_confirmation` (the whole file read and checked once).
    pub plan_secs: f64,
    /// `perform_import` → `completed` (the one bulk transaction).
    pub import_secs: f64,
    pub import_docs_per_sec: f64,
    pub import_peak_rss_mib: f64,
    pub import_base_rss_mib: f64,
    pub load_average: String,
}

impl EximReport {
    pub fn markdown(&self) -> String {
        format!(
            "# Snapshot export and import\n\n`{}`\n\n{} users seeded through the store's bulk path in {:.1} s. ZIP: {:.1} MB.\n\n\
             | phase | time | documents/s | server peak RSS (VmHWM) | RSS before |\n|---|---:|---:|---:|---:|\n\
             | export (request → completed, ZIP written) | {:.1} s | {:.0} | {:.0} MiB | {:.0} MiB |\n\
             | import: upload in 5 MiB parts | {:.1} s | | | |\n\
             | import: check (read every row once) | {:.1} s | | | |\n\
             | import: write (perform → completed, one bulk transaction) | {:.1} s | {:.0} | {:.0} MiB | {:.0} MiB |\n\n\
             Peak RSS is the server process's VmHWM, reset before each phase; it includes SQLite's page caches and the memory-mapped database pages it touched. Load average at the end: {}.\n",
            self.command,
            self.users,
            self.seed_secs,
            self.zip_mb,
            self.export_secs,
            self.export_docs_per_sec,
            self.export_peak_rss_mib,
            self.export_base_rss_mib,
            self.upload_secs,
            self.plan_secs,
            self.import_secs,
            self.import_docs_per_sec,
            self.import_peak_rss_mib,
            self.import_base_rss_mib,
            self.load_average,
        )
    }
}

fn seed(dir: &Path, users: u64) -> Result<f64> {
    let started = Instant::now();
    let store = crate::storage::store_open(dir)?;
    let mut from = 0;
    while from < users {
        let to = (from + SEED_CHUNK).min(users);
        store.mutate(move |txn| -> Result<(), BulkError> {
            txn.start_bulk();
            for n in from..to {
                let mut fields = Object::new();
                fields.insert("name".into(), Value::String(format!("Bench User {n}")));
                fields.insert(
                    "email".into(),
                    Value::String(format!("seed-{n}@bench.example")),
                );
                fields.insert("userId".into(), Value::String(format!("seed-{n}")));
                txn.insert_imported("users", None, None, fields)?;
            }
            Ok(())
        })?;
        from = to;
    }
    store.close()?;
    Ok(started.elapsed().as_secs_f64())
}

/// One blocking HTTP/1.1 request with the admin key (`Connection: close`); returns the status
/// and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).context("connecting to tickethub")?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Convex {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP head in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in the answer")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("unexpected chunked answer to {path}");
    }
    Ok((status, raw[split + 4..].to_vec()))
}

fn json(addr: SocketAddr, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
    let (status, bytes) = request(addr, "POST", path, body.to_string().as_bytes())?;
    if status != 200 {
        bail!("{path}: {status} {}", String::from_utf8_lossy(&bytes));
    }
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// Run an admin query and return its value.
fn query(addr: SocketAddr, path: &str, args: serde_json::Value) -> Result<serde_json::Value> {
    let answer = json(
        addr,
        "/api/query",
        serde_json::json!({"path": path, "args": args, "format": "json"}),
    )?;
    if answer["status"] != "success" {
        bail!("{path}: {answer}");
    }
    Ok(answer["value"].clone())
}

/// Poll `state_of` every 50 ms until it is one of `done`; fails on "failed".
fn wait_for(
    what: &str,
    done: &[&str],
    mut state_of: impl FnMut() -> Result<serde_json::Value>,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let row = state_of()?;
        let state = row["state"].as_str().unwrap_or_default().to_string();
        if done.contains(&state.as_str()) {
            return Ok(row);
        }
        if state == "failed" {
            bail!("{what} failed: {row}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not finish in an hour");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn quiet_start(
    bin: &Path,
    data: &Path,
    log: std::path::PathBuf,
) -> Result<(ServerProc, SocketAddr)> {
    let t = start_tickethub(bin, data, log)?;
    Ok((t.server, t.api))
}

pub fn run(bin: &Path, work: &Path, users: u64, command: String) -> Result<EximReport> {
    let root = work.join("export-import");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let source_dir = root.join("source");
    eprintln!("[bench] seeding {users} users through the store's bulk path");
    let seed_secs = seed(&source_dir, users)?;

    // ---- export
    let (source, addr) = quiet_start(bin, &source_dir, root.join("source.log"))?;
    let export_base = source.memory().rss_kib;
    source.reset_peak();
    eprintln!("[bench] exporting");
    let started = Instant::now();
    json(
        addr,
        "/api/export/request/zip?includeStorage=false",
        serde_json::json!({}),
    )?;
    let row = wait_for("the export", &["completed"], || {
        query(addr, "_system/cli/exports:getLatest", serde_json::json!({}))
    })?;
    let export_secs = started.elapsed().as_secs_f64();
    let export_peak = source.memory().hwm_kib;
    let ts = row["start_ts"]
        .as_str()
        .map(str::to_string)
        .or_else(|| row["start_ts"].as_u64().map(|n| n.to_string()))
        .context("no start_ts in the export row")?;
    let (status, zip) = request(addr, "GET", &format!("/api/export/zip/{ts}"), b"")?;
    if status != 200 {
        bail!("downloading the export: {status}");
    }
    drop(source);
    let zip_path = root.join("snapshot.zip");
    std::fs::write(&zip_path, &zip)?;
    let zip_mb = zip.len() as f64 / 1e6;

    // ---- import into an empty server
    let target_dir = root.join("target");
    std::fs::create_dir_all(&target_dir)?;
    let (target, addr) = quiet_start(bin, &target_dir, root.join("target.log"))?;
    let import_base = target.memory().rss_kib;
    eprintln!("[bench] uploading {zip_mb:.1} MB in parts");
    let started = Instant::now();
    let token = json(addr, "/api/import/start_upload", serde_json::json!({}))?["uploadToken"]
        .as_str()
        .context("no uploadToken")?
        .to_string();
    let mut parts = Vec::new();
    for (i, chunk) in zip.chunks(PART_BYTES).enumerate() {
        let (status, body) = request(
            addr,
            "POST",
            &format!(
                "/api/import/upload_part?uploadToken={token}&partNumber={}",
                i + 1
            ),
            chunk,
        )?;
        if status != 200 {
            bail!("upload_part: {status} {}", String::from_utf8_lossy(&body));
        }
        parts.push(serde_json::from_slice::<serde_json::Value>(&body)?);
    }
    let import_id = json(
        addr,
        "/api/import/finish_upload",
        serde_json::json!({"import": {"mode": "requireEmpty", "format": "zip"}, "uploadToken": token, "partTokens": parts}),
    )?["importId"]
        .as_str()
        .context("no importId")?
        .to_string();
    let upload_secs = started.elapsed().as_secs_f64();
    let import_state = || -> Result<serde_json::Value> {
        Ok(query(
            addr,
            "_system/cli/queryImport:default",
            serde_json::json!({"importId": import_id}),
        )?["state"]
            .clone())
    };
    let started = Instant::now();
    wait_for(
        "the import check",
        &["waiting_for_confirmation"],
        import_state,
    )?;
    let plan_secs = started.elapsed().as_secs_f64();
    target.reset_peak();
    eprintln!("[bench] importing");
    let started = Instant::now();
    json(
        addr,
        "/api/perform_import",
        serde_json::json!({"importId": import_id}),
    )?;
    let done = wait_for("the import", &["completed"], import_state)?;
    let import_secs = started.elapsed().as_secs_f64();
    let import_peak = target.memory().hwm_kib;
    let written = done["num_rows_written"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| done["num_rows_written"].as_u64())
        .unwrap_or(0);
    if written != users {
        bail!("the import wrote {written} documents, expected {users}");
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&root);
    Ok(EximReport {
        command,
        users,
        seed_secs,
        zip_mb,
        export_secs,
        export_docs_per_sec: users as f64 / export_secs,
        export_peak_rss_mib: mib(export_peak),
        export_base_rss_mib: mib(export_base),
        upload_secs,
        plan_secs,
        import_secs,
        import_docs_per_sec: users as f64 / import_secs,
        import_peak_rss_mib: mib(import_peak),
        import_base_rss_mib: mib(import_base),
        load_average: crate::suite::load_average(),
    })
}
