//! Errors from configuring providers and from verifying tokens.

/// Why a token that was routed to a provider was refused. Every variant maps to the
/// `Unauthenticated` code; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Token expired")]
    Expired,
    #[error("Token is not valid yet (its `nbf` is in the future)")]
    NotYetValid,
    #[error("Token was issued in the future (its `iat` is ahead of this server's clock)")]
    IssuedInFuture,
    #[error("Invalid token signature")]
    InvalidSignature,
    #[error("Token algorithm `{found}` is not allowed for this provider (allowed: {allowed})")]
    AlgorithmNotAllowed {
        found: String,
        allowed: &'static str,
    },
    #[error(
        "No key with kid `{kid}` in the provider's JWKS (keys were refreshed {refreshed}); \
         check that the token comes from the configured issuer"
    )]
    UnknownKeyId { kid: String, refreshed: KeyRefresh },
    #[error(
        "Token has no `kid` header and the provider's JWKS has {candidates} keys for its \
         algorithm, so the signing key cannot be chosen"
    )]
    MissingKeyId { candidates: usize },
    #[error("Token has no `kid` header and the provider has no key for `{algorithm}`")]
    NoKeyForAlgorithm { algorithm: String },
    #[error("The provider's key `{kid}` cannot verify `{algorithm}` signatures")]
    KeyAlgorithmMismatch { kid: String, algorithm: String },
    #[error("Token is missing the `{claim}` claim")]
    MissingClaim { claim: String },
    #[error("Token claim `{claim}` must be {expected}")]
    InvalidClaim {
        claim: &'static str,
        expected: &'static str,
    },
}

/// Whether an unknown-`kid` rejection came after a fresh key fetch, or while refetching
/// was rate-limited (see [`super::VerifierOptions::key_refetch_interval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefresh {
    JustNow,
    RateLimited,
    /// The refetch failed; the previously fetched keys were kept.
    Failed,
}

impl std::fmt::Display for KeyRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRefresh::JustNow => f.write_str("just now"),
            KeyRefresh::RateLimited => f.write_str("recently; refetching is rate-limited"),
            KeyRefresh::Failed => f.write_str("but the refetch failed"),
        }
    }
}

/// A token could not be turned into an identity. `code()` values match Convex's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT at all, or structurally unusable (no `iss`, bad base64, ...).
    #[error("{message}")]
    InvalidAuthHeader { message: String },

    /// No configured provider has this token's issuer and audience (or auth is off).
    #[error("{}", no_provider_message(.configured))]
    NoAuthProvider {
        /// Human descriptions of the configured providers, for the message.
        configured: Vec<String>,
    },

    /// A matching provider refused the token.
    #[error("{0}")]
    Unauthenticated(Rejection),

    /// The provider's discovery document or JWKS could not be fetched or parsed.
    #[error("Could not load signing keys for auth provider {issuer}: {detail}")]
    KeyFetchFailed { issuer: String, detail: String },
}

impl AuthError {
    /// Stable code: `InvalidAuthHeader`, `NoAuthProvider`, `Unauthenticated`, or
    /// `AuthProviderDiscoveryFailed` (as Convex names a failed discovery).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidAuthHeader { .. } => "InvalidAuthHeader",
            AuthError::NoAuthProvider { .. } => "NoAuthProvider",
            AuthError::Unauthenticated(_) => "Unauthenticated",
            AuthError::KeyFetchFailed { .. } => "AuthProviderDiscoveryFailed",
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        AuthError::InvalidAuthHeader {
            message: message.into(),
        }
    }
}

impl From<Rejection> for AuthError {
    fn from(rejection: Rejection) -> Self {
        AuthError::Unauthenticated(rejection)
    }
}

fn no_provider_message(configured: &[String]) -> String {
    if configured.is_empty() {
        "No auth provider found matching the given token (no providers configured). Set \
         CLERK_JWT_ISSUER_DOMAIN or provide an auth config to enable authentication."
            .to_owned()
    } else {
        format!(
            "No auth provider found matching the given token. Check that your JWT's issuer and \
             audience match one of your configured providers: [{}]",
            configured.join(", ")
        )
    }
}

/// The auth configuration itself is unusable (a start-up error, not a request error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Auth config is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Could not read auth config file {path}: {source}")]
    ReadFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Auth provider #{index} is invalid: {reason}")]
    InvalidProvider { index: usize, reason: String },
    #[error("Could not build the HTTP client for fetching keys: {0}")]
    HttpClient(String),
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        "InvalidAuthConfig"
    }
}
