//! `--fanout`: the live-queries measurements, each against a fresh tickethub.
//!
//! 1. Commit-to-client latency: S raw WebSocket subscribers of `users:getUserById` on user A;
//!    A is updated R times over HTTP, one update at a time, and each subscriber's time from just
//!    before the update is sent to its Transition carrying the round's marker is recorded.
//! 2. Resident memory per idle connection: server VmRSS before and after S sockets that did
//!    Connect + ModifyQuerySet and went quiet (same server as 1, measured first), and before and
//!    after S sockets that only did Connect (a second fresh server, so freed memory from the
//!    first run cannot hide the cost).
//! 3. Query executions (`/api/sync_metrics`) caused by 100 commits that touch no subscription's
//!    read set (expected 0), then by one write to A (expected 1: the memo shares it).
//!
//! The subscribers are cheap on purpose: after the initial result a reader only searches each
//! text frame for the marker; nothing is parsed. The bench process's CPU time during the rounds
//! is reported next to the server's, so a slow result says whose time it was.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Method, Request};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::loadgen::{new_histogram, record, send_once};
use crate::procs::ServerProc;
use crate::report::TargetCheck;
use crate::servers::{start_tickethub, ADMIN_KEY};
use crate::suite::fresh_dir;
use crate::workloads::convex_call;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The watched user and the one whose updates must not wake any query.
const HOT_USER: &str = "fanout-hot";
const OTHER_USER: &str = "fanout-other";
/// Marker in the hot user's name; the round number follows it.
const MARK: &[u8] = b"fanout-mark-";
/// Commits in the "unrelated writes" check.
const UNRELATED_COMMITS: u64 = 100;
/// Longest wait for every subscriber to hear one round.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Sockets opened at once while connecting (the accept queue stays short).
const CONNECT_PARALLELISM: usize = 32;
/// Time for the server to go quiet before a memory reading.
const SETTLE: Duration = Duration::from_secs(2);
/// Linux reports process CPU time in these ticks per second (USER_HZ is 100 on every ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Targets from the live-queries issue.
const TARGET_P99_MS: f64 = 50.0;
const TARGET_KIB_PER_CONNECTION: f64 = 50.0;

#[derive(Clone, Debug)]
pub struct FanoutSettings {
    pub subscribers: usize,
    pub rounds: u64,
    pub client_threads: usize,
}

#[derive(Debug, Serialize)]
pub struct LatencyResult {
    pub deliveries: u64,
    pub missed: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Median over rounds of the first subscriber's latency (commit + wake-up, no fan-out).
    pub first_delivery_p50_us: u64,
    /// Median over rounds of the last subscriber's latency.
    pub last_delivery_p50_us: u64,
    /// CPU time per round, from `/proc/<pid>/stat` (10 ms resolution, summed over all rounds).
    pub server_cpu_ms_per_round: f64,
    pub client_cpu_ms_per_round: f64,
    /// The bench process's CPU per delivered Transition: the subscribers' own cost.
    pub client_cpu_us_per_delivery: f64,
    /// `queryExecutions` added by each round's write (expected 1).
    pub executions_per_round: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct MemoryResult {
    pub connections: usize,
    pub before_kib: u64,
    pub after_kib: u64,
    pub per_connection_kib: f64,
}

#[derive(Debug, Serialize)]
pub struct ExecutionsResult {
    pub unrelated_commits: u64,
    pub unrelated_executions: u64,
    /// Transitions the unrelated commits still caused (each moves the clients' timestamp).
    pub unrelated_transitions: u64,
    pub hot_write_executions: u64,
    pub hot_write_missed: u64,
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub command: String,
    pub machine: String,
    pub subscribers: usize,
    pub rounds: u64,
    pub client_threads: usize,
    pub open_file_limit: u64,
    pub latency: LatencyResult,
    pub memory_subscribed: MemoryResult,
    pub memory_connect_only: MemoryResult,
    pub executions: ExecutionsResult,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
}

/// Run all three measurements; `work` holds the data directories and server logs.
pub async fn run(
    bin: &Path,
    work: &Path,
    settings: &FanoutSettings,
    command: String,
) -> Result<FanoutReport> {
    let open_file_limit = ensure_open_files(settings.subscribers as u64 * 2 + 256)?;
    let n = settings.subscribers;

    // ---- server 1: subscribed memory, latency, executions
    progress("subscribed connections: memory");
    let th = start_tickethub(
        bin,
        &fresh_dir(&work.join("fanout-data"))?,
        work.join("fanout.log"),
    )?;
    let api = th.api;
    prepare(api).await?;
    let before = settled_rss(&th.server).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Heard>();
    let sockets = open_many(api, n, Handshake::Subscribe).await?;
    let after = settled_rss(&th.server).await;
    let memory_subscribed = memory_result(n, before, after);
    check_open(api, n).await?;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(read_marks(ws, tx.clone())))
        .collect();
    drop(tx);

    progress("commit-to-client latency");
    let mut histogram = new_histogram();
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    let mut executions_per_round = Vec::new();
    let mut deliveries = 0u64;
    let mut missed = 0u64;
    let server_cpu_before = cpu_ticks(th.server.pid());
    let client_cpu_before = cpu_ticks(std::process::id());
    for round in 0..settings.rounds {
        let executions_before = sync_metrics::<SyncMetrics>(api).await?.query_executions;
        let outcome = hot_round(api, round, n, &mut rx).await?;
        for latency in &outcome.latencies {
            record(&mut histogram, *latency);
        }
        if let (Some(first), Some(last)) = (outcome.latencies.first(), outcome.latencies.last()) {
            firsts.push(*first);
            lasts.push(*last);
        }
        deliveries += outcome.latencies.len() as u64;
        missed += outcome.missed;
        // The next round only starts once this one is fully delivered, so its executions are
        // all in by now.
        executions_per_round
            .push(sync_metrics::<SyncMetrics>(api).await?.query_executions - executions_before);
    }
    let server_cpu = cpu_ticks(th.server.pid()) - server_cpu_before;
    let client_cpu = cpu_ticks(std::process::id()) - client_cpu_before;
    let rounds = settings.rounds.max(1) as f64;
    let latency = LatencyResult {
        deliveries,
        missed,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        max_us: histogram.max(),
        first_delivery_p50_us: median_us(&mut firsts),
        last_delivery_p50_us: median_us(&mut lasts),
        server_cpu_ms_per_round: ticks_ms(server_cpu) / rounds,
        client_cpu_ms_per_round: ticks_ms(client_cpu) / rounds,
        client_cpu_us_per_delivery: ticks_ms(client_cpu) * 1000.0 / deliveries.max(1) as f64,
        executions_per_round,
    };

    progress("query executions for unrelated commits");
    let start: SyncMetrics = sync_metrics(api).await?;
    for i in 0..UNRELATED_COMMITS {
        unrelated_commit(api, i).await?;
    }
    // The sessions wake for each commit; wait until they have all gone quiet.
    let quiet = wait_quiet(api).await?;
    let hot = hot_round(api, settings.rounds, n, &mut rx).await?;
    let end: SyncMetrics = sync_metrics(api).await?;
    let executions = ExecutionsResult {
        unrelated_commits: UNRELATED_COMMITS,
        unrelated_executions: quiet.query_executions - start.query_executions,
        unrelated_transitions: quiet.transitions_sent - start.transitions_sent,
        hot_write_executions: end.query_executions - quiet.query_executions,
        hot_write_missed: hot.missed,
    };
    for reader in readers {
        reader.abort();
    }
    drop(th);

    // ---- server 2: connect-only memory
    progress("connect-only connections: memory");
    let th = start_tickethub(
        bin,
        &fresh_dir(&work.join("fanout-data-2"))?,
        work.join("fanout-2.log"),
    )?;
    prepare(th.api).await?;
    let before = settled_rss(&th.server).await;
    let sockets = open_many(th.api, n, Handshake::ConnectOnly).await?;
    let after = settled_rss(&th.server).await;
    check_open(th.api, n).await?;
    let memory_connect_only = memory_result(n, before, after);
    drop(sockets);
    drop(th);

    let targets = vec![
        TargetCheck {
            target: format!(
                "commit-to-client p99 ≤ {TARGET_P99_MS} ms with {n} subscribers, 0 missed"
            ),
            measured: format!(
                "p99 {:.1} ms, {} missed",
                latency.p99_us as f64 / 1000.0,
                latency.missed
            ),
            met: (latency.p99_us as f64) <= TARGET_P99_MS * 1000.0 && latency.missed == 0,
        },
        TargetCheck {
            target: format!(
                "≤ {TARGET_KIB_PER_CONNECTION} KiB resident per idle subscribed connection"
            ),
            measured: format!("{:.1} KiB", memory_subscribed.per_connection_kib),
            met: memory_subscribed.per_connection_kib <= TARGET_KIB_PER_CONNECTION,
        },
        TargetCheck {
            target: format!("{UNRELATED_COMMITS} unrelated commits cost 0 query executions"),
            measured: executions.unrelated_executions.to_string(),
            met: executions.unrelated_executions == 0,
        },
        TargetCheck {
            target: "one write to the watched row costs 1 execution for all subscribers".into(),
            measured: executions.hot_write_executions.to_string(),
            met: executions.hot_write_executions == 1 && executions.hot_write_missed == 0,
        },
    ];
    Ok(FanoutReport {
        command,
        machine: machine(),
        subscribers: n,
        rounds: settings.rounds,
        client_threads: settings.client_threads,
        open_file_limit,
        latency,
        memory_subscribed,
        memory_connect_only,
        executions,
        targets,
        notes: Vec::new(),
    })
}

fn progress(step: &str) {
    eprintln!("[bench --fanout] {step}");
}

/// Seed the hot and the other user, and warm the query path once (so the memory baseline
/// includes the function's first-run allocations, not only the connections).
async fn prepare(api: SocketAddr) -> Result<()> {
    for user in [HOT_USER, OTHER_USER] {
        mutation(api, "users:updateUser", &user_args(user, "start"), None).await?;
    }
    let (status, body) = send_once(
        api,
        convex_call(
            "query",
            "users:getUserById",
            &format!(r#"{{"userId":"{HOT_USER}"}}"#),
            None,
        ),
    )
    .await
    .map_err(|e| anyhow::anyhow!("warm-up query: {e}"))?;
    if !status.is_success() {
        bail!("warm-up query: {status} {}", String::from_utf8_lossy(&body));
    }
    // One WebSocket round trip, so per-process lazy state of the sync path is not counted.
    let warm = open_many(api, 1, Handshake::Subscribe).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

fn user_args(user: &str, name: &str) -> String {
    format!(r#"{{"userId":"{user}","name":"{name}","email":"{user}@bench.example"}}"#)
}

async fn mutation(api: SocketAddr, path: &str, args: &str, admin: Option<&str>) -> Result<()> {
    let (status, body) = send_once(api, convex_call("mutation", path, args, admin))
        .await
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if !status.is_success() {
        bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// One commit that no subscription read: an event insert (another table), an update of the
/// other user (same table and index, another key) or a new user (an insert into that index).
async fn unrelated_commit(api: SocketAddr, i: u64) -> Result<()> {
    match i % 3 {
        0 => {
            let args = format!(
                r#"{{"name":"Bench event {i}","description":"d","location":"l","eventDate":1700000000000,"price":10,"totalTickets":100,"userId":"{OTHER_USER}"}}"#
            );
            mutation(api, "events:create", &args, Some(ADMIN_KEY)).await
        }
        1 => {
            let args = user_args(OTHER_USER, &format!("other-{i}"));
            mutation(api, "users:updateUser", &args, None).await
        }
        _ => {
            let user = format!("fanout-new-{i}");
            mutation(api, "users:updateUser", &user_args(&user, "new"), None).await
        }
    }
}

struct RoundOutcome {
    /// Sorted ascending.
    latencies: Vec<Duration>,
    missed: u64,
}

/// Write the round's marker into the hot user and collect every subscriber's receipt.
async fn hot_round(
    api: SocketAddr,
    round: u64,
    subscribers: usize,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> Result<RoundOutcome> {
    let name = format!(
        "{}{round}",
        std::str::from_utf8(MARK).expect("ASCII marker")
    );
    let request = convex_call(
        "mutation",
        "users:updateUser",
        &user_args(HOT_USER, &name),
        None,
    );
    let sent = Instant::now();
    let (status, body) = send_once(api, request)
        .await
        .map_err(|e| anyhow::anyhow!("hot update: {e}"))?;
    if !status.is_success() {
        bail!("hot update: {status} {}", String::from_utf8_lossy(&body));
    }
    let mut latencies = Vec::with_capacity(subscribers);
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while latencies.len() < subscribers {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, heard.recv()).await {
            Ok(Some(h)) if h.round == round => latencies.push(h.at.saturating_duration_since(sent)),
            // A late receipt of an earlier round: already counted as missed there.
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    latencies.sort();
    Ok(RoundOutcome {
        missed: (subscribers - latencies.len()) as u64,
        latencies,
    })
}

/// One subscriber's receipt of a round's marker.
struct Heard {
    round: u64,
    at: Instant,
}

/// The subscriber's whole job after its initial result: find the marker, report the round.
async fn read_marks(mut ws: Socket, heard: mpsc::UnboundedSender<Heard>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if let Some(round) = round_in(text.as_bytes()) {
            let at = Instant::now();
            if heard.send(Heard { round, at }).is_err() {
                return;
            }
        }
    }
}

fn round_in(frame: &[u8]) -> Option<u64> {
    let start = frame.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = &frame[start..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    /// Connect, then one subscription to the hot user; waits for its first result.
    Subscribe,
    /// Connect only; the server sends nothing back.
    ConnectOnly,
}

async fn open_many(api: SocketAddr, count: usize, handshake: Handshake) -> Result<Vec<Socket>> {
    futures_util::stream::iter(0..count)
        .map(|i| open_one(api, i, handshake))
        .buffer_unordered(CONNECT_PARALLELISM)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn open_one(api: SocketAddr, index: usize, handshake: Handshake) -> Result<Socket> {
    let url = format!("ws://{api}/api/1.48.0/sync");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting subscriber {index}"))?;
    let connect = serde_json::json!({
        "type": "Connect",
        "sessionId": format!("00000000-0000-4000-8000-{index:012}"),
        "connectionCount": 0,
        "lastCloseReason": "InitialConnect",
        "clientTs": 0,
    });
    ws.send(Message::Text(connect.to_string())).await?;
    if handshake == Handshake::ConnectOnly {
        return Ok(ws);
    }
    let add = serde_json::json!({
        "type": "ModifyQuerySet",
        "baseVersion": 0,
        "newVersion": 1,
        "modifications": [{
            "type": "Add", "queryId": 0, "udfPath": "users:getUserById",
            "args": [{"userId": HOT_USER}], "journal": null
        }]
    });
    ws.send(Message::Text(add.to_string())).await?;
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .with_context(|| format!("subscriber {index}: no initial result"))?
            .with_context(|| format!("subscriber {index}: closed before the initial result"))??;
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

/// The server counts every socket we opened (and not more: the warm-up one has closed).
async fn check_open(api: SocketAddr, expected: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = sync_metrics::<SyncMetrics>(api).await?.connections_open;
        if open == expected as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server reports {open} open sync connections, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncMetrics {
    query_executions: u64,
    connections_open: u64,
    transitions_sent: u64,
}

/// `/api/sync_metrics`, decoded into whichever counters the caller wants.
pub(crate) async fn sync_metrics<T: serde::de::DeserializeOwned>(api: SocketAddr) -> Result<T> {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/api/sync_metrics")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Convex {ADMIN_KEY}"))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let (status, body) = send_once(api, request)
        .await
        .map_err(|e| anyhow::anyhow!("/api/sync_metrics: {e}"))?;
    if !status.is_success() {
        bail!(
            "/api/sync_metrics: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).context("decoding /api/sync_metrics")
}

/// Metrics once `transitionsSent` has stopped moving for a while.
async fn wait_quiet(api: SocketAddr) -> Result<SyncMetrics> {
    let mut last: SyncMetrics = sync_metrics(api).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: SyncMetrics = sync_metrics(api).await?;
        if now.transitions_sent == last.transitions_sent || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

async fn settled_rss(server: &ServerProc) -> u64 {
    tokio::time::sleep(SETTLE).await;
    server.memory().rss_kib
}

fn memory_result(connections: usize, before_kib: u64, after_kib: u64) -> MemoryResult {
    MemoryResult {
        connections,
        before_kib,
        after_kib,
        per_connection_kib: (after_kib as f64 - before_kib as f64) / connections.max(1) as f64,
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are plain numbers.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the man page; `rest` starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / TICKS_PER_SECOND
}

fn median_us(values: &mut [Duration]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort();
    values[values.len() / 2].as_micros() as u64
}

/// The soft open-file limit, raised to the hard one with `prlimit` when it is below `needed`.
fn ensure_open_files(needed: u64) -> Result<u64> {
    let (soft, hard) = open_file_limits()?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        bail!("the open-file limit is {soft} (hard {hard}); {needed} are needed: raise it with `ulimit -n {needed}` as root");
    }
    // prlimit(1) sets this running process's limit; the server inherits it when started.
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .context("running prlimit")?;
    let (raised, _) = open_file_limits()?;
    if !status.success() || raised < needed {
        bail!("could not raise the open-file limit from {soft} to {needed}: run `ulimit -n {needed}` first");
    }
    Ok(raised)
}

/// (soft, hard) `Max open files` from `/proc/self/limits`.
fn open_file_limits() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no `Max open files` in /proc/self/limits")?;
    let mut numbers = line
        .split_whitespace()
        .skip(3)
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    match (numbers.next(), numbers.next()) {
        (Some(soft), Some(hard)) => Ok((soft, hard)),
        _ => bail!("unreadable limits line: {line}"),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

impl FanoutReport {
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::report::write_results(dir, "fanout", self, Some(&self.markdown()))
    }

    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
        let l = &self.latency;
        let mut md = String::new();
        let _ = writeln!(md, "# Live-query fan-out: `{}`\n", self.command);
        let _ = writeln!(
            md,
            "- machine: {}; server and bench share it; bench runtime threads: {}; open-file limit {}",
            self.machine, self.client_threads, self.open_file_limit
        );
        let _ = writeln!(
            md,
            "- {} WebSocket subscribers of `users:getUserById` on one user; {} rounds of one HTTP update each\n",
            self.subscribers, self.rounds
        );
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | measured | met |\n|---|---|---|");
        for t in &self.targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                t.target,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(md, "\n## Commit-to-client latency\n");
        let _ = writeln!(
            md,
            "Time from just before the committing HTTP request is sent to each subscriber reading its Transition, over all subscribers × rounds.\n"
        );
        let _ = writeln!(md, "| deliveries | missed | p50 | p99 | max | first subscriber (median round) | last subscriber (median round) |\n|---|---|---|---|---|---|---|");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            l.deliveries,
            l.missed,
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us),
            ms(l.first_delivery_p50_us),
            ms(l.last_delivery_p50_us)
        );
        let _ = writeln!(
            md,
            "\nCPU per round: server {:.1} ms, bench (the {} subscribers) {:.1} ms = {:.1} µs per delivered Transition. Query executions per round: {:?}.\n",
            l.server_cpu_ms_per_round,
            self.subscribers,
            l.client_cpu_ms_per_round,
            l.client_cpu_us_per_delivery,
            l.executions_per_round
        );
        let _ = writeln!(md, "## Resident memory per idle connection\n");
        let _ = writeln!(
            md,
            "| connections | server VmRSS before | after | per connection |\n|---|---|---|---|"
        );
        for (label, m) in [
            ("Connect + one subscription", &self.memory_subscribed),
            ("Connect only", &self.memory_connect_only),
        ] {
            let _ = writeln!(
                md,
                "| {} × {label} | {} KiB | {} KiB | {:.1} KiB |",
                m.connections, m.before_kib, m.after_kib, m.per_connection_kib
            );
        }
        let e = &self.executions;
        let _ = writeln!(md, "\n## Query executions (`/api/sync_metrics`)\n");
        let _ = writeln!(
            md,
            "| step | queryExecutions delta |\n|---|---|\n| {} commits touching no subscription's read set (events:create, other user's update, new users) | {} |\n| then one write to the watched user ({} subscribers, {} missed) | {} |",
            e.unrelated_commits, e.unrelated_executions, self.subscribers, e.hot_write_missed, e.hot_write_executions
        );
        let _ = writeln!(
            md,
            "\nThe unrelated commits sent {} Transitions to the 1,000 subscribers (a commit that changes none of a client's results sends it nothing).",
            e.unrelated_transitions
        );
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_round_marker_in_a_raw_frame() {
        let frame = br#"{"type":"Transition","modifications":[{"type":"QueryUpdated","queryId":0,"value":{"name":"fanout-mark-17","userId":"fanout-hot"}}]}"#;
        assert_eq!(round_in(frame), Some(17));
        assert_eq!(
            round_in(br#"{"type":"Transition","modifications":[]}"#),
            None
        );
        assert_eq!(round_in(b"fanout-mark-"), None);
    }

    #[test]
    fn reads_cpu_ticks_of_this_process() {
        // Burn a little CPU so the counter is non-zero on any machine.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu_ticks(std::process::id()) > 0);
    }

    #[test]
    fn reads_the_open_file_limit() {
        let (soft, hard) = open_file_limits().expect("limits");
        assert!(soft > 0 && soft <= hard);
    }
}
