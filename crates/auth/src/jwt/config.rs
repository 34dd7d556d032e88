//! Auth providers, configured like Convex's `convex/auth.config.ts`.
//!
//! JSON form (the serialised `auth.config.ts`):
//! ```json
//! {"providers": [
//!   {"domain": "https://verb-noun-00.clerk.accounts.dev", "applicationID": "convex"},
//!   {"type": "customJwt", "issuer": "https://auth.example.com",
//!    "jwks": "https://auth.example.com/.well-known/jwks.json",
//!    "algorithm": "RS256", "applicationID": "my-app"}
//! ]}
//! ```

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use super::error::ConfigError;

/// Environment variable holding the Clerk frontend API URL (Ticket Hub's default provider).
pub const CLERK_ISSUER_ENV: &str = "CLERK_JWT_ISSUER_DOMAIN";

/// The `applicationID` (JWT `aud`) of Clerk's "convex" JWT template.
pub const CONVEX_APPLICATION_ID: &str = "convex";

/// Signature algorithms a custom JWT provider may declare (as Convex supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }
}

/// Where a custom JWT provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTPS (HTTP only for loopback hosts), refetched on unknown `kid`.
    Url(Url),
    /// A local JWKS file, re-read on unknown `kid`.
    File(PathBuf),
    /// A `data:` URL with the JWKS inline (`data:application/json;base64,...` or
    /// percent-encoded), as `auth.config.ts` allows.
    Data(String),
}

impl JwksSource {
    /// `https://` / `http://` → URL, `data:` → inline, `file://` or anything else → a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("`jwks` is empty".to_owned());
        }
        if text.starts_with("data:") {
            return Ok(JwksSource::Data(text.to_owned()));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            let url = Url::parse(text).map_err(|error| format!("`jwks` URL: {error}"))?;
            check_fetchable(&url)?;
            return Ok(JwksSource::Url(url));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        Ok(JwksSource::File(PathBuf::from(path)))
    }
}

/// One entry of `providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// An OpenID Connect issuer: keys via `<domain>/.well-known/openid-configuration`.
    /// Tokens must carry `application_id` in `aud`.
    Oidc {
        domain: String,
        application_id: String,
    },
    /// A plain JWT issuer with an explicit JWKS and algorithm. `aud` is checked only when
    /// `application_id` is set.
    CustomJwt {
        issuer: String,
        jwks: JwksSource,
        algorithm: Algorithm,
        application_id: Option<String>,
    },
}

/// Which kind of provider verified a token (it decides the identity's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Oidc,
    CustomJwt,
}

impl ProviderConfig {
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Oidc { .. } => ProviderKind::Oidc,
            ProviderConfig::CustomJwt { .. } => ProviderKind::CustomJwt,
        }
    }

    /// The issuer as tokens are compared against it: `https://` added when no scheme is
    /// given, trailing `/` removed.
    pub fn normalized_issuer(&self) -> String {
        match self {
            ProviderConfig::Oidc { domain, .. } => normalize_issuer(domain),
            ProviderConfig::CustomJwt { issuer, .. } => normalize_issuer(issuer),
        }
    }

    pub fn application_id(&self) -> Option<&str> {
        match self {
            ProviderConfig::Oidc { application_id, .. } => Some(application_id),
            ProviderConfig::CustomJwt { application_id, .. } => application_id.as_deref(),
        }
    }

    /// Convex's rule: the issuer matches after normalisation, and the applicationID (when
    /// the provider has one) is among the audiences.
    pub fn matches(&self, token_issuer: &str, audiences: &[String]) -> bool {
        if let Some(application_id) = self.application_id() {
            if !audiences.iter().any(|audience| audience == application_id) {
                return false;
            }
        }
        normalize_issuer(token_issuer) == self.normalized_issuer()
    }

    /// Short description for error messages and start-up logs.
    pub fn describe(&self) -> String {
        match self {
            ProviderConfig::Oidc {
                domain,
                application_id,
            } => format!("OIDC(domain={domain}, app_id={application_id})"),
            ProviderConfig::CustomJwt {
                issuer,
                application_id,
                ..
            } => format!(
                "CustomJWT(issuer={issuer}, app_id={})",
                application_id.as_deref().unwrap_or("none")
            ),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let issuer = self.normalized_issuer();
        let url = Url::parse(&issuer).map_err(|error| format!("issuer `{issuer}`: {error}"))?;
        check_fetchable(&url)?;
        if let Some("") = self.application_id() {
            return Err("`applicationID` is empty".to_owned());
        }
        Ok(())
    }
}

/// `auth.config.ts` equivalent: an ordered list of providers (first match wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub providers: Vec<ProviderConfig>,
}

impl AuthConfig {
    /// No providers: every token is refused with `NoAuthProvider`.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Ticket Hub's configuration: Clerk as one OIDC provider with applicationID `convex`.
    pub fn clerk(issuer_domain: &str) -> Result<Self, ConfigError> {
        Self::new(vec![ProviderConfig::Oidc {
            domain: issuer_domain.trim().to_owned(),
            application_id: CONVEX_APPLICATION_ID.to_owned(),
        }])
    }

    /// Validates the providers (issuer URLs parse; HTTPS unless loopback; non-empty IDs).
    pub fn new(providers: Vec<ProviderConfig>) -> Result<Self, ConfigError> {
        for (index, provider) in providers.iter().enumerate() {
            provider
                .validate()
                .map_err(|reason| ConfigError::InvalidProvider { index, reason })?;
        }
        Ok(Self { providers })
    }

    /// Reads [`CLERK_ISSUER_ENV`]: set and non-empty → [`AuthConfig::clerk`], else disabled
    /// (check [`AuthConfig::startup_warning`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// [`AuthConfig::from_env`] with an injectable lookup, for tests.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match lookup(CLERK_ISSUER_ENV) {
            Some(domain) if !domain.trim().is_empty() => Self::clerk(&domain),
            _ => Ok(Self::disabled()),
        }
    }

    /// Parses the JSON form shown in the module docs.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let raw: RawAuthConfig = serde_json::from_str(json)?;
        let mut providers = Vec::with_capacity(raw.providers.len());
        for (index, provider) in raw.providers.into_iter().enumerate() {
            providers.push(match provider {
                RawProvider::CustomJwt {
                    issuer,
                    jwks,
                    algorithm,
                    application_id,
                } => ProviderConfig::CustomJwt {
                    issuer,
                    jwks: JwksSource::parse(&jwks)
                        .map_err(|reason| ConfigError::InvalidProvider { index, reason })?,
                    algorithm,
                    application_id,
                },
                RawProvider::Oidc {
                    domain,
                    application_id,
                } => ProviderConfig::Oidc {
                    domain,
                    application_id,
                },
            });
        }
        Self::new(providers)
    }

    pub fn from_json_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    pub fn is_disabled(&self) -> bool {
        self.providers.is_empty()
    }

    /// A line for the start-up log when authentication is off, else `None`.
    pub fn startup_warning(&self) -> Option<String> {
        self.is_disabled().then(|| {
            format!(
                "Authentication is disabled: {CLERK_ISSUER_ENV} is not set, so every \
                 request is anonymous and any bearer token is rejected with NoAuthProvider."
            )
        })
    }

    pub fn describe_providers(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(ProviderConfig::describe)
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthConfig {
    providers: Vec<RawProvider>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum RawProvider {
    #[serde(rename = "customJwt")]
    CustomJwt {
        issuer: String,
        jwks: String,
        algorithm: Algorithm,
        #[serde(rename = "applicationID", default)]
        application_id: Option<String>,
    },
    // No `type` (or any other) means OIDC, as in `auth.config.ts`.
    #[serde(untagged)]
    Oidc {
        domain: String,
        #[serde(rename = "applicationID")]
        application_id: String,
    },
}

pub(crate) fn normalize_issuer(issuer: &str) -> String {
    let issuer = issuer.trim();
    let with_scheme = if issuer.starts_with("https://") || issuer.starts_with("http://") {
        issuer.to_owned()
    } else {
        format!("https://{issuer}")
    };
    with_scheme.trim_end_matches('/').to_owned()
}

/// HTTPS anywhere; plain HTTP only to this machine (local test issuers), because keys
/// fetched in the clear could be swapped by anyone on the path.
pub(crate) fn check_fetchable(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => {
            return Err(format!(
                "`{url}` uses plain http; only https is allowed (http only for localhost)"
            ))
        }
        other => return Err(format!("`{url}` has unsupported scheme `{other}`")),
    }
    if url.host().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // IPv6 hosts come bracketed: `[::1]`.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_default_is_clerk_or_disabled() {
        let config = AuthConfig::from_env_lookup(|name| {
            (name == CLERK_ISSUER_ENV).then(|| "https://verb-noun-00.clerk.accounts.dev".into())
        })
        .unwrap();
        assert_eq!(
            config.providers,
            vec![ProviderConfig::Oidc {
                domain: "https://verb-noun-00.clerk.accounts.dev".into(),
                application_id: "convex".into(),
            }]
        );
        assert!(config.startup_warning().is_none());

        for unset in [None, Some("  ".to_owned())] {
            let config = AuthConfig::from_env_lookup(|_| unset.clone()).unwrap();
            assert!(config.is_disabled());
            assert!(config.startup_warning().unwrap().contains(CLERK_ISSUER_ENV));
        }
    }

    #[test]
    fn parses_json_config() {
        let config = AuthConfig::from_json_str(
            r#"{"providers": [
                {"domain": "https://issuer.example.com/", "applicationID": "convex"},
                {"type": "customJwt", "issuer": "auth.example.com",
                 "jwks": "https://auth.example.com/jwks.json", "algorithm": "ES256"},
                {"type": "customJwt", "issuer": "https://x.example.com",
                 "jwks": "data:application/json,%7B%22keys%22%3A%5B%5D%7D",
                 "algorithm": "RS256", "applicationID": "app"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(config.providers.len(), 3);
        assert_eq!(
            config.providers[0].normalized_issuer(),
            "https://issuer.example.com"
        );
        assert_eq!(
            config.providers[1].normalized_issuer(),
            "https://auth.example.com"
        );
        assert!(matches!(
            &config.providers[1],
            ProviderConfig::CustomJwt {
                jwks: JwksSource::Url(_),
                algorithm: Algorithm::ES256,
                application_id: None,
                ..
            }
        ));
        assert!(matches!(
            &config.providers[2],
            ProviderConfig::CustomJwt {
                jwks: JwksSource::Data(_),
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_configs() {
        for bad in [
            r#"{"providers": [{"domain": "http://issuer.example.com", "applicationID": "convex"}]}"#,
            r#"{"providers": [{"domain": "https://issuer.example.com", "applicationID": ""}]}"#,
            r#"{"providers": [{"domain": "https://issuer.example.com"}]}"#,
            r#"{"providers": [{"type": "customJwt", "issuer": "https://a.example", "jwks": "x", "algorithm": "HS256"}]}"#,
            r#"{"providers": [{"type": "customJwt", "issuer": "https://a.example", "jwks": "http://a.example/jwks", "algorithm": "RS256"}]}"#,
            r#"{"provider": []}"#,
        ] {
            assert!(AuthConfig::from_json_str(bad).is_err(), "{bad}");
        }
        // Loopback issuers may use http (local test issuers).
        AuthConfig::clerk("http://127.0.0.1:9999").unwrap();
        AuthConfig::clerk("http://localhost:9999").unwrap();
        AuthConfig::clerk("http://[::1]:9999").unwrap();
    }

    #[test]
    fn matching_normalizes_issuer_and_checks_audience() {
        let oidc = ProviderConfig::Oidc {
            domain: "https://issuer.example.com/".into(),
            application_id: "convex".into(),
        };
        let aud = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert!(oidc.matches("https://issuer.example.com", &aud(&["convex"])));
        assert!(oidc.matches("issuer.example.com/", &aud(&["other", "convex"])));
        assert!(!oidc.matches("https://issuer.example.com", &aud(&["other"])));
        assert!(!oidc.matches("https://issuer.example.com", &[]));
        assert!(!oidc.matches("http://issuer.example.com", &aud(&["convex"])));
        assert!(!oidc.matches("https://evil.example.com", &aud(&["convex"])));

        let custom = ProviderConfig::CustomJwt {
            issuer: "https://auth.example.com".into(),
            jwks: JwksSource::Data("data:,{}".into()),
            algorithm: Algorithm::RS256,
            application_id: None,
        };
        assert!(custom.matches("https://auth.example.com", &[]));
    }
}
