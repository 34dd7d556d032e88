//! [`PushService`]: the server side of `npx convex deploy` / `npx convex dev`. `start_push`
//! compiles and analyzes the modules ([`PushService::prepare`]) and keeps them pending;
//! `finish_push` stores them and swaps the pushed functions in ([`PushService::commit`]). A push
//! that fails at any step changes nothing: the functions of the last good push keep running.
//!
//! Tables: `finish_push` creates the tables `schema.ts` declares, and changes their indexes, before
//! the new functions run ([`tickethub_runtime::Runtime::put_pushed_tables`]). At start-up the
//! server opens the store with them from the start ([`PushService::tables_to_create`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tickethub_runtime::{FnError, Runtime, StoredModule};

use crate::{analyze, build_app, Analysis, Bundle, JsError, SchemaTable};

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Js(#[from] JsError),
    /// A pushed function or table has a name the built-in app already uses.
    #[error("{0}")]
    NameClash(String),
    /// `finish_push` without a matching `start_push` (the server restarted in between).
    #[error("No push is in progress on this server (it may have restarted since start_push); run the push again.")]
    NoPendingPush,
    #[error(transparent)]
    Store(#[from] FnError),
}

impl PushError {
    pub fn code(&self) -> &'static str {
        match self {
            PushError::Js(e) => e.code(),
            PushError::NameClash(_) => "PushNameClash",
            PushError::NoPendingPush => "NoPendingPush",
            PushError::Store(e) => e.code(),
        }
    }
}

/// A push that compiled and analyzed, waiting for `finish_push`.
pub struct PreparedPush {
    pub id: u64,
    pub analysis: Arc<Analysis>,
    bundle: Arc<Bundle>,
}

struct Installed {
    bundle: Arc<Bundle>,
    analysis: Arc<Analysis>,
}

pub struct PushService {
    runtime: Runtime,
    next_id: AtomicU64,
    pending: Mutex<Option<Arc<PreparedPush>>>,
    installed: Mutex<Option<Installed>>,
}

impl PushService {
    pub fn new(runtime: Runtime) -> PushService {
        PushService {
            runtime,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(None),
            installed: Mutex::new(None),
        }
    }

    /// The tables `schema.ts` of the stored push declares that `existing` lacks: the server adds
    /// them to the schema it opens the store with. Reads the store; call it off async threads.
    pub fn tables_to_create(
        modules: Vec<StoredModule>,
        existing: &BTreeSet<String>,
    ) -> Result<Vec<crate::SchemaTable>, JsError> {
        if modules.is_empty() {
            return Ok(Vec::new());
        }
        let analysis = analyze(&Bundle::compile(modules)?)?;
        Ok(analysis
            .tables
            .into_iter()
            .filter(|t| !existing.contains(&t.name))
            .collect())
    }

    /// Install the stored push at start-up (nothing if nothing was pushed). Blocking.
    pub fn load_stored(&self) -> Result<usize, PushError> {
        let modules = self.runtime.pushed_modules()?;
        if modules.is_empty() {
            return Ok(0);
        }
        let bundle = Bundle::compile(modules)?;
        let analysis = Arc::new(analyze(&bundle)?);
        self.install(bundle, analysis.clone())?;
        Ok(analysis.functions.len())
    }

    /// Load the stored push again if it differs from the running one: a cluster follower, after
    /// the leader stored a new push. Its tables come first (the follower's catalog learns what
    /// the leader created), then its functions, routes and crons. Blocking (QuickJS, and the
    /// catalog's read): call it off async threads. Returns whether anything changed.
    pub fn reload_stored(&self) -> Result<bool, PushError> {
        let modules = self.runtime.pushed_modules()?;
        if modules == self.current_modules() {
            return Ok(false);
        }
        let bundle = Bundle::compile(modules)?;
        let analysis = Arc::new(analyze(&bundle)?);
        let tables = analysis.tables.iter().map(SchemaTable::table_def).collect();
        self.runtime
            .store()
            .put_tables(tables)
            .map_err(FnError::from)?;
        self.install(bundle, analysis)?;
        Ok(true)
    }

    /// Tables of the built-in app: every user table of the store that the current push does not
    /// declare.
    fn builtin_tables(&self) -> BTreeSet<String> {
        let pushed: BTreeSet<String> = self
            .installed
            .lock()
            .as_ref()
            .map(|i| i.analysis.tables.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default();
        self.runtime
            .store()
            .schema()
            .tables
            .keys()
            .filter(|name| !name.starts_with('_') && !pushed.contains(*name))
            .cloned()
            .collect()
    }

    /// Compile and analyze `modules`, check their names, and keep them pending. Blocking
    /// (QuickJS): call it off async threads.
    pub fn prepare(&self, modules: Vec<StoredModule>) -> Result<Arc<PreparedPush>, PushError> {
        let started = Instant::now();
        let source_bytes: usize = modules.iter().map(|m| m.source.len()).sum();
        let bundle = Bundle::compile(modules)?;
        let analysis = analyze(&bundle)?;
        for f in &analysis.functions {
            if self.runtime.is_builtin_function(&f.path()) {
                return Err(PushError::NameClash(format!(
                    "The pushed function `{}` has the same path as a function of the built-in app; rename it or its module.",
                    f.path()
                )));
            }
        }
        let builtin = self.builtin_tables();
        if let Some(table) = analysis.tables.iter().find(|t| builtin.contains(&t.name)) {
            return Err(PushError::NameClash(format!(
                "The pushed schema defines the table `{}`, which the built-in app already defines; rename it.",
                table.name
            )));
        }
        let prepared = Arc::new(PreparedPush {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            analysis: Arc::new(analysis),
            bundle,
        });
        *self.pending.lock() = Some(prepared.clone());
        tracing::info!(
            source_bytes,
            millis = started.elapsed().as_millis() as u64,
            "push compiled and analyzed"
        );
        Ok(prepared)
    }

    /// Store the pending push (`id`, or the latest if the CLI did not hand the id back) and run
    /// its functions from now on.
    pub async fn commit(&self, id: Option<u64>) -> Result<Arc<Analysis>, PushError> {
        let started = Instant::now();
        let prepared = {
            let mut pending = self.pending.lock();
            match pending.as_ref() {
                Some(p) if id.is_none_or(|id| id == p.id) => pending.take(),
                _ => None,
            }
        }
        .ok_or(PushError::NoPendingPush)?;
        // The tables first, so the new functions never run without them; a table left behind by
        // a failure further on is empty and harmless.
        let tables = prepared.analysis.tables.iter().map(SchemaTable::table_def);
        self.runtime.put_pushed_tables(tables.collect()).await?;
        self.runtime
            .save_pushed_modules(prepared.bundle.modules().to_vec())
            .await?;
        self.install(prepared.bundle.clone(), prepared.analysis.clone())?;
        tracing::info!(
            millis = started.elapsed().as_millis() as u64,
            "push stored and running"
        );
        Ok(prepared.analysis.clone())
    }

    fn install(&self, bundle: Arc<Bundle>, analysis: Arc<Analysis>) -> Result<(), PushError> {
        self.runtime.install_pushed(build_app(&bundle, &analysis))?;
        tracing::info!(
            functions = analysis.functions.len(),
            bytecode_bytes = bundle.bytecode_bytes(),
            "pushed functions installed"
        );
        *self.installed.lock() = Some(Installed { bundle, analysis });
        Ok(())
    }

    /// The analysis of the running push, if any.
    pub fn current(&self) -> Option<Arc<Analysis>> {
        self.installed.lock().as_ref().map(|i| i.analysis.clone())
    }

    /// The modules of the running push.
    pub fn current_modules(&self) -> Vec<StoredModule> {
        self.installed
            .lock()
            .as_ref()
            .map(|i| i.bundle.modules().to_vec())
            .unwrap_or_default()
    }
}
