//! How the store connects to Postgres: the URL's own options, plus TLS through rustls with
//! libpq's `sslmode` meanings, which the `postgres` driver does not implement by itself.
//!
//! | `sslmode`            | encrypted | server certificate checked                  |
//! |----------------------|-----------|---------------------------------------------|
//! | `disable`            | no        | –                                           |
//! | `prefer` (default)   | if offered| no (as libpq)                               |
//! | `require`            | yes       | no, unless `sslrootcert` is given (as libpq)|
//! | `verify-ca`          | yes       | chain to a trusted root                     |
//! | `verify-full`        | yes       | chain, and the host name or IP it names     |
//!
//! `sslrootcert=<file>` names the PEM roots to trust; without it (or with `sslrootcert=system`)
//! the operating system's roots are used, which is what managed providers' public certificates
//! chain to. Both options are read here and taken out of the URL the driver sees, which knows
//! neither `verify-*` nor `sslrootcert`.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use postgres::config::SslMode as DriverSslMode;
use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// libpq's `sslmode`, all five of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, StoreError> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(StoreError::DatabaseConfig(format!(
                    "sslmode={other} is not a mode Postgres knows: use disable, prefer, require, \
                     verify-ca or verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "sslmode=disable",
            SslMode::Prefer => "sslmode=prefer",
            SslMode::Require => "sslmode=require",
            SslMode::VerifyCa => "sslmode=verify-ca",
            SslMode::VerifyFull => "sslmode=verify-full",
        }
    }

    /// Whether the connection is encrypted for sure (a refusal otherwise).
    pub fn encrypts(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// Whether the server's certificate chain is checked, given whether the URL names roots.
    fn checks_certificate(self, roots_named: bool) -> bool {
        match self {
            SslMode::Disable | SslMode::Prefer => false,
            // libpq: with a root file present, `require` behaves as `verify-ca`.
            SslMode::Require => roots_named,
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    System,
    File(String),
}

/// A parsed `postgres://` URL: the driver's settings, and how to do TLS.
pub struct PgConnectOptions {
    config: Config,
    mode: SslMode,
    roots: Option<Roots>,
}

impl PgConnectOptions {
    /// Reads `sslmode` and `sslrootcert` out of a `postgres://` URL (a libpq `key=value` string
    /// goes to the driver unchanged, with the driver's `disable`/`prefer`/`require`).
    pub fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::DatabaseConfig(format!("the database URL does not parse: {e}"))
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            let config = Config::from_str(url).map_err(|e| bad(&e))?;
            let mode = match config.get_ssl_mode() {
                DriverSslMode::Disable => SslMode::Disable,
                DriverSslMode::Require => SslMode::Require,
                _ => SslMode::Prefer,
            };
            return Ok(PgConnectOptions {
                config,
                mode,
                roots: None,
            });
        }
        let mut parsed = url::Url::parse(url).map_err(|e| bad(&e))?;
        let mut mode = SslMode::Prefer;
        let mut roots = None;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => mode = SslMode::parse(&value)?,
                "sslrootcert" if value == "system" => roots = Some(Roots::System),
                "sslrootcert" => roots = Some(Roots::File(value.into_owned())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        // The driver only knows the three modes that say whether to encrypt; checking the
        // certificate is the verifier's job below.
        let driver_mode = match mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        kept.push(("sslmode".into(), driver_mode.into()));
        parsed.query_pairs_mut().clear().extend_pairs(kept);
        let config = Config::from_str(parsed.as_str()).map_err(|e| bad(&e))?;
        Ok(PgConnectOptions {
            config,
            mode,
            roots,
        })
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// Whether connections check the server's certificate chain.
    pub fn checks_certificate(&self) -> bool {
        self.mode.checks_certificate(self.roots.is_some())
    }

    /// Opens one connection. TLS problems (an untrusted certificate, a name that does not match,
    /// a server without TLS when it is required) come back as the driver's error, which names
    /// them.
    pub fn connect(&self) -> Result<Client, StoreError> {
        let connected = if self.mode == SslMode::Disable {
            self.config.connect(NoTls)
        } else {
            self.config
                .connect(MakeRustlsConnect::new(self.tls_config()?))
        };
        connected.map_err(|e| {
            if refused_by_tls(&e) {
                // Not a passing outage: the certificate or the server's TLS set-up and this URL
                // disagree, and retrying will not change that.
                return StoreError::DatabaseConfig(format!(
                    "the TLS connection to Postgres failed ({}): {}",
                    self.mode.as_str(),
                    with_causes(&e)
                ));
            }
            let failure = crate::StorageFailure::other(format!(
                "connecting to Postgres: {}",
                with_causes(&e)
            ));
            StoreError::DatabaseUnavailable(failure)
        })
    }

    fn tls_config(&self) -> Result<ClientConfig, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::DatabaseConfig(format!("TLS set-up: {e}")))?;
        let chain = if self.checks_certificate() {
            let roots = match &self.roots {
                Some(Roots::File(path)) => Arc::new(roots_from_file(path)?),
                None | Some(Roots::System) => system_roots()?,
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| StoreError::DatabaseConfig(format!("TLS set-up: {e}")))?;
            Some(webpki)
        } else {
            None
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => webpki,
            chain => Arc::new(WithoutName {
                chain,
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        Ok(config.with_no_client_auth())
    }
}

/// The driver's message and the causes under it ("error performing TLS handshake" alone does not
/// say that the certificate's issuer is unknown).
fn with_causes(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// A refusal by TLS itself: rustls rejected the certificate or the handshake, or the server
/// offers no TLS at all. A connection that broke mid-handshake (a restart) is not one.
fn refused_by_tls(error: &postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<rustls::Error>() || e.to_string().contains("server does not support TLS") {
            return true;
        }
        // An io::Error hides the error it wraps from `source()`.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

fn roots_from_file(path: &str) -> Result<RootCertStore, StoreError> {
    let unusable = |why: String| {
        StoreError::DatabaseConfig(format!("sslrootcert={path} is not usable: {why}"))
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unusable(e.to_string()))? {
        let cert = cert.map_err(|e| unusable(e.to_string()))?;
        store.add(cert).map_err(|e| unusable(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(unusable("it holds no PEM certificate".into()));
    }
    Ok(store)
}

/// The operating system's roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, StoreError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(roots.clone());
    }
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (_added, _ignored) = store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(StoreError::DatabaseConfig(
            "this machine has no trusted root certificates (install ca-certificates), so the \
             server's certificate cannot be checked; or name the roots with sslrootcert=<file>"
                .into(),
        ));
    }
    Ok(ROOTS.get_or_init(|| Arc::new(store)).clone())
}

/// Every mode short of `verify-full`: the certificate chain is checked when `chain` is set
/// (`verify-ca`, `require` with roots) but never the name in it; without `chain` (`prefer`,
/// `require` without roots) the certificate is not checked at all, libpq's meaning, which the
/// start-up log points out. The handshake's signatures are always verified.
#[derive(Debug)]
struct WithoutName {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The name check is the last one webpki makes: the chain itself was good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_options_leave_the_url_the_driver_sees() {
        let options = PgConnectOptions::parse(
            "postgres://u:p@db.example.com:5433/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(options.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(options.roots, Some(Roots::File("/etc/ca.pem".into())));
        assert_eq!(options.config.get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(options.config.get_dbname(), Some("app"));
        assert_eq!(options.config.get_application_name(), Some("x"));

        let plain = PgConnectOptions::parse("postgres://u@h/db").unwrap();
        assert_eq!(plain.ssl_mode(), SslMode::Prefer);
        assert!(!plain.ssl_mode().encrypts());
        let system =
            PgConnectOptions::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=system")
                .unwrap();
        assert_eq!(system.roots, Some(Roots::System));
    }

    #[test]
    fn unknown_modes_and_unusable_roots_are_refused_with_the_reason() {
        let err = PgConnectOptions::parse("postgres://h/db?sslmode=verify")
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("sslmode=verify is not a mode"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let url = format!(
            "postgres://127.0.0.1:1/db?sslmode=verify-full&sslrootcert={}",
            empty.display()
        );
        let err = PgConnectOptions::parse(&url)
            .unwrap()
            .connect()
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn require_checks_the_chain_only_when_roots_are_named() {
        assert!(!SslMode::Require.checks_certificate(false));
        assert!(SslMode::Require.checks_certificate(true));
        assert!(SslMode::VerifyCa.checks_certificate(false));
        assert!(!SslMode::Prefer.checks_certificate(true));
    }
}
