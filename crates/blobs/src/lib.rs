//! The content-addressed blob directory behind Convex file storage. One job: keep file bodies on
//! disk under the SHA-256 of their content, so identical content is stored once, and make every
//! published blob complete.
//!
//! Layout under the root: `<2 hex>/<64 hex>` per blob, and `tmp/` for uploads in progress.
//!
//! A write goes to a fresh file in `tmp/` while its SHA-256 and size are computed
//! ([`BlobWriter`]). [`BlobWriter::finish`] fsyncs it; [`BlobDir::publish`] renames it to its
//! content address and fsyncs the directory, so a crash leaves either no blob or a complete one
//! (never a torn file under a content address). Whether a blob is still wanted is not this crate's
//! business: the caller (the runtime, which knows the `_storage` table) decides when to
//! [`BlobDir::remove`] one, and [`BlobDir::list`] lets it collect orphans at start-up.
//!
//! Not SQL, so not in the store crate: the store is the only code that speaks SQL, and blob files
//! have nothing to do with its transactions beyond "published before the row commits".

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;

/// A SHA-256 digest: a blob's content address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Lowercase hex (Convex's `getMetadata` shape, and the file name).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
    /// Standard base64 with padding (the `sha256` field of `_storage`, and `Digest` headers).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
    pub fn from_hex(text: &str) -> Option<Sha256> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Sha256(out))
    }
    pub fn from_base64(text: &str) -> Option<Sha256> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        Some(Sha256(bytes.try_into().ok()?))
    }
    /// The digest of `bytes` (small inputs; streams go through [`BlobWriter`]).
    pub fn of(bytes: &[u8]) -> Sha256 {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Sha256(out)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob would exceed the size limit; nothing was kept.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob storage I/O failed: {0}")]
    Io(#[from] io::Error),
}

const TMP_DIR: &str = "tmp";
/// Bytes gathered before a write to the temp file: network frames are small (tens of KiB), and
/// one system call per frame would cost a large share of the copy.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The blob directory. Cheap to clone (a path).
#[derive(Clone, Debug)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Open (or create) the directory. Leftover temp files (uploads a crash interrupted, never
    /// published) are removed.
    pub fn open(root: &Path) -> Result<BlobDir, BlobError> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        let dir = BlobDir {
            root: root.to_path_buf(),
        };
        let mut removed = 0usize;
        for entry in fs::read_dir(dir.root.join(TMP_DIR))? {
            let entry = entry?;
            fs::remove_file(entry.path())?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed unfinished uploads left by an earlier run");
        }
        Ok(dir)
    }

    /// The directory at `root` as it is, for reading: nothing is created or cleaned up. A
    /// backup reads a running server's blobs this way (`open` would remove its uploads in flight).
    pub fn open_existing(root: &Path) -> BlobDir {
        BlobDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, sha: &Sha256) -> PathBuf {
        let hex = sha.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Start writing a blob of at most `limit` bytes.
    pub fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        let mut name = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut name);
        let path = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.part", TempName(&name)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            path: Some(path),
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
            limit,
        })
    }

    /// Give a finished blob its content address (atomically, by rename) and make the name
    /// durable. If the content is already stored, the new copy is dropped: identical content is
    /// kept once.
    pub fn publish(&self, staged: StagedBlob) -> Result<(), BlobError> {
        let target = self.path_of(&staged.sha256);
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        if !parent.exists() {
            fs::create_dir_all(&parent)?;
            sync_dir(&self.root)?;
        }
        let mut staged = staged;
        let Some(temp) = staged.path.take() else {
            return Ok(());
        };
        if target.exists() {
            fs::remove_file(&temp)?;
            return Ok(());
        }
        fs::rename(&temp, &target)?;
        sync_dir(&parent)?;
        Ok(())
    }

    /// The blob's file, opened for reading, or `None` if it is not stored.
    pub fn open_blob(&self, sha: &Sha256) -> Result<Option<File>, BlobError> {
        match File::open(self.path_of(sha)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn contains(&self, sha: &Sha256) -> bool {
        self.path_of(sha).is_file()
    }

    /// Remove a blob (no error if it is already gone).
    pub fn remove(&self, sha: &Sha256) -> Result<(), BlobError> {
        let path = self.path_of(sha);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every published blob (for collecting orphans at start-up). Files whose name is not a
    /// content address are ignored.
    pub fn list(&self) -> Result<Vec<Sha256>, BlobError> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.root)? {
            let shard = shard?;
            let name = shard.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2 || !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                if let Some(sha) = entry.file_name().to_str().and_then(Sha256::from_hex) {
                    out.push(sha);
                }
            }
        }
        Ok(out)
    }
}

/// A random temp-file name in hex.
struct TempName<'a>(&'a [u8; 16]);

impl fmt::Display for TempName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A blob being written: bytes go to a temp file while the digest and size are computed. Dropped
/// before [`BlobWriter::finish`], the temp file is removed.
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    path: Option<PathBuf>,
    hasher: ring::digest::Context,
    size: u64,
    limit: u64,
}

impl BlobWriter {
    /// Append `bytes`. Past the limit, the temp file is removed and [`BlobError::TooLarge`]
    /// returned.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let size = self.size + bytes.len() as u64;
        if size > self.limit {
            self.discard();
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("write after the blob was discarded"))?;
        file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.size = size;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flush and fsync the content; the blob is ready to [`BlobDir::publish`].
    pub fn finish(mut self) -> Result<StagedBlob, BlobError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("finish after the blob was discarded"))?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let digest = self.hasher.clone().finish();
        let mut sha = [0u8; 32];
        sha.copy_from_slice(digest.as_ref());
        Ok(StagedBlob {
            path: self.path.take(),
            sha256: Sha256(sha),
            size: self.size,
        })
    }

    fn discard(&mut self) {
        self.file = None;
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

/// A complete, fsynced blob not yet under its content address. Dropped unpublished, its temp
/// file is removed.
#[derive(Debug)]
pub struct StagedBlob {
    path: Option<PathBuf>,
    pub sha256: Sha256,
    pub size: u64,
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn write_blob(dir: &BlobDir, bytes: &[u8]) -> Sha256 {
        let mut writer = dir.writer(1 << 20).unwrap();
        for chunk in bytes.chunks(7) {
            writer.write(chunk).unwrap();
        }
        let staged = writer.finish().unwrap();
        let sha = staged.sha256;
        assert_eq!(staged.size, bytes.len() as u64);
        dir.publish(staged).unwrap();
        sha
    }

    #[test]
    fn content_addressed_and_stored_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path()).unwrap();
        let a = write_blob(&dir, b"hello blob");
        let b = write_blob(&dir, b"hello blob");
        assert_eq!(a, b);
        assert_eq!(a, Sha256::of(b"hello blob"));
        assert_eq!(dir.list().unwrap(), vec![a]);
        let mut text = String::new();
        dir.open_blob(&a)
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello blob");
        assert_eq!(fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(), 0);
        dir.remove(&a).unwrap();
        assert!(dir.open_blob(&a).unwrap().is_none());
        dir.remove(&a).unwrap();
    }

    #[test]
    fn over_the_limit_keeps_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path()).unwrap();
        let mut writer = dir.writer(10).unwrap();
        writer.write(b"12345").unwrap();
        assert!(matches!(
            writer.write(b"678901"),
            Err(BlobError::TooLarge { limit: 10 })
        ));
        drop(writer);
        assert_eq!(fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(), 0);
        assert!(dir.list().unwrap().is_empty());
    }

    #[test]
    fn unpublished_and_leftover_temp_files_go_away() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path()).unwrap();
        let mut writer = dir.writer(100).unwrap();
        writer.write(b"abc").unwrap();
        drop(writer.finish().unwrap());
        assert_eq!(fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(), 0);
        // A crash mid-upload leaves a temp file: the next open removes it.
        fs::write(tmp.path().join(TMP_DIR).join("x.part"), b"torn").unwrap();
        BlobDir::open(tmp.path()).unwrap();
        assert_eq!(fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn digest_encodings() {
        let sha = Sha256::of(b"");
        assert_eq!(
            sha.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha.to_base64(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(Sha256::from_hex(&sha.to_hex()), Some(sha));
        assert_eq!(Sha256::from_base64(&sha.to_base64()), Some(sha));
        assert_eq!(Sha256::from_hex("../etc/passwd"), None);
    }
}
