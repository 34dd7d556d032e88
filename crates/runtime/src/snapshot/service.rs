//! The server side of `npx convex export` and `npx convex import`.
//!
//! Export: a request writes an `_exports` row (`in_progress`), a blocking task writes the ZIP
//! from one snapshot into `<storage dir>/snapshots/exports/`, then the row becomes `completed`
//! with `start_ts` = the snapshot's commit timestamp, which is also the id the CLI downloads by.
//! One export runs at a time; only the newest ZIP is kept.
//!
//! Import: `start_upload` makes a token; each part is written to its own file as it arrives
//! (bounded by `IMPORT_MAX_PART_BYTES` and, in all, `IMPORT_MAX_UPLOAD_BYTES`); `finish_upload`
//! joins the parts in the order the CLI lists them and writes a `_snapshot_imports` row
//! (`uploaded`). A worker plans the import (reads it all once) and moves the row to
//! `waiting_for_confirmation` or `failed`; `perform_import` moves it to `in_progress`, writes it
//! as one bulk transaction, and then to `completed` or `failed`. The CLI follows the row through
//! the `_system/cli/queryImport` subscription.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngCore;
use tickethub_store::{IndexDef, Order, TableDef};
use tickethub_value::{DocumentId, Object, Value};

use super::{
    apply_import, plan_import, write_export, ImportFormat, ImportMode, ImportPlan, ImportSource,
    IncludeStorage, SnapshotError,
};
use crate::writer::run_on_writer;
use crate::{FnError, Runtime};

pub const EXPORTS_TABLE: &str = "_exports";
pub const SNAPSHOT_IMPORTS_TABLE: &str = "_snapshot_imports";
/// Rows `_system/cli/queryImport:list` returns (newest first), as Convex.
const IMPORT_LIST_MAX: usize = 20;
/// How long an export is said to be kept (`expiration_ts`): 14 days, in ns.
const EXPORT_RETENTION_NS: i64 = 14 * 24 * 3600 * 1_000_000_000;

pub(crate) fn system_tables() -> Vec<TableDef> {
    // Schemaless: their rows have Convex's shapes, which change with the state; only the
    // runtime writes them.
    let table = |name: &str| TableDef {
        name: name.to_string(),
        fields: Default::default(),
        indexes: Vec::<IndexDef>::new(),
        validate: false,
    };
    vec![table(EXPORTS_TABLE), table(SNAPSHOT_IMPORTS_TABLE)]
}

/// Args of `_system/cli/queryImport`.
#[derive(serde::Deserialize)]
struct ImportIdArgs {
    #[serde(rename = "importId")]
    import_id: String,
}

impl crate::Args for ImportIdArgs {
    fn validator() -> Option<tickethub_value::Validator> {
        use tickethub_value::validator::v;
        Some(v::object([("importId", v::string())]))
    }
}

/// The admin-only queries the CLI subscribes to.
pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query(
        "_system/cli/exports:getLatest",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Option<Value>, FnError> {
            let latest = ctx.db.query(EXPORTS_TABLE).order(Order::Desc).first()?;
            Ok(latest.map(|d| d.to_value()))
        },
    );
    app.internal_query(
        "_system/cli/queryImport:default",
        |ctx: &crate::QueryCtx, args: ImportIdArgs| -> Result<Option<Value>, FnError> {
            Ok(ctx.db.get(&args.import_id)?.map(|d| d.to_value()))
        },
    );
    app.internal_query(
        "_system/cli/queryImport:list",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Vec<Value>, FnError> {
            let rows = ctx
                .db
                .query(SNAPSHOT_IMPORTS_TABLE)
                .order(Order::Desc)
                .take(IMPORT_LIST_MAX)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
}

/// An upload whose parts are arriving.
struct Upload {
    dir: PathBuf,
    bytes: u64,
}

/// An import between `finish_upload` and its end.
struct PendingImport {
    source: ImportSource,
    plan: Option<ImportPlan>,
}

/// The export and import machinery of one server. Cheap to share (`Arc`).
pub struct SnapshotService {
    rt: Runtime,
    /// `<storage dir>/snapshots`; `None` when the server has no file storage directory.
    dir: Option<PathBuf>,
    uploads: Mutex<HashMap<String, Upload>>,
    imports: Mutex<HashMap<DocumentId, PendingImport>>,
    exporting: AtomicBool,
}

fn obj(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Object>(),
    )
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text a failed import row shows: user errors as they are, internal ones generic.
fn failure_text(e: &SnapshotError) -> String {
    if e.is_user_error() {
        e.to_string()
    } else {
        tracing::error!(error = %e, "import failed");
        "The import failed because of a server error; see the server log.".to_string()
    }
}

/// A downloadable export.
pub struct ExportFile {
    pub file: File,
    pub size: u64,
    /// The snapshot's commit timestamp (the ZIP's name carries it).
    pub ts: u64,
}

impl SnapshotService {
    pub fn new(rt: Runtime) -> Arc<SnapshotService> {
        let dir = rt
            .config()
            .storage
            .as_ref()
            .map(|s| s.dir.join("snapshots"));
        Arc::new(SnapshotService {
            rt,
            dir,
            uploads: Mutex::new(HashMap::new()),
            imports: Mutex::new(HashMap::new()),
            exporting: AtomicBool::new(false),
        })
    }

    fn dir(&self, sub: &str) -> Result<PathBuf, SnapshotError> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| {
                SnapshotError::Io("this server has no data directory for snapshots".into())
            })?
            .join(sub);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    async fn insert_row(
        &self,
        table: &'static str,
        row: Value,
    ) -> Result<DocumentId, SnapshotError> {
        let Value::Object(fields) = row else {
            unreachable!("rows are objects")
        };
        let (id, _) = run_on_writer(self.rt.store(), move |txn| {
            Ok::<_, SnapshotError>(txn.insert(table, fields)?)
        })
        .await?;
        Ok(id)
    }

    async fn patch_row(
        &self,
        id: DocumentId,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<(), SnapshotError> {
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v)))
            .collect();
        run_on_writer(self.rt.store(), move |txn| {
            Ok::<_, SnapshotError>(txn.patch(id, fields)?)
        })
        .await?;
        Ok(())
    }

    // ---- export -------------------------------------------------------------------------------

    /// Start an export (`POST /api/export/request/zip`). Returns once its row says
    /// `in_progress`; the ZIP is written in the background.
    pub async fn request_export(
        self: &Arc<Self>,
        storage: IncludeStorage,
    ) -> Result<(), SnapshotError> {
        if self.exporting.swap(true, Ordering::AcqRel) {
            return Err(SnapshotError::ExportInProgress);
        }
        let started = self.start_export(storage).await;
        if started.is_err() {
            self.exporting.store(false, Ordering::Release);
        }
        started
    }

    async fn start_export(self: &Arc<Self>, storage: IncludeStorage) -> Result<(), SnapshotError> {
        let dir = self.dir("exports")?;
        let start = now_ns();
        let id = self
            .insert_row(
                EXPORTS_TABLE,
                obj([
                    ("state", "in_progress".into()),
                    ("requestor", "snapshotExport".into()),
                    ("start_ts", Value::Int64(start)),
                    ("progress_message", "Writing the snapshot".into()),
                ]),
            )
            .await?;
        let service = self.clone();
        tokio::spawn(async move {
            let outcome = service.clone().write_export_file(dir, storage).await;
            let row = match outcome {
                Ok((ts, tables)) => vec![
                    ("state", "completed".into()),
                    ("start_ts", Value::Int64(ts as i64)),
                    ("complete_ts", Value::Int64(now_ns())),
                    (
                        "expiration_ts",
                        Value::Int64(now_ns() + EXPORT_RETENTION_NS),
                    ),
                    ("zip_object_key", format!("snapshot_{ts}.zip").into()),
                    (
                        "format",
                        obj([
                            ("format", "zip".into()),
                            ("include_storage", (storage == IncludeStorage::Yes).into()),
                        ]),
                    ),
                    (
                        "tables",
                        Value::Array(
                            tables
                                .into_iter()
                                .map(|t| Value::Array(vec![Value::String(String::new()), t.into()]))
                                .collect(),
                        ),
                    ),
                ],
                Err(e) => {
                    tracing::error!(error = %e, "export failed");
                    vec![
                        ("state", "failed".into()),
                        ("failed_ts", Value::Int64(now_ns())),
                    ]
                }
            };
            if let Err(e) = service.patch_row(id, row).await {
                tracing::error!(error = %e, "could not record the end of an export");
            }
            service.exporting.store(false, Ordering::Release);
        });
        Ok(())
    }

    /// Write the ZIP to a temp file, publish it by rename, drop older ones.
    async fn write_export_file(
        self: Arc<Self>,
        dir: PathBuf,
        storage: IncludeStorage,
    ) -> Result<(u64, Vec<String>), SnapshotError> {
        tokio::task::spawn_blocking(move || {
            let temp = dir.join(format!(".export-{}.tmp", random_token()));
            let file = File::create(&temp)?;
            let blobs = self.rt.inner.storage.as_ref().map(|s| s.blob_dir());
            let written = write_export(self.rt.store(), blobs, file, storage, &mut |_| {});
            let summary = match written {
                Ok(summary) => summary,
                Err(e) => {
                    let _ = fs::remove_file(&temp);
                    return Err(e);
                }
            };
            let name = format!("snapshot_{}.zip", summary.ts.0);
            fs::rename(&temp, dir.join(&name))?;
            for old in fs::read_dir(&dir)?.flatten() {
                if old.file_name().to_string_lossy() != name {
                    let _ = fs::remove_file(old.path());
                }
            }
            Ok((summary.ts.0, summary.tables))
        })
        .await
        .map_err(|e| SnapshotError::Io(e.to_string()))?
    }

    /// The ZIP of a completed export, by its `start_ts` (decimal) or its `_exports` id.
    pub fn export_file(&self, snapshot_id: &str) -> Result<ExportFile, SnapshotError> {
        let ts: u64 = match snapshot_id.parse::<u64>() {
            Ok(ts) => ts,
            Err(_) => {
                let snapshot = self.rt.store().read()?;
                let id =
                    tickethub_store::DocReader::decode_id(&snapshot, EXPORTS_TABLE, snapshot_id)
                        .map_err(|_| SnapshotError::NotFound(snapshot_id.to_string()))?;
                let doc = tickethub_store::DocReader::get(&snapshot, id)?
                    .ok_or_else(|| SnapshotError::NotFound(snapshot_id.to_string()))?;
                if doc.fields.get("state").and_then(|v| v.as_str()) != Some("completed") {
                    return Err(SnapshotError::WrongState(
                        "The export is not complete yet.".into(),
                    ));
                }
                match doc.fields.get("start_ts") {
                    Some(Value::Int64(ts)) => *ts as u64,
                    _ => return Err(SnapshotError::NotFound(snapshot_id.to_string())),
                }
            }
        };
        let path = self.dir("exports")?.join(format!("snapshot_{ts}.zip"));
        let file =
            File::open(&path).map_err(|_| SnapshotError::NotFound(snapshot_id.to_string()))?;
        let size = file.metadata()?.len();
        Ok(ExportFile { file, size, ts })
    }

    // ---- import -------------------------------------------------------------------------------

    /// `POST /api/import/start_upload`: a token for the parts to come.
    pub fn start_upload(&self) -> Result<String, SnapshotError> {
        let token = random_token();
        let dir = self.dir("uploads")?.join(&token);
        fs::create_dir_all(&dir)?;
        self.uploads
            .lock()
            .insert(token.clone(), Upload { dir, bytes: 0 });
        Ok(token)
    }

    /// `POST /api/import/upload_part`: keep one part (blocking file I/O: call it off the async
    /// threads). Returns the part's token.
    pub fn upload_part(
        &self,
        token: &str,
        part_number: u32,
        bytes: &[u8],
    ) -> Result<String, SnapshotError> {
        let limit = *tickethub_knobs::IMPORT_MAX_UPLOAD_BYTES;
        let dir = {
            let mut uploads = self.uploads.lock();
            let upload = uploads.get_mut(token).ok_or_else(|| {
                SnapshotError::BadUpload("Unknown upload token; start the upload again.".into())
            })?;
            upload.bytes += bytes.len() as u64;
            if upload.bytes > limit {
                return Err(SnapshotError::BadUpload(format!(
                    "The upload is larger than {limit} bytes (TICKETHUB_IMPORT_MAX_UPLOAD_BYTES)."
                )));
            }
            upload.dir.clone()
        };
        if part_number == 0 || part_number >= 10_000 {
            return Err(SnapshotError::BadUpload(
                "partNumber must be between 1 and 9999.".into(),
            ));
        }
        let mut file = File::create(dir.join(format!("part-{part_number}")))?;
        file.write_all(bytes)?;
        Ok(part_number.to_string())
    }

    /// `POST /api/import/finish_upload`: join the parts, record the import, and plan it in the
    /// background. Returns the `_snapshot_imports` id.
    pub async fn finish_upload(
        self: &Arc<Self>,
        token: &str,
        part_tokens: &[String],
        format: ImportFormat,
        mode: ImportMode,
        table: Option<String>,
    ) -> Result<String, SnapshotError> {
        let upload = self.uploads.lock().remove(token).ok_or_else(|| {
            SnapshotError::BadUpload("Unknown upload token; start the upload again.".into())
        })?;
        match (format, &table) {
            (ImportFormat::Zip, Some(_)) => {
                return Err(SnapshotError::InvalidImport(
                    "A ZIP import holds its own tables; do not name one (--table).".into(),
                ))
            }
            (ImportFormat::Zip, None) => {}
            (_, None) => {
                return Err(SnapshotError::InvalidImport(
                    "Importing a JSONL, JSON or CSV file needs a table name (--table).".into(),
                ))
            }
            (_, Some(_)) => {}
        }
        let joined = self.dir("uploads")?.join(format!("{token}.upload"));
        let parts: Vec<PathBuf> = part_tokens
            .iter()
            .map(|t| {
                t.parse::<u32>()
                    .map(|n| upload.dir.join(format!("part-{n}")))
                    .map_err(|_| SnapshotError::BadUpload(format!("Unknown part token \"{t}\".")))
            })
            .collect::<Result<_, _>>()?;
        let target = joined.clone();
        let updir = upload.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), SnapshotError> {
            let mut out = File::create(&target)?;
            for part in parts {
                let mut file = File::open(&part).map_err(|_| {
                    SnapshotError::BadUpload(
                        "A part listed in partTokens was never uploaded.".into(),
                    )
                })?;
                std::io::copy(&mut file, &mut out)?;
            }
            out.sync_all()?;
            let _ = fs::remove_dir_all(&updir);
            Ok(())
        })
        .await
        .map_err(|e| SnapshotError::Io(e.to_string()))??;

        let mut format_row = vec![("format", Value::from(format.row_name()))];
        if let Some(t) = &table {
            format_row.push(("table", t.clone().into()));
        }
        let id = self
            .insert_row(
                SNAPSHOT_IMPORTS_TABLE,
                obj([
                    ("state", obj([("state", "uploaded".into())])),
                    ("format", obj(format_row)),
                    ("mode", mode.row_name().into()),
                    ("requestor", obj([("type", "snapshotImport".into())])),
                    ("checkpoints", Value::Null),
                ]),
            )
            .await?;
        let display_name = match &table {
            Some(t) => format!("{t}.{}", format.row_name()),
            None => "snapshot.zip".to_string(),
        };
        let source = ImportSource {
            display_name,
            path: joined,
            format,
            table,
            mode,
            max_uncompressed_bytes: *tickethub_knobs::IMPORT_MAX_UNCOMPRESSED_BYTES,
        };
        self.imports.lock().insert(
            id,
            PendingImport {
                source: source.clone(),
                plan: None,
            },
        );
        let service = self.clone();
        tokio::spawn(async move { service.plan(id, source).await });
        Ok(id.encode())
    }

    async fn plan(self: Arc<Self>, id: DocumentId, source: ImportSource) {
        let store = self.rt.store().clone();
        let planned = tokio::task::spawn_blocking(move || plan_import(&store, &source))
            .await
            .map_err(|e| SnapshotError::Io(e.to_string()))
            .and_then(|r| r);
        let state = match planned {
            Ok(plan) => {
                let state = obj([
                    ("state", "waiting_for_confirmation".into()),
                    ("message_to_confirm", plan.message_to_confirm().into()),
                    (
                        "require_manual_confirmation",
                        (plan.rows_deleted() > 0).into(),
                    ),
                ]);
                if let Some(pending) = self.imports.lock().get_mut(&id) {
                    pending.plan = Some(plan);
                }
                state
            }
            Err(e) => {
                self.forget(id);
                obj([
                    ("state", "failed".into()),
                    ("error_message", failure_text(&e).into()),
                ])
            }
        };
        if let Err(e) = self.patch_row(id, vec![("state", state)]).await {
            tracing::error!(error = %e, "could not record an import's plan");
        }
    }

    fn forget(&self, id: DocumentId) {
        if let Some(pending) = self.imports.lock().remove(&id) {
            let _ = fs::remove_file(&pending.source.path);
        }
    }

    fn parse_import_id(&self, import_id: &str) -> Result<DocumentId, SnapshotError> {
        let snapshot = self.rt.store().read()?;
        tickethub_store::DocReader::decode_id(&snapshot, SNAPSHOT_IMPORTS_TABLE, import_id)
            .map_err(|_| SnapshotError::NotFound(import_id.to_string()))
    }

    /// `POST /api/perform_import`: write a planned import. Returns once it is `in_progress`.
    pub async fn perform_import(self: &Arc<Self>, import_id: &str) -> Result<(), SnapshotError> {
        let id = self.parse_import_id(import_id)?;
        let (source, plan) = {
            let mut imports = self.imports.lock();
            let pending = imports
                .get_mut(&id)
                .ok_or_else(|| SnapshotError::NotFound(import_id.to_string()))?;
            let plan = pending.plan.take().ok_or_else(|| {
                SnapshotError::WrongState(
                    "The import is not waiting for confirmation (still being checked, or already started)."
                        .into(),
                )
            })?;
            (pending.source.clone(), plan)
        };
        self.patch_row(
            id,
            vec![(
                "state",
                obj([
                    ("state", "in_progress".into()),
                    (
                        "progress_message",
                        format!("Importing {} documents", plan.rows()).into(),
                    ),
                    ("checkpoint_messages", Value::Array(vec![])),
                ]),
            )],
        )
        .await?;
        let service = self.clone();
        tokio::spawn(async move {
            let store = service.rt.store().clone();
            let worker = service.clone();
            let written = tokio::task::spawn_blocking(move || {
                let blobs = worker.rt.inner.storage.as_ref().map(|s| s.blob_dir());
                apply_import(&store, blobs, &source, &plan, Arc::new(|_| {}))
            })
            .await
            .map_err(|e| SnapshotError::Io(e.to_string()))
            .and_then(|r| r);
            service.forget(id);
            let state = match written {
                Ok(outcome) => obj([
                    ("state", "completed".into()),
                    ("timestamp", Value::Int64(outcome.ts.0 as i64)),
                    (
                        "num_rows_written",
                        Value::Int64(outcome.rows_written as i64),
                    ),
                ]),
                Err(e) => obj([
                    ("state", "failed".into()),
                    ("error_message", failure_text(&e).into()),
                ]),
            };
            if let Err(e) = service.patch_row(id, vec![("state", state)]).await {
                tracing::error!(error = %e, "could not record the end of an import");
            }
        });
        Ok(())
    }

    /// `POST /api/cancel_import`: drop an import that has not started writing.
    pub async fn cancel_import(&self, import_id: &str) -> Result<(), SnapshotError> {
        let id = self.parse_import_id(import_id)?;
        let waiting = self
            .imports
            .lock()
            .get(&id)
            .is_some_and(|p| p.plan.is_some());
        if !waiting {
            return Err(SnapshotError::WrongState(
                "Only an import waiting for confirmation can be canceled.".into(),
            ));
        }
        self.forget(id);
        self.patch_row(
            id,
            vec![(
                "state",
                obj([
                    ("state", "failed".into()),
                    ("error_message", "The import was canceled.".into()),
                ]),
            )],
        )
        .await
    }
}
