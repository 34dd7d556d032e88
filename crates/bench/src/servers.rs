//! Launching the three HTTP servers under test: tickethub, the hello server (this binary's own
//! `hello-server` subcommand) and PocketBase (see [`crate::pocketbase`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::procs::{free_port, loopback, target_dir, workspace_root, Launch, ServerProc};
use crate::workloads::{STRIPE_WEBHOOK_SECRET, WEBHOOK_SECRET};

/// The admin key the benchmark gives tickethub.
pub const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef";

/// Build the release `tickethub` binary (cargo's own lock makes this safe beside other builds).
pub fn build_tickethub() -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "--release", "--bin", "tickethub"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --bin tickethub failed: {status}");
    }
    Ok(())
}

pub fn tickethub_binary() -> Result<PathBuf> {
    let bin = target_dir().join("release").join("tickethub");
    if !bin.exists() {
        bail!(
            "{} is missing (build it, or drop --no-build)",
            bin.display()
        );
    }
    Ok(bin)
}

pub struct Tickethub {
    pub server: ServerProc,
    pub api: SocketAddr,
    pub site: SocketAddr,
}

/// Start tickethub on `data` (kept as is: a preloaded store is served, not wiped).
pub fn start_tickethub(bin: &Path, data: &Path, log: PathBuf) -> Result<Tickethub> {
    start_tickethub_with(bin, data, log, &[])
}

/// [`start_tickethub`] with extra environment (knob overrides), which wins over the defaults.
pub fn start_tickethub_with(
    bin: &Path,
    data: &Path,
    log: PathBuf,
    extra_env: &[(&str, &str)],
) -> Result<Tickethub> {
    let api = loopback(free_port()?);
    let site = loopback(free_port()?);
    let server = ServerProc::start(Launch {
        name: "tickethub".into(),
        program: bin.to_path_buf(),
        args: vec![
            "serve".into(),
            "--port".into(),
            api.port().to_string(),
            "--site-port".into(),
            site.port().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            data.to_string_lossy().into(),
            "--admin-key".into(),
            ADMIN_KEY.into(),
        ],
        env: vec![
            ("CLERK_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
            ("STRIPE_WEBHOOK_SECRET".into(), STRIPE_WEBHOOK_SECRET.into()),
            // One log line per call would measure the terminal, not the server.
            ("RUST_LOG".into(), "warn".into()),
            // `--fanout` may open more subscribers than the default connection cap.
            ("TICKETHUB_MAX_CONNECTIONS".into(), "1000000".into()),
        ]
        .into_iter()
        .chain(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect(),
        log,
        ready_addr: api,
        ready_path: "/instance_name".into(),
    })?;
    Ok(Tickethub { server, api, site })
}

/// Start this binary's bare hyper server as a child process.
pub fn start_hello(log: PathBuf) -> Result<ServerProc> {
    let addr = loopback(free_port()?);
    ServerProc::start(Launch {
        name: "hello".into(),
        program: std::env::current_exe()?,
        args: vec![
            "hello-server".into(),
            "--port".into(),
            addr.port().to_string(),
        ],
        env: vec![],
        log,
        ready_addr: addr,
        ready_path: "/".into(),
    })
}
