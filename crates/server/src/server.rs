//! [`Server`]: everything between "options parsed" and "listening", and back down again.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tickethub_auth::{AdminKey, AdminKeyOrigin, AuthConfig, StripeVerifier, TokenVerifier};
use tickethub_router::{AppState, GracePeriod, RouterConfig, Surface};
use tickethub_runtime::{App, Clock, JobRetention, Runtime, RuntimeConfig, StorageConfig};
use tickethub_store::{DataDirLock, Schema, Store, StoreLocation, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth_bridge::ClerkAuthenticator;

/// How long in-flight requests, then in-flight scheduled jobs, get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Environment variable the Ticket Hub Clerk webhook endpoint needs.
const WEBHOOK_SECRET_ENV: &str = "CLERK_WEBHOOK_SECRET";
/// Environment variable the Ticket Hub Stripe webhook endpoint needs.
const STRIPE_WEBHOOK_SECRET_ENV: &str = "STRIPE_WEBHOOK_SECRET";

#[derive(Clone, Debug)]
pub enum SchemaSource {
    /// Built into the binary.
    Embedded(&'static str),
    /// `--schema <path>`.
    File(PathBuf),
    /// Given directly (tests, embedding).
    Text(String),
}

#[derive(Clone, Debug)]
pub enum AdminKeySource {
    /// `--admin-key` / `TICKETHUB_ADMIN_KEY`.
    Given(String),
    /// Load `<data dir>/admin_key`, creating it on first start.
    DataDir,
}

#[derive(Clone, Debug)]
pub enum AuthSource {
    /// `CLERK_JWT_ISSUER_DOMAIN` from [`ServerOptions::env`]; unset means auth is off.
    Environment,
    Config(AuthConfig),
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub host: IpAddr,
    /// 0 picks a free port (see [`Server::api_addr`]).
    pub port: u16,
    pub site_port: u16,
    /// Stored files, the admin key and the lock; the SQLite database too unless `database` says
    /// Postgres.
    pub data_dir: PathBuf,
    /// Where the documents live (`--database-url`): the data dir's SQLite file or Postgres.
    pub database: StoreLocation,
    pub admin_key: AdminKeySource,
    pub schema: SchemaSource,
    pub clock: Clock,
    /// With the test clock: ms to move the persisted test time forward once at start-up
    /// (simulated downtime; `--test-clock-skip`). 0 = none.
    pub test_clock_skip_ms: f64,
    /// Largest file one upload may hold, in bytes.
    pub max_upload_bytes: u64,
    /// How long finished scheduled jobs are kept (`--scheduled-job-retention-ms`).
    pub scheduled_jobs: JobRetention,
    /// Given to functions (`ctx.env`) and read for auth configuration.
    pub env: BTreeMap<String, String>,
    pub auth: AuthSource,
    /// Cluster mode (`--node-id`): this node's part in a cluster over Postgres.
    pub cluster: Option<tickethub_store::ClusterOptions>,
}

/// A running server. Dropping it without [`Server::shutdown`] leaves the tasks running.
pub struct Server {
    pub api_addr: SocketAddr,
    pub site_addr: SocketAddr,
    admin_key: AdminKey,
    /// Set when the key came from (or was written to) the data dir, to tell the operator.
    admin_key_file: Option<(AdminKeyOrigin, PathBuf)>,
    data_dir: PathBuf,
    /// The store's location as logs may show it (no password).
    database: String,
    runtime: Runtime,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// Rebuilds the JWT verifier when `CLERK_JWT_ISSUER_DOMAIN` changes as a deployment
    /// variable; aborted at shutdown.
    env_follower: Option<JoinHandle<()>>,
    /// Held until the server is dropped (after [`Server::shutdown`] closed the store): no other
    /// server may use the data dir meanwhile.
    _data_dir_lock: DataDirLock,
}

impl Server {
    pub async fn start(app: App, options: ServerOptions) -> anyhow::Result<Server> {
        let schema_text = match &options.schema {
            SchemaSource::Embedded(text) => text.to_string(),
            SchemaSource::Text(text) => text.clone(),
            SchemaSource::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("could not read the schema file {}", path.display()))?,
        };
        let mut schema = Schema::from_toml(&schema_text).map_err(|e| anyhow::anyhow!("{e}"))?;
        for table in Runtime::system_tables() {
            schema.add_system_table(table);
        }

        std::fs::create_dir_all(&options.data_dir).with_context(|| {
            format!(
                "could not create the data directory {}",
                options.data_dir.display()
            )
        })?;
        // Before anything in the data dir is read or written: a second server on the same dir
        // would keep its own timestamps, commit log and live queries beside ours. The error names
        // the dir and the holder's pid on its own, so it gets no extra context.
        let data_dir_lock = DataDirLock::acquire(&options.data_dir)?;
        // A damaged, foreign or newer database file is refused now, with one line naming it and
        // before anything else is said or written; the store checks again when it opens.
        if let StoreLocation::Sqlite { dir } = &options.database {
            tickethub_store::check_database_file(&dir.join(tickethub_store::DB_FILE))?;
        }
        let (admin_key, admin_key_file) = match &options.admin_key {
            AdminKeySource::Given(key) => (
                AdminKey::from_string(key).map_err(|e| anyhow::anyhow!("{e}"))?,
                None,
            ),
            AdminKeySource::DataDir => {
                let loaded = AdminKey::load_or_create(&options.data_dir)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                (loaded.key, Some((loaded.origin, loaded.path)))
            }
        };

        let auth_config = match &options.auth {
            AuthSource::Config(config) => config.clone(),
            AuthSource::Environment => {
                AuthConfig::from_env_lookup(|name| options.env.get(name).cloned())
                    .map_err(|e| anyhow::anyhow!("auth configuration: {e}"))?
            }
        };
        if let Some(warning) = auth_config.startup_warning() {
            tracing::warn!("{warning}");
        }
        for provider in auth_config.describe_providers() {
            tracing::info!("auth provider: {provider}");
        }
        let verifier = TokenVerifier::new(auth_config)
            .map_err(|e| anyhow::anyhow!("auth configuration: {e}"))?;
        let auth_enabled = verifier.is_enabled();

        // Bind before opening the store: a port in use should fail before the data is touched.
        let api_listener = bind(options.host, options.port, "API").await?;
        let site_listener = bind(options.host, options.site_port, "site").await?;
        let api_addr = api_listener.local_addr()?;
        let site_addr = site_listener.local_addr()?;

        let location = options.database.clone();
        let database = crate::database::describe(&location);
        tracing::info!("storage: {database}");
        if let Some(warning) = crate::database::connection_warning(&location) {
            tracing::warn!("{warning}");
        }
        let cluster = options.cluster.clone();
        let store = tokio::task::spawn_blocking(move || {
            open_store_with_pushed_tables(&location, cluster.as_ref(), schema)
        })
        .await
        .context("opening the store")?
        // The code first (DatabaseInUse, DatabaseUnavailable, ...): scripts and people both
        // recognise it.
        .map_err(|e| {
            // At start-up the operator needs the driver's reason (refused, no such host, bad
            // password), which clients are never shown.
            let detail = match &e {
                tickethub_store::StoreError::DatabaseUnavailable(why) => format!(" ({why})"),
                _ => String::new(),
            };
            anyhow::anyhow!(
                "could not open the database ({database}): {}: {e}{detail}",
                e.code()
            )
        })?;
        tracing::info!(backend = %store.backend(), "store open: {database}");

        let config = RuntimeConfig {
            clock: options.clock,
            auth_enabled,
            env: options.env.clone(),
            test_clock_skip_ms: options.test_clock_skip_ms,
            storage: Some(StorageConfig {
                dir: options.data_dir.join("storage"),
                // Upload and file URLs use the API origin, as Convex's use its cloud origin.
                api_origin: options
                    .env
                    .get("CONVEX_CLOUD_ORIGIN")
                    .cloned()
                    .unwrap_or_else(|| format!("http://{api_addr}")),
                max_upload_bytes: options.max_upload_bytes,
            }),
            scheduled_jobs: options.scheduled_jobs,
        };
        // Blocking: with the test clock it reads (and may write) the persisted offset.
        let runtime = tokio::task::spawn_blocking(move || Runtime::try_new(app, store, config))
            .await
            .context("starting the runtime")?
            .map_err(|e| anyhow::anyhow!("could not start the runtime: {e}"))?;
        if options.cluster.is_some() {
            runtime.set_forwarder(tickethub_router::cluster::HttpForwarder::new(
                admin_key.as_str(),
                runtime.store().clone(),
            ));
            tracing::info!(
                node = runtime.store().node_id().unwrap_or_default(),
                role = runtime.store().role().as_str(),
                leader = runtime.store().leader_url().unwrap_or_default(),
                "cluster node started"
            );
        }
        // After the runtime: a secret set as a deployment variable (`npx convex env set`) counts.
        if runtime.env_var(WEBHOOK_SECRET_ENV).is_none() {
            tracing::warn!(
                "{WEBHOOK_SECRET_ENV} is not set: Clerk webhook deliveries cannot be verified and the webhook endpoint answers 500."
            );
        }
        match runtime
            .env_var(STRIPE_WEBHOOK_SECRET_ENV)
            .filter(|secret| !secret.trim().is_empty())
        {
            None => tracing::warn!(
                "{STRIPE_WEBHOOK_SECRET_ENV} is not set: Stripe webhook deliveries cannot be verified and POST /stripe-webhook answers 500."
            ),
            Some(secret) => {
                if let Err(error) = StripeVerifier::new(&secret) {
                    tracing::warn!(
                        "{STRIPE_WEBHOOK_SECRET_ENV} is not usable ({error}); POST /stripe-webhook answers 500."
                    );
                }
            }
        }

        let authenticator = Arc::new(ClerkAuthenticator::new(verifier, admin_key.clone()));
        // An auth configuration given explicitly (tests, embedding) stays as given; one from the
        // environment follows the deployment's variables too.
        let env_follower = matches!(options.auth, AuthSource::Environment)
            .then(|| crate::auth_bridge::follow_env_vars(runtime.clone(), authenticator.clone()));
        let state = AppState::new(
            runtime.clone(),
            authenticator,
            RouterConfig {
                clock: options.clock,
                ..RouterConfig::default()
            },
        );
        // The functions of the last push (`npx convex deploy`), beside the built-in ones. A push
        // that no longer loads (a newer tickethub refusing it) leaves only the built-in app.
        let pushes = state.pushes.clone();
        match tokio::task::spawn_blocking(move || pushes.load_stored()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(count)) => tracing::info!(functions = count, "pushed functions loaded"),
            Ok(Err(e)) => {
                tracing::error!(code = e.code(), "the stored push could not be loaded: {e}")
            }
            Err(e) => tracing::error!("loading the stored push panicked: {e}"),
        }
        if options.cluster.is_some() {
            follow_pushes(&runtime, state.pushes.clone());
        }
        // After the push is installed: the scheduler's first pass syncs the cron rows with
        // the built-in and the pushed crons together (a pushed cron's missed run stays due).
        runtime.start_background();
        let (stop, stop_rx) = watch::channel(false);
        let listeners = [(api_listener, Surface::Api), (site_listener, Surface::Site)]
            .into_iter()
            .map(|(listener, surface)| {
                let mut stop_rx = stop_rx.clone();
                let stopped = async move {
                    let _ = stop_rx.wait_for(|stopped| *stopped).await;
                };
                tokio::spawn(tickethub_router::serve(
                    listener,
                    surface,
                    state.clone(),
                    stopped,
                    GracePeriod(SHUTDOWN_GRACE),
                ))
            })
            .collect();
        Ok(Server {
            api_addr,
            site_addr,
            admin_key,
            admin_key_file,
            data_dir: options.data_dir,
            database: crate::database::describe(&options.database),
            runtime,
            stop,
            listeners,
            env_follower,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn admin_key(&self) -> &str {
        self.admin_key.as_str()
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The start-up lines an operator reads (stdout, so scripts can pick up the ports).
    pub fn print_summary(&self) {
        if let Some((origin, path)) = &self.admin_key_file {
            let how = match origin {
                AdminKeyOrigin::Created => "generated and saved in",
                AdminKeyOrigin::Loaded => "from",
            };
            println!(
                "tickethub admin key: {} ({how} {})",
                self.admin_key.as_str(),
                path.display()
            );
        }
        println!(
            "tickethub listening: api http://{}, site http://{}, data {}, database {}",
            self.api_addr,
            self.site_addr,
            self.data_dir.display(),
            self.database
        );
    }

    /// Stop accepting, let in-flight requests finish (bounded), stop the scheduler and crons, and
    /// close the store (checkpointing its log).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(follower) = &self.env_follower {
            follower.abort();
        }
        for listener in self.listeners {
            if let Err(e) = listener.await {
                tracing::warn!("a listener task ended abnormally: {e}");
            }
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, self.runtime.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("scheduled jobs still running after {SHUTDOWN_GRACE:?}; closing anyway");
        }
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.store().close())
            .await
            .context("closing the store")?
            .map_err(|e| anyhow::anyhow!("could not close the database cleanly: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(host: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (is another tickethub running? choose another with --port / --site-port)"
        } else {
            ""
        };
        anyhow::anyhow!("could not listen on {addr} for the {what} port: {e}{hint}")
    })
}

/// Cluster mode: when a commit rewrites the stored push while this node follows (the leader ran
/// a push), load it here too, tables first, so pushed functions, routes, crons and tables reach
/// every node without a restart. A leader installed its own push already (the reload finds it
/// unchanged).
fn follow_pushes(runtime: &Runtime, pushes: Arc<tickethub_js::PushService>) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    runtime.on_pushed_modules_written(move || notify.notify_one());
    let store = runtime.store().clone();
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            if store.role() != tickethub_store::NodeRole::Follower {
                continue;
            }
            let pushes = pushes.clone();
            match tokio::task::spawn_blocking(move || pushes.reload_stored()).await {
                Ok(Ok(true)) => tracing::info!("cluster: reloaded the push the leader stored"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(
                        code = e.code(),
                        "cluster: the leader's push could not be loaded here: {e}"
                    )
                }
                Err(e) => tracing::error!("cluster: reloading the push panicked: {e}"),
            }
        }
    });
}

/// Open the store; if the stored push (`npx convex deploy`) declares tables the schema lacks,
/// close it and open it again with those tables added (schemaless, with the push's indexes).
/// Opening with them, rather than adding them once open (as a push does), matters: the migration
/// at open drops the indexes of a table its schema does not name.
fn open_store_with_pushed_tables(
    location: &StoreLocation,
    cluster: Option<&tickethub_store::ClusterOptions>,
    mut schema: Schema,
) -> Result<Store, tickethub_store::StoreError> {
    // Cluster mode (`--node-id`) over Postgres; otherwise the one writer on SQLite or Postgres.
    let open = |schema: Schema| match (location, cluster) {
        (StoreLocation::Postgres(at), Some(cluster)) => {
            Store::open_cluster(at, cluster.clone(), schema, StoreOptions::default())
        }
        _ => Store::open_at(location, schema, StoreOptions::default()),
    };
    let store = open(schema.clone())?;
    let modules = match tickethub_runtime::pushed::read_stored_modules(&store) {
        Ok(modules) => modules,
        Err(e) => {
            tracing::error!("could not read the stored push: {e}");
            return Ok(store);
        }
    };
    let existing = schema.tables.keys().cloned().collect();
    let tables = match tickethub_js::PushService::tables_to_create(modules, &existing) {
        Ok(tables) => tables,
        Err(e) => {
            tracing::error!(
                code = e.code(),
                "the stored push could not be analyzed: {e}"
            );
            return Ok(store);
        }
    };
    if tables.is_empty() {
        return Ok(store);
    }
    store.close()?;
    drop(store);
    for table in tables {
        tracing::info!(table = %table.name, "adding a table of the pushed schema");
        schema.tables.insert(table.name.clone(), table.table_def());
    }
    open(schema)
}
