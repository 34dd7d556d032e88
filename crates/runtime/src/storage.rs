//! Convex file storage: the `_storage` system table, `ctx.storage`, signed one-time upload
//! tokens, and the bridge between `_storage` rows and the blob directory.
//!
//! A file is a `_storage` row (`sha256` base64, `size`, optional `contentType`) naming a blob in
//! the content-addressed [`BlobDir`]. Ordering is what makes a crash safe: the blob is written to
//! a temp file, fsynced and published under its digest *before* the row commits, so a committed
//! row always finds a complete blob; a crash in between leaves an unreferenced blob, collected
//! at the next start-up. A blob is removed only after the commit that dropped its last row:
//! removal requests queue a no-op job behind the deleting transaction on the store's writer, and
//! the `storage-gc` thread acts when that job's batch is durable, re-checking that no row
//! references the digest and no upload in flight holds it ("pinned").
//!
//! Upload URLs carry a token `<expiresMs>.<nonce>.<HMAC-SHA256>` signed with a per-deployment
//! secret kept in the data dir. It expires after [`UPLOAD_URL_TTL_MS`] (by the runtime's clock,
//! so the test clock moves it) and works once: its nonce is recorded in
//! `_storage_upload_tokens` in the same transaction that inserts the file's row.
//!
//! The file's URL is `<API origin>/api/storage/<uuid>` where the uuid is the 16 internal bytes
//! of its `_storage` id (Convex keeps a separate uuid column; deriving it keeps the row in
//! Convex's exact shape, and either names the other).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use rand::RngCore;
use serde::Serialize;
pub use tickethub_blobs::Sha256;
use tickethub_blobs::{BlobDir, BlobError, StagedBlob};
use tickethub_store::{
    Bound, DocReader, Document, IndexDef, IndexQuery, Order, Outcome, Store, StoreError, TableDef,
    WriteTxn,
};
use tickethub_value::{validator::v, DocumentId, Object, TableNumber, Value};

use crate::ctx::CallEnv;
use crate::db::{with_writer, Source, TxnAccess};
use crate::engine::Inner;
use crate::writer::run_on_writer;
use crate::{FnError, Runtime};

pub const STORAGE_TABLE: &str = "_storage";
pub const UPLOAD_TOKENS_TABLE: &str = "_storage_upload_tokens";
const BY_SHA256: &str = "by_sha256";
const BY_NONCE: &str = "by_nonce";
const BY_EXPIRY: &str = "by_expiry";
/// How long an upload URL works (Convex: one hour).
pub const UPLOAD_URL_TTL_MS: f64 = 3_600_000.0;
/// Expired token records removed per upload, so the table stays bounded without a sweeper.
const PURGE_PER_UPLOAD: usize = 16;
/// Blobs checked per snapshot when collecting orphans (well under the per-transaction read cap).
const ORPHAN_CHECKS_PER_SNAPSHOT: usize = 1000;
/// Chunks queued between the network and the disk writer of one upload (bounds its memory).
const UPLOAD_QUEUE_CHUNKS: usize = 2;
/// Network frames are gathered into chunks of this size before the hand-off to the disk
/// writer: a few wake-ups per MiB instead of one per frame (frames are tens of KiB), while
/// the bytes in flight per upload stay near 1 MiB (queue + gathering + the chunk being written).
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// The secret that signs upload tokens, inside the storage directory.
const KEY_FILE: &str = "upload_url.key";
pub(crate) const BLOBS_DIR: &str = "blobs";

/// Where file storage lives and how it is reached.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// `<data dir>/storage`: blobs and the signing secret.
    pub dir: PathBuf,
    /// The API port's origin, e.g. `http://127.0.0.1:3210` (upload and file URLs start with it).
    pub api_origin: String,
    /// Largest file an upload (or `ctx.storage.store`) may hold.
    pub max_upload_bytes: u64,
}

/// Failures of file storage. Each has a stable code ([`StorageError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("The upload URL is not valid: its token was not issued by this deployment.")]
    InvalidUploadToken,
    #[error("The upload URL has expired (they last one hour); ask for a new one with generateUploadUrl.")]
    UploadUrlExpired,
    #[error("The upload URL was already used (each works once); ask for a new one with generateUploadUrl.")]
    UploadUrlUsed,
    #[error("The file is larger than this deployment's limit of {limit} bytes (tickethub serve --max-upload-bytes).")]
    TooLarge { limit: u64 },
    #[error("The uploaded content does not match the SHA-256 in the Digest header.")]
    Sha256Mismatch,
    #[error("File storage is not configured on this server.")]
    NotConfigured,
    #[error("The upload ended before its body was complete.")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file's row is there but its bytes are not on this node's disk: on a single server the
    /// disk lost them (internal); in a cluster they are on the node that led when they were
    /// uploaded, so a follower asks the leader.
    #[error("the bytes of stored file {storage_id} are not on this server's disk")]
    BlobMissing { storage_id: String },
    /// Disk failure. Internal: the message is for logs.
    #[error("blob storage failed: {0}")]
    Blob(#[from] BlobError),
}

impl StorageError {
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::InvalidUploadToken => "InvalidUploadToken",
            StorageError::UploadUrlExpired => "UploadUrlExpired",
            StorageError::UploadUrlUsed => "UploadUrlUsed",
            StorageError::TooLarge { .. } => "FileTooLarge",
            StorageError::Sha256Mismatch => "Sha256Mismatch",
            StorageError::NotConfigured => "StorageNotConfigured",
            StorageError::Interrupted => "UploadInterrupted",
            StorageError::Store(e) => e.code(),
            StorageError::Blob(BlobError::TooLarge { .. }) => "FileTooLarge",
            StorageError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                "StorageFull"
            }
            StorageError::Blob(_) | StorageError::BlobMissing { .. } => "StorageError",
        }
    }
}

impl From<StorageError> for FnError {
    fn from(e: StorageError) -> FnError {
        match e {
            StorageError::Store(e) => FnError::Store(e),
            StorageError::Blob(BlobError::TooLarge { limit }) => {
                FnError::msg(StorageError::TooLarge { limit }.to_string())
            }
            // A full disk keeps its stable code (`StorageFull`), as it does for the database.
            StorageError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                FnError::Store(StoreError::from(e))
            }
            StorageError::Blob(e) => FnError::Internal(e.to_string()),
            other => FnError::msg(other.to_string()),
        }
    }
}

pub(crate) fn system_tables() -> Vec<TableDef> {
    let files = TableDef {
        name: STORAGE_TABLE.to_string(),
        fields: [
            ("sha256", v::string()),
            ("size", v::number()),
            ("contentType", v::optional(v::string())),
        ]
        .into_iter()
        .map(|(k, val)| (k.to_string(), val))
        .collect(),
        indexes: vec![IndexDef {
            name: BY_SHA256.to_string(),
            fields: vec!["sha256".to_string()],
        }],
        validate: true,
    };
    let tokens = TableDef {
        name: UPLOAD_TOKENS_TABLE.to_string(),
        fields: [("nonce", v::string()), ("expiresAt", v::number())]
            .into_iter()
            .map(|(k, val)| (k.to_string(), val))
            .collect(),
        indexes: vec![
            IndexDef {
                name: BY_NONCE.to_string(),
                fields: vec!["nonce".to_string()],
            },
            IndexDef {
                name: BY_EXPIRY.to_string(),
                fields: vec!["expiresAt".to_string()],
            },
        ],
        validate: true,
    };
    vec![files, tokens]
}

/// What the runtime keeps for file storage.
pub(crate) struct StorageState {
    blobs: BlobDir,
    key: ring::hmac::Key,
    origin: String,
    max_upload_bytes: u64,
    table: TableNumber,
    /// Digests held by uploads between "published" and "row committed or given up": never
    /// removed while held.
    pins: Mutex<HashMap<Sha256, usize>>,
    /// To the `storage-gc` thread: digests to remove if nothing references them any more.
    gc: Mutex<std::sync::mpsc::Sender<Sha256>>,
}

/// Open file storage: the blob directory (dropping unfinished uploads), the signing secret, the
/// start-up orphan collection, and the `storage-gc` thread.
pub(crate) fn open(
    config: &StorageConfig,
    store: &Store,
) -> Result<Arc<StorageState>, StorageError> {
    let blobs = BlobDir::open(&config.dir.join(BLOBS_DIR))?;
    let key = load_or_create_key(&config.dir)?;
    let table = store
        .read()?
        .table_number(STORAGE_TABLE)
        .ok_or_else(|| StoreError::UnknownTable(STORAGE_TABLE.to_string()))?;
    collect_orphans(&blobs, store)?;
    let (gc, requests) = std::sync::mpsc::channel::<Sha256>();
    let state = Arc::new(StorageState {
        blobs,
        key,
        origin: config.api_origin.trim_end_matches('/').to_string(),
        max_upload_bytes: config.max_upload_bytes,
        table,
        pins: Mutex::new(HashMap::new()),
        gc: Mutex::new(gc),
    });
    // The thread holds the state weakly: it ends when the runtime (and so the sender) is gone.
    let weak = Arc::downgrade(&state);
    let store = store.clone();
    std::thread::Builder::new()
        .name("storage-gc".into())
        .spawn(move || {
            while let Ok(sha) = requests.recv() {
                let Some(state) = weak.upgrade() else { break };
                if let Err(e) = state.remove_if_unreferenced(&store, sha) {
                    tracing::warn!(sha256 = %sha.to_hex(), "could not collect a deleted file's blob: {e}");
                }
            }
        })
        .map_err(BlobError::Io)?;
    Ok(state)
}

fn load_or_create_key(dir: &Path) -> Result<ring::hmac::Key, StorageError> {
    fs::create_dir_all(dir).map_err(BlobError::Io)?;
    let path = dir.join(KEY_FILE);
    let secret = match fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        Ok(_) => {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "{} is not a 32-byte secret; remove it to generate a new one (outstanding upload URLs stop working)",
                path.display()
            )))
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut secret);
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(BlobError::Io)?;
            file.write_all(&secret).map_err(BlobError::Io)?;
            file.sync_all().map_err(BlobError::Io)?;
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(BlobError::Io)?;
            secret
        }
        Err(e) => return Err(BlobError::Io(e).into()),
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}

/// Most rows `_system/storage:list` returns (the newest first).
const SYSTEM_LIST_MAX: usize = 1000;

/// `_system/storage:list` (admin only): the newest `_storage` rows, as the dashboard's file
/// list shows them.
pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query(
        "_system/storage:list",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Vec<Value>, FnError> {
            let rows = ctx
                .db
                .query(STORAGE_TABLE)
                .order(Order::Desc)
                .take(SYSTEM_LIST_MAX)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
}

fn by_sha256(sha: &Sha256) -> IndexQuery {
    IndexQuery {
        table: STORAGE_TABLE.to_string(),
        index: BY_SHA256.to_string(),
        eq: vec![("sha256".to_string(), Some(Value::String(sha.to_base64())))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

fn is_referenced(reader: &dyn DocReader, sha: &Sha256) -> Result<bool, StoreError> {
    Ok(!reader.collect(&by_sha256(sha), Some(1))?.is_empty())
}

/// Remove every blob no `_storage` row references (left by a crash between publishing a blob
/// and committing its row, or between a delete's commit and the blob's removal).
fn collect_orphans(blobs: &BlobDir, store: &Store) -> Result<(), StorageError> {
    let all = blobs.list()?;
    let mut removed = 0usize;
    for chunk in all.chunks(ORPHAN_CHECKS_PER_SNAPSHOT) {
        let snapshot = store.read()?;
        for sha in chunk {
            if !is_referenced(&snapshot, sha)? {
                blobs.remove(sha)?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed stored files no _storage row referenced");
    }
    Ok(())
}

impl StorageState {
    /// The blob directory (snapshot export reads it, import publishes into it).
    pub(crate) fn blob_dir(&self) -> &BlobDir {
        &self.blobs
    }

    fn pin(&self, sha: Sha256) {
        *self.pins.lock().entry(sha).or_insert(0) += 1;
    }

    fn unpin(&self, sha: Sha256) {
        let mut pins = self.pins.lock();
        if let Some(count) = pins.get_mut(&sha) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&sha);
            }
        }
    }

    /// Runs on the `storage-gc` thread, after the commit that may have dropped the last row.
    /// The pin lock is held throughout, so no upload can publish-and-pin the same digest between
    /// the check and the removal.
    fn remove_if_unreferenced(&self, store: &Store, sha: Sha256) -> Result<(), StorageError> {
        let pins = self.pins.lock();
        if pins.contains_key(&sha) {
            // An upload holds it; if that upload fails, it asks again.
            return Ok(());
        }
        if !is_referenced(&store.read()?, &sha)? {
            self.blobs.remove(&sha)?;
            tracing::debug!(sha256 = %sha.to_hex(), "removed an unreferenced blob");
        }
        drop(pins);
        Ok(())
    }

    /// Ask for `sha`'s blob to be removed once every write queued so far is durable and if
    /// nothing references it then. Safe to call from the writer thread (it only queues a job).
    fn request_gc(&self, store: &Store, sha: Sha256) {
        let gc = self.gc.lock().clone();
        store.submit(
            Box::new(|_txn| Outcome::Commit),
            Box::new(move |_committed| {
                let _ = gc.send(sha);
            }),
        );
    }

    fn sign(&self, expires_ms: u64, nonce: &str) -> String {
        let tag = ring::hmac::sign(&self.key, token_message(expires_ms, nonce).as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn upload_url(&self, now_ms: f64) -> String {
        let expires_ms = (now_ms + UPLOAD_URL_TTL_MS).max(0.0) as u64;
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
        let mac = self.sign(expires_ms, &nonce);
        format!(
            "{}/api/storage/upload?token={expires_ms}.{nonce}.{mac}",
            self.origin
        )
    }

    /// Check a token's signature and expiry. Constant-time on the signature.
    fn verify(&self, token: &str, now_ms: f64) -> Result<UploadGrant, StorageError> {
        let mut parts = token.split('.');
        let (Some(expires), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StorageError::InvalidUploadToken);
        };
        let expires_ms: u64 = expires
            .parse()
            .map_err(|_| StorageError::InvalidUploadToken)?;
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| StorageError::InvalidUploadToken)?;
        ring::hmac::verify(&self.key, token_message(expires_ms, nonce).as_bytes(), &mac)
            .map_err(|_| StorageError::InvalidUploadToken)?;
        if now_ms >= expires_ms as f64 {
            return Err(StorageError::UploadUrlExpired);
        }
        Ok(UploadGrant {
            nonce: nonce.to_string(),
            expires_ms: expires_ms as f64,
        })
    }

    fn id_of_uuid(&self, uuid: &str) -> Option<DocumentId> {
        parse_uuid(uuid).map(|internal| DocumentId {
            table: self.table,
            internal,
        })
    }

    /// A `_storage` id, or (as Convex accepts) a file's uuid; an id of another table is refused.
    fn file_id(&self, id: &str) -> Result<DocumentId, FnError> {
        if let Some(id) = self.id_of_uuid(id) {
            return Ok(id);
        }
        let decoded = DocumentId::decode(id)?;
        if decoded.table != self.table {
            return Err(FnError::msg(format!(
                "Invalid storage ID \"{id}\": it is an ID of another table, not of _storage."
            )));
        }
        Ok(decoded)
    }

    fn url_of(&self, id: &DocumentId) -> String {
        format!("{}/api/storage/{}", self.origin, format_uuid(&id.internal))
    }
}

fn token_message(expires_ms: u64, nonce: &str) -> String {
    format!("tickethub-upload:v1:{expires_ms}:{nonce}")
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase.
pub(crate) fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Strict: exactly the lowercase form [`format_uuid`] writes (uppercase accepted too).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = (c as char).to_digit(16)? as u8;
        out[nibbles / 2] |= if nibbles.is_multiple_of(2) {
            digit << 4
        } else {
            digit
        };
        nibbles += 1;
    }
    Some(out)
}

/// A verified upload token, not yet spent.
#[derive(Clone, Debug)]
pub struct UploadGrant {
    nonce: String,
    expires_ms: f64,
}

fn by_nonce(nonce: &str) -> IndexQuery {
    IndexQuery {
        table: UPLOAD_TOKENS_TABLE.to_string(),
        index: BY_NONCE.to_string(),
        eq: vec![("nonce".to_string(), Some(Value::String(nonce.to_string())))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

/// `_storage` row fields.
#[derive(Clone, Debug, PartialEq)]
pub struct FileMetadata {
    pub id: String,
    pub sha256: Sha256,
    pub size: u64,
    pub content_type: Option<String>,
}

/// Convex's `getMetadata` shape: `{storageId (uuid), sha256 (hex), size, contentType}`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageMetadata {
    pub storage_id: String,
    pub sha256: String,
    pub size: f64,
    pub content_type: Option<String>,
}

fn metadata_of(doc: &Document) -> Result<FileMetadata, FnError> {
    let sha256 = doc
        .fields
        .get("sha256")
        .and_then(|v| v.as_str())
        .and_then(Sha256::from_base64)
        .ok_or_else(|| FnError::Internal(format!("_storage row {} has no sha256", doc.id)))?;
    let size = doc
        .fields
        .get("size")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0) as u64;
    let content_type = doc
        .fields
        .get("contentType")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(FileMetadata {
        id: doc.id.encode(),
        sha256,
        size,
        content_type,
    })
}

fn storage_of(inner: &Inner) -> Result<&Arc<StorageState>, FnError> {
    inner
        .storage
        .as_ref()
        .ok_or_else(|| StorageError::NotConfigured.into())
}

fn get_file(
    state: &StorageState,
    reader: &dyn DocReader,
    id: &str,
) -> Result<Option<(DocumentId, FileMetadata)>, FnError> {
    let id = state.file_id(id)?;
    match reader.get(id)? {
        Some(doc) => Ok(Some((id, metadata_of(&doc)?))),
        None => Ok(None),
    }
}

fn convex_metadata(id: &DocumentId, meta: FileMetadata) -> StorageMetadata {
    StorageMetadata {
        storage_id: format_uuid(&id.internal),
        sha256: meta.sha256.to_hex(),
        size: meta.size as f64,
        content_type: meta.content_type,
    }
}

/// `ctx.storage` in queries.
#[derive(Clone, Copy)]
pub struct StorageReader<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) env: &'a CallEnv,
}

impl StorageReader<'_> {
    fn lookup(&self, id: &str) -> Result<Option<(DocumentId, FileMetadata)>, FnError> {
        let state = storage_of(&self.env.rt)?;
        self.source
            .with_reader(|reader| get_file(state, reader, id))?
    }
    /// The file's URL, or `None` when no such file exists.
    pub fn get_url(&self, id: &str) -> Result<Option<String>, FnError> {
        let state = storage_of(&self.env.rt)?;
        Ok(self.lookup(id)?.map(|(id, _)| state.url_of(&id)))
    }
    /// `{storageId, sha256 (hex), size, contentType}`, or `None`.
    pub fn get_metadata(&self, id: &str) -> Result<Option<StorageMetadata>, FnError> {
        Ok(self
            .lookup(id)?
            .map(|(id, meta)| convex_metadata(&id, meta)))
    }
}

/// `ctx.storage` in mutations.
pub struct StorageWriter<'a> {
    pub(crate) txn: &'a dyn TxnAccess,
    pub(crate) env: &'a CallEnv,
}

impl StorageWriter<'_> {
    fn reader(&self) -> StorageReader<'_> {
        StorageReader {
            source: Source::Writer(self.txn),
            env: self.env,
        }
    }
    /// A URL to `POST` one file to, valid for an hour, once.
    pub fn generate_upload_url(&self) -> Result<String, FnError> {
        Ok(storage_of(&self.env.rt)?.upload_url(self.env.now_ms))
    }
    pub fn get_url(&self, id: &str) -> Result<Option<String>, FnError> {
        self.reader().get_url(id)
    }
    pub fn get_metadata(&self, id: &str) -> Result<Option<StorageMetadata>, FnError> {
        self.reader().get_metadata(id)
    }
    /// Delete the file. Its row goes with this transaction; its blob is removed after the commit
    /// (unless other rows hold the same content).
    pub fn delete(&self, id: &str) -> Result<(), FnError> {
        let state = storage_of(&self.env.rt)?.clone();
        let Some((doc_id, meta)) = self.reader().lookup(id)? else {
            return Err(FnError::msg(format!("Storage ID \"{id}\" does not exist.")));
        };
        with_writer(self.txn, |w| w.delete_doc(doc_id))??;
        // Queued behind this transaction on the writer, so it acts only after the commit.
        state.request_gc(&self.env.rt.store, meta.sha256);
        Ok(())
    }
}

/// `ctx.storage` in actions and HTTP actions.
#[derive(Clone)]
pub struct ActionStorage {
    pub(crate) rt: Runtime,
}

impl ActionStorage {
    fn state(&self) -> Result<&Arc<StorageState>, FnError> {
        storage_of(&self.rt.inner)
    }
    fn lookup(&self, id: &str) -> Result<Option<(DocumentId, FileMetadata)>, FnError> {
        let state = self.state()?;
        let snapshot = self.rt.inner.store.read()?;
        get_file(state, &snapshot, id)
    }
    pub fn generate_upload_url(&self) -> Result<String, FnError> {
        Ok(self.state()?.upload_url(self.rt.now_ms()))
    }
    pub fn get_url(&self, id: &str) -> Result<Option<String>, FnError> {
        let state = self.state()?;
        Ok(self.lookup(id)?.map(|(id, _)| state.url_of(&id)))
    }
    pub fn get_metadata(&self, id: &str) -> Result<Option<StorageMetadata>, FnError> {
        Ok(self
            .lookup(id)?
            .map(|(id, meta)| convex_metadata(&id, meta)))
    }
    /// Delete the file (its own transaction); the blob follows once that commit is durable.
    pub async fn delete(&self, id: &str) -> Result<(), FnError> {
        let state = self.state()?.clone();
        let doc_id = state.file_id(id)?;
        let shown = id.to_string();
        let store = self.rt.inner.store.clone();
        let (sha, _) = run_on_writer(&store, move |txn| -> Result<Sha256, FnError> {
            let Some(doc) = txn.get(doc_id)? else {
                return Err(FnError::msg(format!(
                    "Storage ID \"{shown}\" does not exist."
                )));
            };
            let meta = metadata_of(&doc)?;
            txn.delete(doc_id)?;
            Ok(meta.sha256)
        })
        .await?;
        state.request_gc(&store, sha);
        Ok(())
    }
    /// Store `bytes` as a new file; returns its `_storage` id.
    pub async fn store(
        &self,
        bytes: impl Into<Bytes>,
        content_type: Option<&str>,
    ) -> Result<String, FnError> {
        let storage = FileStorage {
            rt: self.rt.clone(),
            state: self.state()?.clone(),
        };
        let bytes = bytes.into();
        let state = storage.state.clone();
        let staged = tokio::task::spawn_blocking(move || -> Result<StagedBlob, StorageError> {
            let mut writer = state.blobs.writer(state.max_upload_bytes)?;
            writer.write(&bytes)?;
            Ok(writer.finish()?)
        })
        .await
        .map_err(|e| FnError::Internal(format!("storing a file failed: {e}")))??;
        Ok(storage
            .commit(None, staged, content_type.map(str::to_string))
            .await?)
    }
    /// The file's bytes, or `None` when no such file exists.
    pub async fn get(&self, id: &str) -> Result<Option<Bytes>, FnError> {
        let state = self.state()?.clone();
        let Some((_, meta)) = self.lookup(id)? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || -> Result<Option<Bytes>, FnError> {
            let Some(mut file) = state
                .blobs
                .open_blob(&meta.sha256)
                .map_err(StorageError::from)?
            else {
                return Ok(None);
            };
            let mut bytes = Vec::with_capacity(meta.size as usize);
            file.read_to_end(&mut bytes)
                .map_err(|e| FnError::Internal(format!("reading a stored file failed: {e}")))?;
            Ok(Some(Bytes::from(bytes)))
        })
        .await
        .map_err(|e| FnError::Internal(format!("reading a stored file failed: {e}")))?
    }
}

/// File storage as the HTTP layer uses it: uploads through signed URLs, and serving files.
#[derive(Clone)]
pub struct FileStorage {
    rt: Runtime,
    state: Arc<StorageState>,
}

/// A stored file opened for serving.
#[derive(Debug)]
pub struct ServedFile {
    pub file: fs::File,
    pub size: u64,
    pub sha256: Sha256,
    pub content_type: Option<String>,
}

/// Holds a digest pinned while its row is being committed; on drop it unpins, and asks for the
/// blob's collection unless the row committed (an abandoned upload leaves nothing behind).
struct PinGuard {
    state: Arc<StorageState>,
    store: Store,
    sha: Sha256,
    committed: bool,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.state.unpin(self.sha);
        if !self.committed {
            self.state.request_gc(&self.store, self.sha);
        }
    }
}

impl Runtime {
    /// File storage, when the server configured it.
    pub fn file_storage(&self) -> Option<FileStorage> {
        self.inner.storage.as_ref().map(|state| FileStorage {
            rt: self.clone(),
            state: state.clone(),
        })
    }
}

impl FileStorage {
    pub fn max_upload_bytes(&self) -> u64 {
        self.state.max_upload_bytes
    }

    /// Check an upload token: signature, expiry, and (in the latest snapshot) that it was not
    /// used. The final one-time check happens again when the file's row commits.
    pub fn check_upload_token(&self, token: &str) -> Result<UploadGrant, StorageError> {
        let grant = self.state.verify(token, self.rt.now_ms())?;
        if !self
            .rt
            .inner
            .store
            .read()?
            .collect(&by_nonce(&grant.nonce), Some(1))?
            .is_empty()
        {
            return Err(StorageError::UploadUrlUsed);
        }
        Ok(grant)
    }

    /// Start receiving a file's body (written to disk by a blocking thread as it arrives).
    pub fn start_upload(&self, grant: UploadGrant) -> Result<UploadSink, StorageError> {
        let writer = self.state.blobs.writer(self.state.max_upload_bytes)?;
        let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Chunk>(UPLOAD_QUEUE_CHUNKS);
        let disk = tokio::task::spawn_blocking(move || -> Result<StagedBlob, StorageError> {
            let mut writer = writer;
            while let Some(chunk) = incoming.blocking_recv() {
                match chunk {
                    Chunk::Data(bytes) => writer.write(&bytes)?,
                    Chunk::End => return Ok(writer.finish()?),
                }
            }
            // The sender went away without `End`: the upload was abandoned; dropping the
            // writer removes its temp file.
            Err(StorageError::Interrupted)
        });
        Ok(UploadSink {
            storage: self.clone(),
            grant,
            chunks,
            disk,
            received: 0,
            pending: BytesMut::new(),
        })
    }

    /// Publish `staged` and commit its row (spending the token, if any). Returns the `_storage` id.
    async fn commit(
        &self,
        grant: Option<UploadGrant>,
        staged: StagedBlob,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        let sha = staged.sha256;
        let size = staged.size;
        self.state.pin(sha);
        let mut guard = PinGuard {
            state: self.state.clone(),
            store: self.rt.inner.store.clone(),
            sha,
            committed: false,
        };
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.blobs.publish(staged))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))??;
        let now_ms = self.rt.now_ms();
        let (id, _) = run_on_writer(&self.rt.inner.store, move |txn| {
            if let Some(grant) = &grant {
                if !txn.collect(&by_nonce(&grant.nonce), Some(1))?.is_empty() {
                    return Err(StorageError::UploadUrlUsed);
                }
                let mut token = Object::new();
                token.insert("nonce".into(), Value::String(grant.nonce.clone()));
                token.insert("expiresAt".into(), Value::Float64(grant.expires_ms));
                txn.insert(UPLOAD_TOKENS_TABLE, token)?;
                purge_expired_tokens(txn, now_ms)?;
            }
            let mut row = Object::new();
            row.insert("sha256".into(), Value::String(sha.to_base64()));
            row.insert("size".into(), Value::Float64(size as f64));
            if let Some(content_type) = content_type {
                row.insert("contentType".into(), Value::String(content_type));
            }
            Ok(txn.insert(STORAGE_TABLE, row)?)
        })
        .await?;
        guard.committed = true;
        Ok(id.encode())
    }

    /// Open a file by the uuid of its URL; `None` when there is no such file (the caller checks
    /// the uuid's form first with [`parse_uuid`], to answer a malformed one differently).
    pub fn open_file(&self, uuid: &str) -> Result<Option<ServedFile>, StorageError> {
        let Some(id) = self.state.id_of_uuid(uuid) else {
            return Ok(None);
        };
        let Some(doc) = self.rt.inner.store.read()?.get(id)? else {
            return Ok(None);
        };
        let meta = metadata_of(&doc)
            .map_err(|e| StorageError::Blob(BlobError::Io(std::io::Error::other(e.to_string()))))?;
        let Some(file) = self.state.blobs.open_blob(&meta.sha256)? else {
            // The row committed, so the blob was published (here, or on the cluster node that led
            // then).
            return Err(StorageError::BlobMissing {
                storage_id: meta.id.to_string(),
            });
        };
        Ok(Some(ServedFile {
            file,
            size: meta.size,
            sha256: meta.sha256,
            content_type: meta.content_type,
        }))
    }
}

fn purge_expired_tokens(txn: &mut WriteTxn<'_>, now_ms: f64) -> Result<(), StoreError> {
    let expired = IndexQuery {
        table: UPLOAD_TOKENS_TABLE.to_string(),
        index: BY_EXPIRY.to_string(),
        eq: vec![],
        lower: None,
        upper: Some(Bound {
            field: "expiresAt".to_string(),
            value: Value::Float64(now_ms),
            inclusive: false,
        }),
        order: Order::Asc,
    };
    for doc in txn.collect(&expired, Some(PURGE_PER_UPLOAD))? {
        txn.delete(doc.id)?;
    }
    Ok(())
}

enum Chunk {
    Data(Bytes),
    End,
}

/// An upload in progress: feed it the body with [`UploadSink::write`], then
/// [`UploadSink::finish`]. Dropped unfinished (client gone, error), it keeps nothing.
pub struct UploadSink {
    storage: FileStorage,
    grant: UploadGrant,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
    disk: tokio::task::JoinHandle<Result<StagedBlob, StorageError>>,
    received: u64,
    /// Frames gathered for the next hand-off (at most [`UPLOAD_CHUNK_BYTES`] plus one frame).
    pending: BytesMut,
}

impl UploadSink {
    /// Queue the next piece of the body (waits while the disk is behind: memory stays bounded).
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        self.received += bytes.len() as u64;
        if self.received > self.storage.state.max_upload_bytes {
            return Err(StorageError::TooLarge {
                limit: self.storage.state.max_upload_bytes,
            });
        }
        if self.pending.is_empty() && bytes.len() >= UPLOAD_CHUNK_BYTES {
            return self.hand_off(bytes).await;
        }
        self.pending.extend_from_slice(&bytes);
        if self.pending.len() >= UPLOAD_CHUNK_BYTES {
            let chunk = self.pending.split().freeze();
            return self.hand_off(chunk).await;
        }
        Ok(())
    }

    async fn hand_off(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.chunks.send(Chunk::Data(chunk)).await.is_err() {
            // The disk writer stopped early: report its error.
            return Err(match (&mut self.disk).await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => StorageError::Interrupted,
                Err(e) => BlobError::Io(std::io::Error::other(e.to_string())).into(),
            });
        }
        Ok(())
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// The body is complete: fsync, check the digest if one was given, publish, commit the row.
    pub async fn finish(
        mut self,
        content_type: Option<String>,
        expected_sha256: Option<Sha256>,
    ) -> Result<String, StorageError> {
        if !self.pending.is_empty() {
            let rest = self.pending.split().freeze();
            self.hand_off(rest).await?;
        }
        let UploadSink {
            storage,
            grant,
            chunks,
            disk,
            ..
        } = self;
        if chunks.send(Chunk::End).await.is_err() {
            // Handled below: the writer's own error is the one to report.
        }
        drop(chunks);
        let staged = disk
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))??;
        if let Some(expected) = expected_sha256 {
            if expected != staged.sha256 {
                return Err(StorageError::Sha256Mismatch);
            }
        }
        storage.commit(Some(grant), staged, content_type).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trip_and_strictness() {
        let bytes: [u8; 16] = core::array::from_fn(|i| (i * 17) as u8);
        let text = format_uuid(&bytes);
        assert_eq!(text, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(parse_uuid(&text), Some(bytes));
        for bad in [
            "",
            "../../etc/passwd",
            "00112233-4455-6677-8899-aabbccddeef",
            "00112233-4455-6677-8899-aabbccddeeffa",
            "0011223304455-6677-8899-aabbccddeeff",
            "00112233-4455-6677-8899-aabbccddeefg",
            "00112233-4455-6677-8899-aabbccdd%2e%2e",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
