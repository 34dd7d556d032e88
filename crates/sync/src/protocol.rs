//! The sync protocol's messages, as the official client encodes them
//! (`convex/dist/cjs/browser/sync/protocol.js`). One JSON text frame per message.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tickethub_store::Timestamp;

/// Query ids, request ids and version counters are small integers chosen by the client.
pub type QueryId = u32;
pub type RequestId = u32;

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Connect {
        session_id: String,
        #[serde(default)]
        connection_count: u32,
        #[serde(default)]
        last_close_reason: Option<String>,
        #[serde(default)]
        max_observed_timestamp: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ModifyQuerySet {
        base_version: u32,
        new_version: u32,
        modifications: Vec<QuerySetModification>,
    },
    #[serde(rename_all = "camelCase")]
    Mutation {
        request_id: RequestId,
        udf_path: String,
        args: Vec<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    Action {
        request_id: RequestId,
        udf_path: String,
        args: Vec<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    Authenticate {
        token_type: TokenType,
        #[serde(default)]
        value: Option<String>,
        base_version: u32,
        /// Admin only: the user identity (Convex's `UserIdentityAttributes` JSON) the admin acts
        /// as, as `npx convex run --watch --identity` sends it.
        #[serde(default)]
        impersonating: Option<serde_json::Value>,
    },
    /// Client-side telemetry; ignored.
    Event {},
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum QuerySetModification {
    #[serde(rename_all = "camelCase")]
    Add {
        query_id: QueryId,
        udf_path: String,
        args: Vec<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    Remove { query_id: QueryId },
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum TokenType {
    User,
    Admin,
    None,
}

/// The three counters a client tracks. Every Transition must start exactly where the previous
/// one ended, or the client throws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateVersion {
    pub query_set: u32,
    pub identity: u32,
    #[serde(serialize_with = "serialize_ts")]
    pub ts: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum StateModification {
    #[serde(rename_all = "camelCase")]
    QueryUpdated {
        query_id: QueryId,
        value: crate::hub::EncodedValue,
        log_lines: Vec<String>,
        journal: Option<()>,
    },
    #[serde(rename_all = "camelCase")]
    QueryFailed {
        query_id: QueryId,
        error_message: String,
        log_lines: Vec<String>,
        journal: Option<()>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    QueryRemoved { query_id: QueryId },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename_all = "camelCase")]
    Transition {
        start_version: StateVersion,
        end_version: StateVersion,
        modifications: Vec<StateModification>,
    },
    #[serde(rename_all = "camelCase")]
    MutationResponse {
        request_id: RequestId,
        success: bool,
        /// The encoded value on success, the error message on failure.
        result: serde_json::Value,
        #[serde(serialize_with = "serialize_opt_ts")]
        ts: Option<Timestamp>,
        log_lines: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    ActionResponse {
        request_id: RequestId,
        success: bool,
        result: serde_json::Value,
        log_lines: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    AuthError {
        error: String,
        base_version: u32,
        auth_update_attempted: bool,
    },
    FatalError {
        error: String,
    },
    Ping,
}

/// 64-bit timestamps travel as base64 of the u64 little-endian bytes.
pub fn encode_ts(ts: Timestamp) -> String {
    base64::engine::general_purpose::STANDARD.encode(ts.0.to_le_bytes())
}

pub fn decode_ts(text: &str) -> Option<Timestamp> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(Timestamp(u64::from_le_bytes(array)))
}

fn serialize_ts<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode_ts(*ts))
}

fn serialize_opt_ts<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => s.serialize_str(&encode_ts(*ts)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_as_little_endian_base64() {
        assert_eq!(encode_ts(Timestamp(0)), "AAAAAAAAAAA=");
        assert_eq!(encode_ts(Timestamp(1)), "AQAAAAAAAAA=");
        let ts = Timestamp(1_764_000_000_123_456_789);
        assert_eq!(decode_ts(&encode_ts(ts)), Some(ts));
        assert_eq!(decode_ts("not base64"), None);
        assert_eq!(decode_ts("AQID"), None, "three bytes are not a u64");
    }

    #[test]
    fn parses_the_client_handshake() {
        let connect: ClientMessage = serde_json::from_str(
            r#"{"type":"Connect","sessionId":"s","connectionCount":0,"lastCloseReason":"InitialConnect","clientTs":1724270000000}"#,
        )
        .unwrap();
        assert!(matches!(
            connect,
            ClientMessage::Connect {
                connection_count: 0,
                ..
            }
        ));
        let modify: ClientMessage = serde_json::from_str(
            r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[{"type":"Add","queryId":0,"udfPath":"users:getUserById","args":[{"userId":"u"}],"journal":null},{"type":"Remove","queryId":3}]}"#,
        )
        .unwrap();
        match modify {
            ClientMessage::ModifyQuerySet { modifications, .. } => {
                assert_eq!(modifications.len(), 2)
            }
            other => panic!("unexpected {other:?}"),
        }
        let auth: ClientMessage =
            serde_json::from_str(r#"{"type":"Authenticate","tokenType":"None","baseVersion":1}"#)
                .unwrap();
        assert!(matches!(
            auth,
            ClientMessage::Authenticate {
                token_type: TokenType::None,
                base_version: 1,
                ..
            }
        ));
    }

    #[test]
    fn transition_shape_matches_the_client() {
        let msg = ServerMessage::Transition {
            start_version: StateVersion::default(),
            end_version: StateVersion {
                query_set: 1,
                identity: 0,
                ts: Timestamp(1),
            },
            modifications: vec![StateModification::QueryUpdated {
                query_id: 0,
                value: crate::hub::EncodedValue::new(&tickethub_value::Value::Null),
                log_lines: vec![],
                journal: None,
            }],
        };
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Transition",
                "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
                "endVersion": {"querySet": 1, "identity": 0, "ts": "AQAAAAAAAAA="},
                "modifications": [{"type": "QueryUpdated", "queryId": 0, "value": null, "logLines": [], "journal": null}]
            })
        );
        let ping = serde_json::to_string(&ServerMessage::Ping).unwrap();
        assert_eq!(ping, r#"{"type":"Ping"}"#);
    }
}
