//! Convex's `UserIdentity` object, built from verified claims.
//!
//! Mirrors convex-backend (`keybroker::UserIdentity::from_token` / `from_custom_jwt` and
//! `UserIdentityAttributes`' JSON form):
//! - always `tokenIdentifier` (`<iss>|<sub>`), `subject`, `issuer`;
//! - OIDC: the OpenID standard claims under Convex's names (`given_name` → `givenName`,
//!   `picture` → `pictureUrl`, `updated_at` → `updatedAt` as an RFC 3339 string, ...);
//!   other claims pass through unchanged, except the ID-token housekeeping claims
//!   (`aud`, `exp`, `iat`, `azp`, `nonce`, ...) and claims that change on every refresh
//!   (`jti`, `nbf`, `fva`), which Convex drops so identities stay cache-stable;
//! - custom JWT: no renaming; registered claims (`iss sub aud exp nbf iat jti`) and `fva`
//!   are dropped and nested objects are flattened to dotted keys (`org.id`).
//!
//! Absent claims are omitted; a standard claim of the wrong JSON type is omitted too
//! (Convex's OIDC parser would reject such a token outright; omitting is the lenient choice).

use serde_json::{Map, Value};

use super::config::ProviderKind;

/// OIDC standard string claims and their Convex names.
const OIDC_STRING_CLAIMS: &[(&str, &str)] = &[
    ("name", "name"),
    ("given_name", "givenName"),
    ("family_name", "familyName"),
    ("nickname", "nickname"),
    ("preferred_username", "preferredUsername"),
    ("profile", "profileUrl"),
    ("picture", "pictureUrl"),
    ("website", "websiteUrl"),
    ("email", "email"),
    ("gender", "gender"),
    ("birthdate", "birthday"),
    ("zoneinfo", "timezone"),
    ("locale", "language"),
    ("phone_number", "phoneNumber"),
];

const OIDC_BOOL_CLAIMS: &[(&str, &str)] = &[
    ("email_verified", "emailVerified"),
    ("phone_number_verified", "phoneNumberVerified"),
];

/// Claims never copied through as custom claims from an OIDC token.
const OIDC_DROPPED_CLAIMS: &[&str] = &[
    // Identity itself.
    "iss",
    "sub",
    // ID-token housekeeping, consumed by the OIDC verifier in Convex.
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    // Change on every refresh; would bust query caches.
    "jti",
    "nbf",
    "fva",
    // Mapped specially below.
    "address",
    "updated_at",
];

/// Registered JWT claims, dropped from custom-JWT identities (plus Clerk's `fva`).
const CUSTOM_JWT_DROPPED_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "fva"];

pub(crate) fn user_identity(
    kind: ProviderKind,
    issuer: &str,
    subject: &str,
    claims: &Map<String, Value>,
) -> Map<String, Value> {
    let mut identity = Map::new();
    match kind {
        ProviderKind::Oidc => add_oidc_claims(claims, &mut identity),
        ProviderKind::CustomJwt => add_custom_jwt_claims(claims, &mut identity),
    }
    // Set last so no claim can overwrite them.
    identity.insert(
        "tokenIdentifier".to_owned(),
        Value::String(format!("{issuer}|{subject}")),
    );
    identity.insert("subject".to_owned(), Value::String(subject.to_owned()));
    identity.insert("issuer".to_owned(), Value::String(issuer.to_owned()));
    identity
}

fn add_oidc_claims(claims: &Map<String, Value>, identity: &mut Map<String, Value>) {
    for (key, value) in claims {
        let standard = OIDC_STRING_CLAIMS
            .iter()
            .chain(OIDC_BOOL_CLAIMS)
            .any(|(claim, _)| claim == key);
        if !standard && !OIDC_DROPPED_CLAIMS.contains(&key.as_str()) {
            identity.insert(key.clone(), value.clone());
        }
    }
    for (claim, convex_name) in OIDC_STRING_CLAIMS {
        if let Some(Value::String(text)) = claims.get(*claim) {
            identity.insert((*convex_name).to_owned(), Value::String(text.clone()));
        }
    }
    for (claim, convex_name) in OIDC_BOOL_CLAIMS {
        if let Some(Value::Bool(flag)) = claims.get(*claim) {
            identity.insert((*convex_name).to_owned(), Value::Bool(*flag));
        }
    }
    // OIDC's address is an object; Convex keeps its `formatted` line.
    if let Some(formatted) = claims
        .get("address")
        .and_then(|address| address.get("formatted"))
        .and_then(Value::as_str)
    {
        identity.insert("address".to_owned(), Value::String(formatted.to_owned()));
    }
    if let Some(updated_at) = claims.get("updated_at").and_then(updated_at_rfc3339) {
        identity.insert("updatedAt".to_owned(), Value::String(updated_at));
    }
}

/// OIDC `updated_at` is Unix seconds; Convex exposes it as an RFC 3339 string
/// (`2025-11-24T16:00:00+00:00`). A string is passed through as-is.
fn updated_at_rfc3339(value: &Value) -> Option<String> {
    match value {
        Value::Number(number) => {
            let seconds = number
                .as_i64()
                .or_else(|| number.as_f64().map(|f| f as i64))?;
            chrono::DateTime::from_timestamp(seconds, 0).map(|time| time.to_rfc3339())
        }
        Value::String(text) => Some(text.clone()),
        _ => None,
    }
}

fn add_custom_jwt_claims(claims: &Map<String, Value>, identity: &mut Map<String, Value>) {
    for (key, value) in claims {
        if CUSTOM_JWT_DROPPED_CLAIMS.contains(&key.as_str()) {
            continue;
        }
        flatten_into(key.clone(), value, identity);
    }
}

fn flatten_into(key: String, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(nested) => {
            for (nested_key, nested_value) in nested {
                flatten_into(format!("{key}.{nested_key}"), nested_value, out);
            }
        }
        other => {
            out.insert(key, other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn identity(kind: ProviderKind, claims: Value) -> Value {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        Value::Object(user_identity(
            kind,
            "https://issuer.example",
            "user_1",
            &claims,
        ))
    }

    #[test]
    fn oidc_claims_take_convex_names() {
        let actual = identity(
            ProviderKind::Oidc,
            json!({
                "iss": "https://issuer.example", "sub": "user_1", "aud": "convex",
                "exp": 2000000000, "iat": 1700000000, "nbf": 1700000000, "jti": "abc",
                "azp": "http://localhost:3000", "fva": [1, 2],
                "sid": "sess_1", "v": 2, "o": {"id": "org_1"},
                "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
                "nickname": "ada", "picture": "https://img.example/ada.png",
                "email": "ada@example.org", "email_verified": true,
                "phone_number": "+15555550100", "phone_number_verified": false,
                "updated_at": 1764000100,
                "address": {"formatted": "1 Analytical Way"},
                "middle_name": "King"
            }),
        );
        assert_eq!(
            actual,
            json!({
                "tokenIdentifier": "https://issuer.example|user_1",
                "subject": "user_1",
                "issuer": "https://issuer.example",
                "name": "Ada Lovelace", "givenName": "Ada", "familyName": "Lovelace",
                "nickname": "ada", "pictureUrl": "https://img.example/ada.png",
                "email": "ada@example.org", "emailVerified": true,
                "phoneNumber": "+15555550100", "phoneNumberVerified": false,
                "updatedAt": "2025-11-24T16:01:40+00:00",
                "address": "1 Analytical Way",
                "sid": "sess_1", "v": 2, "o": {"id": "org_1"},
                "middle_name": "King"
            })
        );
    }

    #[test]
    fn absent_and_mistyped_standard_claims_are_omitted() {
        let actual = identity(
            ProviderKind::Oidc,
            json!({"sub": "user_1", "name": 42, "email_verified": "yes"}),
        );
        assert_eq!(
            actual,
            json!({
                "tokenIdentifier": "https://issuer.example|user_1",
                "subject": "user_1",
                "issuer": "https://issuer.example"
            })
        );
    }

    #[test]
    fn custom_jwt_claims_are_flattened_not_renamed() {
        let actual = identity(
            ProviderKind::CustomJwt,
            json!({
                "iss": "https://issuer.example", "sub": "user_1", "exp": 2000000000,
                "iat": 1, "jti": "x", "given_name": "Ada", "org": {"id": "o1", "role": {"name": "admin"}},
                "tokenIdentifier": "forged"
            }),
        );
        assert_eq!(
            actual,
            json!({
                "tokenIdentifier": "https://issuer.example|user_1",
                "subject": "user_1",
                "issuer": "https://issuer.example",
                "given_name": "Ada",
                "org.id": "o1",
                "org.role.name": "admin"
            })
        );
    }
}
