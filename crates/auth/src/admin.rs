//! The deployment admin key: the secret behind `Authorization: Convex <key>` (CLI,
//! dashboard, internal functions).
//!
//! The key is random, kept in `<data dir>/admin_key` with owner-only permissions, and
//! compared in constant time so response timing reveals nothing about it.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use rand::RngCore;
use subtle::ConstantTimeEq;

/// File name of the admin key inside the data directory.
pub const ADMIN_KEY_FILE_NAME: &str = "admin_key";

/// Readable prefix of generated keys, so a leaked key is recognisable in logs and scanners.
pub const ADMIN_KEY_PREFIX: &str = "tickethub-admin|";

/// Random bytes in a generated key (256 bits), written as lowercase hex.
pub const ADMIN_KEY_RANDOM_BYTES: usize = 32;

/// Longest key accepted from a file; anything longer is surely not a key.
pub const MAX_ADMIN_KEY_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    #[error("Admin key is invalid: {reason}")]
    Invalid { reason: &'static str },
    #[error("Could not {action} admin key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AdminKeyError {
    pub fn code(&self) -> &'static str {
        match self {
            AdminKeyError::Invalid { .. } => "InvalidAdminKey",
            AdminKeyError::Io { .. } => "AdminKeyFileError",
        }
    }
}

/// The admin key. `Debug` is redacted; use [`AdminKey::as_str`] deliberately to show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

/// Whether [`AdminKey::load_or_create`] found a key or made a new one (the caller prints
/// a new key once so the operator can copy it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKeyOrigin {
    Loaded,
    Created,
}

#[derive(Debug, Clone)]
pub struct LoadedAdminKey {
    pub key: AdminKey,
    pub origin: AdminKeyOrigin,
    pub path: PathBuf,
}

impl AdminKey {
    /// A fresh key from the operating system's CSPRNG: `tickethub-admin|<64 hex digits>`.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ADMIN_KEY_RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let mut key = String::with_capacity(ADMIN_KEY_PREFIX.len() + 2 * bytes.len());
        key.push_str(ADMIN_KEY_PREFIX);
        for byte in bytes {
            key.push_str(&format!("{byte:02x}"));
        }
        AdminKey(key)
    }

    /// Accepts an operator-supplied key (e.g. from an environment variable).
    pub fn from_string(key: &str) -> Result<Self, AdminKeyError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(AdminKeyError::Invalid {
                reason: "it is empty",
            });
        }
        if key.len() > MAX_ADMIN_KEY_LEN {
            return Err(AdminKeyError::Invalid {
                reason: "it is longer than 1024 bytes",
            });
        }
        // It travels in an HTTP header, so it must be visible ASCII without spaces.
        if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(AdminKeyError::Invalid {
                reason: "it contains whitespace, control or non-ASCII characters",
            });
        }
        Ok(AdminKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented key (`subtle`). The running time depends only
    /// on the length of our key, never on the presented key's length or on where the first
    /// difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let ours = self.0.as_bytes();
        let theirs = presented.as_bytes();
        // `subtle` returns at once on a length mismatch; compare a copy padded or cut to our
        // length instead, so that the length of our key does not show either.
        let mut padded = vec![0u8; ours.len()];
        let common = ours.len().min(theirs.len());
        padded[..common].copy_from_slice(&theirs[..common]);
        let same_length = (ours.len() as u64).ct_eq(&(theirs.len() as u64));
        bool::from(same_length & ours.ct_eq(padded.as_slice()))
    }

    /// Reads `<data_dir>/admin_key`, or creates it (mode 0600) with a generated key.
    /// An existing file readable by group or others is tightened to 0600.
    pub fn load_or_create(data_dir: &Path) -> Result<LoadedAdminKey, AdminKeyError> {
        let path = data_dir.join(ADMIN_KEY_FILE_NAME);
        let io_error = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| AdminKeyError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(data_dir).map_err(io_error("create the directory for", &path))?;

        let key = AdminKey::generate();
        match create_private_file(&path) {
            Ok(mut file) => {
                file.write_all(format!("{}\n", key.as_str()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_error("write", &path))?;
                Ok(LoadedAdminKey {
                    key,
                    origin: AdminKeyOrigin::Created,
                    path,
                })
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&path).map_err(io_error("read", &path))?;
                let key = AdminKey::from_string(&text)?;
                tighten_permissions(&path).map_err(io_error("set permissions on", &path))?;
                Ok(LoadedAdminKey {
                    key,
                    origin: AdminKeyOrigin::Loaded,
                    path,
                })
            }
            Err(error) => Err(io_error("create", &path)(error)),
        }
    }
}

/// `create_new` so two starting servers cannot overwrite each other's key.
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn tighten_permissions(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "admin key file was accessible to other users; restricting it to 0600"
            );
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_prefix_and_differ() {
        let first = AdminKey::generate();
        let second = AdminKey::generate();
        assert_ne!(first, second);
        let hex = first.as_str().strip_prefix(ADMIN_KEY_PREFIX).unwrap();
        assert_eq!(hex.len(), 2 * ADMIN_KEY_RANDOM_BYTES);
        assert!(hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(format!("{first:?}"), "AdminKey(<redacted>)");
    }

    #[test]
    fn matches_only_the_exact_key() {
        let key = AdminKey::from_string("tickethub-admin|abc123").unwrap();
        assert!(key.matches("tickethub-admin|abc123"));
        for wrong in [
            "",
            "tickethub-admin|abc12",
            "tickethub-admin|abc1234",
            "tickethub-admin|abc124",
            "Tickethub-admin|abc123",
            "tickethub-admin|abc123\0",
        ] {
            assert!(!key.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn rejects_unusable_keys() {
        for bad in ["", "   ", "has space", "tab\there", "ünïcode"] {
            assert_eq!(
                AdminKey::from_string(bad).unwrap_err().code(),
                "InvalidAdminKey"
            );
        }
        assert!(AdminKey::from_string(&"k".repeat(MAX_ADMIN_KEY_LEN + 1)).is_err());
        assert_eq!(
            AdminKey::from_string("  ok-key\n").unwrap().as_str(),
            "ok-key"
        );
    }

    #[test]
    fn load_or_create_persists_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let created = AdminKey::load_or_create(&data_dir).unwrap();
        assert_eq!(created.origin, AdminKeyOrigin::Created);
        assert_eq!(created.path, data_dir.join(ADMIN_KEY_FILE_NAME));

        let loaded = AdminKey::load_or_create(&data_dir).unwrap();
        assert_eq!(loaded.origin, AdminKeyOrigin::Loaded);
        assert_eq!(loaded.key, created.key);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&created.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);

            fs::set_permissions(&created.path, fs::Permissions::from_mode(0o644)).unwrap();
            AdminKey::load_or_create(&data_dir).unwrap();
            let mode = fs::metadata(&created.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn load_rejects_an_empty_key_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ADMIN_KEY_FILE_NAME), "\n").unwrap();
        let error = AdminKey::load_or_create(dir.path()).unwrap_err();
        assert_eq!(error.code(), "InvalidAdminKey");
    }
}
