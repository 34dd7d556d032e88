//! End-to-end tests of `TokenVerifier` against a tiny OIDC issuer on 127.0.0.1.
//!
//! The issuer (a raw tokio HTTP/1.1 responder) serves discovery and a JWKS that a test can
//! change at run time, and counts requests so refetch behaviour can be asserted exactly.
//! Keys are the committed test fixtures (see tests/fixtures/README.md); tokens are signed
//! with `jsonwebtoken`, or by hand when a test needs a header `jsonwebtoken` cannot write.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tickethub_auth::{
    jwt::{KeyRefresh, Rejection},
    Algorithm, AuthConfig, AuthError, JwksSource, ProviderConfig, TokenVerifier, VerifierOptions,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const ISSUER_A_PEM: &str = include_str!("fixtures/issuer_a.pem");
const ISSUER_A_PUBLIC_PEM: &str = include_str!("fixtures/issuer_a.pub.pem");
const ISSUER_A_JWK: &str = include_str!("fixtures/issuer_a.jwk.json");
const ISSUER_B_PEM: &str = include_str!("fixtures/issuer_b.pem");
const ISSUER_B_JWK: &str = include_str!("fixtures/issuer_b.jwk.json");
const STRANGER_PEM: &str = include_str!("fixtures/stranger.pem");
const EC_PEM: &str = include_str!("fixtures/ec_p256.pem");
const EC_JWK: &str = include_str!("fixtures/ec_p256.jwk.json");

// ---------------------------------------------------------------------------------------
// The local issuer.

struct Issuer {
    url: String,
    jwks: Mutex<Vec<Value>>,
    /// What discovery claims the issuer is (normally `url`).
    declared_issuer: Mutex<String>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Arc<Issuer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let issuer = Arc::new(Issuer {
            declared_issuer: Mutex::new(url.clone()),
            url,
            jwks: Mutex::new(keys),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let serving = issuer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let serving = serving.clone();
                tokio::spawn(async move { serving.respond(stream).await });
            }
        });
        issuer
    }

    async fn respond(&self, mut stream: tokio::net::TcpStream) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let request = String::from_utf8_lossy(&request);
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (status, body) = match path.as_str() {
            "/.well-known/openid-configuration" => {
                self.discovery_hits.fetch_add(1, Ordering::SeqCst);
                let body = json!({
                    "issuer": *self.declared_issuer.lock(),
                    "jwks_uri": format!("{}/.well-known/jwks.json", self.url),
                });
                ("200 OK", body.to_string())
            }
            "/.well-known/jwks.json" => {
                self.jwks_hits.fetch_add(1, Ordering::SeqCst);
                ("200 OK", json!({"keys": *self.jwks.lock()}).to_string())
            }
            _ => ("404 Not Found", "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn publish(&self, key: Value) {
        self.jwks.lock().push(key);
    }

    fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

fn jwk(public: &str, kid: &str, alg: &str) -> Value {
    let mut key: Value = serde_json::from_str(public).unwrap();
    key["kid"] = kid.into();
    key["use"] = "sig".into();
    key["alg"] = alg.into();
    key
}

fn verifier_for(issuer: &Issuer, refetch_interval: Duration) -> TokenVerifier {
    let options = VerifierOptions {
        key_refetch_interval: refetch_interval,
        ..VerifierOptions::default()
    };
    TokenVerifier::with_options(AuthConfig::clerk(&issuer.url).unwrap(), options).unwrap()
}

/// A verifier that never refetches within a test's lifetime.
fn verifier(issuer: &Issuer) -> TokenVerifier {
    verifier_for(issuer, Duration::from_secs(3600))
}

// ---------------------------------------------------------------------------------------
// Tokens.

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims shaped like Clerk's "convex" template.
fn clerk_claims(issuer: &str) -> Map<String, Value> {
    let now = now();
    let Value::Object(claims) = json!({
        "iss": issuer,
        "sub": "user_2abcDEF",
        "aud": "convex",
        "azp": "http://localhost:5173",
        "exp": now + 3600,
        "iat": now - 10,
        "nbf": now - 10,
        "jti": "jti_123",
        "sid": "sess_1",
        "v": 2,
        "fva": [5, -1],
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "nickname": "ada",
        "picture": "https://img.example/ada.png",
        "email": "ada@example.org",
        "email_verified": true,
        "phone_number": "+15555550100",
        "phone_number_verified": false,
        "updated_at": 1764000100,
    }) else {
        unreachable!()
    };
    claims
}

fn sign(pem: &str, kid: Option<&str>, claims: &Map<String, Value>) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs an arbitrary header (so tests can add fields `jsonwebtoken` would not write).
fn sign_raw(
    header: &Value,
    claims: &Map<String, Value>,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(Value::Object(claims.clone()).to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn with(mut claims: Map<String, Value>, key: &str, value: Value) -> Map<String, Value> {
    claims.insert(key.to_owned(), value);
    claims
}

fn without(mut claims: Map<String, Value>, key: &str) -> Map<String, Value> {
    claims.remove(key);
    claims
}

async fn expect_rejection(verifier: &TokenVerifier, token: &str) -> Rejection {
    match verifier.verify(token).await {
        Err(AuthError::Unauthenticated(rejection)) => rejection,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

async fn expect_code(verifier: &TokenVerifier, token: &str, code: &str) -> AuthError {
    let error = verifier
        .verify(token)
        .await
        .expect_err("token should be refused");
    assert_eq!(error.code(), code, "unexpected error: {error}");
    error
}

async fn issuer_with_key_a() -> Arc<Issuer> {
    Issuer::start(vec![jwk(ISSUER_A_JWK, "key-a", "RS256")]).await
}

// ---------------------------------------------------------------------------------------
// Accepting.

#[tokio::test]
async fn valid_clerk_token_yields_convex_identity() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&issuer.url));

    let verified = verifier.verify(&token).await.unwrap();
    assert_eq!(verified.issuer, issuer.url);
    assert_eq!(verified.subject, "user_2abcDEF");
    assert_eq!(
        verified.token_identifier(),
        format!("{}|user_2abcDEF", issuer.url)
    );
    assert_eq!(
        Value::Object(verified.user_identity()),
        json!({
            "tokenIdentifier": format!("{}|user_2abcDEF", issuer.url),
            "subject": "user_2abcDEF",
            "issuer": issuer.url,
            "name": "Ada Lovelace",
            "givenName": "Ada",
            "familyName": "Lovelace",
            "nickname": "ada",
            "pictureUrl": "https://img.example/ada.png",
            "email": "ada@example.org",
            "emailVerified": true,
            "phoneNumber": "+15555550100",
            "phoneNumberVerified": false,
            "updatedAt": "2025-11-24T16:01:40+00:00",
            "sid": "sess_1",
            "v": 2,
        })
    );
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits(), 1);

    // Keys are cached: a second token costs no fetch.
    verifier.verify(&token).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_header_fields_are_ignored_and_trailing_slash_matches() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let key = EncodingKey::from_rsa_pem(ISSUER_A_PEM.as_bytes()).unwrap();
    let header = json!({"alg": "RS256", "kid": "key-a", "typ": "JWT", "cat": "cl_B7d4PD111AAA", "x-extra": {"a": 1}});
    let claims = with(
        clerk_claims(&issuer.url),
        "iss",
        format!("{}/", issuer.url).into(),
    );
    let token = sign_raw(&header, &claims, &key, jsonwebtoken::Algorithm::RS256);
    let verified = verifier.verify(&token).await.unwrap();
    // The identity keeps `iss` exactly as the token has it.
    assert_eq!(
        verified.token_identifier(),
        format!("{}/|user_2abcDEF", issuer.url)
    );
}

#[tokio::test]
async fn audience_may_be_an_array() {
    let issuer = issuer_with_key_a().await;
    let claims = with(clerk_claims(&issuer.url), "aud", json!(["other", "convex"]));
    verifier(&issuer)
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &claims))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Forged and malformed tokens.

#[tokio::test]
async fn alg_none_is_refused() {
    let issuer = issuer_with_key_a().await;
    let claims = clerk_claims(&issuer.url);
    let header = json!({"alg": "none", "typ": "JWT", "kid": "key-a"});
    let payload = Value::Object(claims).to_string();
    for signature in ["", "e30"] {
        let token = format!(
            "{}.{}.{signature}",
            b64(header.to_string().as_bytes()),
            b64(payload.as_bytes())
        );
        let rejection = expect_rejection(&verifier(&issuer), &token).await;
        assert!(
            matches!(&rejection, Rejection::AlgorithmNotAllowed { found, .. } if found == "none"),
            "{rejection:?}"
        );
    }
    // Refused before any key was fetched.
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let issuer = issuer_with_key_a().await;
    let claims = clerk_claims(&issuer.url);
    for secret in [ISSUER_A_PUBLIC_PEM.as_bytes(), ISSUER_A_JWK.as_bytes()] {
        let key = EncodingKey::from_secret(secret);
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "key-a"});
        let token = sign_raw(&header, &claims, &key, jsonwebtoken::Algorithm::HS256);
        let rejection = expect_rejection(&verifier(&issuer), &token).await;
        assert!(
            matches!(&rejection, Rejection::AlgorithmNotAllowed { found, .. } if found == "HS256"),
            "{rejection:?}"
        );
    }
}

#[tokio::test]
async fn other_rsa_algorithms_are_refused() {
    let issuer = issuer_with_key_a().await;
    let key = EncodingKey::from_rsa_pem(ISSUER_A_PEM.as_bytes()).unwrap();
    for alg in [
        jsonwebtoken::Algorithm::RS512,
        jsonwebtoken::Algorithm::PS256,
    ] {
        let mut header = Header::new(alg);
        header.kid = Some("key-a".into());
        let token = jsonwebtoken::encode(&header, &clerk_claims(&issuer.url), &key).unwrap();
        let rejection = expect_rejection(&verifier(&issuer), &token).await;
        assert!(
            matches!(rejection, Rejection::AlgorithmNotAllowed { .. }),
            "{rejection:?}"
        );
    }
}

#[tokio::test]
async fn wrong_issuer_or_audience_finds_no_provider() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let base = clerk_claims(&issuer.url);
    let cases = [
        with(base.clone(), "iss", "https://evil.example.com".into()),
        with(
            base.clone(),
            "iss",
            issuer.url.replace("http://", "https://").into(),
        ),
        with(base.clone(), "aud", "not-convex".into()),
        with(base.clone(), "aud", json!(["a", "b"])),
        without(base.clone(), "aud"),
    ];
    for claims in cases {
        let error = expect_code(
            &verifier,
            &sign(ISSUER_A_PEM, Some("key-a"), &claims),
            "NoAuthProvider",
        )
        .await;
        let message = error.to_string();
        assert!(
            message.starts_with("No auth provider found matching the given token. Check that your JWT's issuer and audience match one of your configured providers: [OIDC(domain=http://127.0.0.1:"),
            "{message}"
        );
    }
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn missing_issuer_is_an_invalid_header() {
    let issuer = issuer_with_key_a().await;
    let claims = without(clerk_claims(&issuer.url), "iss");
    expect_code(
        &verifier(&issuer),
        &sign(ISSUER_A_PEM, Some("key-a"), &claims),
        "InvalidAuthHeader",
    )
    .await;
}

#[tokio::test]
async fn time_claims_are_enforced() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let base = clerk_claims(&issuer.url);
    let now = now();
    // Offsets are an hour from now: nowhere near the 5 s leeway, whatever the machine load.
    let cases = [
        (
            with(base.clone(), "exp", (now - 3600).into()),
            Rejection::Expired,
        ),
        (
            with(base.clone(), "nbf", (now + 3600).into()),
            Rejection::NotYetValid,
        ),
        (
            with(base.clone(), "iat", (now + 3600).into()),
            Rejection::IssuedInFuture,
        ),
        (
            without(base.clone(), "exp"),
            Rejection::MissingClaim {
                claim: "exp".into(),
            },
        ),
        (
            without(base.clone(), "iat"),
            Rejection::MissingClaim {
                claim: "iat".into(),
            },
        ),
        (
            without(base.clone(), "sub"),
            Rejection::MissingClaim {
                claim: "sub".into(),
            },
        ),
    ];
    for (claims, expected) in cases {
        let rejection =
            expect_rejection(&verifier, &sign(ISSUER_A_PEM, Some("key-a"), &claims)).await;
        assert_eq!(rejection, expected);
    }
    assert_eq!(Rejection::Expired.to_string(), "Token expired");
    // Within the leeway is fine: expired one second ago.
    let just_expired = with(base.clone(), "exp", (now - 1).into());
    verifier
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &just_expired))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier_for(&issuer, Duration::ZERO);
    let token = sign(ISSUER_A_PEM, Some("key-zzz"), &clerk_claims(&issuer.url));
    let rejection = expect_rejection(&verifier, &token).await;
    assert_eq!(
        rejection,
        Rejection::UnknownKeyId {
            kid: "key-zzz".into(),
            refreshed: KeyRefresh::JustNow
        }
    );
    assert!(rejection
        .to_string()
        .starts_with("No key with kid `key-zzz`"));
}

#[tokio::test]
async fn known_kid_signed_by_a_stranger_is_refused() {
    let issuer = issuer_with_key_a().await;
    let token = sign(STRANGER_PEM, Some("key-a"), &clerk_claims(&issuer.url));
    let rejection = expect_rejection(&verifier(&issuer), &token).await;
    assert_eq!(rejection, Rejection::InvalidSignature);
    assert_eq!(rejection.to_string(), "Invalid token signature");
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&issuer.url));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = with(clerk_claims(&issuer.url), "sub", "user_admin".into());
    let forged_payload = b64(Value::Object(forged_claims).to_string().as_bytes());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(
        expect_rejection(&verifier, &forged).await,
        Rejection::InvalidSignature
    );

    // A flipped signature character too: the first one, because the last base64 character
    // of a 256-byte signature also carries padding bits that a decoder may ignore.
    let flipped = if parts[2].starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]);
    assert_eq!(
        expect_rejection(&verifier, &forged).await,
        Rejection::InvalidSignature
    );
}

#[tokio::test]
async fn not_a_jwt_is_an_invalid_auth_header() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier(&issuer);
    let payload = b64(br#"{"iss":"x"}"#);
    let long = "a".repeat(20_000);
    for token in [
        "",
        "hello",
        "a.b",
        "a.b.c.d",
        "!!!.###.$$$",
        &format!("{payload}.{payload}"),
        &format!("{}.{payload}.sig", b64(b"[1,2]")),
        &format!("{}.{}.sig", b64(br#"{"alg":"RS256"}"#), b64(b"not json")),
        &long,
    ] {
        expect_code(&verifier, token, "InvalidAuthHeader").await;
    }
}

// ---------------------------------------------------------------------------------------
// Key rotation and refetching.

#[tokio::test]
async fn newly_published_key_is_accepted_without_restart() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier_for(&issuer, Duration::ZERO);
    let claims = clerk_claims(&issuer.url);
    verifier
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &claims))
        .await
        .unwrap();
    assert_eq!(issuer.jwks_hits(), 1);

    let token_b = sign(ISSUER_B_PEM, Some("key-b"), &claims);
    expect_rejection(&verifier, &token_b).await;
    assert_eq!(issuer.jwks_hits(), 2);

    issuer.publish(jwk(ISSUER_B_JWK, "key-b", "RS256"));
    verifier.verify(&token_b).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 3);

    // Retiring key A at the issuer does not matter until a refetch happens; once it
    // does, tokens signed with A are refused.
    issuer.jwks.lock().retain(|key| key["kid"] != "key-a");
    verifier
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &claims))
        .await
        .unwrap();
    expect_rejection(&verifier, &sign(ISSUER_A_PEM, Some("key-new"), &claims)).await;
    expect_rejection(&verifier, &sign(ISSUER_A_PEM, Some("key-a"), &claims)).await;
}

#[tokio::test]
async fn refetching_is_rate_limited() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier_for(&issuer, Duration::from_secs(3600));
    let claims = clerk_claims(&issuer.url);
    verifier
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &claims))
        .await
        .unwrap();
    issuer.publish(jwk(ISSUER_B_JWK, "key-b", "RS256"));

    let token_b = sign(ISSUER_B_PEM, Some("key-b"), &claims);
    for _ in 0..5 {
        let rejection = expect_rejection(&verifier, &token_b).await;
        assert_eq!(
            rejection,
            Rejection::UnknownKeyId {
                kid: "key-b".into(),
                refreshed: KeyRefresh::RateLimited
            }
        );
    }
    assert_eq!(issuer.jwks_hits(), 1);
    // Known keys keep working meanwhile.
    verifier
        .verify(&sign(ISSUER_A_PEM, Some("key-a"), &claims))
        .await
        .unwrap();
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let issuer = issuer_with_key_a().await;
    let verifier = verifier_for(&issuer, Duration::ZERO);
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&issuer.url));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(issuer.jwks_hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Provider failures and configuration.

#[tokio::test]
async fn unreachable_issuer_is_a_discovery_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let verifier = TokenVerifier::new(AuthConfig::clerk(&url).unwrap()).unwrap();
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&url));
    let error = expect_code(&verifier, &token, "AuthProviderDiscoveryFailed").await;
    assert!(error.to_string().contains(&url), "{error}");
}

#[tokio::test]
async fn discovery_for_another_issuer_is_refused() {
    let issuer = issuer_with_key_a().await;
    *issuer.declared_issuer.lock() = "https://someone-else.example".into();
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&issuer.url));
    let error = expect_code(&verifier(&issuer), &token, "AuthProviderDiscoveryFailed").await;
    assert!(error.to_string().contains("someone-else"), "{error}");
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn disabled_auth_refuses_every_token() {
    let verifier = TokenVerifier::new(AuthConfig::disabled()).unwrap();
    assert!(!verifier.is_enabled());
    let token = sign(
        ISSUER_A_PEM,
        Some("key-a"),
        &clerk_claims("https://issuer.example"),
    );
    let error = expect_code(&verifier, &token, "NoAuthProvider").await;
    assert!(
        error.to_string().contains("no providers configured"),
        "{error}"
    );
}

#[tokio::test]
async fn custom_jwt_with_inline_and_file_jwks() {
    let ec_jwk = jwk(EC_JWK, "ec-1", "ES256");
    let jwks = json!({"keys": [ec_jwk]}).to_string();
    let data_url = format!(
        "data:application/json;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jwks)
    );
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, &jwks).unwrap();

    for source in [JwksSource::Data(data_url), JwksSource::File(jwks_path)] {
        let config = AuthConfig::new(vec![ProviderConfig::CustomJwt {
            issuer: "auth.example.com".into(),
            jwks: source,
            algorithm: Algorithm::ES256,
            application_id: Some("my-app".into()),
        }])
        .unwrap();
        let verifier = TokenVerifier::new(config).unwrap();
        let now = now();
        let Value::Object(claims) = json!({
            "iss": "https://auth.example.com",
            "sub": "u1",
            "aud": "my-app",
            "exp": now + 600,
            "given_name": "Ada",
            "org": {"id": "o1"},
        }) else {
            unreachable!()
        };
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let ec_key = EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&header, &claims, &ec_key).unwrap();

        let verified = verifier.verify(&token).await.unwrap();
        assert_eq!(
            Value::Object(verified.user_identity()),
            json!({
                "tokenIdentifier": "https://auth.example.com|u1",
                "subject": "u1",
                "issuer": "https://auth.example.com",
                "given_name": "Ada",
                "org.id": "o1",
            })
        );

        // Same key id, no `kid` header: the single key is used.
        header.kid = None;
        let no_kid = jsonwebtoken::encode(&header, &claims, &ec_key).unwrap();
        verifier.verify(&no_kid).await.unwrap();

        // The provider is pinned to ES256: an RS256 token is refused outright.
        let rs_token = sign(ISSUER_A_PEM, Some("ec-1"), &claims);
        let rejection = expect_rejection(&verifier, &rs_token).await;
        assert!(
            matches!(rejection, Rejection::AlgorithmNotAllowed { .. }),
            "{rejection:?}"
        );

        // Audience is checked because the provider has an applicationID.
        let other_aud = with(claims.clone(), "aud", "other".into());
        let token = jsonwebtoken::encode(&header, &other_aud, &ec_key).unwrap();
        expect_code(&verifier, &token, "NoAuthProvider").await;
    }
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let mut padded = jwk(ISSUER_A_JWK, "key-a", "RS256");
    padded["x-padding"] = "p"
        .repeat(tickethub_auth::jwt::MAX_KEY_DOCUMENT_BYTES)
        .into();
    let issuer = Issuer::start(vec![padded]).await;
    let token = sign(ISSUER_A_PEM, Some("key-a"), &clerk_claims(&issuer.url));
    let error = expect_code(&verifier(&issuer), &token, "AuthProviderDiscoveryFailed").await;
    assert!(error.to_string().contains("larger than"), "{error}");
}
