//! Results of one run: the JSON document and the Markdown table written under `bench/results/`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::loadgen::{ErrorCounts, LoadResult};
use crate::storage::ScanTimings;

/// Write a report as `<dir>/<stem>.json` and, when given, its table as `<dir>/<stem>.md`.
pub fn write_results(
    dir: &Path,
    stem: &str,
    report: &impl Serialize,
    markdown: Option<&str>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    if let Some(markdown) = markdown {
        std::fs::write(dir.join(format!("{stem}.md")), markdown)?;
    }
    Ok(())
}

/// Systems compared. Their names appear in the JSON and the tables.
pub const TICKETHUB: &str = "tickethub";
pub const POCKETBASE: &str = "pocketbase";
pub const HYPER: &str = "hyper hello";
pub const SQLITE: &str = "rusqlite";
pub const STORE: &str = "tickethub store (in-process)";

/// Workload names.
pub const CREATE: &str = "durable user create";
pub const READ: &str = "get user by indexed field";
pub const MIXED: &str = "mixed 90% reads / 10% creates";
pub const CONTENDED: &str = "contended updates (80% to one doc)";
pub const UNCONTENDED: &str = "uncontended updates (spread)";
pub const WEBHOOK: &str = "signed Clerk webhook (user.created)";
pub const STRIPE_WEBHOOK: &str = "signed Stripe webhook (charge.refunded)";
pub const FANOUT: &str = "subscription fan-out (deliveries)";

#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub workload: String,
    pub system: String,
    /// Connections (HTTP) or threads (in-process).
    pub concurrency: usize,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub ops: u64,
    pub seconds: f64,
    /// VmHWM of the server during this workload (reset before it); `None` in-process.
    pub peak_rss_kib: Option<u64>,
    pub errors: ErrorCounts,
}

impl Measurement {
    pub fn new(
        workload: &str,
        system: &str,
        concurrency: usize,
        result: &LoadResult,
        peak_rss_kib: Option<u64>,
    ) -> Measurement {
        Measurement {
            workload: workload.into(),
            system: system.into(),
            concurrency,
            throughput: result.throughput(),
            p50_us: result.p50_us(),
            p99_us: result.p99_us(),
            ops: result.ops,
            seconds: result.measured.as_secs_f64(),
            peak_rss_kib,
            errors: result.errors.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleMemory {
    pub system: String,
    pub rss_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct HttpScale {
    pub rows: u64,
    pub measurement: Measurement,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub command: String,
    pub unix_time: u64,
    pub machine: String,
    pub settings: String,
    /// The main table: one row per workload and system at the table's concurrency.
    pub measurements: Vec<Measurement>,
    /// Throughput against concurrency (the plot).
    pub sweep: Vec<Measurement>,
    pub idle_memory: Vec<IdleMemory>,
    /// Bounded scans: the same reads on a small and a large table (in-process).
    pub scans: Vec<ScanTimings>,
    /// Index lookups over HTTP on a small and a large table.
    pub http_scale: Vec<HttpScale>,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn find(&self, workload: &str, system: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.workload == workload && m.system == system)
    }

    pub fn idle(&self, system: &str) -> Option<u64> {
        self.idle_memory
            .iter()
            .find(|m| m.system == system)
            .map(|m| m.rss_kib)
    }

    fn ratio(&self, workload: &str, peer: &str, value: f64) -> String {
        match self.find(workload, peer) {
            Some(p) if p.throughput > 0.0 => format!("{:.2}×", value / p.throughput),
            _ => "–".into(),
        }
    }

    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        write_results(dir, stem, self, Some(&self.markdown(stem)))
    }

    pub fn markdown(&self, stem: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmark: `{}`\n", self.command);
        let _ = writeln!(md, "- machine: {}", self.machine);
        let _ = writeln!(md, "- settings: {}", self.settings);
        let _ = writeln!(md, "- unix time: {}\n", self.unix_time);
        if !self.measurements.is_empty() {
            let _ = writeln!(
                md,
                "| workload | system | conc. | req/s | p50 ms | p99 ms | peak RSS MiB | errors | tickethub ÷ PocketBase | ÷ hyper | ÷ rusqlite | ÷ store |"
            );
            let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
            for m in &self.measurements {
                let ratios = if m.system == TICKETHUB {
                    [POCKETBASE, HYPER, SQLITE, STORE]
                        .map(|peer| self.ratio(&m.workload, peer, m.throughput))
                } else {
                    ["".to_string(), "".into(), "".into(), "".into()]
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
                    m.workload,
                    m.system,
                    m.concurrency,
                    m.throughput,
                    m.p50_us as f64 / 1000.0,
                    m.p99_us as f64 / 1000.0,
                    m.peak_rss_kib
                        .map(|k| format!("{:.1}", k as f64 / 1024.0))
                        .unwrap_or_else(|| "–".into()),
                    m.errors.connection + m.errors.rejected,
                    ratios[0],
                    ratios[1],
                    ratios[2],
                    ratios[3],
                );
            }
            let _ = writeln!(md);
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                md,
                "## Targets\n\n| target | measured | met |\n|---|---|---|"
            );
            for t in &self.targets {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    t.target,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
            let _ = writeln!(md);
        }
        if !self.idle_memory.is_empty() {
            let _ = writeln!(
                md,
                "## Idle resident memory\n\n| system | VmRSS MiB |\n|---|--:|"
            );
            for m in &self.idle_memory {
                let _ = writeln!(md, "| {} | {:.1} |", m.system, m.rss_kib as f64 / 1024.0);
            }
            let _ = writeln!(md);
        }
        if !self.scans.is_empty() {
            let _ = writeln!(
                md,
                "## Bounded scans (tickethub store, in-process, one snapshot per call)\n\n| rows | load s | take(10) p50/p99 µs | first() p50/p99 µs | index lookup p50/p99 µs |\n|--:|--:|--:|--:|--:|"
            );
            for s in &self.scans {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} | {}/{} | {}/{} | {}/{} |",
                    s.rows,
                    s.load_seconds,
                    s.take10.p50_us,
                    s.take10.p99_us,
                    s.first.p50_us,
                    s.first.p99_us,
                    s.index_lookup.p50_us,
                    s.index_lookup.p99_us
                );
            }
            let _ = writeln!(md);
        }
        if !self.http_scale.is_empty() {
            let _ = writeln!(
                md,
                "## Index lookup over HTTP by table size (tickethub)\n\n| rows | conc. | req/s | p50 ms | p99 ms |\n|--:|--:|--:|--:|--:|"
            );
            for s in &self.http_scale {
                let m = &s.measurement;
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.2} | {:.2} |",
                    s.rows,
                    m.concurrency,
                    m.throughput,
                    m.p50_us as f64 / 1000.0,
                    m.p99_us as f64 / 1000.0
                );
            }
            let _ = writeln!(md);
        }
        if !self.sweep.is_empty() {
            let _ = writeln!(
                md,
                "## Throughput against concurrency\n\n![throughput]({stem}-throughput.png)\n\nIn the plot: blue = tickethub, red = PocketBase; solid = durable creates, dashed = indexed reads.\n\n| workload | system | conc. | req/s | p50 ms | p99 ms |\n|---|---|--:|--:|--:|--:|"
            );
            for m in &self.sweep {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
                    m.workload,
                    m.system,
                    m.concurrency,
                    m.throughput,
                    m.p50_us as f64 / 1000.0,
                    m.p99_us as f64 / 1000.0
                );
            }
            let _ = writeln!(md);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}
