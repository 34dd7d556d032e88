//! Server processes under test: start on loopback, wait until ready, read memory from
//! `/proc/<pid>/status`, reset the peak between workloads, `kill -9`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A free loopback port (bound and released; a race with other programs is possible but rare).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr()?.port())
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How to start one server.
#[derive(Clone, Debug)]
pub struct Launch {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// `GET` this path on `ready_addr` answers 200 once the server serves.
    pub ready_addr: SocketAddr,
    pub ready_path: String,
}

pub struct ServerProc {
    pub launch: Launch,
    /// `None` only between a kill and the next start.
    child: Option<Child>,
}

impl ServerProc {
    pub fn start(launch: Launch) -> Result<ServerProc> {
        let mut server = ServerProc {
            launch,
            child: None,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let launch = &self.launch;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("opening {}", launch.log.display()))?;
        let child = Command::new(&launch.program)
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", launch.program.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(120))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited during start-up ({status}); see {}",
                        self.launch.name,
                        self.launch.log.display()
                    );
                }
            }
            if http_get_status(self.launch.ready_addr, &self.launch.ready_path) == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "{} was not ready within {limit:?}; see {}",
            self.launch.name,
            self.launch.log.display()
        )
    }

    /// `kill -9`, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's kill sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9`, then start again with the same launch (same ports, same data).
    pub fn kill9_and_restart(&mut self) -> Result<Duration> {
        self.kill9();
        let started = Instant::now();
        self.spawn_and_wait()?;
        Ok(started.elapsed())
    }

    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// Reset the kernel's peak-RSS counter (VmHWM) so the next reading covers one workload.
    /// Returns false where the kernel refuses (then VmHWM is the lifetime peak).
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// A blocking one-shot `GET`, for readiness probes. `None` when nothing answers.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The workspace root (where `Cargo.toml` with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bench sits two levels below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}
