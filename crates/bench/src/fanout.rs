//! Subscription fan-out: S WebSocket clients subscribe to one user through the Convex sync
//! protocol (`/api/1.48.0/sync`); the hot user is then updated R times over HTTP, one update at a
//! time, and every subscriber's time from the update being sent to its Transition carrying the
//! new value is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::loadgen::{new_histogram, record, send_once, ErrorCounts, LoadResult};
use crate::workloads::{convex_call, seed_user_id};

/// Marker in the updated name; the round number follows it.
const MARK: &str = "fanout-round-";
/// Longest wait for every subscriber to hear one update.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why fan-out could not be measured (the endpoint is missing, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

pub struct FanoutResult {
    pub load: LoadResult,
    pub subscribers: usize,
    pub rounds: u64,
    pub missed: u64,
}

fn round_of(text: &str) -> Option<u64> {
    let start = text.find(MARK)? + MARK.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn subscribe(
    addr: SocketAddr,
    index: usize,
    user: String,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let url = format!("ws://{addr}/api/1.48.0/sync");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| Unavailable(format!("WebSocket sync endpoint unavailable: {e}")))?;
    let connect = serde_json::json!({
        "type": "Connect",
        "sessionId": format!("00000000-0000-4000-8000-{index:012}"),
        "connectionCount": 0,
        "lastCloseReason": "InitialConnect",
        "clientTs": 0,
    });
    let add = serde_json::json!({
        "type": "ModifyQuerySet",
        "baseVersion": 0,
        "newVersion": 1,
        "modifications": [{
            "type": "Add", "queryId": 0, "udfPath": "users:getUserById",
            "args": [{"userId": user}], "journal": null
        }]
    });
    ws.send(Message::Text(connect.to_string())).await?;
    ws.send(Message::Text(add.to_string())).await?;
    // The first QueryUpdated is the initial value.
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .context("no initial query result")?
            .context("socket closed before the initial result")??;
        if let Message::Text(text) = message {
            if text.contains("QueryUpdated") {
                return Ok(ws);
            }
            if text.contains("QueryFailed") || text.contains("FatalError") {
                bail!("subscription failed: {text}");
            }
        }
    }
}

/// Subscribe `subscribers` clients to seed user 0, then update it `rounds` times.
pub async fn run(addr: SocketAddr, subscribers: usize, rounds: u64) -> Result<FanoutResult> {
    let user = seed_user_id(0);
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; rounds as usize]));
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Duration)>();
    let mut sockets = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        sockets.push(subscribe(addr, i, user.clone()).await?);
    }
    let mut tasks = Vec::new();
    for mut ws in sockets {
        let tx = tx.clone();
        let sent_at = sent_at.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                if !text.contains("QueryUpdated") {
                    continue;
                }
                if let Some(round) = round_of(&text) {
                    let start = sent_at.lock().expect("sent_at lock")[round as usize];
                    if let Some(start) = start {
                        let _ = tx.send((round, start.elapsed()));
                    }
                }
            }
        }));
    }
    drop(tx);

    let mut histogram = new_histogram();
    let mut errors = ErrorCounts::default();
    let mut delivered = 0u64;
    let mut missed = 0u64;
    let started = Instant::now();
    for round in 0..rounds {
        let args = format!(
            r#"{{"userId":"{user}","name":"{MARK}{round}","email":"{user}@bench.example"}}"#
        );
        sent_at.lock().expect("sent_at lock")[round as usize] = Some(Instant::now());
        let (status, body) = send_once(
            addr,
            convex_call("mutation", "users:updateUser", &args, None),
        )
        .await
        .map_err(|e| anyhow::anyhow!("fan-out update: {e}"))?;
        if !status.is_success() {
            errors.rejected += 1;
            errors
                .samples
                .push(String::from_utf8_lossy(&body).into_owned());
            continue;
        }
        let mut heard = 0usize;
        let deadline = Instant::now() + ROUND_TIMEOUT;
        while heard < subscribers {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((r, latency))) if r == round => {
                    heard += 1;
                    record(&mut histogram, latency);
                }
                // A late echo of an earlier round: already counted as missed.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        delivered += heard as u64;
        missed += (subscribers - heard) as u64;
    }
    let elapsed = started.elapsed();
    for task in tasks {
        task.abort();
    }
    Ok(FanoutResult {
        load: LoadResult {
            ops: delivered,
            measured: elapsed,
            histogram,
            errors,
            acked: Vec::new(),
        },
        subscribers,
        rounds,
        missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_round_in_a_transition() {
        let text = r#"{"type":"Transition","modifications":[{"type":"QueryUpdated","queryId":0,"value":{"name":"fanout-round-17","userId":"seed-0"}}]}"#;
        assert_eq!(round_of(text), Some(17));
        assert_eq!(round_of(r#"{"name":"other"}"#), None);
    }
}
