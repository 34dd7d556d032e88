//! `--files`: file storage throughput. A 100 MB file is uploaded to tickethub through an upload
//! URL and downloaded from its file URL over loopback, and the same disk's raw copy speed (read
//! and write through user space in 1 MiB pieces, then fsync, as an upload does) is measured in
//! the same run. The figures are the ratios upload / copy and download / copy (target ≥ 50%).
//!
//! Each upload gets a fresh token and slightly different bytes (so no upload is answered by
//! deduplication alone); the best of [`RUNS`] is kept for each figure, copy included.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use rand::RngCore;
use serde::Serialize;

use crate::servers::{start_tickethub, ADMIN_KEY};

const FILE_BYTES: usize = 100 * 1024 * 1024;
const PIECE_BYTES: usize = 1024 * 1024;
const RUNS: usize = 5;

#[derive(Debug, Serialize)]
pub struct FilesReport {
    pub command: String,
    pub file_mb: f64,
    pub copy_mb_s: f64,
    pub upload_mb_s: f64,
    pub download_mb_s: f64,
    pub upload_ratio: f64,
    pub download_ratio: f64,
    pub target_met: bool,
    /// The machine's load average when the run ended (other work skews every figure).
    pub load_average: String,
}

impl FilesReport {
    pub fn markdown(&self) -> String {
        format!(
            "# File storage throughput\n\n`{}`\n\n| what ({:.0} MB, best of {RUNS}) | MB/s | of raw copy |\n|---|---:|---:|\n\
             | raw copy on the same disk (read, write, fsync) | {:.0} | 100% |\n\
             | upload (POST to an upload URL, loopback) | {:.0} | {:.0}% |\n\
             | download (GET the file URL, loopback) | {:.0} | {:.0}% |\n\n\
             Target: both at least 50% of the raw copy: {}. Load average at the end: {}.\n",
            self.command,
            self.file_mb,
            self.copy_mb_s,
            self.upload_mb_s,
            self.upload_ratio * 100.0,
            self.download_mb_s,
            self.download_ratio * 100.0,
            if self.target_met { "met" } else { "NOT met" },
            self.load_average,
        )
    }
}

fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

/// Copy `from` to `to` through a 1 MiB buffer and fsync: what an upload does to the disk.
fn raw_copy(from: &Path, to: &Path) -> Result<f64> {
    let started = Instant::now();
    let mut input = std::fs::File::open(from)?;
    let mut output = std::fs::File::create(to)?;
    let mut buf = vec![0u8; PIECE_BYTES];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(to)?;
    Ok(seconds)
}

async fn connect(
    addr: SocketAddr,
) -> Result<
    hyper::client::conn::http1::SendRequest<
        http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
    >,
> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn full(bytes: Vec<u8>) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// Call a mutation as admin; returns its value.
async fn mutation(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let mut sender = connect(addr).await?;
    let body = serde_json::json!({ "path": path, "args": [{}], "format": "json" }).to_string();
    let request = hyper::Request::post(format!("http://{addr}/api/mutation"))
        .header("content-type", "application/json")
        .header("authorization", format!("Convex {ADMIN_KEY}"))
        .body(full(body.into_bytes()))?;
    let response = sender.send_request(request).await?;
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    if value["status"] != "success" {
        bail!("{path} failed: {value}");
    }
    Ok(value["value"].clone())
}

async fn query(addr: SocketAddr, path: &str, args: serde_json::Value) -> Result<serde_json::Value> {
    let mut sender = connect(addr).await?;
    let body = serde_json::json!({ "path": path, "args": [args], "format": "json" }).to_string();
    let request = hyper::Request::post(format!("http://{addr}/api/query"))
        .header("content-type", "application/json")
        .header("authorization", format!("Convex {ADMIN_KEY}"))
        .body(full(body.into_bytes()))?;
    let response = sender.send_request(request).await?;
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(value["value"].clone())
}

/// Upload `file` (its first bytes replaced by `run`, so each upload is new content); returns
/// the seconds until the answer and the storage id.
async fn upload(addr: SocketAddr, file: &Path, run: usize) -> Result<(f64, String)> {
    let url = mutation(addr, "storage:generateUploadUrl").await?;
    let url = url
        .as_str()
        .context("generateUploadUrl returned no string")?;
    let path_and_query = url
        .split_once("/api/")
        .map(|(_, rest)| format!("/api/{rest}"))
        .context("the upload URL has no /api/ path")?;
    let mut input = std::fs::File::open(file)?;
    let mut first = true;
    let pieces = futures_util::stream::poll_fn(move |_| {
        let mut buf = vec![0u8; PIECE_BYTES];
        match input.read(&mut buf) {
            Ok(0) => std::task::Poll::Ready(None),
            Ok(n) => {
                buf.truncate(n);
                if first {
                    buf[..8].copy_from_slice(&(run as u64).to_le_bytes());
                    first = false;
                }
                std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Err(e) => std::task::Poll::Ready(Some(Err(e))),
        }
    });
    let mut sender = connect(addr).await?;
    let request = hyper::Request::post(format!("http://{addr}{path_and_query}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", FILE_BYTES)
        .body(StreamBody::new(pieces).boxed())?;
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let seconds = started.elapsed().as_secs_f64();
    if !status.is_success() {
        bail!(
            "upload failed: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    let id = value["storageId"]
        .as_str()
        .context("no storageId in the upload's answer")?
        .to_string();
    Ok((seconds, id))
}

/// Download the file and count its bytes; returns the seconds taken.
async fn download(addr: SocketAddr, storage_id: &str) -> Result<f64> {
    let url = query(
        addr,
        "storage:getUrl",
        serde_json::json!({ "storageId": storage_id }),
    )
    .await?;
    let url = url.as_str().context("getUrl returned no URL")?;
    let path = url
        .split_once("/api/")
        .map(|(_, rest)| format!("/api/{rest}"))
        .context("the file URL has no /api/ path")?;
    let mut sender = connect(addr).await?;
    let request = hyper::Request::get(format!("http://{addr}{path}")).body(full(Vec::new()))?;
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            received += data.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if received != FILE_BYTES {
        bail!("downloaded {received} bytes, expected {FILE_BYTES}");
    }
    Ok(seconds)
}

pub async fn run(bin: &Path, work: &Path, command: String) -> Result<FilesReport> {
    let dir = work.join("files");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source.bin");
    {
        let mut bytes = vec![0u8; FILE_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        std::fs::write(&source, &bytes)?;
    }
    let data = dir.join("data");
    let server = start_tickethub(bin, &data, dir.join("tickethub.log"))?;
    let addr = server.api;

    let mut copy = f64::MAX;
    let mut up = f64::MAX;
    let mut down = f64::MAX;
    let copy_target: PathBuf = dir.join("copy.bin");
    for run in 0..RUNS {
        copy = copy.min(tokio::task::block_in_place(|| {
            raw_copy(&source, &copy_target)
        })?);
        let (seconds, id) = upload(addr, &source, run).await?;
        up = up.min(seconds);
        down = down.min(download(addr, &id).await?);
        eprintln!("[bench] files run {run}: copy, upload and download done");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let copy_mb_s = mb_per_s(FILE_BYTES, copy);
    let upload_mb_s = mb_per_s(FILE_BYTES, up);
    let download_mb_s = mb_per_s(FILE_BYTES, down);
    let upload_ratio = upload_mb_s / copy_mb_s;
    let download_ratio = download_mb_s / copy_mb_s;
    Ok(FilesReport {
        command,
        file_mb: FILE_BYTES as f64 / 1e6,
        copy_mb_s,
        upload_mb_s,
        download_mb_s,
        upload_ratio,
        download_ratio,
        target_met: upload_ratio >= 0.5 && download_ratio >= 0.5,
        load_average: crate::suite::load_average(),
    })
}
