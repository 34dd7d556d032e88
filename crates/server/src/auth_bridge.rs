//! The router's [`Authenticator`] backed by the auth crate: Clerk JWT verification and the
//! deployment's admin key.
//!
//! The verifier sits behind a lock so it can be replaced while the server runs: setting
//! `CLERK_JWT_ISSUER_DOMAIN` with `npx convex env set` rebuilds it ([`follow_env_vars`]).

use std::sync::{Arc, RwLock};

use tickethub_auth::{AdminKey, AuthConfig, AuthError, TokenVerifier, CLERK_ISSUER_ENV};
use tickethub_router::{AuthFailure, AuthFailureKind, Authenticator, BoxFuture};
use tickethub_runtime::{Runtime, UserIdentity};
use tickethub_value::{Object, Value};

pub struct ClerkAuthenticator {
    /// Cheap to clone (shared key caches); cloned out of the lock before any await.
    verifier: RwLock<TokenVerifier>,
    admin_key: AdminKey,
}

impl ClerkAuthenticator {
    pub fn new(verifier: TokenVerifier, admin_key: AdminKey) -> ClerkAuthenticator {
        ClerkAuthenticator {
            verifier: RwLock::new(verifier),
            admin_key,
        }
    }

    fn current(&self) -> TokenVerifier {
        self.verifier
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, verifier: TokenVerifier) {
        *self
            .verifier
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = verifier;
    }
}

/// Keep the JWT verifier in step with `CLERK_JWT_ISSUER_DOMAIN` as functions see it (the
/// deployment variable first, then the process environment): checked now, and again after every
/// change of the deployment's variables. The task holds the runtime, so the server aborts it
/// (the returned handle) when it shuts down; it also ends once the authenticator is gone.
pub fn follow_env_vars(
    runtime: Runtime,
    authenticator: Arc<ClerkAuthenticator>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = runtime.watch_env_vars();
    let mut applied = runtime.config().env.get(CLERK_ISSUER_ENV).cloned();
    let weak = Arc::downgrade(&authenticator);
    drop(authenticator);
    tokio::spawn(async move {
        loop {
            let Some(authenticator) = weak.upgrade() else {
                return;
            };
            let wanted = runtime.env_var(CLERK_ISSUER_ENV);
            if wanted != applied {
                let built = AuthConfig::from_env_lookup(|name| runtime.env_var(name))
                    .and_then(TokenVerifier::new);
                match built {
                    Ok(verifier) => {
                        runtime.set_auth_enabled(verifier.is_enabled());
                        for provider in verifier.describe_providers() {
                            tracing::info!("auth provider (from {CLERK_ISSUER_ENV}): {provider}");
                        }
                        authenticator.replace(verifier);
                    }
                    Err(error) => tracing::warn!(
                        "{CLERK_ISSUER_ENV} changed but is not usable ({error}); keeping the previous auth configuration"
                    ),
                }
                applied = wanted;
            }
            drop(authenticator);
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
}

impl Authenticator for ClerkAuthenticator {
    fn is_admin_key(&self, presented: &str) -> bool {
        self.admin_key.matches(presented)
    }

    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<UserIdentity, AuthFailure>> {
        Box::pin(async move {
            let verified = self.current().verify(token).await.map_err(failure)?;
            Ok(identity_from_claims(verified.user_identity()))
        })
    }
}

fn failure(error: AuthError) -> AuthFailure {
    let kind = match &error {
        AuthError::InvalidAuthHeader { .. } => AuthFailureKind::MalformedToken,
        AuthError::NoAuthProvider { .. } => AuthFailureKind::NoAuthProvider,
        AuthError::Unauthenticated(_) => AuthFailureKind::Unauthenticated,
        AuthError::KeyFetchFailed { .. } => AuthFailureKind::ProviderUnavailable,
    };
    AuthFailure {
        kind,
        message: error.to_string(),
    }
}

/// The auth crate builds Convex's flat identity object; split out the three fixed fields.
fn identity_from_claims(mut claims: serde_json::Map<String, serde_json::Value>) -> UserIdentity {
    let mut take = |name: &str| match claims.remove(name) {
        Some(serde_json::Value::String(s)) => s,
        _ => String::new(),
    };
    let subject = take("subject");
    let issuer = take("issuer");
    let token_identifier = match take("tokenIdentifier") {
        t if t.is_empty() => format!("{issuer}|{subject}"),
        t => t,
    };
    let mut attributes = Object::new();
    for (name, json) in claims {
        // JSON claims become Convex values as JavaScript would see them (numbers are float64).
        // A claim no Convex value can hold (e.g. a `$`-prefixed key) is left out.
        match Value::from_clean_json(&json) {
            Ok(value) => {
                attributes.insert(name, value);
            }
            Err(e) => tracing::debug!("identity claim {name} dropped: {e}"),
        }
    }
    UserIdentity {
        token_identifier,
        subject,
        issuer,
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_fields_are_split_out() {
        let claims = serde_json::json!({
            "tokenIdentifier": "https://clerk.test|user_1",
            "subject": "user_1",
            "issuer": "https://clerk.test",
            "email": "a@b.c",
            "emailVerified": true,
        });
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        let identity = identity_from_claims(claims);
        assert_eq!(identity.token_identifier, "https://clerk.test|user_1");
        assert_eq!(identity.subject, "user_1");
        assert_eq!(identity.issuer, "https://clerk.test");
        assert_eq!(
            identity.attributes.get("email").and_then(Value::as_str),
            Some("a@b.c")
        );
        assert_eq!(
            identity
                .attributes
                .get("emailVerified")
                .and_then(Value::as_bool),
            Some(true)
        );
        assert!(!identity.attributes.contains_key("subject"));
    }
}
