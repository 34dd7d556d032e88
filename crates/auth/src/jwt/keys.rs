//! Public keys per provider: fetching (OIDC discovery, JWKS URL, file, data URL), parsing,
//! caching, and rotation-aware refetching.
//!
//! Keys are cached until a token names a `kid` we do not have; then the JWKS is fetched
//! again, at most once per `key_refetch_interval` per provider, so a stream of tokens with
//! made-up `kid`s cannot turn this server into a load generator against the issuer.

use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    DecodingKey,
};
use parking_lot::RwLock;
use reqwest::Url;
use serde_json::Value;

use super::{
    config::{check_fetchable, JwksSource},
    error::{AuthError, KeyRefresh, Rejection},
};

/// Largest discovery document or JWKS we read. Real ones are a few KiB.
pub const MAX_KEY_DOCUMENT_BYTES: usize = 256 * 1024;

/// Keys kept from one JWKS; the rest are ignored. Issuers publish a handful.
pub const MAX_KEYS_PER_PROVIDER: usize = 64;

/// Redirects followed when fetching key documents (each hop must also be HTTPS).
const MAX_REDIRECTS: usize = 5;

/// The key families this crate verifies with; each signature algorithm needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    EcP256,
    Ed25519,
}

struct StoredKey {
    kid: Option<String>,
    family: KeyFamily,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    /// False until the first successful fetch.
    loaded: bool,
    keys: Vec<StoredKey>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

enum Lookup {
    Found(DecodingKey),
    WrongFamily,
    /// No `kid` in the token and several keys could apply.
    Ambiguous(usize),
    Missing,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
    OidcDiscovery {
        issuer: String,
    },
    Jwks(JwksSource),
}

/// The key cache for one provider.
pub(crate) struct ProviderKeys {
    source: KeySource,
    /// For error messages.
    issuer: String,
    keys: RwLock<KeySet>,
    /// Serialises fetches, so concurrent requests with a new `kid` cause one fetch.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl ProviderKeys {
    pub(crate) fn new(source: KeySource, issuer: String) -> Self {
        Self {
            source,
            issuer,
            keys: RwLock::new(KeySet::default()),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    /// The key to verify a token with `kid` signed in `family`, fetching if needed.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        family: KeyFamily,
        algorithm: &str,
        fetcher: &Fetcher,
        refetch_interval: Duration,
    ) -> Result<DecodingKey, AuthError> {
        if let Some(found) = self.settled(kid, family, algorithm)? {
            return Ok(found);
        }
        let mut state = self.fetch.lock().await;
        // Another request may have refreshed the keys while we waited for the lock.
        if let Some(found) = self.settled(kid, family, algorithm)? {
            return Ok(found);
        }
        let loaded = self.keys.read().loaded;
        if let Some(last) = state.last_attempt {
            if last.elapsed() < refetch_interval {
                if !loaded {
                    let detail = state
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "a previous attempt failed".to_owned());
                    return Err(self.fetch_failed(format!(
                        "{detail} (retrying at most every {} s)",
                        refetch_interval.as_secs()
                    )));
                }
                return Err(missing_key(kid, algorithm, KeyRefresh::RateLimited));
            }
        }
        state.last_attempt = Some(Instant::now());
        let refresh = match self.fetch_keys(fetcher).await {
            Ok(keys) => {
                tracing::debug!(issuer = %self.issuer, count = keys.len(), "loaded signing keys");
                *self.keys.write() = KeySet { loaded: true, keys };
                state.last_error = None;
                KeyRefresh::JustNow
            }
            Err(detail) => {
                state.last_error = Some(detail.clone());
                if !loaded {
                    return Err(self.fetch_failed(detail));
                }
                // Keep serving with the keys we have; the issuer may be briefly down.
                tracing::warn!(issuer = %self.issuer, %detail, "refreshing signing keys failed");
                KeyRefresh::Failed
            }
        };
        match self.settled(kid, family, algorithm)? {
            Some(found) => Ok(found),
            None => Err(missing_key(kid, algorithm, refresh)),
        }
    }

    /// `Ok(Some)` when a key is known, `Ok(None)` when a fetch might help.
    fn settled(
        &self,
        kid: Option<&str>,
        family: KeyFamily,
        algorithm: &str,
    ) -> Result<Option<DecodingKey>, AuthError> {
        match self.lookup(kid, family) {
            Lookup::Found(key) => Ok(Some(key)),
            Lookup::WrongFamily => Err(Rejection::KeyAlgorithmMismatch {
                kid: kid.unwrap_or_default().to_owned(),
                algorithm: algorithm.to_owned(),
            }
            .into()),
            Lookup::Ambiguous(candidates) => Err(Rejection::MissingKeyId { candidates }.into()),
            Lookup::Missing => Ok(None),
        }
    }

    fn lookup(&self, kid: Option<&str>, family: KeyFamily) -> Lookup {
        let set = self.keys.read();
        match kid {
            Some(kid) => match set.keys.iter().find(|key| key.kid.as_deref() == Some(kid)) {
                Some(stored) if stored.family == family => Lookup::Found(stored.key.clone()),
                Some(_) => Lookup::WrongFamily,
                None => Lookup::Missing,
            },
            // Without a `kid`, accept only an unambiguous key (custom JWT issuers with one key).
            None => {
                let mut candidates = set.keys.iter().filter(|key| key.family == family);
                match (candidates.next(), candidates.count()) {
                    (Some(only), 0) => Lookup::Found(only.key.clone()),
                    (Some(_), others) => Lookup::Ambiguous(others + 1),
                    (None, _) => Lookup::Missing,
                }
            }
        }
    }

    async fn fetch_keys(&self, fetcher: &Fetcher) -> Result<Vec<StoredKey>, String> {
        let body = match &self.source {
            KeySource::OidcDiscovery { issuer } => {
                let jwks_uri = discover_jwks_uri(issuer, fetcher).await?;
                fetcher.get(&jwks_uri).await?
            }
            KeySource::Jwks(JwksSource::Url(url)) => fetcher.get(url).await?,
            KeySource::Jwks(JwksSource::File(path)) => read_bounded_file(path).await?,
            KeySource::Jwks(JwksSource::Data(data_url)) => decode_data_url(data_url)?,
        };
        parse_jwks(&body)
    }

    fn fetch_failed(&self, detail: String) -> AuthError {
        AuthError::KeyFetchFailed {
            issuer: self.issuer.clone(),
            detail,
        }
    }
}

fn missing_key(kid: Option<&str>, algorithm: &str, refreshed: KeyRefresh) -> AuthError {
    match kid {
        Some(kid) => Rejection::UnknownKeyId {
            kid: kid.to_owned(),
            refreshed,
        }
        .into(),
        None => Rejection::NoKeyForAlgorithm {
            algorithm: algorithm.to_owned(),
        }
        .into(),
    }
}

async fn discover_jwks_uri(issuer: &str, fetcher: &Fetcher) -> Result<Url, String> {
    let discovery_url = Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
        .map_err(|error| format!("bad discovery URL for `{issuer}`: {error}"))?;
    let body = fetcher.get(&discovery_url).await?;
    let document: Value = serde_json::from_slice(&body)
        .map_err(|error| format!("discovery document at {discovery_url} is not JSON: {error}"))?;
    // OIDC discovery requires the document to name the issuer it was fetched for; a
    // mismatch means a misconfigured domain (or someone else's document).
    let declared = document.get("issuer").and_then(Value::as_str).unwrap_or("");
    if super::config::normalize_issuer(declared) != issuer {
        return Err(format!(
            "discovery document at {discovery_url} declares issuer `{declared}`, expected `{issuer}`"
        ));
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("discovery document at {discovery_url} has no `jwks_uri`"))?;
    let jwks_uri =
        Url::parse(jwks_uri).map_err(|error| format!("bad `jwks_uri` `{jwks_uri}`: {error}"))?;
    check_fetchable(&jwks_uri)?;
    Ok(jwks_uri)
}

/// Turns a JWKS document into usable verification keys. Keys we cannot or must not use
/// (symmetric `oct` keys, encryption keys, unknown curves, mismatched `alg`) are skipped
/// rather than failing the whole set, so one odd key does not lock everyone out.
fn parse_jwks(body: &[u8]) -> Result<Vec<StoredKey>, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|error| format!("JWKS is not JSON: {error}"))?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no `keys` array")?;
    let mut keys = Vec::new();
    for entry in entries.iter().take(MAX_KEYS_PER_PROVIDER) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::debug!("skipping a JWKS entry that is not a supported JWK");
            continue;
        };
        if let Some(stored) = usable_key(&jwk) {
            keys.push(stored);
        }
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Option<StoredKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|key_use| *key_use != PublicKeyUse::Signature)
    {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            KeyFamily::EcP256
        }
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            KeyFamily::Ed25519
        }
        // Symmetric keys in a public JWKS would let anyone mint tokens: never use them.
        _ => return None,
    };
    let declared_alg_fits = match (jwk.common.key_algorithm, family) {
        (None, _) => true,
        (Some(KeyAlgorithm::RS256), KeyFamily::Rsa) => true,
        (Some(KeyAlgorithm::ES256), KeyFamily::EcP256) => true,
        (Some(KeyAlgorithm::EdDSA), KeyFamily::Ed25519) => true,
        (Some(_), _) => false,
    };
    if !declared_alg_fits {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(StoredKey {
        kid: jwk.common.key_id.clone(),
        family,
        key,
    })
}

async fn read_bounded_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let describe =
        |error: std::io::Error| format!("cannot read JWKS file {}: {error}", path.display());
    let length = tokio::fs::metadata(path).await.map_err(describe)?.len();
    if length > MAX_KEY_DOCUMENT_BYTES as u64 {
        return Err(format!(
            "JWKS file {} is larger than {MAX_KEY_DOCUMENT_BYTES} bytes",
            path.display()
        ));
    }
    tokio::fs::read(path).await.map_err(describe)
}

/// `data:[<media type>][;base64],<data>`.
fn decode_data_url(data_url: &str) -> Result<Vec<u8>, String> {
    let rest = data_url.strip_prefix("data:").ok_or("not a data: URL")?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or("data: URL has no `,` before its data")?;
    if meta.ends_with(";base64") {
        let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(compact.trim_end_matches('='))
            })
            .map_err(|error| format!("data: URL is not valid base64: {error}"))
    } else {
        percent_decode(data)
    }
}

fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or("data: URL has a bad percent escape")?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Ok(out)
}

/// HTTP GETs for key documents: HTTPS (or loopback HTTP) only, time-bounded, size-bounded.
pub(crate) struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    pub(crate) fn new(timeout: Duration) -> Result<Self, String> {
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if let Err(reason) = check_fetchable(attempt.url()) {
                attempt.error(reason)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(redirect)
            .user_agent(concat!("tickethub-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self { client })
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        check_fetchable(url)?;
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| format!("GET {url} failed: {error}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} returned HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_KEY_DOCUMENT_BYTES as u64)
        {
            return Err(format!(
                "{url} is larger than {MAX_KEY_DOCUMENT_BYTES} bytes"
            ));
        }
        // Content-Length may be absent or wrong, so bound what we actually read too.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| format!("reading {url} failed: {error}"))?
        {
            if body.len() + chunk.len() > MAX_KEY_DOCUMENT_BYTES {
                return Err(format!(
                    "{url} is larger than {MAX_KEY_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_decode() {
        let json = br#"{"keys":[]}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(
            decode_data_url(&format!("data:application/json;base64,{b64}")).unwrap(),
            json
        );
        assert_eq!(
            decode_data_url("data:application/json,%7B%22keys%22%3A%5B%5D%7D").unwrap(),
            json
        );
        assert!(decode_data_url("data:application/json").is_err());
        assert!(decode_data_url("data:,%zz").is_err());
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let rsa = include_str!("../../tests/fixtures/issuer_a.jwk.json");
        let mut rsa: Value = serde_json::from_str(rsa).unwrap();
        rsa["kid"] = "good".into();
        let mut encryption = rsa.clone();
        encryption["kid"] = "enc".into();
        encryption["use"] = "enc".into();
        let mut wrong_alg = rsa.clone();
        wrong_alg["kid"] = "rs512".into();
        wrong_alg["alg"] = "RS512".into();
        let symmetric = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"});
        let junk = serde_json::json!({"kty": "nope"});
        let document = serde_json::json!({"keys": [rsa, encryption, wrong_alg, symmetric, junk]});
        let keys = parse_jwks(document.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|key| key.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["good"]);
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
