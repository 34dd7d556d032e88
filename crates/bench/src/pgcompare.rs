//! `--postgres`: tickethub on SQLite against tickethub on PostgreSQL, in one run, under wrk and
//! under our own generator (issue 14's targets).
//!
//! A throwaway cluster comes from `tests/pg-cluster start` (stopped and removed at the end, also
//! when the run fails). Two tickethub servers run side by side for the whole measurement: one on
//! a fresh SQLite data dir, one with `DATABASE_URL` on the cluster and a fresh
//! `DATABASE_SCHEMA`. Each cell (workload, connections, generator) measures them back to back,
//! so the machine's drifting load (it is shared) falls on both alike, and ratios are taken
//! within a cell only.
//!
//! Cells: durable user creates at every `--wrk-connections`, indexed point reads of seeded users
//! at the largest of them. Peak RSS is the server's VmHWM, reset before each point.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::report::{CREATE, READ};
use crate::servers::{start_tickethub_with, Tickethub};
use crate::suite::fresh_dir;
use crate::workloads::{Api, SeedIds};
use crate::wrk::{measure_ours, measure_wrk, Job, Point, Target, WrkSettings, OURS, WRK};

/// The two systems, as named in the results.
pub const ON_SQLITE: &str = "tickethub on SQLite";
pub const ON_POSTGRES: &str = "tickethub on Postgres";

/// Issue 14's targets.
pub const CREATE_TARGET_PER_SEC: f64 = 10_000.0;
pub const CREATE_TARGET_CONNECTIONS: usize = 64;
pub const READ_TARGET_SHARE: f64 = 0.5;

#[derive(Debug, Default, Serialize)]
pub struct PgReport {
    pub command: String,
    pub unix_time: u64,
    pub machine: String,
    pub wrk_version: String,
    pub postgres_version: String,
    pub settings: String,
    pub points: Vec<Point>,
}

/// The cluster made by `tests/pg-cluster start`; stopped and removed when dropped.
struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn start(dir: &Path) -> Result<Cluster> {
        let script = crate::procs::workspace_root()
            .join("tests")
            .join("pg-cluster");
        // A cluster left by an interrupted run is removed first (the script only removes
        // directories it made).
        let _ = Command::new(&script).arg("stop").arg(dir).status();
        let output = Command::new(&script)
            .arg("start")
            .arg(dir)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!(
                "tests/pg-cluster start failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let url = String::from_utf8(output.stdout)?.trim().to_string();
        Ok(Cluster {
            script,
            dir: dir.to_path_buf(),
            url,
        })
    }

    fn version(&self) -> String {
        Command::new("psql")
            .arg(&self.url)
            .args(["-XAtc", "SHOW server_version"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| format!("PostgreSQL {}", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|| "PostgreSQL (version unknown: psql missing)".into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

pub async fn run(
    settings: &WrkSettings,
    work: &Path,
    tickethub_bin: &Path,
    command: String,
) -> Result<PgReport> {
    let wrk_version = crate::wrk::wrk_version()?;
    let script = work.join("bench.lua");
    std::fs::write(&script, crate::wrk::SCRIPT)?;
    // Under /tmp: as root the cluster runs as `postgres`, which must reach its directory.
    let cluster = Cluster::start(
        &std::env::temp_dir().join(format!("tickethub-bench-pg-{}", std::process::id())),
    )?;
    let unix_time = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let read_connections = settings.connections.iter().copied().max().unwrap_or(64);
    let mut report = PgReport {
        command,
        unix_time,
        machine: crate::suite::machine_summary(),
        wrk_version,
        postgres_version: cluster.version(),
        settings: format!(
            "{} s per point; creates at connections {:?}, point reads at {read_connections}; {} seeded users; wrk -t{} with bench/scripts/bench.lua; ours: tokio + hyper keep-alive, 0.5 s warm-up, checks every body; both servers run side by side and each cell measures them back to back; Postgres: a throwaway cluster from tests/pg-cluster (fsync and synchronous_commit on, the defaults), a fresh schema per run",
            settings.seconds, settings.connections, settings.seed_users, settings.wrk_threads
        ),
        points: Vec::new(),
    };

    eprintln!("[bench] starting tickethub on SQLite and on Postgres");
    let sqlite_data = fresh_dir(&work.join("pg-sqlite-data"))?;
    let sqlite =
        start_tickethub_with(tickethub_bin, &sqlite_data, work.join("pg-sqlite.log"), &[])?;
    let pg_data = fresh_dir(&work.join("pg-postgres-data"))?;
    let schema = format!("bench_{unix_time}");
    let postgres = start_tickethub_with(
        tickethub_bin,
        &pg_data,
        work.join("pg-postgres.log"),
        &[
            ("DATABASE_URL", cluster.url.as_str()),
            ("DATABASE_SCHEMA", schema.as_str()),
        ],
    )?;
    eprintln!("[bench] seeding {} users in each", settings.seed_users);
    let seeded_sqlite = seed(&sqlite, settings.seed_users).await?;
    let seeded_pg = seed(&postgres, settings.seed_users).await?;
    let targets = [
        (Target::tickethub(ON_SQLITE, &sqlite), seeded_sqlite),
        (Target::tickethub(ON_POSTGRES, &postgres), seeded_pg),
    ];
    let mut cells: Vec<(Job, usize)> = settings
        .connections
        .iter()
        .map(|&c| (Job::Create, c))
        .collect();
    cells.push((Job::Read, read_connections));
    for (job, connections) in cells {
        for generator in [WRK, OURS] {
            for (target, seeded) in &targets {
                let point = if generator == WRK {
                    measure_wrk(settings, &script, target, job, seeded, None, connections).await?
                } else {
                    measure_ours(settings, target, job, seeded, connections).await
                };
                report.points.push(point);
            }
        }
    }
    drop(postgres);
    drop(sqlite);
    drop(cluster);
    Ok(report)
}

async fn seed(th: &Tickethub, users: u64) -> Result<Arc<SeedIds>> {
    crate::suite::seed(th.api, Api::Convex { admin_key: None }, users).await
}

impl PgReport {
    fn find(&self, generator: &str, system: &str, workload: &str, c: usize) -> Option<&Point> {
        self.points.iter().find(|p| {
            p.generator == generator
                && p.system == system
                && p.workload == workload
                && p.connections == c
        })
    }

    fn peak_rss_mib(&self, system: &str) -> f64 {
        self.points
            .iter()
            .filter(|p| p.system == system)
            .map(|p| p.peak_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::report::write_results(dir, "postgres-run", self, Some(&self.markdown()))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# tickethub on SQLite and on Postgres: `{}`\n",
            self.command
        );
        let _ = writeln!(md, "- machine: {}", self.machine);
        let _ = writeln!(md, "- {}; {}", self.postgres_version, self.wrk_version);
        let _ = writeln!(md, "- settings: {}", self.settings);
        let _ = writeln!(md, "- unix time: {}\n", self.unix_time);
        let _ = writeln!(
            md,
            "The machine is shared (2 cores, other builds and benchmarks running): absolute figures drift between runs, which is why both columns come from the same run, measured back to back per cell. Ratios are within one cell.\n"
        );
        let _ = writeln!(
            md,
            "| generator | workload | conn. | SQLite req/s | Postgres req/s | Postgres ÷ SQLite | SQLite p50 / p99 ms | Postgres p50 / p99 ms | errors (SQLite / Postgres) |"
        );
        let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|");
        let mut seen = Vec::new();
        for p in &self.points {
            let key = (p.generator.clone(), p.workload.clone(), p.connections);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let (Some(lite), Some(pg)) = (
                self.find(&p.generator, ON_SQLITE, &p.workload, p.connections),
                self.find(&p.generator, ON_POSTGRES, &p.workload, p.connections),
            ) else {
                continue;
            };
            let ratio = if lite.throughput > 0.0 {
                format!("{:.0}%", pg.throughput / lite.throughput * 100.0)
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} |",
                p.generator,
                p.workload,
                p.connections,
                lite.throughput,
                pg.throughput,
                ratio,
                lite.p50_us as f64 / 1000.0,
                lite.p99_us as f64 / 1000.0,
                pg.p50_us as f64 / 1000.0,
                pg.p99_us as f64 / 1000.0,
                lite.errors,
                pg.errors,
            );
        }
        let _ = writeln!(md, "\n## Against issue 14's targets\n");
        for generator in [WRK, OURS] {
            if let Some(pg) = self.find(generator, ON_POSTGRES, CREATE, CREATE_TARGET_CONNECTIONS) {
                let _ = writeln!(
                    md,
                    "- {generator}: Postgres durable creates at {CREATE_TARGET_CONNECTIONS} connections: {:.0}/s against the target of {:.0}/s ({}).",
                    pg.throughput,
                    CREATE_TARGET_PER_SEC,
                    met(pg.throughput >= CREATE_TARGET_PER_SEC)
                );
            }
            let reads = self.points.iter().find(|p| {
                p.generator == generator && p.system == ON_POSTGRES && p.workload == READ
            });
            if let Some(pg) = reads {
                if let Some(lite) = self.find(generator, ON_SQLITE, READ, pg.connections) {
                    let share = pg.throughput / lite.throughput.max(1e-9);
                    let _ = writeln!(
                        md,
                        "- {generator}: Postgres point reads at {} connections: {:.0}% of SQLite's ({:.0} against {:.0}/s; target ≥ {:.0}%, {}).",
                        pg.connections,
                        share * 100.0,
                        pg.throughput,
                        lite.throughput,
                        READ_TARGET_SHARE * 100.0,
                        met(share >= READ_TARGET_SHARE)
                    );
                }
            }
        }
        let _ = writeln!(
            md,
            "- Peak RSS of tickethub (VmHWM, the largest over its points): {:.1} MiB on SQLite, {:.1} MiB on Postgres (the Postgres server's own memory is not counted).",
            self.peak_rss_mib(ON_SQLITE),
            self.peak_rss_mib(ON_POSTGRES)
        );
        md
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}
