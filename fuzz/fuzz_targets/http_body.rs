//! `/api/*` request bodies, through the router's own parsing: the JSON envelope (`CallBody`,
//! `RunBody`, `BatchBody`), the `format` name, the `args` unwrapping in both shapes and both
//! encodings, and the `ts` of `/api/query_at_ts`. Every refusal must be a stable code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickethub_router::body::parse_json;
use tickethub_router::wire::{
    decode_ts, unwrap_args, ArgsShape, BatchBody, CallBody, Format, RunBody,
};
use tickethub_router::ApiError;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_json::<CallBody>(data).map_err(check) {
        let _ = body.path().map_err(check);
        call(&body.args, body.format.as_deref());
        if let Some(ts) = body.ts.as_deref() {
            let _ = decode_ts(ts).map_err(check);
        }
    }
    if let Ok(body) = parse_json::<RunBody>(data).map_err(check) {
        call(&body.args, body.format.as_deref());
    }
    if let Ok(batch) = parse_json::<BatchBody>(data).map_err(check) {
        for body in &batch.queries {
            call(&body.args, body.format.as_deref());
        }
    }
});

fn call(args: &serde_json::Value, format: Option<&str>) {
    let Ok(format) = Format::parse(format).map_err(check) else {
        return;
    };
    for shape in [ArgsShape::ArrayOrObject, ArgsShape::Object] {
        if let Ok(value) = unwrap_args(args, shape, format).map_err(check) {
            // What was accepted can be answered in the same format.
            let _ = format.encode(&value);
        }
    }
}

/// A refusal is a 4xx with a code and a message, never a 5xx.
fn check(error: ApiError) {
    assert!(error.code.status().is_client_error(), "{error}");
    assert!(!error.message.is_empty());
}
