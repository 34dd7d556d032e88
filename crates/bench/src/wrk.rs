//! `--wrk`: the same servers under two load generators in one run, so a result never rests on
//! our own generator alone. Debian's `wrk` (an independent C generator, Lua-scripted bodies)
//! and this crate's [`crate::loadgen`] each drive tickethub, PocketBase and the bare hyper
//! server at every connection count of `--wrk-connections`, for durable user creates and indexed
//! point reads of seeded users; tickethub's signed Clerk webhook deliveries are measured by both
//! too (wrk replays deliveries signed beforehand, one fresh Svix id each).
//!
//! Ratios are always taken within one generator: tickethub under wrk against PocketBase and
//! hyper under wrk, never across generators.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::loadgen::{self, LoadSpec};
use crate::procs::{loopback, ServerProc};
use crate::report::{CREATE, HYPER, POCKETBASE, READ, TICKETHUB, WEBHOOK};
use crate::servers::{start_hello, start_tickethub, Tickethub};
use crate::suite::fresh_dir;
use crate::workloads::{clerk_user_created, Api, Mix, SeedIds, UsersWorkload, WEBHOOK_SECRET};

/// The two generators, as named in the results.
pub const WRK: &str = "wrk";
pub const OURS: &str = "bench loadgen";

/// What `--wrk` runs.
#[derive(Clone, Debug)]
pub struct WrkSettings {
    pub seconds: u64,
    pub connections: Vec<usize>,
    /// Users seeded before the reads (`seed-0 ..`).
    pub seed_users: u64,
    /// wrk's threads (`-t`); ours runs on `--client-threads`.
    pub wrk_threads: usize,
    /// Measure signed Clerk webhook deliveries too.
    pub webhooks: bool,
}

/// One measured point.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub generator: String,
    pub system: String,
    pub workload: String,
    pub connections: usize,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Requests the generator counted as failed (connect/read/write/timeout, or a non-2xx
    /// status for wrk; any rejected answer for ours).
    pub errors: u64,
    /// VmHWM of the server during this point (reset before it).
    pub peak_rss_kib: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct WrkReport {
    pub command: String,
    pub unix_time: u64,
    pub machine: String,
    pub wrk_version: String,
    pub settings: String,
    pub points: Vec<Point>,
}

/// The Lua script wrk runs (see its header for its arguments).
pub(crate) const SCRIPT: &str = include_str!("../../../bench/scripts/bench.lua");

/// Which peer's dialect a wrk run speaks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dialect {
    Convex,
    PocketBase,
}

impl Dialect {
    fn lua(self) -> &'static str {
        match self {
            Dialect::Convex => "convex",
            Dialect::PocketBase => "pocketbase",
        }
    }
}

/// Which workload a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    Create,
    Read,
    Webhook,
}

impl Job {
    fn lua(self) -> &'static str {
        match self {
            Job::Create => "create",
            Job::Read => "read",
            Job::Webhook => "webhook",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Job::Create => CREATE,
            Job::Read => READ,
            Job::Webhook => WEBHOOK,
        }
    }
}

/// What one wrk run printed on its `WRK_RESULT` line.
struct WrkOutcome {
    requests: u64,
    duration_us: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
}

fn parse_outcome(stdout: &str) -> Result<WrkOutcome> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_RESULT "))
        .with_context(|| format!("wrk printed no result line:\n{stdout}"))?;
    let numbers = line
        .split_whitespace()
        .map(str::parse::<f64>)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("wrk result line {line:?}"))?;
    let [requests, duration_us, errors, p50, p99] = numbers[..] else {
        bail!(
            "wrk result line {line:?} has {} fields, not 5",
            numbers.len()
        );
    };
    Ok(WrkOutcome {
        requests: requests as u64,
        duration_us: duration_us as u64,
        errors: errors as u64,
        p50_us: p50 as u64,
        p99_us: p99 as u64,
    })
}

/// One wrk invocation against `addr`.
struct WrkRun<'a> {
    script: &'a Path,
    addr: SocketAddr,
    connections: usize,
    threads: usize,
    seconds: u64,
    dialect: Dialect,
    job: Job,
    tag: String,
    seeds: u64,
    deliveries: Option<&'a Path>,
}

async fn run_wrk(run: WrkRun<'_>) -> Result<WrkOutcome> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", run.threads.min(run.connections)))
        .arg(format!("-c{}", run.connections))
        .arg(format!("-d{}s", run.seconds))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(run.script)
        .arg(format!("http://{}", run.addr))
        .arg("--")
        .arg(run.dialect.lua())
        .arg(run.job.lua())
        .arg(&run.tag)
        .arg(run.seeds.max(1).to_string())
        .arg(
            run.deliveries
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running wrk (apt-get install -y wrk)")?;
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_outcome(&String::from_utf8_lossy(&output.stdout))
}

/// Write `count` signed Clerk `user.created` deliveries per wrk thread, each with its own user
/// and Svix id, into `<path>.<thread>`.
fn write_deliveries(path: &Path, tag: &str, threads: usize, count: u64) -> Result<()> {
    let webhook = svix::webhooks::Webhook::new(WEBHOOK_SECRET)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    for thread in 0..threads {
        let file = std::fs::File::create(format!("{}.{thread}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for n in 0..count {
            let clerk_id = format!("user_{tag}_{thread}_{n}");
            let body = clerk_user_created(&clerk_id, n, now.as_millis() as u64);
            let msg_id = format!("msg_{tag}_{thread}_{n}");
            let timestamp = now.as_secs() as i64;
            let signature = webhook.sign(&msg_id, timestamp, body.as_bytes())?;
            writeln!(out, "{msg_id}\t{timestamp}\t{signature}\t{body}")?;
        }
        out.flush()?;
    }
    Ok(())
}

pub(crate) struct Target<'a> {
    pub(crate) system: &'static str,
    pub(crate) server: &'a ServerProc,
    pub(crate) addr: SocketAddr,
    pub(crate) dialect: Dialect,
}

impl<'a> Target<'a> {
    /// A tickethub server's API, named `system` in the figures.
    pub(crate) fn tickethub(system: &'static str, th: &'a Tickethub) -> Target<'a> {
        Target {
            system,
            server: &th.server,
            addr: th.api,
            dialect: Dialect::Convex,
        }
    }
}

/// Run `job` on `target` at every connection count, under wrk and then under ours.
pub(crate) async fn measure_both(
    settings: &WrkSettings,
    script: &Path,
    target: &Target<'_>,
    job: Job,
    seeded: &Arc<SeedIds>,
    deliveries: Option<&Path>,
    points: &mut Vec<Point>,
) -> Result<()> {
    for &connections in &settings.connections {
        let point = measure_wrk(
            settings,
            script,
            target,
            job,
            seeded,
            deliveries,
            connections,
        )
        .await?;
        points.push(point);
        points.push(measure_ours(settings, target, job, seeded, connections).await);
    }
    Ok(())
}

/// One wrk point of `job` on `target`.
pub(crate) async fn measure_wrk(
    settings: &WrkSettings,
    script: &Path,
    target: &Target<'_>,
    job: Job,
    seeded: &Arc<SeedIds>,
    deliveries: Option<&Path>,
    connections: usize,
) -> Result<Point> {
    target.server.reset_peak();
    let tag = format!("w{connections}{}", job.lua());
    let deliveries = deliveries.map(|p| p.with_extension(format!("c{connections}")));
    let outcome = run_wrk(WrkRun {
        script,
        addr: target.addr,
        connections,
        threads: settings.wrk_threads,
        seconds: settings.seconds,
        dialect: target.dialect,
        job,
        tag,
        seeds: seeded.count,
        deliveries: deliveries.as_deref(),
    })
    .await?;
    let point = Point {
        generator: WRK.into(),
        system: target.system.into(),
        workload: job.name().into(),
        connections,
        throughput: outcome.requests as f64 / (outcome.duration_us.max(1) as f64 / 1e6),
        p50_us: outcome.p50_us,
        p99_us: outcome.p99_us,
        errors: outcome.errors,
        peak_rss_kib: target.server.memory().hwm_kib,
    };
    print_point(&point);
    Ok(point)
}

/// One point of `job` on `target` under our own generator (which also checks every answer's
/// body, where wrk counts only non-2xx statuses).
pub(crate) async fn measure_ours(
    settings: &WrkSettings,
    target: &Target<'_>,
    job: Job,
    seeded: &Arc<SeedIds>,
    connections: usize,
) -> Point {
    target.server.reset_peak();
    let api = match target.dialect {
        Dialect::Convex if target.system == HYPER => Api::Hello,
        Dialect::Convex => Api::Convex { admin_key: None },
        Dialect::PocketBase => Api::PocketBase,
    };
    let mix = match job {
        Job::Create => Mix::Create,
        Job::Read => Mix::Read,
        Job::Webhook => Mix::Webhook,
    };
    let ours = format!("o{connections}{}", job.lua());
    let workload = Arc::new(UsersWorkload::new(api, mix, &ours, seeded.clone()));
    let spec = LoadSpec {
        addr: target.addr,
        connections,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(settings.seconds),
    };
    let result = loadgen::run(&spec, workload).await;
    let point = Point {
        generator: OURS.into(),
        system: target.system.into(),
        workload: job.name().into(),
        connections,
        throughput: result.throughput(),
        p50_us: result.p50_us(),
        p99_us: result.p99_us(),
        errors: result.errors.connection + result.errors.rejected,
        peak_rss_kib: target.server.memory().hwm_kib,
    };
    print_point(&point);
    point
}

fn print_point(p: &Point) {
    eprintln!(
        "[bench] {:<13} {:<12} {:<36} c={:<3} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  peak RSS {:.1} MiB",
        p.generator,
        p.system,
        p.workload,
        p.connections,
        p.throughput,
        p.p50_us as f64 / 1000.0,
        p.p99_us as f64 / 1000.0,
        p.errors,
        p.peak_rss_kib as f64 / 1024.0
    );
}

/// `wrk -v`'s first line; an error that says how to install wrk when it is missing.
pub(crate) fn wrk_version() -> Result<String> {
    Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .context("wrk is missing: apt-get install -y wrk")
}

/// The whole `--wrk` run.
pub async fn run(
    settings: &WrkSettings,
    work: &Path,
    tickethub_bin: &Path,
    command: String,
) -> Result<WrkReport> {
    let wrk_version = wrk_version()?;
    let script = work.join("bench.lua");
    std::fs::write(&script, SCRIPT)?;
    let mut report = WrkReport {
        command,
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        machine: crate::suite::machine_summary(),
        wrk_version,
        settings: format!(
            "{} s per point; connections {:?}; {} seeded users; wrk -t{} with bench/scripts/bench.lua (counts non-2xx as errors); ours: tokio + hyper keep-alive, 0.5 s warm-up, checks every body; the three servers run side by side and each cell measures them back to back",
            settings.seconds, settings.connections, settings.seed_users, settings.wrk_threads
        ),
        points: Vec::new(),
    };
    let no_seeds = Arc::new(SeedIds::default());

    // All three servers run for the whole measurement, and each (workload, connections,
    // generator) cell measures them back to back, so the machine's drifting load falls on all of
    // them alike rather than on whichever was measured last.
    eprintln!("[bench] starting hyper hello, tickethub and PocketBase");
    let hello = start_hello(work.join("hello.log"))?;
    let data = fresh_dir(&work.join("wrk-tickethub-data"))?;
    let th = start_tickethub(tickethub_bin, &data, work.join("wrk-tickethub.log"))?;
    let pocketbase_bin = crate::pocketbase::binary(work)?;
    let pb_port = crate::procs::free_port()?;
    let pb = crate::pocketbase::start(
        &pocketbase_bin,
        &work.join("wrk-pb_data"),
        pb_port,
        work.join("wrk-pocketbase.log"),
    )
    .await?;
    eprintln!("[bench] seeding {} users in each", settings.seed_users);
    let th_seeded =
        crate::suite::seed(th.api, Api::Convex { admin_key: None }, settings.seed_users).await?;
    let pb_seeded =
        crate::suite::seed(loopback(pb_port), Api::PocketBase, settings.seed_users).await?;
    let hello_seeds = Arc::new(SeedIds {
        count: settings.seed_users,
        ..SeedIds::default()
    });
    let targets = [
        (Target::tickethub(TICKETHUB, &th), th_seeded),
        (
            Target {
                system: POCKETBASE,
                server: &pb,
                addr: loopback(pb_port),
                dialect: Dialect::PocketBase,
            },
            pb_seeded,
        ),
        (
            Target {
                system: HYPER,
                server: &hello,
                addr: hello.launch.ready_addr,
                dialect: Dialect::Convex,
            },
            hello_seeds,
        ),
    ];
    for job in [Job::Create, Job::Read] {
        for &connections in &settings.connections {
            for generator in [WRK, OURS] {
                for (target, seeded) in &targets {
                    // The hello server answers every request alike: one point per cell.
                    if target.system == HYPER && job != Job::Read {
                        continue;
                    }
                    let point = if generator == WRK {
                        measure_wrk(settings, &script, target, job, seeded, None, connections)
                            .await?
                    } else {
                        measure_ours(settings, target, job, seeded, connections).await
                    };
                    report.points.push(point);
                }
            }
        }
    }
    drop(pb);
    drop(hello);
    if settings.webhooks {
        // Enough signed deliveries for 20,000/s per run, split over wrk's threads.
        let per_thread = 20_000 * settings.seconds / settings.wrk_threads.max(1) as u64 + 1_000;
        let base = work.join("deliveries");
        for &c in &settings.connections {
            write_deliveries(
                &base.with_extension(format!("c{c}")),
                &format!("wrk{c}"),
                settings.wrk_threads.min(c),
                per_thread,
            )?;
        }
        let site = Target {
            system: TICKETHUB,
            server: &th.server,
            addr: th.site,
            dialect: Dialect::Convex,
        };
        measure_both(
            settings,
            &script,
            &site,
            Job::Webhook,
            &no_seeds,
            Some(&base),
            &mut report.points,
        )
        .await?;
    }
    Ok(report)
}

impl WrkReport {
    fn find(&self, generator: &str, system: &str, workload: &str, c: usize) -> Option<&Point> {
        self.points.iter().find(|p| {
            p.generator == generator
                && p.system == system
                && p.workload == workload
                && p.connections == c
        })
    }

    fn ratio(
        &self,
        generator: &str,
        peer: &str,
        workload: &str,
        c: usize,
        value: f64,
    ) -> Option<f64> {
        self.find(generator, peer, workload, c)
            .filter(|p| p.throughput > 0.0)
            .map(|p| value / p.throughput)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::report::write_results(dir, "wrk", self, Some(&self.markdown()))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Benchmark under two load generators: `{}`\n",
            self.command
        );
        let _ = writeln!(md, "- machine: {}", self.machine);
        let _ = writeln!(md, "- {}", self.wrk_version);
        let _ = writeln!(md, "- settings: {}", self.settings);
        let _ = writeln!(md, "- unix time: {}\n", self.unix_time);
        let _ = writeln!(
            md,
            "Ratios are within one generator and one cell: tickethub ÷ PocketBase and tickethub ÷ hyper hello (its point reads at the same connections and generator), measured back to back in this run.\n"
        );
        let _ = writeln!(
            md,
            "| generator | workload | system | conn. | req/s | p50 ms | p99 ms | errors | peak RSS MiB | ÷ PocketBase | ÷ hyper |"
        );
        let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for p in &self.points {
            let (vs_pb, vs_hyper) = if p.system == TICKETHUB && p.workload != WEBHOOK {
                (
                    self.ratio(
                        &p.generator,
                        POCKETBASE,
                        &p.workload,
                        p.connections,
                        p.throughput,
                    ),
                    self.ratio(&p.generator, HYPER, READ, p.connections, p.throughput),
                )
            } else {
                (None, None)
            };
            let show = |r: Option<f64>, unit: &str| match r {
                Some(r) if unit == "%" => format!("{:.0}%", r * 100.0),
                Some(r) => format!("{r:.2}×"),
                None => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {} | {} |",
                p.generator,
                p.workload,
                p.system,
                p.connections,
                p.throughput,
                p.p50_us as f64 / 1000.0,
                p.p99_us as f64 / 1000.0,
                p.errors,
                p.peak_rss_kib as f64 / 1024.0,
                show(vs_pb, "×"),
                show(vs_hyper, "%"),
            );
        }
        md
    }
}
