//! `--backup`: `tickethub backup` of a ~1 GB database while the server serves durable creates.
//!
//! The data dir is prepared once (kept in the work dir; about 1 GiB of users with ~1 KiB names,
//! written through the store itself) and served by the real binary. The load generator sends
//! durable creates (`users:updateUser` of a new user, over the Convex RPC) in one-second slices: some before the
//! backup, every slice that lies wholly inside the backup's run, some after it. The figure is
//! creates/s during the backup as a share of creates/s before it, in the same run (target ≥ 70%).
//! The slices after are shown too but are not the baseline: while the backup holds its snapshot
//! the WAL cannot be reset, so right after it the server checkpoints the WAL that grew meanwhile,
//! and creates are slower for a while.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tickethub_store::{Store, StoreError, StoreOptions, DB_FILE};
use tickethub_value::{Object, Value};

use crate::loadgen::{self, LoadSpec};
use crate::servers::start_tickethub;
use crate::storage::app_schema;
use crate::workloads::{Api, Mix, SeedIds, UsersWorkload};

/// The database size the target names.
const TARGET_BYTES: u64 = 1 << 30;
/// Users per loading transaction (below the 16,000 documents a transaction may write).
const LOAD_BATCH: u64 = 5_000;
/// Characters of each preloaded user's name: ~1 KiB documents.
const NAME_CHARS: usize = 1_000;
const SLICE: Duration = Duration::from_secs(1);
const SLICES_BEFORE: usize = 8;
const SLICES_AFTER: usize = 8;
const CONNECTIONS: usize = 64;
const TARGET_RATIO: f64 = 0.70;

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub command: String,
    pub database_bytes: u64,
    pub backup_seconds: f64,
    pub backup_output: String,
    pub creates_per_s_before: f64,
    pub creates_per_s_during: f64,
    pub creates_per_s_after: f64,
    /// During ÷ before.
    pub ratio: f64,
    /// During ÷ after (after is depressed by the checkpoint of the WAL the backup held back).
    pub ratio_to_after: f64,
    pub slices_during: usize,
    pub errors: u64,
    pub target_met: bool,
    pub load_average: String,
    pub knobs: String,
}

impl BackupReport {
    pub fn markdown(&self) -> String {
        format!(
            "# Online backup under write load\n\n`{}`\n\n\
             A {:.2} GB database (`users` with ~1 KiB names, written through the store), served by \
             the release binary; `tickethub backup` copies it while {CONNECTIONS} keep-alive \
             connections send durable creates (`users:updateUser` of a new user, Convex RPC). Creates are counted \
             in {}-second slices; only slices wholly inside the backup count as \"during\".\n\n\
             | phase | creates/s |\n|---|---:|\n\
             | before the backup ({SLICES_BEFORE} slices) | {:.0} |\n\
             | during the backup ({} slices, backup took {:.1} s) | {:.0} |\n\
             | after the backup ({SLICES_AFTER} slices) | {:.0} |\n\n\
             During the backup: **{:.0}%** of the creates/s before it (target ≥ {:.0}%: {}); \
             {:.0}% of those after it. After the backup the server checkpoints the WAL that grew \
             while the backup held its snapshot (the WAL cannot be reset under an open reader), \
             which is why the slices after it are slower. Failed requests: {}. Knobs: {}. Load \
             average at the end (other work shares this 2-core machine): {}.\n\n\
             The backup's own report: `{}`\n",
            self.command,
            self.database_bytes as f64 / 1e9,
            SLICE.as_secs(),
            self.creates_per_s_before,
            self.slices_during,
            self.backup_seconds,
            self.creates_per_s_during,
            self.creates_per_s_after,
            self.ratio * 100.0,
            TARGET_RATIO * 100.0,
            if self.target_met { "met" } else { "NOT met" },
            self.ratio_to_after * 100.0,
            self.errors,
            self.knobs,
            self.load_average,
            self.backup_output.trim(),
        )
    }
}

/// A data dir of at least [`TARGET_BYTES`], made once and reused by later runs.
fn prepare(dir: &Path) -> Result<u64> {
    let db = dir.join(DB_FILE);
    if let Ok(meta) = std::fs::metadata(&db) {
        if meta.len() >= TARGET_BYTES {
            eprintln!("[bench] reusing {} ({} bytes)", dir.display(), meta.len());
            return Ok(meta.len());
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "[bench] preparing a ~1 GiB database in {} ...",
        dir.display()
    );
    let started = Instant::now();
    let store = Store::open(
        dir,
        app_schema()?,
        StoreOptions {
            durable: false,
            ..StoreOptions::default()
        },
    )?;
    let name: Arc<str> = "n".repeat(NAME_CHARS).into();
    let mut next = 0u64;
    while store.disk_bytes() < TARGET_BYTES {
        let from = next;
        let name = name.clone();
        store.mutate(move |txn| -> Result<(), StoreError> {
            for n in from..from + LOAD_BATCH {
                let user_id = format!("backup-seed-{n}");
                let mut fields = Object::new();
                fields.insert("name".into(), Value::String(format!("{name} {n}")));
                fields.insert(
                    "email".into(),
                    Value::String(format!("{user_id}@bench.example")),
                );
                fields.insert("userId".into(), Value::String(user_id));
                txn.insert("users", fields)?;
            }
            Ok(())
        })?;
        next += LOAD_BATCH;
    }
    store.close()?;
    drop(store);
    let bytes = std::fs::metadata(&db)?.len();
    eprintln!(
        "[bench] prepared {next} users, {bytes} bytes in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(bytes)
}

async fn slice(addr: std::net::SocketAddr, workload: Arc<UsersWorkload>) -> loadgen::LoadResult {
    let spec = LoadSpec {
        addr,
        connections: CONNECTIONS,
        warmup: Duration::ZERO,
        measure: SLICE,
    };
    loadgen::run(&spec, workload).await
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

pub async fn run(bin: &Path, work: &Path, command: String) -> Result<BackupReport> {
    let data = work.join("backup-1g").join("data");
    let database_bytes = tokio::task::spawn_blocking({
        let data = data.clone();
        move || prepare(&data)
    })
    .await??;
    let server = start_tickethub(bin, &data, work.join("backup-tickethub.log"))?;
    let workload = Arc::new(UsersWorkload::new(
        Api::Convex { admin_key: None },
        Mix::Create,
        &format!("backup-{}", std::process::id()),
        Arc::new(SeedIds::default()),
    ));
    let mut errors = 0u64;
    // Warm-up: connections, caches.
    let _ = slice(server.api, workload.clone()).await;

    let mut before = Vec::new();
    for _ in 0..SLICES_BEFORE {
        let r = slice(server.api, workload.clone()).await;
        errors += r.errors.connection + r.errors.rejected;
        before.push(r.throughput());
    }

    let target: PathBuf = work.join(format!("backup-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    let backup_started = Instant::now();
    let mut child: Child = Command::new(bin)
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg("--to")
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tickethub backup")?;
    let mut during = Vec::new();
    loop {
        let r = slice(server.api, workload.clone()).await;
        errors += r.errors.connection + r.errors.rejected;
        if child.try_wait()?.is_some() {
            break; // this slice overlapped the backup's end: not counted
        }
        during.push(r.throughput());
    }
    let backup_seconds = backup_started.elapsed().as_secs_f64();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "tickethub backup failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut after = Vec::new();
    for _ in 0..SLICES_AFTER {
        let r = slice(server.api, workload.clone()).await;
        errors += r.errors.connection + r.errors.rejected;
        after.push(r.throughput());
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&target);

    let (b, d, a) = (mean(&before), mean(&during), mean(&after));
    let ratio = d / b.max(1e-9);
    Ok(BackupReport {
        command,
        database_bytes,
        backup_seconds,
        backup_output: String::from_utf8_lossy(&output.stdout).into_owned(),
        creates_per_s_before: b,
        creates_per_s_during: d,
        creates_per_s_after: a,
        ratio,
        ratio_to_after: d / a.max(1e-9),
        slices_during: during.len(),
        errors,
        target_met: ratio >= TARGET_RATIO && !during.is_empty(),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        knobs: format!(
            "BACKUP_STEP_PAGES={}, BACKUP_STEP_PAUSE={} ms",
            std::env::var("TICKETHUB_BACKUP_STEP_PAGES")
                .unwrap_or_else(|_| "1024 (default)".into()),
            std::env::var("TICKETHUB_BACKUP_STEP_PAUSE").unwrap_or_else(|_| "10 (default)".into()),
        ),
    })
}
