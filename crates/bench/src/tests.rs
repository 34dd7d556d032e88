//! Tests of the measuring machinery itself (no timing assertions: only counts and shapes).

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, StatusCode};
use rand::rngs::SmallRng;

use crate::loadgen::{self, LoadSpec, Op, OpKind, OpMeta, Rejected, Workload};
use crate::procs::{free_port, loopback};
use crate::report::{Measurement, Report, POCKETBASE, READ, TICKETHUB};
use crate::workloads::{
    clerk_user_created, Api, Mix, SeedIds, UsersWorkload, STRIPE_WEBHOOK_SECRET, WEBHOOK_SECRET,
};

/// A counted workload against the hello server; `reject_odd` makes its check refuse odd ones.
struct Counted {
    total: u64,
    next: std::sync::atomic::AtomicU64,
    reject_odd: bool,
}

impl Workload for Counted {
    fn next(&self, _worker: usize, _rng: &mut SmallRng) -> Option<Op> {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (seq < self.total).then(|| Op {
            meta: OpMeta {
                kind: OpKind::Read,
                seq,
                ack: Some(format!("op-{seq}")),
            },
            request: Request::builder()
                .uri("/")
                .header("host", "127.0.0.1")
                .body(Default::default())
                .unwrap(),
        })
    }
    fn check(&self, meta: &OpMeta, status: StatusCode, body: &[u8]) -> Result<(), Rejected> {
        if status != StatusCode::OK || !body.starts_with(b"{\"status\":\"success\"") {
            return Err(Rejected("bad answer".into()));
        }
        if self.reject_odd && meta.seq % 2 == 1 {
            return Err(Rejected("odd".into()));
        }
        Ok(())
    }
}

async fn hello_addr() -> std::net::SocketAddr {
    let addr = loopback(free_port().unwrap());
    tokio::spawn(crate::hello::serve(addr));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("hello server did not start");
}

fn counted_spec(addr: std::net::SocketAddr) -> LoadSpec {
    LoadSpec {
        addr,
        connections: 4,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn every_request_of_a_counted_workload_is_answered_and_recorded() {
    let addr = hello_addr().await;
    let workload = Arc::new(Counted {
        total: 300,
        next: Default::default(),
        reject_odd: false,
    });
    let result = loadgen::run(&counted_spec(addr), workload).await;
    assert_eq!(result.acked.len(), 300);
    assert_eq!(result.ops, 300);
    assert_eq!(result.histogram.len(), 300);
    assert_eq!(result.errors.connection + result.errors.rejected, 0);
}

#[tokio::test]
async fn rejected_answers_are_counted_and_not_acknowledged() {
    let addr = hello_addr().await;
    let workload = Arc::new(Counted {
        total: 100,
        next: Default::default(),
        reject_odd: true,
    });
    let result = loadgen::run(&counted_spec(addr), workload).await;
    assert_eq!(result.errors.rejected, 50);
    assert_eq!(result.acked.len(), 50);
    assert!(result.acked.iter().all(|a| {
        let n: u64 = a.trim_start_matches("op-").parse().unwrap();
        n.is_multiple_of(2)
    }));
}

#[tokio::test]
async fn a_dead_server_shows_as_connection_errors() {
    // Nothing listens on a just-released port.
    let addr = loopback(free_port().unwrap());
    let spec = LoadSpec {
        addr,
        connections: 2,
        warmup: Duration::ZERO,
        measure: Duration::from_millis(200),
    };
    let workload = Arc::new(Counted {
        total: 10,
        next: Default::default(),
        reject_odd: false,
    });
    let result = loadgen::run(&spec, workload).await;
    assert_eq!(result.ops, 0);
    assert!(result.errors.connection > 0);
    assert_eq!(result.errors.rejected, 0);
}

#[test]
fn webhook_deliveries_verify_with_the_servers_secret() {
    let workload = UsersWorkload::new(
        Api::Convex { admin_key: None },
        Mix::Webhook,
        "t",
        Arc::new(SeedIds::default()),
    );
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    let op = workload.next(0, &mut rng).unwrap();
    assert_eq!(op.meta.ack.as_deref(), Some("user_t_0"));
    let (parts, body) = op.request.into_parts();
    let body = collect_full(body);
    let verifier = svix::webhooks::Webhook::new(WEBHOOK_SECRET).unwrap();
    verifier.verify(&body, &parts.headers).unwrap();
    // A tampered body must not verify (the signature covers it).
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(verifier.verify(&tampered, &parts.headers).is_err());
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "user.created");
    assert_eq!(event["data"]["id"], "user_t_0");
    assert_eq!(
        event["data"]["email_addresses"][1]["id"],
        event["data"]["primary_email_address_id"]
    );
}

#[test]
fn stripe_deliveries_verify_with_the_servers_secret() {
    let workload = UsersWorkload::new(
        Api::Convex { admin_key: None },
        Mix::StripeWebhook,
        "t",
        Arc::new(SeedIds::default()),
    );
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    let op = workload.next(0, &mut rng).unwrap();
    assert_eq!(op.meta.ack.as_deref(), Some("evt_bench_t_0"));
    let (parts, body) = op.request.into_parts();
    assert_eq!(parts.uri.path(), "/stripe-webhook");
    let body = collect_full(body);
    let header = parts.headers.get("stripe-signature").map(|v| v.as_bytes());
    // The server's verifier accepts the benchmark's signature, and only for this body.
    let verifier = tickethub_auth::StripeVerifier::new(STRIPE_WEBHOOK_SECRET).unwrap();
    verifier.verify(header, &body).unwrap();
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(verifier.verify(header, &tampered).is_err());
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["id"], "evt_bench_t_0");
    assert_eq!(event["type"], "charge.refunded");
    assert_eq!(event["data"]["object"]["payment_intent"], "pi_bench_t_0");
}

/// Collect a `Full` body synchronously (it is ready immediately).
fn collect_full(body: http_body_util::Full<bytes::Bytes>) -> bytes::Bytes {
    use http_body_util::BodyExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async { body.collect().await.unwrap().to_bytes() })
}

#[test]
fn clerk_payload_is_json_with_the_given_id() {
    let text = clerk_user_created("user_x", 3, 1_700_000_000_000);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["id"], "user_x");
    assert_eq!(v["data"]["last_name"], "User3");
}

#[test]
fn ratios_compare_tickethub_with_each_peer() {
    let row = |system: &str, throughput: f64| Measurement {
        workload: READ.into(),
        system: system.into(),
        concurrency: 64,
        throughput,
        p50_us: 1000,
        p99_us: 2000,
        ops: 1,
        seconds: 1.0,
        peak_rss_kib: Some(2048),
        errors: Default::default(),
    };
    let report = Report {
        measurements: vec![row(POCKETBASE, 1000.0), row(TICKETHUB, 3500.0)],
        ..Report::default()
    };
    let md = report.markdown("t");
    let line = md
        .lines()
        .find(|l| l.contains("| tickethub |"))
        .expect("tickethub row");
    assert!(line.contains("3.50×"), "{line}");
    let mut judged = report;
    crate::suite::evaluate_targets(&mut judged);
    let reads = judged
        .targets
        .iter()
        .find(|t| t.target.starts_with("indexed reads"))
        .unwrap();
    assert!(reads.met);
    let creates = judged
        .targets
        .iter()
        .find(|t| t.target.starts_with("durable creates"))
        .unwrap();
    assert!(!creates.met, "no create rows: not measured, not met");
}

#[test]
fn sqlite_ceiling_reads_find_every_seeded_user() {
    let dir = std::env::temp_dir().join(format!("bench-test-sqlite-{}", std::process::id()));
    let path = crate::storage::sqlite_prepare(&dir, 500).unwrap();
    let reads =
        crate::storage::sqlite_reads(&path, 500, 2, Duration::ZERO, Duration::from_millis(100))
            .unwrap();
    assert!(reads.ops > 0);
    assert_eq!(reads.errors.rejected, 0, "{:?}", reads.errors.samples);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bounded_scans_return_the_asked_number_of_rows() {
    let dir = std::env::temp_dir().join(format!("bench-test-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = crate::storage::store_open(&dir).unwrap();
    crate::storage::store_load(&store, 0, 25_000).unwrap();
    let timings = crate::storage::scan_timings(&store, 25_000, 0.0).unwrap();
    assert_eq!(timings.take10.rows, 10);
    assert_eq!(timings.first.rows, 1);
    assert_eq!(timings.index_lookup.rows, 1);
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
