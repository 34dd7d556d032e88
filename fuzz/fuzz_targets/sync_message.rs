//! Sync protocol messages as a WebSocket client sends them (one JSON text frame each), through
//! the same decoding a session does: the message, then any function args it carries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickethub_sync::protocol::{decode_ts, ClientMessage, QuerySetModification};
use tickethub_sync::session::decode_args;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
        return;
    };
    match message {
        ClientMessage::Connect {
            max_observed_timestamp,
            ..
        } => {
            if let Some(ts) = max_observed_timestamp {
                let _ = decode_ts(&ts);
            }
        }
        ClientMessage::ModifyQuerySet { modifications, .. } => {
            for modification in modifications {
                if let QuerySetModification::Add { args, .. } = modification {
                    let _ = decode_args(&args);
                }
            }
        }
        ClientMessage::Mutation { args, .. } | ClientMessage::Action { args, .. } => {
            let _ = decode_args(&args);
        }
        ClientMessage::Authenticate { .. } | ClientMessage::Event {} => {}
    }
});
