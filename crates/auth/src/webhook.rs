//! Svix / Standard Webhooks signature verification (what Clerk uses for its webhooks).
//!
//! A delivery is authentic when `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`
//! appears among the space-separated entries of the signature header, and the timestamp is
//! within five minutes of now. The `svix` crate does the cryptography and the timestamp
//! window (it accepts both the `svix-*` and the `webhook-*` header names); this module adds
//! the body-size bound, the JSON check, precise errors, and hands back the delivery id so
//! the caller can de-duplicate retries (Clerk may send the same `svix-id` more than once).

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use svix::webhooks::{Webhook, WebhookError as SvixError};

/// Largest body accepted for verification: 1 MiB. Clerk's user payloads are a few KiB; the
/// HTTP layer should also bound the body before buffering it.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;

/// Allowed distance between the delivery timestamp and our clock, either way. Enforced by
/// the `svix` crate; repeated here so error messages can state it.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

const SECRET_PREFIX: &str = "whsec_";

/// Which of the three signed headers an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedHeader {
    Id,
    Timestamp,
    Signature,
}

impl SignedHeader {
    /// The Svix name and the Standard Webhooks name; either is accepted.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            SignedHeader::Id => ("svix-id", "webhook-id"),
            SignedHeader::Timestamp => ("svix-timestamp", "webhook-timestamp"),
            SignedHeader::Signature => ("svix-signature", "webhook-signature"),
        }
    }
}

impl std::fmt::Display for SignedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (svix, standard) = self.names();
        write!(f, "`{svix}` (or `{standard}`)")
    }
}

/// Why a webhook delivery (or a signing secret) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "Invalid webhook signing secret: {reason}. Copy the endpoint's signing secret \
         (`whsec_...`) from the Clerk dashboard."
    )]
    InvalidSecret { reason: &'static str },

    #[error("Missing webhook header {0}.")]
    MissingHeader(SignedHeader),

    #[error("Webhook header {0} is empty or not visible ASCII.")]
    InvalidHeader(SignedHeader),

    #[error("Webhook timestamp {value:?} is not an integer number of Unix seconds.")]
    InvalidTimestamp { value: String },

    #[error(
        "Webhook timestamp {timestamp_secs} is more than {TIMESTAMP_TOLERANCE_SECS} s in the \
         past (now {now_secs}); the delivery is stale or replayed, or this server's clock is wrong."
    )]
    TimestampTooOld { timestamp_secs: i64, now_secs: i64 },

    #[error(
        "Webhook timestamp {timestamp_secs} is more than {TIMESTAMP_TOLERANCE_SECS} s in the \
         future (now {now_secs}); check this server's clock."
    )]
    TimestampTooNew { timestamp_secs: i64, now_secs: i64 },

    #[error(
        "Webhook signature header has no `v1,<signature>` entry; only v1 (HMAC-SHA256) \
         signatures are supported."
    )]
    NoSupportedSignature,

    #[error(
        "No webhook signature matched. Check that the configured signing secret belongs to \
         this endpoint and that the body is passed on unmodified."
    )]
    InvalidSignature,

    #[error("Webhook body is larger than {max} bytes ({actual} bytes).")]
    BodyTooLarge { actual: usize, max: usize },

    #[error("Webhook body is not valid UTF-8.")]
    PayloadNotUtf8,

    #[error("Webhook body is correctly signed but is not JSON: {detail}")]
    PayloadNotJson { detail: String },
}

impl WebhookError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::InvalidSecret { .. } => "InvalidSecret",
            WebhookError::MissingHeader(_) => "MissingHeader",
            WebhookError::InvalidHeader(_) => "InvalidHeader",
            WebhookError::InvalidTimestamp { .. } => "InvalidTimestamp",
            WebhookError::TimestampTooOld { .. } => "TimestampTooOld",
            WebhookError::TimestampTooNew { .. } => "TimestampTooNew",
            // Both mean "no acceptable signature": one code, two messages.
            WebhookError::NoSupportedSignature | WebhookError::InvalidSignature => {
                "InvalidSignature"
            }
            WebhookError::BodyTooLarge { .. } => "BodyTooLarge",
            WebhookError::PayloadNotUtf8 => "PayloadNotUtf8",
            WebhookError::PayloadNotJson { .. } => "PayloadNotJson",
        }
    }
}

/// An authentic delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDelivery {
    /// `svix-id`: the same for every retry of one message; use it to de-duplicate.
    pub id: String,
    /// `svix-timestamp`, Unix seconds.
    pub timestamp_secs: i64,
    /// The parsed body.
    pub payload: serde_json::Value,
}

/// Verifies deliveries for one endpoint secret.
pub struct WebhookVerifier {
    webhook: Webhook,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookVerifier { secret: <redacted> }")
    }
}

impl WebhookVerifier {
    /// `secret` is `whsec_<standard base64>`; the bare base64 form is accepted too, as the
    /// official libraries do.
    pub fn new(secret: &str) -> Result<Self, WebhookError> {
        let secret = secret.trim();
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        if encoded.is_empty() {
            return Err(WebhookError::InvalidSecret {
                reason: "it is empty",
            });
        }
        match Webhook::new(secret) {
            Ok(webhook) => Ok(Self { webhook }),
            Err(SvixError::EmptySecret) => Err(WebhookError::InvalidSecret {
                reason: "it decodes to zero bytes",
            }),
            Err(_) => Err(WebhookError::InvalidSecret {
                reason: "the part after `whsec_` is not standard base64",
            }),
        }
    }

    /// Checks headers, signature and timestamp, then parses the body as JSON.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedDelivery, WebhookError> {
        if body.len() > MAX_WEBHOOK_BODY_BYTES {
            return Err(WebhookError::BodyTooLarge {
                actual: body.len(),
                max: MAX_WEBHOOK_BODY_BYTES,
            });
        }
        // Read the headers ourselves first: the svix crate would report the same problems,
        // but without saying which names it looked for or what value it saw.
        let id = header_value(headers, SignedHeader::Id)?;
        let timestamp_text = header_value(headers, SignedHeader::Timestamp)?;
        let signatures = header_value(headers, SignedHeader::Signature)?;
        let timestamp_secs: i64 =
            timestamp_text
                .parse()
                .map_err(|_| WebhookError::InvalidTimestamp {
                    value: timestamp_text.to_owned(),
                })?;
        let has_v1_entry = signatures
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .any(|(version, _)| version == "v1");
        if !has_v1_entry {
            return Err(WebhookError::NoSupportedSignature);
        }

        self.webhook
            .verify(body, headers)
            .map_err(|error| match error {
                SvixError::TimestampTooOldError => WebhookError::TimestampTooOld {
                    timestamp_secs,
                    now_secs: unix_now_secs(),
                },
                SvixError::FutureTimestampError => WebhookError::TimestampTooNew {
                    timestamp_secs,
                    now_secs: unix_now_secs(),
                },
                SvixError::InvalidTimestamp => WebhookError::InvalidTimestamp {
                    value: timestamp_text.to_owned(),
                },
                SvixError::InvalidPayload => WebhookError::PayloadNotUtf8,
                SvixError::MissingHeader(name) => {
                    WebhookError::MissingHeader(signed_header_named(name))
                }
                SvixError::InvalidHeader(name) => {
                    WebhookError::InvalidHeader(signed_header_named(name))
                }
                SvixError::InvalidSignature
                | SvixError::InvalidSecret(_)
                | SvixError::EmptySecret => WebhookError::InvalidSignature,
            })?;

        // The svix crate authenticates bytes; whether they are a usable event is ours to say.
        let payload =
            serde_json::from_slice(body).map_err(|error| WebhookError::PayloadNotJson {
                detail: error.to_string(),
            })?;
        Ok(VerifiedDelivery {
            id: id.to_owned(),
            timestamp_secs,
            payload,
        })
    }

    /// Produces the `v1,<base64>` signature a sender would put in `svix-signature`.
    /// Meant for tests and tools that need to send signed deliveries to this server.
    pub fn sign(&self, id: &str, timestamp_secs: i64, body: &[u8]) -> Result<String, WebhookError> {
        self.webhook
            .sign(id, timestamp_secs, body)
            .map_err(|_| WebhookError::PayloadNotUtf8)
    }
}

/// The value of the Svix-named header, else the Standard Webhooks one.
fn header_value(headers: &HeaderMap, which: SignedHeader) -> Result<&str, WebhookError> {
    let (svix, standard) = which.names();
    let value = headers
        .get(svix)
        .or_else(|| headers.get(standard))
        .ok_or(WebhookError::MissingHeader(which))?;
    let text = value
        .to_str()
        .map_err(|_| WebhookError::InvalidHeader(which))?
        .trim();
    if text.is_empty() {
        return Err(WebhookError::InvalidHeader(which));
    }
    Ok(text)
}

/// The svix crate names headers "id" / "timestamp" / "signature" in its errors.
fn signed_header_named(name: &str) -> SignedHeader {
    match name {
        "id" => SignedHeader::Id,
        "timestamp" => SignedHeader::Timestamp,
        _ => SignedHeader::Signature,
    }
}

fn unix_now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;

    /// Header names for one delivery: Svix-branded or Standard Webhooks.
    #[derive(Clone, Copy)]
    enum Naming {
        Svix,
        Standard,
    }

    fn headers(naming: Naming, id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (which, value) in [
            (SignedHeader::Id, id),
            (SignedHeader::Timestamp, timestamp),
            (SignedHeader::Signature, signature),
        ] {
            let (svix, standard) = which.names();
            let name = match naming {
                Naming::Svix => svix,
                Naming::Standard => standard,
            };
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Headers for `body` signed now (plus `offset_secs`) with `SECRET`.
    fn signed_now(naming: Naming, offset_secs: i64, body: &[u8]) -> HeaderMap {
        let verifier = WebhookVerifier::new(SECRET).unwrap();
        let timestamp = unix_now_secs() + offset_secs;
        let signature = verifier.sign(MSG_ID, timestamp, body).unwrap();
        headers(naming, MSG_ID, &timestamp.to_string(), &signature)
    }

    fn verify(headers: &HeaderMap, body: &[u8]) -> Result<VerifiedDelivery, WebhookError> {
        WebhookVerifier::new(SECRET).unwrap().verify(headers, body)
    }

    fn check_code(headers: &HeaderMap, body: &[u8], expected_code: &str) {
        let error = verify(headers, body).expect_err("delivery should be rejected");
        assert_eq!(error.code(), expected_code, "unexpected error: {error}");
    }

    #[test]
    fn official_test_vectors_sign_identically() {
        // The fixed timestamps are long past, so compare signatures rather than verifying.
        let cases = [
            (
                SECRET,
                MSG_ID,
                1649367553,
                &br#"{"email":"test@example.com","username":"test_user"}"#[..],
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                &br#"{"test": 2432232314}"#[..],
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        for (secret, id, timestamp, body, expected) in cases {
            let verifier = WebhookVerifier::new(secret).unwrap();
            assert_eq!(verifier.sign(id, timestamp, body).unwrap(), expected);
        }
    }

    #[test]
    fn official_test_vector_is_rejected_only_for_its_age() {
        let headers = headers(
            Naming::Svix,
            MSG_ID,
            "1649367553",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        );
        check_code(&headers, BODY, "TimestampTooOld");
        // The same headers with the svix crate's tolerance switched off pass, so the age is
        // the only thing wrong with them.
        Webhook::new(SECRET)
            .unwrap()
            .verify_ignoring_timestamp(BODY, &headers)
            .unwrap();
    }

    #[test]
    fn accepts_fresh_delivery_with_either_header_naming() {
        for naming in [Naming::Svix, Naming::Standard] {
            let delivery = verify(&signed_now(naming, 0, BODY), BODY).unwrap();
            assert_eq!(delivery.id, MSG_ID);
            assert_eq!(
                delivery.payload,
                json!({"email": "test@example.com", "username": "test_user"})
            );
            assert!((delivery.timestamp_secs - unix_now_secs()).abs() < 60);
        }
    }

    #[test]
    fn accepts_within_tolerance() {
        // One minute inside the five-minute window either way: far from the boundary, so
        // a slow test machine cannot flip the outcome.
        verify(&signed_now(Naming::Svix, -4 * 60, BODY), BODY).unwrap();
        verify(&signed_now(Naming::Svix, 4 * 60, BODY), BODY).unwrap();
    }

    #[test]
    fn rejects_timestamps_six_minutes_off() {
        check_code(
            &signed_now(Naming::Svix, -6 * 60, BODY),
            BODY,
            "TimestampTooOld",
        );
        check_code(
            &signed_now(Naming::Svix, 6 * 60, BODY),
            BODY,
            "TimestampTooNew",
        );
    }

    #[test]
    fn rejects_wrong_secret() {
        let other = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let error = other
            .verify(&signed_now(Naming::Svix, 0, BODY), BODY)
            .unwrap_err();
        assert_eq!(error, WebhookError::InvalidSignature);
    }

    #[test]
    fn rejects_tampered_body_id_and_timestamp() {
        let good = signed_now(Naming::Svix, 0, BODY);
        check_code(
            &good,
            br#"{"email":"evil@example.com","username":"test_user"}"#,
            "InvalidSignature",
        );

        let mut tampered_id = good.clone();
        tampered_id.insert("svix-id", HeaderValue::from_static("msg_other"));
        check_code(&tampered_id, BODY, "InvalidSignature");

        // Shifted by 30 s so it can never coincide with the signing second, yet stays
        // inside the tolerance window: only the signature can fail.
        let mut tampered_timestamp = good.clone();
        let shifted = (unix_now_secs() - 30).to_string();
        tampered_timestamp.insert("svix-timestamp", HeaderValue::from_str(&shifted).unwrap());
        check_code(&tampered_timestamp, BODY, "InvalidSignature");
    }

    #[test]
    fn rejects_each_missing_header() {
        for which in [
            SignedHeader::Id,
            SignedHeader::Timestamp,
            SignedHeader::Signature,
        ] {
            let mut headers = signed_now(Naming::Svix, 0, BODY);
            headers.remove(which.names().0);
            assert_eq!(
                verify(&headers, BODY).unwrap_err(),
                WebhookError::MissingHeader(which)
            );
        }
        check_code(&HeaderMap::new(), BODY, "MissingHeader");
    }

    #[test]
    fn rejects_non_v1_and_garbage_signatures() {
        let good = signed_now(Naming::Svix, 0, BODY);
        let timestamp = good["svix-timestamp"].to_str().unwrap().to_owned();
        let v1 = good["svix-signature"].to_str().unwrap().to_owned();
        let v2 = v1.replacen("v1,", "v2,", 1);

        let only_v2 = headers(Naming::Svix, MSG_ID, &timestamp, &v2);
        assert_eq!(
            verify(&only_v2, BODY).unwrap_err(),
            WebhookError::NoSupportedSignature
        );
        assert_eq!(
            WebhookError::NoSupportedSignature.code(),
            "InvalidSignature"
        );

        for garbage in ["garbage", "v1,", "v1,AAAA", "v1,not base64!!", ",,,"] {
            let headers = headers(Naming::Svix, MSG_ID, &timestamp, garbage);
            check_code(&headers, BODY, "InvalidSignature");
        }
    }

    #[test]
    fn accepts_one_valid_among_several_signatures() {
        let good = signed_now(Naming::Svix, 0, BODY);
        let timestamp = good["svix-timestamp"].to_str().unwrap().to_owned();
        let v1 = good["svix-signature"].to_str().unwrap().to_owned();
        let rotated_old = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
            .sign(MSG_ID, timestamp.parse().unwrap(), BODY)
            .unwrap();
        let several = format!("v2,abc {rotated_old} {v1} v1,bogus");
        verify(&headers(Naming::Svix, MSG_ID, &timestamp, &several), BODY).unwrap();
    }

    #[test]
    fn rejects_non_numeric_timestamp() {
        let good = signed_now(Naming::Svix, 0, BODY);
        let signature = good["svix-signature"].to_str().unwrap().to_owned();
        for bad in ["soon", "1.5e9", "0x10"] {
            let headers = headers(Naming::Svix, MSG_ID, bad, &signature);
            check_code(&headers, BODY, "InvalidTimestamp");
        }
    }

    #[test]
    fn rejects_signed_non_json_and_non_utf8_bodies() {
        let text = b"hello, not json";
        check_code(&signed_now(Naming::Svix, 0, text), text, "PayloadNotJson");

        let not_utf8 = [0xffu8, 0xfe, 0x00];
        let good = signed_now(Naming::Svix, 0, BODY);
        check_code(&good, &not_utf8, "PayloadNotUtf8");
    }

    #[test]
    fn rejects_oversized_body_before_anything_else() {
        let body = vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1];
        check_code(&HeaderMap::new(), &body, "BodyTooLarge");
    }

    #[test]
    fn rejects_bad_secrets() {
        for bad in ["", "whsec_", "   ", "whsec_***not-base64***"] {
            let error = WebhookVerifier::new(bad).unwrap_err();
            assert_eq!(error.code(), "InvalidSecret", "{bad:?}: {error}");
        }
        // The bare base64 form (without `whsec_`) is what some tools print; accept it.
        WebhookVerifier::new("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    }
}
