//! The `tickethub` binary as a library: CLI, configuration, start-up and graceful shutdown.
//! `main_with` is shared by the `tickethub` binary (the Ticket Hub app) and by any other app built
//! on the runtime (see `examples/notes`).
//!
//! Module map:
//! - [`cli`]: the command line (`tickethub serve --port ... --data-dir ...`).
//! - [`server`]: [`Server`]: open the store, start the runtime, bind both listeners, and shut all of
//!   it down in order.
//! - [`codegen`]: `tickethub codegen --out <dir>`: `_generated/` TypeScript from the registry.
//! - [`backup`]: `tickethub backup` and `tickethub restore`.
//! - [`snapshot`]: `tickethub export` / `tickethub import`, offline on a data dir, with progress bars.
//! - [`database`]: `--database-url` / `--database-schema`: SQLite in the data dir or Postgres.
//! - [`migrate`]: `tickethub migrate --from <dir|url> --to <dir|url>`, with progress bars.
//! - [`auth_bridge`]: the router's `Authenticator` over the auth crate (Clerk JWTs, admin key).
//!
//! Start-up order matters: listeners are bound before the store is opened, so a port in use fails
//! fast without touching the data; the store is opened (and a schema the data violates refused)
//! before anything is served.

pub mod auth_bridge;
pub mod backup;
pub mod cli;
pub mod codegen;
pub mod database;
pub mod migrate;
pub mod server;
pub mod snapshot;

pub use cli::{AppChoice, Cli, Command, ServeArgs};
pub use server::{AdminKeySource, Server, ServerOptions};

use clap::Parser;
use tickethub_runtime::App;

/// Parse the command line, run the server until SIGINT/SIGTERM, shut down cleanly.
pub fn main_with(app: App, default_schema_toml: &'static str) -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Codegen(args)) => {
            let summary = codegen::run(&app, default_schema_toml, &args)?;
            println!(
                "tickethub codegen: wrote {} ({} functions, {} tables)",
                summary.dir.display(),
                summary.functions,
                summary.tables
            );
            return Ok(());
        }
        // Neither needs the app or an async runtime: they work on files.
        Some(Command::Backup(args)) => return backup::run_backup(args),
        Some(Command::Restore(args)) => return backup::run_restore(args),
        Some(Command::Export(args)) => return snapshot::export(args, default_schema_toml),
        Some(Command::Import(args)) => return snapshot::import(args, default_schema_toml),
        Some(Command::Migrate(args)) => return migrate::run(args, default_schema_toml),
        None => ServeArgs::parse_from(["serve"]),
    };
    let app = match args.app {
        AppChoice::Builtin => app,
        AppChoice::None => App::new(),
    };
    let options = args.into_options(default_schema_toml)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tickethub")
        .build()?;
    runtime.block_on(async move {
        let server = Server::start(app, options).await?;
        // Listen before saying "listening": a supervisor (or test) that signals as soon as it
        // reads that line must get a clean shutdown, not the default disposition's kill.
        let signals = StopSignals::listen();
        server.print_summary();
        signals.wait().await;
        tracing::info!("shutting down");
        server.shutdown().await
    })
}

/// `RUST_LOG` decides; `info` when unset.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in log files or CI output.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// SIGTERM and SIGINT, listened for from creation on.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("cannot listen for {name} ({e})");
                    None
                }
            };
            StopSignals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(self.term) => {}
                _ = recv(self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
