//! The command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tickethub_runtime::{Clock, JobRetention};

use crate::server::{AdminKeySource, SchemaSource, ServerOptions};

#[derive(Parser, Debug)]
#[command(
    name = "tickethub",
    version,
    about = "A Convex-compatible backend for Ticket Hub"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (function calls, sync) and the site (HTTP actions).
    Serve(ServeArgs),
    /// Write `<out>/_generated/` (api.d.ts, api.js, dataModel.d.ts) for a TypeScript front end.
    Codegen(crate::codegen::CodegenArgs),
    /// Copy the database (at one commit) and its stored files while the server keeps running.
    Backup(crate::backup::BackupArgs),
    /// Put a backup into a data directory no server is using.
    Restore(crate::backup::RestoreArgs),
    /// Write a snapshot ZIP (Convex's format) of a stopped server's data dir.
    Export(crate::snapshot::ExportArgs),
    /// Import a snapshot ZIP, or a JSONL / JSON / CSV file into one table, into a stopped
    /// server's data dir.
    Import(crate::snapshot::ImportArgs),
    /// Copy every table, every document (keeping `_id` and `_creationTime`) from one database to
    /// another: a data dir (SQLite) or a Postgres URL on either side.
    Migrate(crate::migrate::MigrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// API port: /api/*, /http/*, /instance_name.
    #[arg(long, default_value_t = 3210)]
    pub port: u16,
    /// Site port: HTTP actions at every path.
    #[arg(long, default_value_t = 3211)]
    pub site_port: u16,
    /// Address both ports listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Where the database (unless --database-url), stored files and the generated admin key
    /// live.
    #[arg(long, default_value = "./tickethub-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: crate::database::DatabaseArgs,
    /// The admin key (`Authorization: Convex <key>`). Without it (and without the env var) a key
    /// is generated once, kept in the data dir and printed at start-up.
    #[arg(long, env = "TICKETHUB_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// A schema.toml to use instead of the one built into the binary.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// `none`: start without the built-in app and its schema, for a team that brings only its
    /// own `convex/` folder (pushed with `npx convex deploy`).
    #[arg(long, value_enum, default_value_t = AppChoice::Builtin)]
    pub app: AppChoice,
    /// Let tests move time forward: enables POST /api/test/advance_time (admin only).
    #[arg(long)]
    pub test_clock: bool,
    /// With --test-clock: move the test time forward by this many ms once at start-up, before
    /// any due job or cron is looked at (simulates the server having been down that long).
    #[arg(long, value_name = "MS", requires = "test_clock", value_parser = parse_skip_ms)]
    pub test_clock_skip: Option<f64>,
    /// Largest file an upload URL accepts, in bytes (bigger ones get 413 FileTooLarge and
    /// nothing is kept). Default 1 GiB (knob TICKETHUB_MAX_UPLOAD_BYTES).
    #[arg(long, value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// How long a finished scheduled function's row (success, failed, canceled) is kept before
    /// it is purged, in ms. Default 7 days, as Convex (knob TICKETHUB_SCHEDULED_JOB_RETENTION).
    #[arg(long, value_name = "MS")]
    pub scheduled_job_retention_ms: Option<u64>,
    /// Cluster mode: this node's name. Several nodes over one Postgres (--database-url): one
    /// leads (writes, runs the scheduler and crons), the others serve reads and live queries and
    /// forward writes to it; when the leader dies another takes over. Needs --advertise-url.
    #[arg(long, requires_all = ["advertise_url", "database_url"])]
    pub node_id: Option<String>,
    /// Cluster mode: how the other nodes reach this one's API port (http://host:port).
    #[arg(long, requires = "node_id")]
    pub advertise_url: Option<String>,
    /// Cluster mode: how long the leader's lease lives without renewal, in ms: the failover
    /// time. Default 10 s (knob TICKETHUB_CLUSTER_LEASE_TTL).
    #[arg(long, value_name = "MS", requires = "node_id", value_parser = clap::value_parser!(u64).range(300..))]
    pub lease_ttl_ms: Option<u64>,
}

/// Which functions a server starts with (`serve --app`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppChoice {
    /// The app compiled into this binary, with its schema.
    Builtin,
    /// No built-in functions and no built-in tables: only what is pushed.
    None,
}

impl ServeArgs {
    /// For `tickethub` with no subcommand.
    pub fn parse_from<I, T>(args: I) -> ServeArgs
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(args).args
    }

    pub fn into_options(self, default_schema_toml: &'static str) -> anyhow::Result<ServerOptions> {
        let schema = match (self.schema, self.app) {
            (Some(path), _) => SchemaSource::File(path),
            (None, AppChoice::Builtin) => SchemaSource::Embedded(default_schema_toml),
            (None, AppChoice::None) => SchemaSource::Embedded(""),
        };
        let admin_key = match self.admin_key {
            Some(key) => AdminKeySource::Given(key),
            None => AdminKeySource::DataDir,
        };
        Ok(ServerOptions {
            host: self.host,
            port: self.port,
            site_port: self.site_port,
            database: self.database.location(&self.data_dir),
            data_dir: self.data_dir,
            admin_key,
            schema,
            clock: if self.test_clock {
                Clock::Test
            } else {
                Clock::System
            },
            test_clock_skip_ms: self.test_clock_skip.unwrap_or(0.0),
            max_upload_bytes: self
                .max_upload_bytes
                .unwrap_or(*tickethub_knobs::MAX_UPLOAD_BYTES),
            scheduled_jobs: JobRetention {
                keep_finished_for: self
                    .scheduled_job_retention_ms
                    .map(Duration::from_millis)
                    .unwrap_or(*tickethub_knobs::SCHEDULED_JOB_RETENTION),
                ..JobRetention::default()
            },
            env: std::env::vars().collect(),
            auth: crate::server::AuthSource::Environment,
            cluster: self.node_id.map(|node_id| tickethub_store::ClusterOptions {
                node_id,
                advertise_url: self.advertise_url.unwrap_or_default(),
                lease_ttl: self
                    .lease_ttl_ms
                    .map(Duration::from_millis)
                    .unwrap_or(*tickethub_knobs::CLUSTER_LEASE_TTL),
                poll_every: *tickethub_knobs::CLUSTER_COMMIT_POLL,
            }),
        })
    }
}

/// A non-negative, finite number of milliseconds.
fn parse_skip_ms(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err(format!(
            "expected a non-negative number of ms, got `{text}`"
        )),
    }
}
