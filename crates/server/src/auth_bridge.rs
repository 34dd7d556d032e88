//! The router's [`Authenticator`] backed by the auth crate: Clerk JWT verification and the
//! deployment's admin key.

use tickethub_auth::{AdminKey, AuthError, TokenVerifier};
use tickethub_router::{AuthFailure, AuthFailureKind, Authenticator, BoxFuture};
use tickethub_runtime::UserIdentity;
use tickethub_value::{Object, Value};

pub struct ClerkAuthenticator {
    pub verifier: TokenVerifier,
    pub admin_key: AdminKey,
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
            let verified = self.verifier.verify(token).await.map_err(failure)?;
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
