//! The `tickethub` binary: start-up summary, admin key, port in use, a schema the data violates,
//! one server per data dir, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tickethub_runtime::{App, Args, Clock, Validator};
use tickethub_server::server::{AuthSource, SchemaSource};
use tickethub_server::{AdminKeySource, Server, ServerOptions};

fn tickethub(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickethub"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("CLERK_JWT_ISSUER_DOMAIN")
        .env_remove("TICKETHUB_ADMIN_KEY")
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Read stdout until the listening line; return every line read and the API address.
fn wait_for_listening(child: &mut Child) -> (Vec<String>, SocketAddr) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        lines.push(line.clone());
        if let Some(rest) = line.strip_prefix("tickethub listening: api http://") {
            let addr = rest.split(',').next().unwrap().parse().unwrap();
            return (lines, addr);
        }
    }
    panic!("the server never said it was listening: {lines:?}");
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn starts_prints_its_key_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tickethub(dir.path(), &["--port", "0", "--site-port", "0"])
        .spawn()
        .unwrap();
    let (lines, api) = wait_for_listening(&mut child);
    let key_line = lines
        .iter()
        .find(|l| l.starts_with("tickethub admin key: "))
        .expect("admin key printed");
    let stored = std::fs::read_to_string(dir.path().join("admin_key")).unwrap();
    assert!(key_line.contains(stored.trim()), "{key_line} vs {stored}");

    let reply = get(api, "/instance_name");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("tickethub"), "{reply}");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let stderr = stderr_of(&mut child);
    assert!(exit.success(), "exit {exit:?}: {stderr}");
    assert!(
        stderr.contains("auth") || stderr.contains("Authentication"),
        "auth-off warning expected: {stderr}"
    );
    assert!(
        stderr.contains("CLERK_WEBHOOK_SECRET"),
        "webhook secret warning expected: {stderr}"
    );

    // The second start reuses the stored key.
    let mut child = tickethub(dir.path(), &["--port", "0", "--site-port", "0"])
        .spawn()
        .unwrap();
    let (lines, _) = wait_for_listening(&mut child);
    assert!(lines.iter().any(|l| l.contains(stored.trim())), "{lines:?}");
    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = tickethub(dir.path(), &["--port", &port, "--site-port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("could not listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[derive(serde::Deserialize)]
struct Note {
    body: String,
}

impl Args for Note {
    fn validator() -> Option<Validator> {
        None
    }
}

fn notes_app() -> App {
    let mut app = App::new();
    app.mutation("notes:add", |ctx, note: Note| {
        ctx.db
            .insert("notes", serde_json::json!({ "body": note.body }))
    });
    app
}

fn options(data_dir: &Path, schema: &str) -> ServerOptions {
    ServerOptions {
        host: "127.0.0.1".parse().unwrap(),
        port: 0,
        site_port: 0,
        data_dir: data_dir.to_path_buf(),
        database: tickethub_store::StoreLocation::Sqlite {
            dir: data_dir.to_path_buf(),
        },
        admin_key: AdminKeySource::Given("tickethub-admin|test".into()),
        schema: SchemaSource::Text(schema.into()),
        clock: Clock::System,
        test_clock_skip_ms: 0.0,
        max_upload_bytes: 1 << 20,
        scheduled_jobs: Default::default(),
        env: Default::default(),
        auth: AuthSource::Config(tickethub_auth::AuthConfig::disabled()),
        cluster: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_data_violates_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let loose = "[tables.notes]\nfields.body = \"string\"\n";
    let server = Server::start(notes_app(), options(dir.path(), loose))
        .await
        .unwrap();
    let body = br#"{"path":"notes:add","format":"json","args":[{"body":"hello"}]}"#;
    let mut stream = TcpStream::connect(server.api_addr).unwrap();
    write!(
        stream,
        "POST /api/mutation HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("\"status\":\"success\""), "{reply}");
    let id = reply
        .rsplit("\"value\":\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    server.shutdown().await.unwrap();

    // In process: the error names the document.
    let strict = "[tables.notes]\nfields.body = \"number\"\n";
    let error = match Server::start(notes_app(), options(dir.path(), strict)).await {
        Ok(_) => panic!("a violating schema must refuse to start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&id), "{error}");

    // The binary: non-zero exit, the same message, no panic.
    let schema_path = dir.path().join("strict.toml");
    std::fs::write(&schema_path, strict).unwrap();
    let output = tickethub(
        dir.path(),
        &[
            "--port",
            "0",
            "--site-port",
            "0",
            "--schema",
            schema_path.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&id), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_naming_the_dir_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = tickethub(dir.path(), &["--port", "0", "--site-port", "0"])
        .spawn()
        .unwrap();
    let (_, api) = wait_for_listening(&mut first);

    let second = tickethub(dir.path(), &["--port", "0", "--site-port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second server must not start: {stderr}"
    );
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tickethub: "))
        .collect();
    assert_eq!(error_lines.len(), 1, "one error line: {stderr}");
    let line = error_lines[0];
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
    assert!(line.contains(&format!("pid {}", first.id())), "{line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("tickethub listening"),
        "the second server never listens"
    );

    // The first one is unaffected, and once it is gone the dir can be served again.
    assert!(get(api, "/instance_name").starts_with("HTTP/1.1 200"));
    Command::new("kill")
        .arg("-TERM")
        .arg(first.id().to_string())
        .status()
        .unwrap();
    assert!(first.wait().unwrap().success());
    let mut third = tickethub(dir.path(), &["--port", "0", "--site-port", "0"])
        .spawn()
        .unwrap();
    wait_for_listening(&mut third);
    Command::new("kill")
        .arg("-TERM")
        .arg(third.id().to_string())
        .status()
        .unwrap();
    assert!(third.wait().unwrap().success());
}

fn codegen(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tickethub"))
        .arg("codegen")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn codegen_writes_the_generated_dir_the_same_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("convex");
    let run = || codegen(&["--out".as_ref(), out.as_os_str()]);
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(
        stdout.starts_with("tickethub codegen: wrote ") && stdout.contains("_generated ("),
        "{stdout}"
    );
    let generated = out.join("_generated");
    let read_all = || {
        ["api.d.ts", "api.js", "dataModel.d.ts"]
            .map(|name| std::fs::read_to_string(generated.join(name)).unwrap())
    };
    let files = read_all();
    assert!(files[0].contains("export declare const api: {\n  events: {"));
    assert!(files[0].contains("upsertUserFromClerk: FunctionReference<\"mutation\", \"internal\""));
    assert!(files[2].contains("export type DataModel = {"));
    assert!(run().status.success());
    assert_eq!(read_all(), files, "a second run wrote something else");
    let names: Vec<String> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "only the three files, no partial ones: {names:?}"
    );
}

#[test]
fn codegen_with_a_bad_schema_says_where_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, "[tables.events]\nfields.name = \"strin\"\n").unwrap();
    let out = dir.path().join("convex");
    let output = codegen(&[
        "--out".as_ref(),
        out.as_os_str(),
        "--schema".as_ref(),
        schema.as_os_str(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("schema.toml: table `events`: field `name`") && stderr.contains("strin"),
        "{stderr}"
    );
    assert!(!out.exists());
}
