//! `--soak`: mixed load against tickethub while the server is `kill -9`ed and restarted on a
//! schedule. Every acknowledged create's userId is remembered; afterwards each one is queried,
//! and any that is missing is a lost acknowledged write (there must be none). Client-visible
//! errors other than connection loss around a kill are counted separately.
//!
//! `--load-check`: 256 keep-alive connections for 30 s against a point query; no errors allowed,
//! and resident memory after warm-up must stay within 10%.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hyper::StatusCode;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::loadgen::{self, LoadSpec, Op, OpKind, OpMeta, Rejected, Workload};
use crate::procs::{Memory, ServerProc};
use crate::servers::{start_tickethub, tickethub_binary};
use crate::workloads::{convex_call, Api, Mix, SeedIds, UsersWorkload};

/// Queries each remembered userId once; remembers the ones that come back null.
struct Verify {
    ids: Vec<String>,
    next: AtomicUsize,
    missing: Mutex<Vec<String>>,
}

impl Workload for Verify {
    fn next(&self, _worker: usize, _rng: &mut SmallRng) -> Option<Op> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let id = self.ids.get(i)?;
        Some(Op {
            meta: OpMeta {
                kind: OpKind::Read,
                seq: i as u64,
                ack: Some(id.clone()),
            },
            request: convex_call(
                "query",
                "users:getUserById",
                &format!(r#"{{"userId":"{id}"}}"#),
                None,
            ),
        })
    }

    fn check(&self, meta: &OpMeta, status: StatusCode, body: &[u8]) -> Result<(), Rejected> {
        let text = String::from_utf8_lossy(body);
        if status != StatusCode::OK || !text.contains(r#""status":"success""#) {
            return Err(Rejected(format!("verify: HTTP {status}: {text}")));
        }
        if text.contains(r#""value":null"#) {
            let id = meta.ack.clone().unwrap_or_default();
            self.missing.lock().expect("missing lock").push(id.clone());
            return Err(Rejected(format!("acknowledged user {id} is missing")));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub minutes: f64,
    pub kill_every_seconds: u64,
    pub connections: usize,
    pub kills: usize,
    pub restart_seconds: Vec<f64>,
    pub requests_ok: u64,
    pub acknowledged_writes: usize,
    /// Acknowledged writes not found afterwards. Must be 0.
    pub lost_writes: usize,
    pub lost_samples: Vec<String>,
    /// Acknowledged writes the check could not query (connection trouble while verifying).
    pub unverified: usize,
    /// Connection failures, expected around each kill.
    pub connection_errors: u64,
    /// Any other client-visible error. Should be 0.
    pub other_errors: u64,
    pub error_samples: Vec<String>,
    pub passed: bool,
}

impl SoakReport {
    pub fn markdown(&self) -> String {
        format!(
            "# Fault soak: `{}`\n\n| metric | value |\n|---|--:|\n| duration | {:.1} min |\n| kill -9 + restart every | {} s |\n| connections | {} |\n| kills | {} |\n| restart time (s) | {} |\n| successful requests | {} |\n| acknowledged writes | {} |\n| **lost acknowledged writes** | **{}** |\n| unverified | {} |\n| connection errors (around kills) | {} |\n| other client-visible errors | {} |\n| passed | {} |\n\nError samples: {:?}\n",
            self.command,
            self.minutes,
            self.kill_every_seconds,
            self.connections,
            self.kills,
            self.restart_seconds
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.requests_ok,
            self.acknowledged_writes,
            self.lost_writes,
            self.unverified,
            self.connection_errors,
            self.other_errors,
            if self.passed { "yes" } else { "**no**" },
            self.error_samples,
        )
    }
}

async fn seed(addr: SocketAddr, count: u64) -> Result<Arc<SeedIds>> {
    let ids = Arc::new(SeedIds {
        count,
        record_ids: Default::default(),
    });
    let w = Arc::new(UsersWorkload::seeding(
        Api::Convex { admin_key: None },
        ids.clone(),
        count,
    ));
    let spec = LoadSpec {
        addr,
        connections: 32,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(600),
    };
    let r = loadgen::run(&spec, w).await;
    anyhow::ensure!(
        r.acked.len() as u64 == count,
        "seeding failed: {:?}",
        r.errors
    );
    Ok(ids)
}

pub async fn run_soak(
    work: &std::path::Path,
    minutes: f64,
    kill_every: Duration,
    command: &str,
) -> Result<SoakReport> {
    const CONNECTIONS: usize = 32;
    let data = work.join("soak-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let bin = tickethub_binary()?;
    let th = start_tickethub(&bin, &data, work.join("soak-tickethub.log"))?;
    let (api, mut server) = (th.api, th.server);
    let seeded = seed(api, 2_000).await?;
    let total = Duration::from_secs_f64(minutes * 60.0);
    let end = Instant::now() + total;

    // The killer owns the server for the run and hands it back at the end.
    let killer = std::thread::spawn(move || -> Result<(ServerProc, Vec<f64>)> {
        let mut restarts = Vec::new();
        let mut next_kill = Instant::now() + kill_every;
        while next_kill + Duration::from_secs(5) < end {
            std::thread::sleep(next_kill.saturating_duration_since(Instant::now()));
            eprintln!("[soak] kill -9 pid {}", server.pid());
            let took = server
                .kill9_and_restart()
                .context("restarting after kill -9")?;
            eprintln!("[soak] restarted in {:.2}s", took.as_secs_f64());
            restarts.push(took.as_secs_f64());
            next_kill += kill_every;
        }
        Ok((server, restarts))
    });
    let workload = Arc::new(UsersWorkload::new(
        Api::Convex { admin_key: None },
        Mix::Mixed { read_percent: 90 },
        "soak",
        seeded,
    ));
    let spec = LoadSpec {
        addr: api,
        connections: CONNECTIONS,
        warmup: Duration::ZERO,
        measure: total,
    };
    let load = loadgen::run(&spec, workload).await;
    let (server, restarts) = killer.join().expect("killer thread panicked")?;

    eprintln!("[soak] verifying {} acknowledged writes", load.acked.len());
    let verify = Arc::new(Verify {
        ids: load.acked.clone(),
        next: AtomicUsize::new(0),
        missing: Mutex::new(Vec::new()),
    });
    let check = loadgen::run(
        &LoadSpec {
            addr: api,
            connections: 16,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(600),
        },
        verify.clone(),
    )
    .await;
    drop(server);
    let missing = verify.missing.lock().expect("missing lock").clone();
    let verified = check.acked.len();
    let unverified = load.acked.len() - verified - missing.len();
    let report = SoakReport {
        command: command.into(),
        minutes,
        kill_every_seconds: kill_every.as_secs(),
        connections: CONNECTIONS,
        kills: restarts.len(),
        restart_seconds: restarts,
        requests_ok: load.ops,
        acknowledged_writes: load.acked.len(),
        lost_writes: missing.len(),
        lost_samples: missing.iter().take(10).cloned().collect(),
        unverified,
        connection_errors: load.errors.connection,
        other_errors: load.errors.rejected,
        error_samples: load.errors.samples.clone(),
        passed: missing.is_empty() && unverified == 0 && load.errors.rejected == 0,
    };
    Ok(report)
}

#[derive(Debug, Serialize)]
pub struct LoadCheckReport {
    pub command: String,
    pub connections: usize,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub idle_rss_kib: u64,
    /// VmRSS once a second during the load.
    pub rss_samples_kib: Vec<u64>,
    pub warmup_seconds: u64,
    /// Largest over smallest sample after warm-up.
    pub rss_spread: f64,
    pub passed: bool,
}

pub async fn run_load_check(work: &std::path::Path, command: &str) -> Result<LoadCheckReport> {
    const CONNECTIONS: usize = 256;
    const SECONDS: u64 = 30;
    // Reader connections fill their page caches (and the mmap window) during roughly the first
    // 10-15 s of random point reads; that is the warm-up.
    const WARMUP_SAMPLES: usize = 10;
    let data = work.join("load-check-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let th = start_tickethub(&tickethub_binary()?, &data, work.join("load-check.log"))?;
    let seeded = seed(th.api, 10_000).await?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = Memory::of(th.server.pid()).rss_kib;

    let pid = th.server.pid();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.push(Memory::of(pid).rss_kib);
            }
            samples
        })
    };
    let workload = Arc::new(UsersWorkload::new(
        Api::Convex { admin_key: None },
        Mix::Read,
        "check",
        seeded,
    ));
    let result = loadgen::run(
        &LoadSpec {
            addr: th.api,
            connections: CONNECTIONS,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(SECONDS),
        },
        workload,
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler panicked");
    let steady: Vec<u64> = samples.iter().skip(WARMUP_SAMPLES).copied().collect();
    let spread = match (steady.iter().min(), steady.iter().max()) {
        (Some(&lo), Some(&hi)) if lo > 0 => hi as f64 / lo as f64,
        _ => f64::INFINITY,
    };
    let errors = result.errors.connection + result.errors.rejected;
    Ok(LoadCheckReport {
        command: command.into(),
        connections: CONNECTIONS,
        seconds: result.measured.as_secs_f64(),
        throughput: result.throughput(),
        p50_us: result.p50_us(),
        p99_us: result.p99_us(),
        errors,
        error_samples: result.errors.samples.clone(),
        idle_rss_kib: idle,
        rss_samples_kib: samples,
        warmup_seconds: WARMUP_SAMPLES as u64,
        rss_spread: spread,
        passed: errors == 0 && spread <= 1.10 && result.ops > 0,
    })
}
