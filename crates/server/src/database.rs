//! Where the documents live: the SQLite file in the data dir (the default), or PostgreSQL
//! (`--database-url`, env `DATABASE_URL`; `--database-schema`, env `DATABASE_SCHEMA`). Stored
//! files, the admin key and the data dir's lock stay in the data dir either way.
//!
//! The URL may carry a password: it is never printed. [`describe`] names a location for logs and
//! messages with the password taken out.

use std::path::{Path, PathBuf};

use clap::Args;
use tickethub_store::{PgConnectOptions, PostgresLocation, StoreLocation};

/// The Postgres schema a deployment uses when none is given.
pub const DEFAULT_SCHEMA: &str = "tickethub";

/// The database flags shared by `serve`, `export`, `import`, `backup` and `restore`.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Keep the documents in PostgreSQL instead of the SQLite file in the data dir:
    /// postgres://user:password@host:port/database. Stored files, the admin key and the lock stay
    /// in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    pub database_url: Option<String>,
    /// The Postgres schema holding this deployment's tables (created when missing). Several
    /// deployments can share one Postgres database, each in its own schema.
    #[arg(long, env = "DATABASE_SCHEMA", default_value = DEFAULT_SCHEMA, value_parser = parse_schema_name)]
    pub database_schema: String,
}

impl DatabaseArgs {
    /// The Postgres database these flags name, if any.
    pub fn postgres(&self) -> Option<PostgresLocation> {
        self.database_url.as_ref().map(|url| PostgresLocation {
            url: url.clone(),
            schema: self.database_schema.clone(),
        })
    }

    /// Where the store of a deployment with this data dir lives.
    pub fn location(&self, data_dir: &Path) -> StoreLocation {
        match self.postgres() {
            Some(postgres) => StoreLocation::Postgres(postgres),
            None => StoreLocation::Sqlite {
                dir: data_dir.to_path_buf(),
            },
        }
    }
}

/// One side of `tickethub migrate`: a data dir, or a Postgres URL (with its schema).
pub fn endpoint(text: &str, schema: &str) -> StoreLocation {
    if is_postgres_url(text) {
        StoreLocation::Postgres(PostgresLocation {
            url: text.to_string(),
            schema: schema.to_string(),
        })
    } else {
        StoreLocation::Sqlite {
            dir: PathBuf::from(text),
        }
    }
}

fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A location for logs and messages: the data dir's path, or the Postgres host, port, database
/// and schema without user or password.
pub fn describe(location: &StoreLocation) -> String {
    match location {
        StoreLocation::Sqlite { dir } => format!("SQLite in {}", dir.display()),
        StoreLocation::Postgres(pg) => {
            format!("Postgres {} (schema {})", redact(&pg.url), pg.schema)
        }
    }
}

/// `postgres://host:port/database?options` with the credentials taken out. A URL that does not
/// parse is not shown at all (it might be a password typed in the wrong place).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            // Only the options that say how to connect; a `password=` option must not show.
            let kept: Vec<(String, String)> = parsed
                .query_pairs()
                .filter(|(key, _)| !key.eq_ignore_ascii_case("password"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(kept);
            }
            parsed.to_string()
        }
        Err(_) => "<a database URL that does not parse>".to_string(),
    }
}

/// A `postgres://` or `postgresql://` URL with a host.
fn parse_database_url(text: &str) -> Result<String, String> {
    if !is_postgres_url(text) {
        return Err(
            "expected a PostgreSQL URL: postgres://user:password@host:port/database".to_string(),
        );
    }
    let parsed = url::Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host: postgres://user:password@host:port/database".into());
    }
    // sslmode and sslrootcert are checked now, so a typo fails at the command line.
    PgConnectOptions::parse(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// A warning for the start-up log when the connection to Postgres leaves this machine unprotected:
/// in plain text (`sslmode` disable or prefer, which falls back to plain text), or encrypted to
/// a server whose certificate nobody checks (`require` without `sslrootcert`). `None` on
/// loopback, and with `verify-ca` / `verify-full`.
pub fn connection_warning(location: &StoreLocation) -> Option<String> {
    let StoreLocation::Postgres(pg) = location else {
        return None;
    };
    let parsed = url::Url::parse(&pg.url).ok()?;
    let loopback = match parsed.host()? {
        // postgres:// is not a scheme the URL standard knows, so its host stays text, IP
        // addresses included.
        url::Host::Domain(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let options = PgConnectOptions::parse(&pg.url).ok()?;
    let host = parsed.host_str().unwrap_or_default();
    let mode = options.ssl_mode();
    if loopback || options.checks_certificate() {
        None
    } else if mode.encrypts() {
        Some(format!(
            "the connection to Postgres at {host} is encrypted, but its certificate is not \
             checked ({}): add sslmode=verify-full (with sslrootcert=<CA file> for a private CA)",
            mode.as_str()
        ))
    } else {
        Some(format!(
            "the connection to Postgres at {host} may travel in plain text ({}): use \
             sslmode=verify-full (with sslrootcert=<CA file> for a private CA)",
            mode.as_str()
        ))
    }
}

/// A Postgres identifier we never need to quote: lower-case letters, digits and `_`, not
/// starting with a digit, at most 63 bytes (Postgres's limit; longer names are cut silently).
pub fn parse_schema_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && !text.starts_with("pg_")
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a usable schema name: use 1 to 63 lower-case letters, digits and _, \
             not starting with a digit or pg_"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example.com:5432/prod?sslmode=require"),
            "postgres://db.example.com:5432/prod?sslmode=require"
        );
        assert_eq!(
            redact("postgres://db:5432/prod?password=s3cret&application_name=x"),
            "postgres://db:5432/prod?application_name=x"
        );
        assert!(!redact("postgres://u:s3cret@[::1/x").contains("s3cret"));
    }

    #[test]
    fn urls_and_schema_names_are_checked() {
        assert!(parse_database_url("postgres://postgres@127.0.0.1:5432/postgres").is_ok());
        assert!(parse_database_url("postgresql://h/db").is_ok());
        assert!(parse_database_url("mysql://h/db").is_err());
        assert!(parse_database_url("./data").is_err());
        assert!(parse_database_url("postgres://h/db?sslmode=disable").is_ok());
        for mode in ["prefer", "require", "verify-ca", "verify-full"] {
            assert!(parse_database_url(&format!("postgres://h/db?sslmode={mode}")).is_ok());
        }
        let typo = parse_database_url("postgres://h/db?sslmode=verify_full").unwrap_err();
        assert!(typo.contains("sslmode=verify_full is not a mode"), "{typo}");
        for good in ["tickethub", "t_1", "_x"] {
            assert_eq!(parse_schema_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "1a",
            "Tick",
            "a-b",
            "pg_catalog",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(parse_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unprotected_connections_off_the_machine_are_warned_about() {
        let at = |url: &str| {
            connection_warning(&StoreLocation::Postgres(PostgresLocation {
                url: url.into(),
                schema: "s".into(),
            }))
        };
        assert!(at("postgres://u:p@127.0.0.1:5432/db").is_none());
        assert!(at("postgres://localhost/db").is_none());
        assert!(at("postgres://[::1]:5432/db").is_none());
        let warning = at("postgres://u:secret@db.example.com/db").unwrap();
        assert!(warning.contains("db.example.com") && !warning.contains("secret"));
        assert!(warning.contains("plain text"), "{warning}");
        let unchecked = at("postgres://db.example.com/db?sslmode=require").unwrap();
        assert!(unchecked.contains("not checked"), "{unchecked}");
        assert!(at("postgres://db.example.com/db?sslmode=verify-full").is_none());
        assert!(at("postgres://db.example.com/db?sslmode=require&sslrootcert=/ca.pem").is_none());
    }

    #[test]
    fn migrate_endpoints_tell_urls_from_dirs() {
        assert!(matches!(
            endpoint("postgres://h/db", "s"),
            StoreLocation::Postgres(PostgresLocation { ref schema, .. }) if schema == "s"
        ));
        assert_eq!(
            endpoint("./data", "s"),
            StoreLocation::Sqlite {
                dir: PathBuf::from("./data")
            }
        );
    }
}
