//! Who is calling: the `Authorization` and `Convex-Client` headers.
//!
//! The router does not verify tokens itself: it asks an [`Authenticator`] (the server wires in the
//! auth crate's Clerk verifier and admin key; tests wire in a fake). This keeps every HTTP concern
//! here and every cryptographic one in `tickethub-auth`.

use base64::Engine as _;
use http::HeaderMap;
use tickethub_runtime::{Identity, UserIdentity};
use tickethub_value::{Object, Value};

use crate::error::{ApiError, ErrorCode};

/// Why a bearer token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailureKind {
    /// Bad signature, expired, malformed, unknown key...
    Unauthenticated,
    /// No configured provider matches the token's issuer and audience (or auth is off).
    NoAuthProvider,
    /// Not a JWT at all (answered like a malformed `Authorization` header).
    MalformedToken,
    /// The provider's signing keys could not be fetched.
    ProviderUnavailable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    pub kind: AuthFailureKind,
    /// Safe to show the client.
    pub message: String,
}

/// A boxed, sendable future (the `futures` crate's alias), for the object-safe [`Authenticator`].
pub use futures_util::future::BoxFuture;

/// Verifies credentials for the router.
pub trait Authenticator: Send + Sync + 'static {
    /// Whether `presented` is this deployment's admin key. Must compare in constant time.
    fn is_admin_key(&self, presented: &str) -> bool;
    /// Verify a user's bearer token (a JWT) and build its Convex identity.
    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<UserIdentity, AuthFailure>>;
}

/// What the `Authorization` header holds, before any verification.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    None,
    Bearer(&'a str),
    AdminKey(&'a str),
}

fn classify(headers: &HeaderMap) -> Result<Presented<'_>, ApiError> {
    let Some(raw) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(Presented::None);
    };
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidAuthHeader,
            "The Authorization header must be \"Bearer <token>\" or \"Convex <admin key>\".",
        )
    };
    let text = raw.to_str().map_err(|_| bad())?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or_else(bad)?;
    let credential = rest.trim();
    if credential.is_empty() {
        return Err(bad());
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Presented::Bearer(credential))
    } else if scheme.eq_ignore_ascii_case("convex") {
        Ok(Presented::AdminKey(credential))
    } else {
        Err(bad())
    }
}

/// How strict to be with bad credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialPolicy {
    /// `/api/*`: a bad header, token or key refuses the request before any function runs.
    Reject,
    /// HTTP actions: the action still runs; `getUserIdentity()` fails with the reason.
    Tolerate,
}

/// Refuse every caller but the admin: a bad credential with its own code, anything else with
/// `AdminKeyRequired` and `message`.
pub(crate) async fn require_admin(
    headers: &HeaderMap,
    authenticator: &dyn Authenticator,
    message: &'static str,
) -> Result<(), ApiError> {
    match resolve_identity(headers, authenticator, CredentialPolicy::Reject).await? {
        Identity::Admin => Ok(()),
        _ => Err(ApiError::new(ErrorCode::AdminKeyRequired, message)),
    }
}

/// Resolve the caller's identity from the request headers.
pub async fn resolve_identity(
    headers: &HeaderMap,
    authenticator: &dyn Authenticator,
    policy: CredentialPolicy,
) -> Result<Identity, ApiError> {
    let outcome = resolve_strict(headers, authenticator).await;
    match (outcome, policy) {
        (Ok(identity), _) => Ok(identity),
        (Err(e), CredentialPolicy::Reject) => Err(e),
        (Err(e), CredentialPolicy::Tolerate) => Ok(Identity::InvalidToken(e.message)),
    }
}

async fn resolve_strict(
    headers: &HeaderMap,
    authenticator: &dyn Authenticator,
) -> Result<Identity, ApiError> {
    match classify(headers)? {
        Presented::None => Ok(Identity::Anonymous),
        Presented::AdminKey(key) => admin_identity(key, authenticator),
        Presented::Bearer(token) => match authenticator.verify_token(token).await {
            Ok(user) => Ok(Identity::User(user)),
            Err(failure) => {
                let code = match failure.kind {
                    AuthFailureKind::Unauthenticated => ErrorCode::Unauthenticated,
                    AuthFailureKind::NoAuthProvider => ErrorCode::NoAuthProvider,
                    AuthFailureKind::MalformedToken => ErrorCode::InvalidAuthHeader,
                    AuthFailureKind::ProviderUnavailable => ErrorCode::AuthProviderDiscoveryFailed,
                };
                Err(ApiError::new(code, failure.message))
            }
        },
    }
}

fn bad_admin_key() -> ApiError {
    ApiError::new(
        ErrorCode::BadAdminKey,
        "The provided admin key was invalid for this deployment.",
    )
}

/// `Convex <key>` is the admin; `Convex <key>:<base64 JSON identity>` is the admin acting as that
/// user (what `ConvexHttpClient.setAdminAuth(key, identity)` sends).
fn admin_identity(
    presented: &str,
    authenticator: &dyn Authenticator,
) -> Result<Identity, ApiError> {
    if authenticator.is_admin_key(presented) {
        return Ok(Identity::Admin);
    }
    let (key, identity_b64) = presented.rsplit_once(':').ok_or_else(bad_admin_key)?;
    if !authenticator.is_admin_key(key) {
        return Err(bad_admin_key());
    }
    let bad_identity = || {
        ApiError::new(
            ErrorCode::InvalidAuthHeader,
            "The acting-as identity after the admin key must be base64 of a JSON object.",
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(identity_b64)
        .map_err(|_| bad_identity())?;
    let json: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| bad_identity())?;
    acting_as(json).map(Identity::User).ok_or_else(bad_identity)
}

/// The user an admin acts as, from Convex's `UserIdentityAttributes` JSON (the HTTP header's
/// base64 part, or the sync `Authenticate` message's `impersonating`). `None` when it is not an
/// object or holds a value that is not a Convex value. A missing `tokenIdentifier` is
/// `<issuer>|<subject>`, as Convex derives it.
pub(crate) fn acting_as(json: serde_json::Value) -> Option<UserIdentity> {
    let serde_json::Value::Object(mut fields) = json else {
        return None;
    };
    let mut take_string = |name: &str| match fields.remove(name) {
        Some(serde_json::Value::String(s)) => s,
        _ => String::new(),
    };
    let subject = take_string("subject");
    let issuer = take_string("issuer");
    let token_identifier = match take_string("tokenIdentifier") {
        t if t.is_empty() => format!("{issuer}|{subject}"),
        t => t,
    };
    let mut attributes = Object::new();
    for (name, value) in fields {
        attributes.insert(name, Value::from_clean_json(&value).ok()?);
    }
    Some(UserIdentity {
        token_identifier,
        subject,
        issuer,
        attributes,
    })
}

/// `Convex-Client: <name>-<semver>`, e.g. `npm-1.48.0`, `python-convex-0.6.0`,
/// `npm-1.2.3-alpha.1`. Absent is fine.
pub fn check_client_version(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(raw) = headers.get("convex-client") else {
        return Ok(());
    };
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidClientVersion,
            "The Convex-Client header must look like \"npm-1.2.3\" (<client name>-<semver>).",
        )
    };
    let text = raw.to_str().map_err(|_| bad())?;
    let valid = text
        .char_indices()
        .filter(|(_, c)| *c == '-')
        .any(|(i, _)| {
            let (name, version) = (&text[..i], &text[i + 1..]);
            is_client_name(name) && is_semver(version)
        });
    if valid {
        Ok(())
    } else {
        Err(bad())
    }
}

fn is_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `MAJOR.MINOR.PATCH` with optional `-prerelease` and `+build` (dot-separated alphanumerics).
fn is_semver(version: &str) -> bool {
    let (version, build) = match version.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (version, None),
    };
    let (core, pre) = match version.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (version, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let core_ok = numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
    let ident_ok = |part: &str| {
        part.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    core_ok && pre.into_iter().all(ident_ok) && build.into_iter().all(ident_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn client_versions() {
        let check = |v: &str| check_client_version(&headers("convex-client", v)).is_ok();
        assert!(check("npm-1.48.0"));
        assert!(check("npm-1.2.3-alpha.1"));
        assert!(check("python-convex-0.6.0"));
        assert!(check("rust-0.1.0+build.5"));
        assert!(!check("npm"));
        assert!(!check("npm-"));
        assert!(!check("npm-1.2"));
        assert!(!check("-1.2.3"));
        assert!(!check("npm-1.2.x"));
        assert!(!check("npm 1.2.3"));
        assert!(check_client_version(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn authorization_shapes() {
        let classify_one = |v: &str| {
            classify(&headers("authorization", v))
                .map(|p| format!("{p:?}"))
                .map_err(|e| e.code)
        };
        assert_eq!(
            classify_one("Bearer abc"),
            Ok("Bearer(\"abc\")".to_string())
        );
        assert_eq!(
            classify_one("Convex key|123"),
            Ok("AdminKey(\"key|123\")".to_string())
        );
        assert_eq!(classify_one("Basic abc"), Err(ErrorCode::InvalidAuthHeader));
        assert_eq!(classify_one("Bearer"), Err(ErrorCode::InvalidAuthHeader));
        assert_eq!(classify_one("Bearer   "), Err(ErrorCode::InvalidAuthHeader));
        assert_eq!(classify(&HeaderMap::new()).unwrap(), Presented::None);
    }
}
