//! The benchmark command: `cargo run --release -p bench -- --quick|--full|--wrk|--postgres|--soak|--load-check|--fanout|--idle-cost|--files|--backup|--export-import`,
//! and `prepare-users --dir D --count N` (a data dir with N users, for `tickethub serve`).
//!
//! Module map:
//! - [`loadgen`]: the one load generator (tokio + hyper keep-alive connections, HDR histogram).
//! - [`workloads`]: the user workloads in each peer's dialect (Convex RPC, PocketBase REST,
//!   hello), signed Clerk and Stripe webhooks.
//! - [`procs`]: server processes: start, readiness, `/proc` memory, `kill -9`.
//! - [`servers`]: launching tickethub and the hello server; [`hello`]: the hello server itself.
//! - [`pocketbase`]: installing and configuring the PocketBase peer.
//! - [`storage`]: raw rusqlite (the storage ceiling), tickethub's store in-process, bounded scans.
//! - [`fanout`]: subscription fan-out over the WebSocket sync protocol (a row of the suite), and
//!   `--idle-cost`: a commit's latency and server CPU with 0 and with 10,000 idle subscribers.
//! - [`live`]: `--fanout`, the live-queries measurements: commit-to-client latency with 1,000
//!   subscribers, resident memory per idle connection, query executions per commit.
//! - [`suite`]: `--quick` / `--full`; [`soak`]: `--soak` and `--load-check`.
//! - [`files`]: `--files`, file storage: 100 MB upload and download over loopback against the
//!   same disk's raw copy speed.
//! - [`backup`]: `--backup`, `tickethub backup` of a ~1 GB database while serving durable creates:
//!   creates/s during the backup against before and after it, in the same run.
//! - [`exim`]: `--export-import`, snapshot export and import of 1M users: documents/s and the
//!   server's peak RSS during each.
//! - [`growth`]: `--growth`, creates and point reads with 10k and 1M users already stored, and
//!   database bytes per user against PocketBase's.
//! - [`wrk`]: `--wrk`, the same servers under Debian's `wrk` and under ours, in one run.
//! - [`pgcompare`]: `--postgres`, tickethub on SQLite against tickethub on a throwaway Postgres
//!   cluster (creates and point reads, under wrk and ours, in one run).
//! - [`report`]: JSON and Markdown results; [`plot`]: the PNG.
//!
//! Everything runs on loopback; results go to `bench/results/`.

mod backup;
mod exim;
mod fanout;
mod files;
mod growth;
mod hello;
mod live;
mod loadgen;
mod pgcompare;
mod plot;
mod pocketbase;
mod procs;
mod report;
mod servers;
mod soak;
mod storage;
mod suite;
mod workloads;
mod wrk;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmark tickethub against PocketBase, a bare hyper server and raw SQLite",
    group(ArgGroup::new("mode").args(["quick", "full", "soak", "load_check", "fanout", "idle_cost", "files", "backup", "export_import", "wrk", "growth", "postgres"]))
)]
struct Cli {
    /// A smoke pass of a few seconds per system.
    #[arg(long)]
    quick: bool,
    /// The whole suite (about 10 minutes).
    #[arg(long)]
    full: bool,
    /// Creates, point reads and Clerk webhooks on tickethub, PocketBase and bare hyper, each under
    /// `wrk` and under our own generator, at every `--wrk-connections`.
    #[arg(long)]
    wrk: bool,
    /// Seconds per point of `--wrk`.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Connection counts of `--wrk`.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64])]
    wrk_connections: Vec<usize>,
    /// wrk's threads (`-t`) in `--wrk`.
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// Users seeded before the point reads of `--wrk`.
    #[arg(long, default_value_t = 5_000)]
    seed_users: u64,
    /// tickethub on SQLite against tickethub on Postgres (a throwaway cluster from
    /// `tests/pg-cluster`): durable creates at every `--wrk-connections` and point reads at the
    /// largest, under wrk and ours, both servers in the same run.
    #[arg(long)]
    postgres: bool,
    /// Creates and point reads with `--growth-sizes` users already stored (seeded through the
    /// store API), under wrk and ours; database bytes per user against PocketBase's.
    #[arg(long)]
    growth: bool,
    /// Table sizes of `--growth`.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 1_000_000])]
    growth_sizes: Vec<u64>,
    /// Users created over HTTP in tickethub and in PocketBase for `--growth`'s bytes per user.
    #[arg(long, default_value_t = 20_000)]
    growth_compare: u64,
    /// Leave the signed webhook deliveries out of `--wrk`.
    #[arg(long)]
    no_webhooks: bool,
    /// Fault soak: mixed load with kill -9 and restart of the server.
    #[arg(long)]
    soak: bool,
    /// 256 keep-alive connections for 30 s against a query; exits non-zero on failure.
    #[arg(long)]
    load_check: bool,
    /// Live queries: commit-to-client latency, memory per connection, executions per commit.
    #[arg(long)]
    fanout: bool,
    /// A commit's latency and server CPU with 0 and with `--idle` idle subscribers.
    #[arg(long)]
    idle_cost: bool,
    /// Idle subscribers (one connection each) for `--idle-cost`.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Commits per phase of `--idle-cost`.
    #[arg(long, default_value_t = 1000)]
    commits: u64,
    /// File storage: 100 MB upload and download throughput against the disk's raw copy speed.
    #[arg(long)]
    files: bool,
    /// Online backup of a ~1 GB database while serving durable creates: creates/s during it.
    #[arg(long)]
    backup: bool,
    /// Snapshot export and import of `--users` users: documents/s and the server's peak RSS.
    #[arg(long)]
    export_import: bool,
    /// Users for `--export-import`.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Subscribers (and idle connections) for `--fanout`.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Updates of the watched row for `--fanout`.
    #[arg(long, default_value_t = 20)]
    rounds: u64,
    /// Soak duration.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between kills in the soak.
    #[arg(long, default_value_t = 60)]
    kill_every: u64,
    /// Do not build the tickethub binary first.
    #[arg(long)]
    no_build: bool,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    #[command(subcommand)]
    command: Option<Internal>,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// (internal) the bare hyper server the suite measures as the HTTP ceiling.
    #[command(hide = true)]
    HelloServer {
        #[arg(long)]
        port: u16,
    },
    /// (internal) drive one workload against a running tickethub, for profiling it.
    #[command(hide = true)]
    Drive {
        /// The API port's address (the site port's for `webhook` and `stripe-webhook`).
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long, value_enum)]
        workload: DriveWorkload,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Users to seed first (reads and updates need them).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Users `seed-0 ..` already in the store (from an earlier `--seed` or `prepare-users`):
        /// read them without seeding again.
        #[arg(long, default_value_t = 0, conflicts_with = "seed")]
        seeded: u64,
    },
    /// Write a data dir whose `users` table holds `--count` documents (`seed-0 ..`), for
    /// `tickethub serve --data-dir` (the dashboard's first-page benchmark uses 1k and 1M).
    PrepareUsers {
        /// The data dir; must not hold a store yet, so a count is never added to an old one.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: u64,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DriveWorkload {
    Create,
    Read,
    Mixed,
    Contended,
    Webhook,
    StripeWebhook,
}

/// What this invocation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Quick,
    Full,
    Soak,
    LoadCheck,
    Fanout,
    IdleCost,
    Files,
    Backup,
    ExportImport,
    Wrk,
    Growth,
    Postgres,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Internal::HelloServer { port }) = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(hello::serve(procs::loopback(port)));
    }
    if let Some(Internal::Drive {
        addr,
        workload,
        connections,
        seconds,
        seed,
        seeded,
    }) = cli.command
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads.max(1))
            .enable_all()
            .build()?;
        return runtime.block_on(drive(addr, workload, connections, seconds, seed, seeded));
    }
    if let Some(Internal::PrepareUsers { dir, count }) = &cli.command {
        return prepare_users(dir, *count);
    }
    let mode = if cli.full {
        Mode::Full
    } else if cli.soak {
        Mode::Soak
    } else if cli.load_check {
        Mode::LoadCheck
    } else if cli.fanout {
        Mode::Fanout
    } else if cli.idle_cost {
        Mode::IdleCost
    } else if cli.files {
        Mode::Files
    } else if cli.backup {
        Mode::Backup
    } else if cli.export_import {
        Mode::ExportImport
    } else if cli.wrk {
        Mode::Wrk
    } else if cli.growth {
        Mode::Growth
    } else if cli.postgres {
        Mode::Postgres
    } else {
        Mode::Quick
    };
    let command = std::iter::once("cargo run --release -p bench --".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let root = procs::workspace_root();
    let results = root.join("bench").join("results");
    let work = procs::target_dir().join("bench-work");
    std::fs::create_dir_all(&work)?;
    if !cli.no_build {
        servers::build_tickethub()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(mode, &cli, command, work, results))
}

/// Bulk-load `count` users through the store itself (the same path the server writes), in the
/// loader's batches, and print how long it took.
fn prepare_users(dir: &std::path::Path, count: u64) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty; give a fresh directory", dir.display());
    }
    std::fs::create_dir_all(dir)?;
    let started = std::time::Instant::now();
    let store = storage::store_open(dir)?;
    storage::store_load(&store, 0, count)?;
    drop(store);
    println!(
        "prepared {} with {count} users in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn drive(
    addr: std::net::SocketAddr,
    workload: DriveWorkload,
    connections: usize,
    seconds: u64,
    seed: u64,
    seeded: u64,
) -> Result<()> {
    use workloads::{Api, Mix, SeedIds, UsersWorkload};
    let api = Api::Convex { admin_key: None };
    let ids = if seed > 0 {
        suite::seed(addr, api.clone(), seed).await?
    } else {
        std::sync::Arc::new(SeedIds {
            count: seeded,
            ..SeedIds::default()
        })
    };
    let mix = match workload {
        DriveWorkload::Create => Mix::Create,
        DriveWorkload::Read => Mix::Read,
        DriveWorkload::Mixed => Mix::Mixed { read_percent: 90 },
        DriveWorkload::Contended => Mix::Update { hot_percent: 80 },
        DriveWorkload::Webhook => Mix::Webhook,
        DriveWorkload::StripeWebhook => Mix::StripeWebhook,
    };
    let tag = format!("drive-{}", std::process::id());
    let spec = loadgen::LoadSpec {
        addr,
        connections,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(seconds),
    };
    let workload_impl = UsersWorkload::new(api, mix, &tag, ids);
    let result = loadgen::run(&spec, std::sync::Arc::new(workload_impl)).await;
    println!(
        "{workload:?}: {:.0} req/s, p50 {} us, p99 {} us, errors {:?}",
        result.throughput(),
        result.p50_us(),
        result.p99_us(),
        result.errors
    );
    Ok(())
}

async fn run(
    mode: Mode,
    cli: &Cli,
    command: String,
    work: PathBuf,
    results: PathBuf,
) -> Result<()> {
    match mode {
        Mode::Quick | Mode::Full => {
            let profile = if mode == Mode::Full {
                suite::Profile::full()
            } else {
                suite::Profile::quick()
            };
            let paths = suite::Paths {
                work,
                results: results.clone(),
            };
            let mut report = suite::run_suite(&profile, &paths, &command).await?;
            let png = results.join(format!("{}-throughput.png", profile.name));
            match plot::throughput_png(&report.sweep, &png) {
                Ok(true) => {}
                Ok(false) => report.notes.push(
                    "No TrueType font found: the plot has no text; see the legend above.".into(),
                ),
                Err(e) => report.notes.push(format!("The plot failed: {e}")),
            }
            report.write(&paths.results, profile.name)?;
            println!("{}", report.markdown(profile.name));
            eprintln!(
                "[bench] wrote {}/{}.{{json,md}} and {}",
                results.display(),
                profile.name,
                png.display()
            );
        }
        Mode::Soak => {
            let report = soak::run_soak(
                &work,
                cli.minutes,
                Duration::from_secs(cli.kill_every.max(5)),
                &command,
            )
            .await?;
            report::write_results(&results, "soak", &report, Some(&report.markdown()))?;
            println!("{}", report.markdown());
            if !report.passed {
                anyhow::bail!("the soak failed");
            }
        }
        Mode::Fanout => {
            let settings = live::FanoutSettings {
                subscribers: cli.subscribers,
                rounds: cli.rounds,
                client_threads: cli.client_threads.max(1),
            };
            let bin = servers::tickethub_binary()?;
            let report = live::run(&bin, &work, &settings, command).await?;
            report.write(&results)?;
            println!("{}", report.markdown());
            eprintln!("[bench] wrote {}/fanout.{{json,md}}", results.display());
        }
        Mode::IdleCost => {
            let bin = servers::tickethub_binary()?;
            let (none, many) = fanout::idle_cost::run(&bin, &work, cli.idle, cli.commits).await?;
            println!("{command}\n");
            fanout::idle_cost::print(&none, &many);
        }
        Mode::Files => {
            let bin = servers::tickethub_binary()?;
            let report = files::run(&bin, &work, command).await?;
            report::write_results(&results, "files", &report, Some(&report.markdown()))?;
            println!("{}", report.markdown());
        }
        Mode::Backup => {
            let bin = servers::tickethub_binary()?;
            let report = backup::run(&bin, &work, command).await?;
            report::write_results(&results, "backup", &report, Some(&report.markdown()))?;
            println!("{}", report.markdown());
        }
        Mode::ExportImport => {
            let bin = servers::tickethub_binary()?;
            let (users, work) = (cli.users, work.clone());
            let report =
                tokio::task::spawn_blocking(move || exim::run(&bin, &work, users, command))
                    .await??;
            report::write_results(&results, "export-import", &report, Some(&report.markdown()))?;
            println!("{}", report.markdown());
        }
        Mode::Growth => {
            let settings = wrk::WrkSettings {
                seconds: cli.seconds.max(1),
                connections: cli.wrk_connections.clone(),
                seed_users: 0,
                wrk_threads: cli.wrk_threads.max(1),
                webhooks: false,
            };
            let bin = servers::tickethub_binary()?;
            let report = growth::run(
                &settings,
                &cli.growth_sizes,
                cli.growth_compare.max(1),
                &work,
                &bin,
                command,
            )
            .await?;
            report.write(&results)?;
            println!("{}", report.markdown());
            eprintln!("[bench] wrote {}/growth.{{json,md}}", results.display());
        }
        Mode::Wrk => {
            let settings = wrk::WrkSettings {
                seconds: cli.seconds.max(1),
                connections: cli.wrk_connections.clone(),
                seed_users: cli.seed_users.max(1),
                wrk_threads: cli.wrk_threads.max(1),
                webhooks: !cli.no_webhooks,
            };
            let bin = servers::tickethub_binary()?;
            let report = wrk::run(&settings, &work, &bin, command).await?;
            report.write(&results)?;
            println!("{}", report.markdown());
            eprintln!("[bench] wrote {}/wrk.{{json,md}}", results.display());
        }
        Mode::Postgres => {
            let settings = wrk::WrkSettings {
                seconds: cli.seconds.max(1),
                connections: cli.wrk_connections.clone(),
                seed_users: cli.seed_users.max(1),
                wrk_threads: cli.wrk_threads.max(1),
                webhooks: false,
            };
            let bin = servers::tickethub_binary()?;
            let report = pgcompare::run(&settings, &work, &bin, command).await?;
            report.write(&results)?;
            println!("{}", report.markdown());
            eprintln!(
                "[bench] wrote {}/postgres-run.{{json,md}}",
                results.display()
            );
        }
        Mode::LoadCheck => {
            let report = soak::run_load_check(&work, &command).await?;
            report::write_results(&results, "load-check", &report, None)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.passed {
                anyhow::bail!(
                    "the load check failed: {} errors, RSS spread {:.3} (limit 1.10)",
                    report.errors,
                    report.rss_spread
                );
            }
        }
    }
    Ok(())
}
