//! Classifying an `Authorization` header value before verifying anything.
//!
//! Convex clients send `Bearer <JWT>` for users; the CLI and dashboard send
//! `Convex <admin key>`. The scheme word is matched case-insensitively, as HTTP requires.

use crate::jwt::AuthError;

/// What an `Authorization` header claims to carry. Nothing here is verified yet: pass a
/// `UserToken` to [`crate::TokenVerifier::verify`] and an `AdminKey` to
/// [`crate::AdminKey::matches`].
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    UserToken(String),
    AdminKey(String),
}

impl std::fmt::Debug for Credential {
    // Credentials are secrets; keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::UserToken(_) => f.write_str("UserToken(<redacted>)"),
            Credential::AdminKey(_) => f.write_str("AdminKey(<redacted>)"),
        }
    }
}

/// Splits `Bearer <token>` / `Convex <key>`. Anything else is `InvalidAuthHeader`.
pub fn parse_authorization_header(value: &str) -> Result<Credential, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let credential = rest.trim();
    let make: fn(String) -> Credential = if scheme.eq_ignore_ascii_case("bearer") {
        Credential::UserToken
    } else if scheme.eq_ignore_ascii_case("convex") {
        Credential::AdminKey
    } else {
        return Err(AuthError::InvalidAuthHeader {
            message: "Authorization header must be `Bearer <token>` or `Convex <admin key>`"
                .to_owned(),
        });
    };
    if credential.is_empty() {
        return Err(AuthError::InvalidAuthHeader {
            message: format!("Authorization header has the `{scheme}` scheme but no credential"),
        });
    }
    Ok(make(credential.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_schemes() {
        let check = |input: &str, expected: Option<Credential>| {
            let actual = parse_authorization_header(input).ok();
            assert_eq!(actual, expected, "input {input:?}");
        };
        check(
            "Bearer abc.def.ghi",
            Some(Credential::UserToken("abc.def.ghi".into())),
        );
        check("bearer   abc ", Some(Credential::UserToken("abc".into())));
        check(
            "Convex key|123",
            Some(Credential::AdminKey("key|123".into())),
        );
        check("CONVEX k", Some(Credential::AdminKey("k".into())));
        check("Bearer", None);
        check("Bearer    ", None);
        check("Basic dXNlcjpwYXNz", None);
        check("", None);
        check("abc.def.ghi", None);
    }

    #[test]
    fn errors_are_invalid_auth_header() {
        let error = parse_authorization_header("Token x").unwrap_err();
        assert_eq!(error.code(), "InvalidAuthHeader");
    }
}
