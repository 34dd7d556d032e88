//! Stripe webhook verification: the `Stripe-Signature` header (`t=…,v1=…,v1=…,v0=…`) and the
//! body. Input: the header value up to the first newline, then the body.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tickethub_auth::StripeVerifier;

static VERIFIER: LazyLock<StripeVerifier> =
    LazyLock::new(|| StripeVerifier::new("whsec_fuzz_secret").expect("a valid test secret"));

/// A fixed clock, so a run is repeatable.
const NOW_SECS: i64 = 1_764_000_000;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    match VERIFIER.verify_at(Some(header), body, NOW_SECS) {
        // Without the secret only a forged HMAC could pass.
        Ok(verified) => panic!("a fuzzed header verified: {verified:?}"),
        Err(error) => {
            assert!(!error.code().is_empty());
            let _ = error.to_string();
        }
    }
});
