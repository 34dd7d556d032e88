//! JWTs as `Authorization: Bearer …` brings them: the header classification, then the token's
//! header and payload parsing, provider routing and signature check (a custom-JWT provider with
//! an inline JWKS, so no network is involved).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tickethub_auth::{parse_authorization_header, AuthConfig, Credential, TokenVerifier};

/// The public key of `crates/auth/tests/fixtures/issuer_a.pem`.
const JWKS: &str = include_str!("../jwks.json");

static VERIFIER: LazyLock<TokenVerifier> = LazyLock::new(|| {
    let data_url = format!("data:application/json,{}", percent_encode(JWKS));
    let config = serde_json::json!({
        "providers": [{
            "type": "customJwt",
            "issuer": "https://issuer.test",
            "jwks": data_url,
            "algorithm": "RS256",
        }]
    });
    let config = AuthConfig::from_json_str(&config.to_string()).expect("a valid auth config");
    TokenVerifier::new(config).expect("a verifier")
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let token = match parse_authorization_header(text) {
        Ok(Credential::UserToken(token)) => token,
        Ok(_) => return,
        Err(error) => {
            assert!(!error.code().is_empty());
            return;
        }
    };
    match RUNTIME.block_on(VERIFIER.verify(&token)) {
        Ok(verified) => panic!("a fuzzed token verified: {verified:?}"),
        Err(error) => assert!(!error.code().is_empty()),
    }
});

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
