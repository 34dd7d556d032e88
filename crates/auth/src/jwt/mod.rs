//! JWT verification against Convex-style auth providers.
//!
//! Flow for one token ([`TokenVerifier::verify`]):
//! 1. Split and decode header and payload *without* trusting them, only to route: a token
//!    that is not a JWT is `InvalidAuthHeader`.
//! 2. Pick the first provider whose issuer equals `iss` and whose applicationID is in `aud`
//!    (`NoAuthProvider` if none; a forged token can at worst pick a provider whose keys
//!    will then refuse it).
//! 3. Pin the algorithm: RS256 or EdDSA for OIDC, exactly the declared one for custom JWT.
//!    `alg: none`, HS256 and anything else are refused before any key is touched.
//! 4. Find the key by `kid` (fetching or refetching the JWKS as needed), verify the
//!    signature, then `exp` / `nbf` / `iat` with [`CLOCK_LEEWAY`].

mod config;
mod error;
mod identity;
mod keys;

use std::{collections::HashSet, sync::Arc, time::Duration};

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Validation};
use serde_json::{Map, Value};

pub use config::{
    Algorithm, AuthConfig, JwksSource, ProviderConfig, ProviderKind, CLERK_ISSUER_ENV,
    CONVEX_APPLICATION_ID,
};
pub use error::{AuthError, ConfigError, KeyRefresh, Rejection};
pub use keys::{MAX_KEYS_PER_PROVIDER, MAX_KEY_DOCUMENT_BYTES};

use keys::{Fetcher, KeyFamily, KeySource, ProviderKeys};

/// Clock skew tolerated on `exp`, `nbf` and `iat`: 5 s, the epsilon Convex uses for custom
/// JWTs. Enough for NTP-synced machines; small enough that an expired token dies promptly.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(5);

/// Least time between two key fetches for one provider (bounds: 0 in tests, typically
/// 10 s – 5 min). An unknown `kid` refetches only after this much time since the last fetch.
pub const DEFAULT_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Whole-request timeout for discovery and JWKS fetches.
pub const DEFAULT_KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest token accepted (Clerk session tokens are 1–2 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Tunables; [`VerifierOptions::default`] is right for production.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// See [`DEFAULT_KEY_REFETCH_INTERVAL`].
    pub key_refetch_interval: Duration,
    /// See [`CLOCK_LEEWAY`].
    pub clock_leeway: Duration,
    /// See [`DEFAULT_KEY_FETCH_TIMEOUT`].
    pub key_fetch_timeout: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            key_refetch_interval: DEFAULT_KEY_REFETCH_INTERVAL,
            clock_leeway: CLOCK_LEEWAY,
            key_fetch_timeout: DEFAULT_KEY_FETCH_TIMEOUT,
        }
    }
}

/// A token whose signature and time claims checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `iss` exactly as in the token.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `exp`, Unix seconds; callers holding a session can drop the identity after it.
    pub expires_at_secs: i64,
    /// Which kind of provider accepted it (decides the identity shape).
    pub provider_kind: ProviderKind,
    /// Every claim of the payload.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// `<iss>|<sub>`: Convex's stable, globally unique user key.
    pub fn token_identifier(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }

    /// The object `ctx.auth.getUserIdentity()` returns (rules in the `identity` module docs).
    pub fn user_identity(&self) -> Map<String, Value> {
        identity::user_identity(
            self.provider_kind,
            &self.issuer,
            &self.subject,
            &self.claims,
        )
    }
}

/// Verifies bearer tokens. Cheap to clone; clones share the key caches.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    providers: Vec<Provider>,
    fetcher: Fetcher,
    options: VerifierOptions,
}

struct Provider {
    config: ProviderConfig,
    keys: ProviderKeys,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("providers", &self.describe_providers())
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(config: AuthConfig) -> Result<Self, ConfigError> {
        Self::with_options(config, VerifierOptions::default())
    }

    pub fn with_options(config: AuthConfig, options: VerifierOptions) -> Result<Self, ConfigError> {
        let fetcher = Fetcher::new(options.key_fetch_timeout).map_err(ConfigError::HttpClient)?;
        let providers = config
            .providers
            .into_iter()
            .map(|config| {
                let issuer = config.normalized_issuer();
                let source = match &config {
                    ProviderConfig::Oidc { .. } => KeySource::OidcDiscovery {
                        issuer: issuer.clone(),
                    },
                    ProviderConfig::CustomJwt { jwks, .. } => KeySource::Jwks(jwks.clone()),
                };
                Provider {
                    keys: ProviderKeys::new(source, issuer),
                    config,
                }
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                providers,
                fetcher,
                options,
            }),
        })
    }

    /// False when no providers are configured (every token gets `NoAuthProvider`).
    pub fn is_enabled(&self) -> bool {
        !self.inner.providers.is_empty()
    }

    pub fn describe_providers(&self) -> Vec<String> {
        self.inner
            .providers
            .iter()
            .map(|provider| provider.config.describe())
            .collect()
    }

    /// Verifies `token` (the part after `Bearer `).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::malformed(format!(
                "Token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let unverified = UnverifiedToken::parse(token)?;
        let provider = self
            .inner
            .providers
            .iter()
            .find(|provider| {
                provider
                    .config
                    .matches(&unverified.issuer, &unverified.audiences)
            })
            .ok_or_else(|| AuthError::NoAuthProvider {
                configured: self.describe_providers(),
            })?;

        let (algorithm, family) = allowed_algorithm(&provider.config, &unverified.algorithm)?;
        let key = provider
            .keys
            .key_for(
                unverified.kid.as_deref(),
                family,
                &unverified.algorithm,
                &self.inner.fetcher,
                self.inner.options.key_refetch_interval,
            )
            .await?;

        let mut validation = Validation::new(algorithm);
        validation.leeway = self.inner.options.clock_leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Issuer and audience were matched during routing, with Convex's normalisation,
        // on the very payload bytes whose signature is checked here.
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(map_jwt_error)?
            .claims;

        self.check_issued_at(&provider.config, &claims)?;
        let subject = match claims.get("sub") {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            _ => {
                return Err(Rejection::InvalidClaim {
                    claim: "sub",
                    expected: "a non-empty string",
                }
                .into())
            }
        };
        let expires_at_secs =
            claims
                .get("exp")
                .and_then(numeric_date)
                .ok_or(Rejection::InvalidClaim {
                    claim: "exp",
                    expected: "a number of Unix seconds",
                })?;
        Ok(VerifiedToken {
            issuer: unverified.issuer,
            subject,
            expires_at_secs,
            provider_kind: provider.config.kind(),
            claims,
        })
    }

    /// `iat` must not be in the future; OIDC ID tokens must carry it (as Convex's OIDC
    /// verifier requires).
    fn check_issued_at(
        &self,
        provider: &ProviderConfig,
        claims: &Map<String, Value>,
    ) -> Result<(), AuthError> {
        let issued_at = match claims.get("iat") {
            None => {
                return match provider.kind() {
                    ProviderKind::Oidc => Err(Rejection::MissingClaim {
                        claim: "iat".to_owned(),
                    }
                    .into()),
                    ProviderKind::CustomJwt => Ok(()),
                }
            }
            Some(value) => numeric_date(value).ok_or(Rejection::InvalidClaim {
                claim: "iat",
                expected: "a number of Unix seconds",
            })?,
        };
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let leeway = self.inner.options.clock_leeway.as_secs() as i64;
        if issued_at > now + leeway {
            return Err(Rejection::IssuedInFuture.into());
        }
        Ok(())
    }
}

/// JWT NumericDate: integer seconds (fractions allowed by the RFC, truncated here).
fn numeric_date(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Which algorithm (and key family) this provider accepts for the token's `alg`.
fn allowed_algorithm(
    provider: &ProviderConfig,
    token_alg: &str,
) -> Result<(jsonwebtoken::Algorithm, KeyFamily), AuthError> {
    use jsonwebtoken::Algorithm as Jwa;
    let (allowed, choice): (&'static str, Option<(Jwa, KeyFamily)>) = match provider {
        ProviderConfig::Oidc { .. } => (
            "RS256, EdDSA",
            match token_alg {
                "RS256" => Some((Jwa::RS256, KeyFamily::Rsa)),
                "EdDSA" => Some((Jwa::EdDSA, KeyFamily::Ed25519)),
                _ => None,
            },
        ),
        ProviderConfig::CustomJwt { algorithm, .. } => (
            algorithm.as_str(),
            (token_alg == algorithm.as_str()).then_some(match algorithm {
                Algorithm::RS256 => (Jwa::RS256, KeyFamily::Rsa),
                Algorithm::ES256 => (Jwa::ES256, KeyFamily::EcP256),
            }),
        ),
    };
    choice.ok_or_else(|| {
        Rejection::AlgorithmNotAllowed {
            found: token_alg.to_owned(),
            allowed,
        }
        .into()
    })
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => Rejection::Expired.into(),
        ErrorKind::ImmatureSignature => Rejection::NotYetValid.into(),
        ErrorKind::MissingRequiredClaim(claim) => Rejection::MissingClaim {
            claim: claim.clone(),
        }
        .into(),
        ErrorKind::InvalidAlgorithm => Rejection::InvalidSignature.into(),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => {
            AuthError::malformed(format!("Could not parse the token as a JWT: {error}"))
        }
        // Bad signature bytes, a signature of the wrong length, and crypto failures all
        // mean the same thing to the caller.
        _ => Rejection::InvalidSignature.into(),
    }
}

/// Header and payload read without verification, only to route the token.
struct UnverifiedToken {
    algorithm: String,
    kid: Option<String>,
    issuer: String,
    audiences: Vec<String>,
}

impl UnverifiedToken {
    fn parse(token: &str) -> Result<Self, AuthError> {
        let not_a_jwt = || {
            AuthError::malformed(
                "Could not parse the token as a JWT. Check that it has three base64url parts \
                 separated by dots.",
            )
        };
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_jwt());
        };
        let header = decode_json_object(header).ok_or_else(not_a_jwt)?;
        let payload = decode_json_object(payload).ok_or_else(not_a_jwt)?;

        let algorithm = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(AuthError::malformed("JWT header has no `alg`")),
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::malformed("JWT header `kid` is not a string")),
        };
        let issuer = match payload.get("iss") {
            Some(Value::String(issuer)) => issuer.clone(),
            _ => {
                return Err(AuthError::malformed(
                    "Missing issuer claim ('iss') in JWT payload. The JWT must include an \
                     'iss' claim that matches one of your configured auth providers.",
                ))
            }
        };
        let audiences = match payload.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(audience)) => vec![audience.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| AuthError::malformed("JWT `aud` contains a non-string"))?,
            Some(_) => {
                return Err(AuthError::malformed(
                    "JWT `aud` must be a string or an array of strings",
                ))
            }
        };
        Ok(Self {
            algorithm,
            kid,
            issuer,
            audiences,
        })
    }
}

fn decode_json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
