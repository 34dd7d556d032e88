//! Stripe webhook signature verification, by Stripe's published scheme.
//!
//! Stripe signs each delivery with the endpoint's secret (`whsec_...`) and sends
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`. A delivery is
//! authentic when one of the `v1` values equals the hex HMAC-SHA256 of `"{t}.{raw body}"`
//! keyed with the secret's bytes as they are (the `whsec_` text itself, not a decoding of it:
//! Stripe's libraries do the same). Several `v1` entries appear while a secret is being
//! rolled; any one may match. `v0` is an old test-mode scheme and is never accepted.
//!
//! Checks run in Stripe's own order: header, then signature, then the timestamp window, so
//! an unsigned request learns nothing about our clock, and an authentic but stale delivery
//! gets the precise "too old" error. Unlike Stripe's libraries, a timestamp too far in the
//! *future* is refused too: a signature made for later is a replay waiting to happen.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Stripe signs with (HTTP header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Allowed distance between the signed timestamp and our clock, either way: Stripe's
/// libraries' default tolerance.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// Largest body verified: 1 MiB. Stripe event payloads are a few KiB (a Checkout Session
/// event carries no line items); anything near this is not from Stripe.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_SCHEME: &str = "v1";
/// An HMAC-SHA256 is 32 bytes, 64 hex digits.
const SIGNATURE_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a Stripe delivery (or an endpoint secret) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeSignatureError {
    #[error(
        "Invalid Stripe webhook signing secret: {reason}. Copy the endpoint's signing secret \
         (`whsec_...`) from the Stripe dashboard or from `stripe listen`."
    )]
    InvalidSecret { reason: &'static str },

    #[error("Missing `Stripe-Signature` header.")]
    MissingHeader,

    #[error("Malformed `Stripe-Signature` header: {reason}.")]
    MalformedHeader { reason: &'static str },

    #[error(
        "`Stripe-Signature` has no `v1=` signature; only v1 (HMAC-SHA256) signatures are \
         accepted."
    )]
    NoV1Signature,

    #[error(
        "No `v1` signature matched. Check that STRIPE_WEBHOOK_SECRET is this endpoint's signing \
         secret and that the body reaches the server unmodified."
    )]
    InvalidSignature,

    #[error(
        "Stripe signature timestamp {timestamp_secs} is more than {TIMESTAMP_TOLERANCE_SECS} s \
         in the past (now {now_secs}); the delivery is stale or replayed, or this server's clock \
         is wrong."
    )]
    TimestampTooOld { timestamp_secs: i64, now_secs: i64 },

    #[error(
        "Stripe signature timestamp {timestamp_secs} is more than {TIMESTAMP_TOLERANCE_SECS} s \
         in the future (now {now_secs}); check this server's clock."
    )]
    TimestampTooNew { timestamp_secs: i64, now_secs: i64 },

    #[error("Stripe webhook body is larger than {max} bytes ({actual} bytes).")]
    BodyTooLarge { actual: usize, max: usize },
}

impl StripeSignatureError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StripeSignatureError::InvalidSecret { .. } => "InvalidSecret",
            StripeSignatureError::MissingHeader => "MissingHeader",
            StripeSignatureError::MalformedHeader { .. } => "MalformedHeader",
            StripeSignatureError::NoV1Signature => "NoV1Signature",
            StripeSignatureError::InvalidSignature => "InvalidSignature",
            StripeSignatureError::TimestampTooOld { .. } => "TimestampTooOld",
            StripeSignatureError::TimestampTooNew { .. } => "TimestampTooNew",
            StripeSignatureError::BodyTooLarge { .. } => "BodyTooLarge",
        }
    }
}

/// An authentic delivery: the signed timestamp. The body is the caller's to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedStripeSignature {
    /// `t=`, Unix seconds.
    pub timestamp_secs: i64,
}

/// The parts of a `Stripe-Signature` header this verifier uses.
#[derive(Debug, PartialEq, Eq)]
struct SignatureHeader<'a> {
    timestamp_secs: i64,
    /// The `v1` values, as sent (hex text).
    v1_signatures: Vec<&'a str>,
}

/// Verifies deliveries for one endpoint secret.
#[derive(Clone)]
pub struct StripeVerifier {
    /// HMAC state keyed with the secret, cloned per delivery (the key is hashed once).
    keyed: HmacSha256,
}

impl std::fmt::Debug for StripeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeVerifier { secret: <redacted> }")
    }
}

impl StripeVerifier {
    /// `secret` is the endpoint's `whsec_...` signing secret, used as raw key bytes.
    /// Surrounding whitespace (a trailing newline in an env file) is ignored.
    pub fn new(secret: &str) -> Result<Self, StripeSignatureError> {
        let secret = secret.trim();
        let Some(rest) = secret.strip_prefix(SECRET_PREFIX) else {
            // Catches the costly mix-up of putting an API key (`sk_...`) here.
            return Err(StripeSignatureError::InvalidSecret {
                reason: "it does not start with `whsec_`",
            });
        };
        if rest.is_empty() {
            return Err(StripeSignatureError::InvalidSecret {
                reason: "nothing follows `whsec_`",
            });
        }
        let keyed =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
        Ok(Self { keyed })
    }

    /// Checks `header` (the `Stripe-Signature` value, if any) against `body` at the system
    /// clock.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<VerifiedStripeSignature, StripeSignatureError> {
        self.verify_at(header, body, unix_now_secs())
    }

    /// [`StripeVerifier::verify`] at a given time (tests, and callers with their own clock).
    pub fn verify_at(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<VerifiedStripeSignature, StripeSignatureError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(StripeSignatureError::BodyTooLarge {
                actual: body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        let header = header.ok_or(StripeSignatureError::MissingHeader)?;
        let parsed = parse_header(header)?;
        let expected = self.mac(parsed.timestamp_secs, body);
        let matched = parsed.v1_signatures.iter().any(|candidate| {
            // A value that is not 64 hex digits cannot match; `verify_slice` compares in
            // constant time.
            match hex::decode(candidate) {
                Ok(bytes) if bytes.len() == SIGNATURE_BYTES => {
                    expected.clone().verify_slice(&bytes).is_ok()
                }
                _ => false,
            }
        });
        if !matched {
            return Err(StripeSignatureError::InvalidSignature);
        }
        let timestamp_secs = parsed.timestamp_secs;
        if now_secs.saturating_sub(timestamp_secs) > TIMESTAMP_TOLERANCE_SECS {
            return Err(StripeSignatureError::TimestampTooOld {
                timestamp_secs,
                now_secs,
            });
        }
        if timestamp_secs.saturating_sub(now_secs) > TIMESTAMP_TOLERANCE_SECS {
            return Err(StripeSignatureError::TimestampTooNew {
                timestamp_secs,
                now_secs,
            });
        }
        Ok(VerifiedStripeSignature { timestamp_secs })
    }

    /// The `Stripe-Signature` value Stripe would send for `body` at `timestamp_secs`. For
    /// tools that send signed deliveries to this server (the benchmark); tests use Stripe's
    /// own `generateTestHeaderString`.
    pub fn sign(&self, timestamp_secs: i64, body: &[u8]) -> String {
        let digest = self.mac(timestamp_secs, body).finalize().into_bytes();
        format!(
            "t={timestamp_secs},{SIGNATURE_SCHEME}={}",
            hex::encode(digest)
        )
    }

    /// HMAC state over `"{t}.{body}"`, not yet finalized.
    fn mac(&self, timestamp_secs: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// `t=...,v1=...,v1=...,v0=...`: comma-separated `key=value` items. Unknown keys (`v0`, and
/// whatever Stripe may add) are skipped, as Stripe's libraries skip them.
fn parse_header(raw: &[u8]) -> Result<SignatureHeader<'_>, StripeSignatureError> {
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|text| text.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or(StripeSignatureError::MalformedHeader {
            reason: "it is not visible ASCII",
        })?;
    let mut timestamp = None;
    let mut v1_signatures = Vec::new();
    for item in text.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(StripeSignatureError::MalformedHeader {
                        reason: "it has more than one `t=`",
                    });
                }
                timestamp = Some(parse_timestamp(value)?);
            }
            SIGNATURE_SCHEME => v1_signatures.push(value),
            _ => {}
        }
    }
    let timestamp_secs = timestamp.ok_or(StripeSignatureError::MalformedHeader {
        reason: "it has no `t=` timestamp",
    })?;
    if v1_signatures.is_empty() {
        return Err(StripeSignatureError::NoV1Signature);
    }
    Ok(SignatureHeader {
        timestamp_secs,
        v1_signatures,
    })
}

/// Unix seconds as decimal digits only (no sign, no exponent), within 1..=18 digits.
fn parse_timestamp(value: &str) -> Result<i64, StripeSignatureError> {
    let digits_only =
        !value.is_empty() && value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err(StripeSignatureError::MalformedHeader {
            reason: "`t=` is not a whole number of Unix seconds",
        });
    }
    value
        .parse()
        .map_err(|_| StripeSignatureError::MalformedHeader {
            reason: "`t=` is not a whole number of Unix seconds",
        })
}

fn unix_now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors made with the official `stripe` npm package, version 23.1.0:
    /// `new Stripe("sk_test_dummy").webhooks.generateTestHeaderString({payload, secret,
    /// timestamp})` (and `scheme: "v0"` for the last one). Fields: secret, timestamp, body,
    /// the header it printed.
    const STRIPE_NPM_VECTORS: [(&str, i64, &str, &str); 4] = [
        (
            "whsec_test_secret",
            1764000000,
            r#"{"id":"evt_test_1","object":"event"}"#,
            "t=1764000000,v1=7586f2bd5b2ebe6f32877d58296c1359c6418793d8a3c63c53bb9eb1a7a7c225",
        ),
        (
            "whsec_plJ3fSAd0aJxR2eNq9hUjQk0",
            1700000000,
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"payment_intent":"pi_123","amount_total":4999}}}"#,
            "t=1700000000,v1=2216210def38e0ca62ca6212096c7865a5aa19fe626666aa4419396d0f10901a",
        ),
        (
            "whsec_other",
            1764000000,
            r#"{"id":"evt_test_1","object":"event"}"#,
            "t=1764000000,v1=306319252dc7dc46f9086adf0795999e4f0c0a269908c5dd6aa78f9c503feec5",
        ),
        (
            "whsec_test_secret",
            1764000000,
            "ünïcødé body, not JSON",
            "t=1764000000,v1=a051800af3c9df83ce4cd0270b08960e27efc81c41152fb4d86a9539bfaf4276",
        ),
    ];
    /// `scheme: "v0"`, secret `whsec_a`, timestamp 1, payload `x`.
    const STRIPE_NPM_V0_ONLY: &str =
        "t=1,v0=06b7434ab5e3d1ce4be5c1b43e8d91c1c0a9fbeb0a1bfac56425d7b13fce8740";

    const SECRET: &str = "whsec_test_secret";
    const T: i64 = 1764000000;
    const BODY: &str = r#"{"id":"evt_test_1","object":"event"}"#;
    const GOOD: &str =
        "t=1764000000,v1=7586f2bd5b2ebe6f32877d58296c1359c6418793d8a3c63c53bb9eb1a7a7c225";

    /// Verifies with `SECRET` at `now` and compares the outcome by code.
    fn check(header: Option<&str>, body: &str, now: i64, expected: Result<(), &str>) {
        let verifier = StripeVerifier::new(SECRET).unwrap();
        let outcome = verifier
            .verify_at(header.map(str::as_bytes), body.as_bytes(), now)
            .map(|_| ())
            .map_err(|error| error.code());
        assert_eq!(outcome, expected, "header {header:?}");
    }

    #[test]
    fn stripe_npm_vectors_verify_and_sign_identically() {
        for (secret, timestamp, body, header) in STRIPE_NPM_VECTORS {
            let verifier = StripeVerifier::new(secret).unwrap();
            assert_eq!(verifier.sign(timestamp, body.as_bytes()), header);
            let verified = verifier
                .verify_at(Some(header.as_bytes()), body.as_bytes(), timestamp)
                .unwrap();
            assert_eq!(verified.timestamp_secs, timestamp);
        }
    }

    #[test]
    fn the_timestamp_window_is_300_seconds_either_way() {
        check(Some(GOOD), BODY, T, Ok(()));
        check(Some(GOOD), BODY, T + 300, Ok(()));
        check(Some(GOOD), BODY, T - 300, Ok(()));
        check(Some(GOOD), BODY, T + 301, Err("TimestampTooOld"));
        check(Some(GOOD), BODY, T - 301, Err("TimestampTooNew"));
        // The system clock is far past the vector's timestamp.
        let verifier = StripeVerifier::new(SECRET).unwrap();
        let error = verifier
            .verify(Some(GOOD.as_bytes()), BODY.as_bytes())
            .unwrap_err();
        assert_eq!(error.code(), "TimestampTooOld");
    }

    #[test]
    fn another_secret_or_a_changed_body_or_timestamp_does_not_verify() {
        let (other_secret, _, _, other_header) = STRIPE_NPM_VECTORS[2];
        check(Some(other_header), BODY, T, Err("InvalidSignature"));
        let other = StripeVerifier::new(other_secret).unwrap();
        assert_eq!(
            other.verify_at(Some(GOOD.as_bytes()), BODY.as_bytes(), T),
            Err(StripeSignatureError::InvalidSignature)
        );
        check(
            Some(GOOD),
            r#"{"id":"evt_test_2","object":"event"}"#,
            T,
            Err("InvalidSignature"),
        );
        check(Some(GOOD), &format!("{BODY}\n"), T, Err("InvalidSignature"));
        let shifted = GOOD.replacen("t=1764000000", "t=1764000001", 1);
        check(Some(&shifted), BODY, T, Err("InvalidSignature"));
    }

    #[test]
    fn any_one_of_several_v1_signatures_may_match() {
        let (_, _, _, other_header) = STRIPE_NPM_VECTORS[2];
        let other_v1 = other_header.split_once(",v1=").unwrap().1;
        let good_v1 = GOOD.split_once(",v1=").unwrap().1;
        for header in [
            format!("t={T},v1={other_v1},v1={good_v1}"),
            format!("t={T},v1={good_v1},v1={other_v1}"),
            format!("v1=zz,v1={good_v1},t={T},v0={other_v1}"),
            format!("t={T}, v1={good_v1}"),
        ] {
            check(Some(&header), BODY, T, Ok(()));
        }
        check(
            Some(&format!("t={T},v1={other_v1},v1=abc")),
            BODY,
            T,
            Err("InvalidSignature"),
        );
    }

    #[test]
    fn only_v1_is_accepted() {
        // Made by the stripe package with scheme v0: a correct v0 signature is still refused.
        let verifier = StripeVerifier::new("whsec_a").unwrap();
        let error = verifier
            .verify_at(Some(STRIPE_NPM_V0_ONLY.as_bytes()), b"x", 1)
            .unwrap_err();
        assert_eq!(error, StripeSignatureError::NoV1Signature);
        let good_v1 = GOOD.split_once(",v1=").unwrap().1;
        check(
            Some(&format!("t={T},v0={good_v1}")),
            BODY,
            T,
            Err("NoV1Signature"),
        );
        check(
            Some(&format!("t={T},V1={good_v1}")),
            BODY,
            T,
            Err("NoV1Signature"),
        );
        check(Some(&format!("t={T}")), BODY, T, Err("NoV1Signature"));
    }

    #[test]
    fn missing_and_malformed_headers() {
        check(None, BODY, T, Err("MissingHeader"));
        let good_v1 = GOOD.split_once(",v1=").unwrap().1;
        for bad in [
            String::new(),
            format!("v1={good_v1}"),
            format!("t=,v1={good_v1}"),
            format!("t=-5,v1={good_v1}"),
            format!("t=1.7e9,v1={good_v1}"),
            format!("t=99999999999999999999,v1={good_v1}"),
            format!("t={T},t={T},v1={good_v1}"),
            format!("t={T},v1={good_v1}\u{7f}"),
        ] {
            check(Some(&bad), BODY, T, Err("MalformedHeader"));
        }
        let verifier = StripeVerifier::new(SECRET).unwrap();
        let not_utf8 = verifier.verify_at(Some(&[0xff, 0xfe]), BODY.as_bytes(), T);
        assert_eq!(not_utf8.unwrap_err().code(), "MalformedHeader");
    }

    #[test]
    fn garbage_signatures_do_not_match() {
        for value in ["", "zz", "7586", &"0".repeat(64), &"g".repeat(64)] {
            check(
                Some(&format!("t={T},v1={value}")),
                BODY,
                T,
                Err("InvalidSignature"),
            );
        }
    }

    #[test]
    fn oversized_bodies_are_refused_before_anything_else() {
        let body = " ".repeat(MAX_BODY_BYTES + 1);
        check(None, &body, T, Err("BodyTooLarge"));
    }

    #[test]
    fn secrets_must_be_endpoint_secrets() {
        for bad in ["", "   ", "whsec_", "sk_test_123", "secret"] {
            let error = StripeVerifier::new(bad).unwrap_err();
            assert_eq!(error.code(), "InvalidSecret", "{bad:?}");
        }
        // A trailing newline from an env file is not part of the key.
        let verifier = StripeVerifier::new("whsec_test_secret\n").unwrap();
        verifier
            .verify_at(Some(GOOD.as_bytes()), BODY.as_bytes(), T)
            .unwrap();
        assert!(!format!("{verifier:?}").contains("test_secret"));
    }
}
