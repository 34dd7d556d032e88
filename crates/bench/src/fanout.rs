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

/// `--idle-cost`: what a commit costs with many idle subscribers. `idle` WebSocket clients each
/// subscribe to `users:getUserById` for a user of their own (a key range no commit here
/// touches); then the same `commits` updates of another user run one at a time, first with no
/// subscriber, then with all of them. The figures are the server's commit-to-ack latency (HTTP
/// mutation round trip, fsync included) and its CPU time per commit, and their ratios.
pub mod idle_cost {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context, Result};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use crate::loadgen::send_once;
    use crate::procs::ServerProc;
    use crate::servers::{self, Tickethub};
    use crate::workloads::convex_call;

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    const WRITER: &str = "idle-cost-writer";
    const CONNECT_PARALLELISM: usize = 32;
    /// Linux reports process CPU time in ticks of 1/100 s.
    const TICKS_PER_SECOND: f64 = 100.0;

    /// One phase's figures.
    #[derive(Debug, Clone, Copy)]
    pub struct Phase {
        pub subscribers: usize,
        pub p50_us: u64,
        pub p99_us: u64,
        pub mean_us: f64,
        pub server_cpu_us_per_commit: f64,
        pub sessions_woken: u64,
        pub commits_dispatched: u64,
    }

    pub async fn run(bin: &Path, work: &Path, idle: usize, commits: u64) -> Result<(Phase, Phase)> {
        let (soft, _) = open_files()?;
        if soft < idle as u64 + 512 {
            bail!(
                "the open-file limit is {soft}; {idle} subscribers need {} (`ulimit -n`)",
                idle + 512
            );
        }
        let data = work.join("idle-cost-data");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        std::fs::create_dir_all(&data)?;
        // Pings are a cost per connection over time, not per commit: keep them out of the
        // commit phases. (The bench's servers already lift the connection cap.)
        let Tickethub { server, api, .. } = servers::start_tickethub_with(
            bin,
            &data,
            work.join("idle-cost.log"),
            &[("TICKETHUB_SYNC_PING_AFTER_IDLE", "600000")],
        )?;
        // Warm-up: the writer's row exists and the write path has run.
        for i in 0..20 {
            commit(api, i).await?;
        }
        eprintln!("[bench] idle cost: {commits} commits with no subscriber");
        let none = phase(api, &server, 0, commits).await?;
        eprintln!("[bench] idle cost: opening {idle} subscribers");
        let sockets = futures_util::stream::iter(0..idle)
            .map(|i| subscribe(api, i))
            .buffer_unordered(CONNECT_PARALLELISM)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("[bench] idle cost: {commits} commits with {idle} idle subscribers");
        let many = phase(api, &server, idle, commits).await?;
        drop(sockets);
        drop(server);
        Ok((none, many))
    }

    pub fn print(none: &Phase, many: &Phase) {
        println!("| idle subscribers | commit-to-ack p50 | p99 | mean | server CPU per commit | sessions woken | commit batches dispatched |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for p in [none, many] {
            println!(
                "| {} | {} µs | {} µs | {:.0} µs | {:.0} µs | {} | {} |",
                p.subscribers,
                p.p50_us,
                p.p99_us,
                p.mean_us,
                p.server_cpu_us_per_commit,
                p.sessions_woken,
                p.commits_dispatched
            );
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "\nratio {} idle / 0: commit-to-ack p50 {:.2}x, mean {:.2}x, server CPU per commit {:.2}x",
            many.subscribers,
            ratio(many.p50_us as f64, none.p50_us as f64),
            ratio(many.mean_us, none.mean_us),
            ratio(many.server_cpu_us_per_commit, none.server_cpu_us_per_commit),
        );
    }

    async fn phase(
        api: SocketAddr,
        server: &ServerProc,
        subscribers: usize,
        commits: u64,
    ) -> Result<Phase> {
        let before: DispatchCounters = crate::live::sync_metrics(api).await?;
        let cpu_before = cpu_ticks(server.pid());
        let mut latencies = Vec::with_capacity(commits as usize);
        for i in 0..commits {
            let started = Instant::now();
            commit(api, 1000 + i).await?;
            latencies.push(started.elapsed());
        }
        let cpu = cpu_ticks(server.pid()) - cpu_before;
        // Let the dispatcher finish the last batch before reading its counters.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after: DispatchCounters = crate::live::sync_metrics(api).await?;
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_micros() as u64;
        let mean_us = latencies.iter().map(|d| d.as_micros() as f64).sum::<f64>()
            / latencies.len().max(1) as f64;
        Ok(Phase {
            subscribers,
            p50_us: at(0.5),
            p99_us: at(0.99),
            mean_us,
            server_cpu_us_per_commit: cpu as f64 * 1e6 / TICKS_PER_SECOND / commits.max(1) as f64,
            sessions_woken: after.sessions_woken - before.sessions_woken,
            commits_dispatched: after.commits_dispatched - before.commits_dispatched,
        })
    }

    async fn commit(api: SocketAddr, i: u64) -> Result<()> {
        let args = format!(
            r#"{{"userId":"{WRITER}","name":"writer-{i}","email":"{WRITER}@bench.example"}}"#
        );
        let (status, body) = send_once(
            api,
            convex_call("mutation", "users:updateUser", &args, None),
        )
        .await
        .map_err(|e| anyhow::anyhow!("users:updateUser: {e}"))?;
        if !status.is_success() {
            bail!(
                "users:updateUser: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    async fn subscribe(api: SocketAddr, index: usize) -> Result<Socket> {
        let url = format!("ws://{api}/api/1.48.0/sync");
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting subscriber {index}"))?;
        let connect = serde_json::json!({
            "type": "Connect", "sessionId": format!("00000000-0000-4000-8000-{index:012}"),
            "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0,
        });
        let add = serde_json::json!({
            "type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
            "modifications": [{"type": "Add", "queryId": 0, "udfPath": "users:getUserById",
                               "args": [{"userId": format!("idle-{index}")}], "journal": null}]
        });
        ws.send(Message::Text(connect.to_string())).await?;
        ws.send(Message::Text(add.to_string())).await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .with_context(|| format!("subscriber {index}: no initial result"))?
                .with_context(|| format!("subscriber {index}: closed"))??;
            if let Message::Text(text) = message {
                if text.contains("QueryUpdated") {
                    return Ok(ws);
                }
                if text.contains("QueryFailed") || text.contains("FatalError") {
                    bail!("subscriber {index}: {text}");
                }
            }
        }
    }

    /// The dispatcher's counters from `/api/sync_metrics`.
    #[derive(Clone, Copy, Default, serde::Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct DispatchCounters {
        sessions_woken: u64,
        commits_dispatched: u64,
    }

    /// utime + stime of a process, in clock ticks.
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return 0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        field(14).unwrap_or(0) + field(15).unwrap_or(0)
    }

    /// (soft, hard) open-file limits of this process.
    fn open_files() -> Result<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/self/limits")?;
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .context("no `Max open files` in /proc/self/limits")?;
        let mut numbers = line
            .split_whitespace()
            .skip(3)
            .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
        Ok((numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)))
    }
}
