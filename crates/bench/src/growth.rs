//! `--growth`: how cost grows with data. Durable creates and point reads against tickethub with
//! `--growth-sizes` users already in `users` (seeded through the store API, as `prepare-users`
//! does, not over HTTP), each under wrk and under ours; and database bytes per user document
//! against PocketBase's for the same rows (`--growth-compare` users created over HTTP in both).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::procs::loopback;
use crate::report::{POCKETBASE, TICKETHUB};
use crate::servers::start_tickethub;
use crate::workloads::{Api, SeedIds};
use crate::wrk::{measure_both, Job, Point, Target, WrkSettings};

#[derive(Debug, Serialize)]
pub struct SizeRow {
    pub users: u64,
    pub seed_seconds: f64,
    pub points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct BytesRow {
    pub system: String,
    pub users: u64,
    /// Pages in use (page count less free pages) times the page size, after a checkpoint.
    pub used_bytes: u64,
    pub file_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct GrowthReport {
    pub command: String,
    pub unix_time: u64,
    pub machine: String,
    pub settings: String,
    pub sizes: Vec<SizeRow>,
    pub bytes: Vec<BytesRow>,
}

/// Checkpoint `db`'s WAL into it and measure it: (bytes in used pages, file bytes).
fn database_bytes(db: &Path) -> Result<(u64, u64)> {
    let conn =
        rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: u64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    drop(conn);
    Ok(((pages - free) * page_size, std::fs::metadata(db)?.len()))
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

pub async fn run(
    settings: &WrkSettings,
    sizes: &[u64],
    compare_users: u64,
    work: &Path,
    tickethub_bin: &Path,
    command: String,
) -> Result<GrowthReport> {
    let script = work.join("bench.lua");
    std::fs::write(&script, crate::wrk::SCRIPT)?;
    let mut report = GrowthReport {
        command,
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        machine: crate::suite::machine_summary(),
        settings: format!(
            "{} s per point at {:?} connections; sizes seeded through the store API; bytes compared on {compare_users} users created over HTTP in both",
            settings.seconds, settings.connections
        ),
        ..GrowthReport::default()
    };
    for &users in sizes {
        let dir = work.join(format!("growth-{users}"));
        fresh(&dir)?;
        eprintln!("[bench] seeding {users} users through the store API");
        let started = Instant::now();
        {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let store = crate::storage::store_open(&dir)?;
                crate::storage::store_load(&store, 0, users)?;
                store.close()?;
                Ok(())
            })
            .await??;
        }
        let seed_seconds = started.elapsed().as_secs_f64();
        // Measured now, while the table holds exactly `users` documents (the runs add more).
        let (used_bytes, file_bytes) = database_bytes(&dir.join("tickethub.sqlite3"))?;
        report.bytes.push(BytesRow {
            system: format!("{TICKETHUB} (loaded through the store API)"),
            users,
            used_bytes,
            file_bytes,
        });
        let th = start_tickethub(
            tickethub_bin,
            &dir,
            work.join(format!("growth-{users}.log")),
        )?;
        let seeded = Arc::new(SeedIds {
            count: users,
            ..SeedIds::default()
        });
        let target = Target::tickethub(TICKETHUB, &th);
        let mut points = Vec::new();
        for job in [Job::Create, Job::Read] {
            measure_both(settings, &script, &target, job, &seeded, None, &mut points).await?;
        }
        report.sizes.push(SizeRow {
            users,
            seed_seconds,
            points,
        });
    }

    eprintln!("[bench] bytes per user: {compare_users} users over HTTP in each");
    {
        let dir = work.join("growth-bytes-tickethub");
        fresh(&dir)?;
        let th = start_tickethub(tickethub_bin, &dir, work.join("growth-bytes-tickethub.log"))?;
        crate::suite::seed(th.api, Api::Convex { admin_key: None }, compare_users).await?;
        drop(th);
        let (used_bytes, file_bytes) = database_bytes(&dir.join("tickethub.sqlite3"))?;
        report.bytes.push(BytesRow {
            system: TICKETHUB.into(),
            users: compare_users,
            used_bytes,
            file_bytes,
        });
    }
    {
        let pocketbase_bin = crate::pocketbase::binary(work)?;
        let port = crate::procs::free_port()?;
        let data = work.join("growth-pb_data");
        let pb = crate::pocketbase::start(
            &pocketbase_bin,
            &data,
            port,
            work.join("growth-pocketbase.log"),
        )
        .await?;
        crate::suite::seed(loopback(port), Api::PocketBase, compare_users).await?;
        drop(pb);
        let (used_bytes, file_bytes) = database_bytes(&data.join("data.db"))?;
        report.bytes.push(BytesRow {
            system: POCKETBASE.into(),
            users: compare_users,
            used_bytes,
            file_bytes,
        });
    }
    Ok(report)
}

impl GrowthReport {
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::report::write_results(dir, "growth", self, Some(&self.markdown()))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Cost with data: `{}`\n", self.command);
        let _ = writeln!(md, "- machine: {}", self.machine);
        let _ = writeln!(md, "- settings: {}", self.settings);
        let _ = writeln!(md, "- unix time: {}\n", self.unix_time);
        let _ = writeln!(
            md,
            "| users already in `users` | seeded in s | generator | workload | conn. | req/s | p50 ms | p99 ms | errors | peak RSS MiB | ÷ smallest size |"
        );
        let _ = writeln!(md, "|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|");
        let first = self.sizes.first();
        for row in &self.sizes {
            for p in &row.points {
                let base = first.and_then(|f| {
                    f.points.iter().find(|b| {
                        b.generator == p.generator
                            && b.workload == p.workload
                            && b.connections == p.connections
                    })
                });
                let ratio = base
                    .filter(|b| b.throughput > 0.0)
                    .map(|b| format!("{:.2}×", p.throughput / b.throughput))
                    .unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {:.1} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {} |",
                    row.users,
                    row.seed_seconds,
                    p.generator,
                    p.workload,
                    p.connections,
                    p.throughput,
                    p.p50_us as f64 / 1000.0,
                    p.p99_us as f64 / 1000.0,
                    p.errors,
                    p.peak_rss_kib as f64 / 1024.0,
                    ratio
                );
            }
        }
        let _ = writeln!(
            md,
            "\nPeak RSS is VmHWM, which counts the pages of the database file that readers touched through their memory map (shared, file-backed, given back under memory pressure), not only the heap.\n"
        );
        let _ = writeln!(md, "## Database bytes per user document\n");
        let _ = writeln!(
            md,
            "Used pages × page size after a WAL checkpoint (file size in brackets), divided by the users in the table.\n"
        );
        let _ = writeln!(
            md,
            "| system | users | used bytes | bytes per user | file bytes |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for b in &self.bytes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {} |",
                b.system,
                b.users,
                b.used_bytes,
                b.used_bytes as f64 / b.users.max(1) as f64,
                b.file_bytes
            );
        }
        md
    }
}
