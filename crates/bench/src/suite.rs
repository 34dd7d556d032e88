//! `--quick` and `--full`: every workload against every peer, one table from one run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::loadgen::{self, LoadResult, LoadSpec, Workload};
use crate::procs::{loopback, Memory, ServerProc};
use crate::report::*;
use crate::servers::{start_hello, start_tickethub};
use crate::storage;
use crate::workloads::{Api, Mix, SeedIds, UsersWorkload};

/// How long and how big a suite run is.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub warmup: Duration,
    pub measure: Duration,
    /// Users seeded before reads and updates.
    pub seed_users: u64,
    /// Rows of the large table for the bounded-scan check.
    pub big_rows: u64,
    /// Connections of the main table's rows.
    pub connections: usize,
    /// Connections swept for the plot.
    pub sweep: Vec<usize>,
    /// Threads for in-process reads (one per core).
    pub read_threads: usize,
    pub fanout_subscribers: usize,
    pub fanout_rounds: u64,
}

impl Profile {
    pub fn quick() -> Profile {
        Profile {
            name: "quick",
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
            seed_users: 2_000,
            big_rows: 50_000,
            connections: 64,
            sweep: vec![1, 64],
            read_threads: 2,
            fanout_subscribers: 50,
            fanout_rounds: 5,
        }
    }
    pub fn full() -> Profile {
        Profile {
            name: "full",
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
            seed_users: 10_000,
            big_rows: 1_000_000,
            connections: 64,
            sweep: vec![1, 4, 16, 64],
            read_threads: 2,
            fanout_subscribers: 500,
            fanout_rounds: 20,
        }
    }
    fn spec(&self, addr: std::net::SocketAddr, connections: usize) -> LoadSpec {
        LoadSpec {
            addr,
            connections,
            warmup: self.warmup,
            measure: self.measure,
        }
    }
}

pub struct Paths {
    /// Scratch space: data directories, logs, the PocketBase venv.
    pub work: PathBuf,
    pub results: PathBuf,
}

/// Run one load and read the server's peak memory during it.
async fn measured(
    server: &ServerProc,
    spec: &LoadSpec,
    workload: Arc<dyn Workload>,
) -> (LoadResult, Option<u64>) {
    server.reset_peak();
    let result = loadgen::run(spec, workload).await;
    (result, Some(server.memory().hwm_kib))
}

/// Create `seed-0 .. seed-<count-1>`; fails unless every one was acknowledged.
pub async fn seed(addr: std::net::SocketAddr, api: Api, count: u64) -> Result<Arc<SeedIds>> {
    let ids = Arc::new(SeedIds {
        count,
        record_ids: Default::default(),
    });
    let workload = Arc::new(UsersWorkload::seeding(api, ids.clone(), count));
    let spec = LoadSpec {
        addr,
        connections: 32,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(600),
    };
    let result = loadgen::run(&spec, workload).await;
    if result.acked.len() as u64 != count {
        bail!(
            "seeding {count} users at {addr}: {} acknowledged; errors {:?}",
            result.acked.len(),
            result.errors
        );
    }
    Ok(ids)
}

/// Idle resident memory: a moment after start-up, before any load.
fn idle_rss(server: &ServerProc) -> u64 {
    std::thread::sleep(Duration::from_secs(1));
    Memory::of(server.pid()).rss_kib
}

fn progress(text: &str) {
    eprintln!("[bench] {text}");
}

fn print_row(m: &Measurement) {
    progress(&format!(
        "{:<40} {:<30} c={:<3} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        m.workload,
        m.system,
        m.concurrency,
        m.throughput,
        m.p50_us as f64 / 1000.0,
        m.p99_us as f64 / 1000.0,
        m.errors.connection + m.errors.rejected
    ));
}

/// The HTTP workloads shared by tickethub and PocketBase.
async fn users_workloads(
    report: &mut Report,
    profile: &Profile,
    system: &str,
    server: &ServerProc,
    addr: std::net::SocketAddr,
    api: Api,
) -> Result<()> {
    let seeded = seed(addr, api.clone(), profile.seed_users).await?;
    let run = |workload: &str,
               mix: Mix,
               tag: String,
               connections: usize|
     -> (LoadSpec, Arc<dyn Workload>, String) {
        (
            profile.spec(addr, connections),
            Arc::new(UsersWorkload::new(api.clone(), mix, &tag, seeded.clone())),
            workload.to_string(),
        )
    };
    // The sweep; its point at the table's concurrency is the table's row.
    let mut plan = Vec::new();
    for &c in &profile.sweep {
        plan.push(run(CREATE, Mix::Create, format!("create-c{c}"), c));
        plan.push(run(READ, Mix::Read, format!("read-c{c}"), c));
    }
    let c = profile.connections;
    if !profile.sweep.contains(&c) {
        plan.push(run(CREATE, Mix::Create, format!("create-c{c}"), c));
        plan.push(run(READ, Mix::Read, format!("read-c{c}"), c));
    }
    plan.push(run(
        MIXED,
        Mix::Mixed { read_percent: 90 },
        "mixed".into(),
        c,
    ));
    plan.push(run(
        CONTENDED,
        Mix::Update { hot_percent: 80 },
        "hot".into(),
        c,
    ));
    plan.push(run(
        UNCONTENDED,
        Mix::Update { hot_percent: 0 },
        "cold".into(),
        c,
    ));
    for (spec, workload, name) in plan {
        let (result, peak) = measured(server, &spec, workload).await;
        let m = Measurement::new(&name, system, spec.connections, &result, peak);
        print_row(&m);
        if name == CREATE || name == READ {
            report.sweep.push(m.clone());
        }
        if spec.connections == c {
            report.measurements.push(m);
        }
    }
    Ok(())
}

pub async fn run_suite(profile: &Profile, paths: &Paths, command: &str) -> Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&paths.work)?;
    let mut report = Report {
        mode: profile.name.into(),
        command: command.into(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        machine: machine_summary(),
        settings: format!(
            "warm-up {:?} + measured {:?} per point; {} seeded users; table rows at {} connections; one load-generator thread (tokio + hyper, keep-alive)",
            profile.warmup, profile.measure, profile.seed_users, profile.connections
        ),
        ..Report::default()
    };
    let tickethub_bin = crate::servers::tickethub_binary()?;
    let pocketbase_bin = crate::pocketbase::binary(&paths.work)?;

    // ---- the HTTP ceiling
    progress("hyper hello server");
    {
        let hello = start_hello(paths.work.join("hello.log"))?;
        let addr = hello.launch.ready_addr;
        report.idle_memory.push(IdleMemory {
            system: HYPER.into(),
            rss_kib: idle_rss(&hello),
        });
        let workload = Arc::new(UsersWorkload::new(
            Api::Hello,
            Mix::Read,
            "hello",
            Arc::new(SeedIds::default()),
        ));
        let spec = profile.spec(addr, profile.connections);
        let (result, peak) = measured(&hello, &spec, workload).await;
        let m = Measurement::new(READ, HYPER, spec.connections, &result, peak);
        print_row(&m);
        report.measurements.push(m);
    }

    // ---- PocketBase
    progress("PocketBase");
    {
        let port = crate::procs::free_port()?;
        let pb = crate::pocketbase::start(
            &pocketbase_bin,
            &paths.work.join("pb_data"),
            port,
            paths.work.join("pocketbase.log"),
        )
        .await?;
        report.idle_memory.push(IdleMemory {
            system: POCKETBASE.into(),
            rss_kib: idle_rss(&pb),
        });
        users_workloads(
            &mut report,
            profile,
            POCKETBASE,
            &pb,
            loopback(port),
            Api::PocketBase,
        )
        .await?;
    }

    // ---- tickethub
    progress("tickethub");
    {
        let data = fresh_dir(&paths.work.join("tickethub-data"))?;
        let th = start_tickethub(&tickethub_bin, &data, paths.work.join("tickethub.log"))?;
        report.idle_memory.push(IdleMemory {
            system: TICKETHUB.into(),
            rss_kib: idle_rss(&th.server),
        });
        let api = Api::Convex { admin_key: None };
        users_workloads(
            &mut report,
            profile,
            TICKETHUB,
            &th.server,
            th.api,
            api.clone(),
        )
        .await?;
        let webhook = Arc::new(UsersWorkload::new(
            api.clone(),
            Mix::Webhook,
            "hook",
            Arc::new(SeedIds::default()),
        ));
        let spec = profile.spec(th.site, profile.connections);
        let (result, peak) = measured(&th.server, &spec, webhook).await;
        let m = Measurement::new(WEBHOOK, TICKETHUB, spec.connections, &result, peak);
        print_row(&m);
        report.measurements.push(m);
        let stripe = Arc::new(UsersWorkload::new(
            api.clone(),
            Mix::StripeWebhook,
            "stripe",
            Arc::new(SeedIds::default()),
        ));
        let (result, peak) = measured(&th.server, &spec, stripe).await;
        let m = Measurement::new(STRIPE_WEBHOOK, TICKETHUB, spec.connections, &result, peak);
        print_row(&m);
        report.measurements.push(m);
        th.server.reset_peak();
        match crate::fanout::run(th.api, profile.fanout_subscribers, profile.fanout_rounds).await {
            Ok(fan) => {
                let peak = Some(th.server.memory().hwm_kib);
                let m = Measurement::new(FANOUT, TICKETHUB, fan.subscribers, &fan.load, peak);
                print_row(&m);
                report.measurements.push(m);
                report.notes.push(format!(
                    "Fan-out: {} WebSocket subscribers on one user, {} updates one at a time; req/s = deliveries/s, latency = update sent → subscriber's Transition; {} deliveries missed.",
                    fan.subscribers, fan.rounds, fan.missed
                ));
            }
            Err(e) if e.is::<crate::fanout::Unavailable>() => report.notes.push(format!(
                "Subscription fan-out skipped: {e} (live queries over `/api/1.48.0/sync` have not landed in this build)."
            )),
            Err(e) => report.notes.push(format!("Subscription fan-out failed: {e:#}")),
        }
    }

    // ---- storage without HTTP
    progress("rusqlite ceiling");
    {
        let path = storage::sqlite_prepare(&paths.work.join("ceiling"), profile.seed_users)?;
        let creates = storage::sqlite_creates(&path, profile.warmup, profile.measure)?;
        let m = Measurement::new(CREATE, SQLITE, 1, &creates, None);
        print_row(&m);
        report.measurements.push(m);
        let reads = storage::sqlite_reads(
            &path,
            profile.seed_users,
            profile.read_threads,
            profile.warmup,
            profile.measure,
        )?;
        let m = Measurement::new(READ, SQLITE, profile.read_threads, &reads, None);
        print_row(&m);
        report.measurements.push(m);
    }
    progress("tickethub store in-process");
    {
        let dir = fresh_dir(&paths.work.join("store-inproc"))?;
        let store = storage::store_open(&dir)?;
        storage::store_load(&store, 0, profile.seed_users)?;
        let creates =
            storage::store_creates(&store, profile.connections, profile.warmup, profile.measure);
        let m = Measurement::new(CREATE, STORE, profile.connections, &creates, None);
        print_row(&m);
        report.measurements.push(m);
        let reads = storage::store_reads(
            &store,
            profile.seed_users,
            profile.read_threads,
            profile.warmup,
            profile.measure,
        );
        let m = Measurement::new(READ, STORE, profile.read_threads, &reads, None);
        print_row(&m);
        report.measurements.push(m);
        store.close()?;
    }

    // ---- bounded scans: 10k against big_rows
    progress("bounded scans");
    let big_dir = paths.work.join("store-big");
    for rows in [10_000, profile.big_rows] {
        let dir = if rows == profile.big_rows {
            fresh_dir(&big_dir)?
        } else {
            fresh_dir(&paths.work.join("store-small"))?
        };
        let store = storage::store_open(&dir)?;
        let load_started = Instant::now();
        storage::store_load(&store, 0, rows)?;
        let load_seconds = load_started.elapsed().as_secs_f64();
        let timings = storage::scan_timings(&store, rows, load_seconds)?;
        progress(&format!(
            "{rows} rows (loaded in {load_seconds:.1}s): take(10) p50 {} µs, first() p50 {} µs, index lookup p50 {} µs",
            timings.take10.p50_us, timings.first.p50_us, timings.index_lookup.p50_us
        ));
        report.scans.push(timings);
        store.close()?;
    }

    // ---- index lookups over HTTP on the big table
    progress("index lookups over HTTP on the big table");
    {
        let th = start_tickethub(
            &tickethub_bin,
            &big_dir,
            paths.work.join("tickethub-big.log"),
        )?;
        let ids = Arc::new(SeedIds {
            count: profile.big_rows,
            record_ids: Default::default(),
        });
        let workload = Arc::new(UsersWorkload::new(
            Api::Convex { admin_key: None },
            Mix::Read,
            "big",
            ids,
        ));
        let spec = profile.spec(th.api, profile.connections);
        let (result, peak) = measured(&th.server, &spec, workload).await;
        let big = Measurement::new(READ, TICKETHUB, spec.connections, &result, peak);
        print_row(&big);
        if let Some(small) = report.find(READ, TICKETHUB).cloned() {
            report.http_scale.push(HttpScale {
                rows: profile.seed_users,
                measurement: small,
            });
        }
        report.http_scale.push(HttpScale {
            rows: profile.big_rows,
            measurement: big,
        });
    }

    evaluate_targets(&mut report);
    report.notes.push(format!(
        "PocketBase {} runs with its defaults (SQLite WAL, synchronous=NORMAL: a create is acknowledged before fsync); tickethub acknowledges after fsync (synchronous=FULL).",
        pocketbase_version(&pocketbase_bin)
    ));
    report.notes.push(
        "The rusqlite ceiling writes one durable INSERT per commit from one thread; tickethub groups concurrent mutations into one commit.".into(),
    );
    report.notes.push(format!(
        "The load generator and every server share this machine's cores; the hyper hello ceiling is partly the load generator's own limit. Total run time {:.0} s; load average at the end {}.",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    Ok(report)
}

/// An empty directory at `dir` (whatever an earlier run left there is removed).
pub(crate) fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

fn pocketbase_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "(version unknown)".into())
}

pub fn machine_summary() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores, {cpu}, Linux {kernel}; load average at start {} (the machine is shared with other builds)",
        load_average()
    )
}

/// The 1-minute load average: other work on the machine skews every number here.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn ratio(report: &Report, workload: &str, a: &str, b: &str) -> Option<f64> {
    let x = report.find(workload, a)?.throughput;
    let y = report.find(workload, b)?.throughput;
    (y > 0.0).then(|| x / y)
}

fn check(report: &mut Report, target: &str, value: Option<f64>, goal: f64, unit: &str) {
    let (measured, met) = match value {
        Some(v) if unit == "×" => (format!("{v:.2}×"), v >= goal),
        Some(v) => (format!("{:.0}%", v * 100.0), v >= goal),
        None => ("not measured".into(), false),
    };
    report.targets.push(TargetCheck {
        target: target.into(),
        measured,
        met,
    });
}

/// The targets, judged on this run's numbers.
pub fn evaluate_targets(report: &mut Report) {
    let creates = ratio(report, CREATE, TICKETHUB, POCKETBASE);
    check(report, "durable creates ≥ 5× PocketBase", creates, 5.0, "×");
    let reads = ratio(report, READ, TICKETHUB, POCKETBASE);
    check(report, "indexed reads ≥ 3× PocketBase", reads, 3.0, "×");
    let ceiling = ratio(report, READ, TICKETHUB, HYPER);
    check(
        report,
        "point query over HTTP ≥ 40% of bare hyper",
        ceiling,
        0.4,
        "%",
    );
    let contention = match (
        report.find(CONTENDED, TICKETHUB),
        report.find(UNCONTENDED, TICKETHUB),
    ) {
        (Some(c), Some(u)) if u.throughput > 0.0 => Some(c.throughput / u.throughput),
        _ => None,
    };
    check(
        report,
        "contended mutations ≥ 80% of uncontended",
        contention,
        0.8,
        "%",
    );
    let (th, pb) = (report.idle(TICKETHUB), report.idle(POCKETBASE));
    report.targets.push(TargetCheck {
        target: "idle resident memory below PocketBase's".into(),
        measured: match (th, pb) {
            (Some(t), Some(p)) => format!(
                "{:.1} MiB vs {:.1} MiB",
                t as f64 / 1024.0,
                p as f64 / 1024.0
            ),
            _ => "not measured".into(),
        },
        met: matches!((th, pb), (Some(t), Some(p)) if t < p),
    });
    report.targets.push(TargetCheck {
        target: "idle resident memory ≤ 30 MiB".into(),
        measured: th
            .map(|t| format!("{:.1} MiB", t as f64 / 1024.0))
            .unwrap_or_else(|| "not measured".into()),
        met: th.is_some_and(|t| t <= 30 * 1024),
    });
    let errors: u64 = report
        .measurements
        .iter()
        .filter(|m| m.system == TICKETHUB)
        .map(|m| m.errors.connection + m.errors.rejected)
        .sum();
    report.targets.push(TargetCheck {
        target: "no client-visible errors from tickethub in the suite".into(),
        measured: format!("{errors} errors"),
        met: errors == 0,
    });
}
