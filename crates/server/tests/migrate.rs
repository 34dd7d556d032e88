//! `tickethub migrate`, driven through the real binary: SQLite → Postgres → SQLite keeps every
//! document byte for byte (every table's export JSON, system tables included, and the full
//! `tickethub export` ZIP of both ends), the stored files follow, and a non-empty target is
//! refused unless `--replace`.
//!
//! The middle is Postgres when `TICKETHUB_TEST_DATABASE_URL` is set (tests/run sets it, with a
//! throwaway cluster from tests/pg-cluster); without it the middle is a third SQLite data dir, so
//! the copy itself is still tested, and the test says so.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tickethub_blobs::BlobDir;
use tickethub_runtime::Runtime;
use tickethub_store::{Document, Schema, Store, StoreOptions, Visit};
use tickethub_value::{Object, Value};

const SCHEMA: &str = r#"
[tables.things]
validate = false
indexes.by_kind = ["kind"]

[tables.people]
fields.name = "string"
fields.friend = 'optional(id("people"))'
fields.photo = 'optional(id("_storage"))'
indexes.by_name = ["name"]

[tables.empty]
fields.x = "number"
"#;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tickethub")
}

fn schema() -> Schema {
    let mut schema = Schema::from_toml(SCHEMA).unwrap();
    for table in Runtime::system_tables() {
        schema.add_system_table(table);
    }
    schema
}

fn obj(pairs: &[(&str, Value)]) -> Object {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A SQLite data dir with documents of every value type, ids pointing at other documents, a
/// stored file and its `_storage` row, and system-table rows.
fn seed(dir: &Path) {
    let blobs = BlobDir::open(&dir.join("storage").join("blobs")).unwrap();
    let mut writer = blobs.writer(1 << 20).unwrap();
    writer.write(b"the bytes of a stored file").unwrap();
    let staged = writer.finish().unwrap();
    let sha = staged.sha256;
    blobs.publish(staged).unwrap();

    let store = Store::open(dir, schema(), StoreOptions::default()).unwrap();
    store
        .mutate(move |txn| {
            let photo = txn.insert(
                "_storage",
                obj(&[
                    ("sha256", Value::String(sha.to_base64())),
                    ("size", Value::Float64(26.0)),
                    ("contentType", Value::String("text/plain".into())),
                ]),
            )?;
            let ada = txn.insert(
                "people",
                obj(&[
                    ("name", Value::String("Ada".into())),
                    ("photo", Value::String(photo.encode())),
                ]),
            )?;
            txn.insert(
                "people",
                obj(&[
                    ("name", Value::String("Grace ✓ 日本".into())),
                    ("friend", Value::String(ada.encode())),
                ]),
            )?;
            for i in 0..2500i64 {
                txn.insert(
                    "things",
                    obj(&[
                        ("kind", Value::String(format!("k{}", i % 7))),
                        ("int", Value::Int64(i * 1_000_000_007 - 3)),
                        ("float", Value::Float64(i as f64 / 3.0)),
                        ("negZero", Value::Float64(-0.0)),
                        ("nan", Value::Float64(f64::NAN)),
                        ("inf", Value::Float64(f64::NEG_INFINITY)),
                        ("bytes", Value::Bytes(vec![0, 255, i as u8, 10])),
                        ("null", Value::Null),
                        ("bool", Value::Boolean(i % 2 == 0)),
                        (
                            "nested",
                            Value::Object(obj(&[(
                                "list",
                                Value::Array(vec![
                                    Value::Int64(i),
                                    Value::String("\"quoted\"\n".into()),
                                    Value::Object(Object::new()),
                                ]),
                            )])),
                        ),
                    ]),
                )?;
            }
            txn.insert(
                "_environment_variables",
                obj(&[
                    ("name", Value::String("GREETING".into())),
                    ("value", Value::String("hello".into())),
                ]),
            )?;
            Ok::<_, tickethub_store::StoreError>(())
        })
        .unwrap();
    store.close().unwrap();
}

/// Every table's documents as export JSON lines, in `_id` order: what "byte for byte" compares.
fn dump(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let store = Store::open(dir, schema(), StoreOptions::default()).unwrap();
    let snapshot = store.read().unwrap();
    let mut all = BTreeMap::new();
    for table in snapshot.tables() {
        let mut lines = Vec::new();
        snapshot
            .for_each_document(&table.name, &mut |doc: Document| {
                lines.push(doc.to_value().to_export_json().to_string());
                Ok::<_, tickethub_store::StoreError>(Visit::Continue)
            })
            .unwrap();
        all.insert(table.name, lines);
    }
    drop(snapshot);
    store.close().unwrap();
    all
}

fn run(args: &[&str]) -> Output {
    let output = Command::new(binary())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_SCHEMA")
        .output()
        .unwrap();
    output
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "tickethub {args:?} failed:\n{text}"
    );
    text
}

/// `tickethub export --include-file-storage` of a data dir, as entry name → bytes.
fn export_entries(
    data_dir: &Path,
    schema_file: &Path,
    extra: &[&str],
) -> BTreeMap<String, Vec<u8>> {
    let zip_path = data_dir.with_extension("export.zip");
    let mut args = vec![
        "export",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--schema",
        schema_file.to_str().unwrap(),
        "--include-file-storage",
        "--path",
        zip_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut entries = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.insert(entry.name().to_string(), bytes);
    }
    std::fs::remove_file(zip_path).unwrap();
    entries
}

/// Where the middle of the round trip lives, with the flags that name it.
enum Middle {
    Postgres { url: String, schema: String },
    DataDir(PathBuf),
}

impl Middle {
    fn spec(&self) -> String {
        match self {
            Middle::Postgres { url, .. } => url.clone(),
            Middle::DataDir(dir) => dir.to_str().unwrap().to_string(),
        }
    }
}

#[test]
fn sqlite_to_postgres_to_sqlite_keeps_every_document_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let schema_file = tmp.path().join("schema.toml");
    std::fs::write(&schema_file, SCHEMA).unwrap();
    let schema_arg = schema_file.to_str().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    seed(&a);

    let middle = match std::env::var("TICKETHUB_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Middle::Postgres {
            url,
            // Unique per run: several runs may share the cluster.
            schema: format!("migrate_{}", std::process::id()),
        },
        _ => {
            eprintln!(
                "TICKETHUB_TEST_DATABASE_URL is not set: the middle of the round trip is SQLite \
                 (tests/run sets it and runs this against Postgres)"
            );
            Middle::DataDir(tmp.path().join("middle"))
        }
    };
    let middle_spec = middle.spec();
    let (to_schema, from_schema): (Vec<&str>, Vec<&str>) = match &middle {
        Middle::Postgres { schema, .. } => (
            vec!["--to-schema", schema.as_str()],
            vec!["--from-schema", schema.as_str()],
        ),
        Middle::DataDir(_) => (vec![], vec![]),
    };

    // A → middle.
    let mut args = vec![
        "migrate",
        "--schema",
        schema_arg,
        "--from",
        a.to_str().unwrap(),
        "--to",
        &middle_spec,
    ];
    args.extend(&to_schema);
    let said = ok(&args);
    assert!(said.contains("Migrated 2504 documents"), "{said}");

    // Again: the target holds documents now, so it is refused and left as it was...
    let refused = run(&args);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        text.contains("already holds documents") && text.contains("--replace"),
        "{text}"
    );
    // ...unless --replace, which empties it in the same transaction.
    let mut replace = args.clone();
    replace.push("--replace");
    ok(&replace);

    // middle → B, taking the stored files from A (a Postgres deployment keeps them in the data
    // dir its server uses; the SQLite middle has them already).
    let mut args = vec![
        "migrate",
        "--schema",
        schema_arg,
        "--from",
        &middle_spec,
        "--to",
        b.to_str().unwrap(),
        "--from-data-dir",
        a.to_str().unwrap(),
    ];
    args.extend(&from_schema);
    let said = ok(&args);
    assert!(said.contains("Migrated 2504 documents"), "{said}");
    assert!(said.contains("and 1 stored files"), "{said}");

    // Every table, system tables included, byte for byte.
    let before = dump(&a);
    let after = dump(&b);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (table, lines) in &before {
        assert_eq!(lines, &after[table], "table {table} differs");
    }
    assert_eq!(before["things"].len(), 2500);
    assert_eq!(before["_storage"].len(), 1);

    // The full export of both ends (documents and stored files), and of the middle.
    let export_a = export_entries(&a, &schema_file, &[]);
    let export_b = export_entries(&b, &schema_file, &[]);
    assert_eq!(export_a, export_b);
    assert!(export_a
        .keys()
        .any(|name| name.starts_with("_storage/") && name != "_storage/documents.jsonl"));
    if let Middle::Postgres { url, schema } = &middle {
        let export_pg = export_entries(
            &a,
            &schema_file,
            &["--database-url", url, "--database-schema", schema],
        );
        assert_eq!(export_a, export_pg);
    }
}

#[test]
fn migrate_refuses_the_same_database_and_a_missing_source() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let output = run(&[
        "migrate",
        "--from",
        a.to_str().unwrap(),
        "--to",
        "elsewhere",
    ]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("holds no tickethub database"), "{text}");

    let output = run(&[
        "migrate",
        "--from",
        "postgres://h/db",
        "--to",
        "postgres://h/db",
    ]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("the same database"), "{text}");
}
