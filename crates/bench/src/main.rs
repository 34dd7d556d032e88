//! The benchmark command: `cargo run --release -p bench -- --quick|--full|--soak|--load-check`.
//!
//! Module map:
//! - [`loadgen`]: the one load generator (tokio + hyper keep-alive connections, HDR histogram).
//! - [`workloads`]: the user workloads in each peer's dialect (Convex RPC, PocketBase REST,
//!   hello), signed Clerk webhooks.
//! - [`procs`]: server processes: start, readiness, `/proc` memory, `kill -9`.
//! - [`servers`]: launching tickethub and the hello server; [`hello`]: the hello server itself.
//! - [`pocketbase`]: installing and configuring the PocketBase peer.
//! - [`storage`]: raw rusqlite (the storage ceiling), tickethub's store in-process, bounded scans.
//! - [`suite`]: `--quick` / `--full`; [`soak`]: `--soak` and `--load-check`.
//! - [`report`]: JSON and Markdown results; [`plot`]: the PNG.
//!
//! Everything runs on loopback; results go to `bench/results/`.

mod hello;
mod loadgen;
mod plot;
mod pocketbase;
mod procs;
mod report;
mod servers;
mod soak;
mod storage;
mod suite;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmark tickethub against PocketBase, a bare hyper server and raw SQLite",
    group(ArgGroup::new("mode").args(["quick", "full", "soak", "load_check"]))
)]
struct Cli {
    /// A smoke pass of a few seconds per system.
    #[arg(long)]
    quick: bool,
    /// The whole suite (about 10 minutes).
    #[arg(long)]
    full: bool,
    /// Fault soak: mixed load with kill -9 and restart of the server.
    #[arg(long)]
    soak: bool,
    /// 256 keep-alive connections for 30 s against a query; exits non-zero on failure.
    #[arg(long)]
    load_check: bool,
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
}

/// What this invocation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Quick,
    Full,
    Soak,
    LoadCheck,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Internal::HelloServer { port }) = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(hello::serve(procs::loopback(port)));
    }
    let mode = if cli.full {
        Mode::Full
    } else if cli.soak {
        Mode::Soak
    } else if cli.load_check {
        Mode::LoadCheck
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
            std::fs::create_dir_all(&results)?;
            std::fs::write(
                results.join("soak.json"),
                serde_json::to_string_pretty(&report)? + "\n",
            )?;
            std::fs::write(results.join("soak.md"), report.markdown())?;
            println!("{}", report.markdown());
            if !report.passed {
                anyhow::bail!("the soak failed");
            }
        }
        Mode::LoadCheck => {
            let report = soak::run_load_check(&work, &command).await?;
            std::fs::create_dir_all(&results)?;
            std::fs::write(
                results.join("load-check.json"),
                serde_json::to_string_pretty(&report)? + "\n",
            )?;
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
