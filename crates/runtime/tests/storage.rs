//! `ctx.storage` in actions, HTTP actions, queries and mutations, on a real store and blob
//! directory: store/get, getMetadata's Convex shape, getUrl, delete and the blob's removal after
//! the commit, v.id("_storage"), and orphan collection when the runtime starts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{json, obj, open_store};
use serde_json::json;
use tickethub_runtime::{
    v, ActionCtx, App, CallRequest, Caller, Clock, FunctionKind, Identity, MutationCtx, NoArgs,
    QueryCtx, ReadAt, Runtime, RuntimeConfig, StorageConfig, Value,
};

#[derive(serde::Deserialize, tickethub_runtime::Args)]
#[serde(rename_all = "camelCase")]
struct FileArgs {
    #[arg(id = "_storage")]
    storage_id: String,
}

#[derive(serde::Deserialize, tickethub_runtime::Args)]
struct Text {
    text: String,
}

fn app() -> App {
    let mut app = App::new();
    app.action("files:store", |ctx: ActionCtx, args: Text| async move {
        ctx.storage
            .store(args.text.into_bytes(), Some("text/plain"))
            .await
    });
    app.action("files:read", |ctx: ActionCtx, args: FileArgs| async move {
        let bytes = ctx.storage.get(&args.storage_id).await?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    });
    app.action("files:meta", |ctx: ActionCtx, args: FileArgs| async move {
        ctx.storage.get_metadata(&args.storage_id)
    });
    app.action(
        "files:remove",
        |ctx: ActionCtx, args: FileArgs| async move { ctx.storage.delete(&args.storage_id).await },
    );
    app.query("files:url", |ctx: &QueryCtx, args: FileArgs| {
        ctx.storage.get_url(&args.storage_id)
    });
    app.query("files:row", |ctx: &QueryCtx, args: FileArgs| {
        Ok(ctx.db.get(&args.storage_id)?.map(|d| d.to_value()))
    });
    app.mutation("files:delete", |ctx: &MutationCtx, args: FileArgs| {
        ctx.storage.delete(&args.storage_id)
    });
    app.mutation("files:uploadUrl", |ctx: &MutationCtx, _: NoArgs| {
        ctx.storage.generate_upload_url()
    });
    app.query("files:urlOfAny", |ctx: &QueryCtx, args: Text| {
        ctx.storage.get_url(&args.text)
    })
    .returns(v::union([v::string(), v::null()]));
    app
}

fn runtime(dir: &Path) -> Runtime {
    Runtime::new(
        app(),
        open_store(&dir.join("db")),
        RuntimeConfig {
            clock: Clock::System,
            storage: Some(StorageConfig {
                dir: dir.join("storage"),
                api_origin: "http://127.0.0.1:3210".into(),
                max_upload_bytes: 1 << 20,
            }),
            ..RuntimeConfig::default()
        },
    )
}

async fn run(rt: &Runtime, path: &str, args: Value) -> Result<Value, String> {
    rt.call(CallRequest {
        path: path.to_string(),
        args,
        expected_kind: None::<FunctionKind>,
        caller: Caller {
            identity: Identity::Anonymous,
        },
        read_at: ReadAt::Latest,
        request_id: tickethub_runtime::RequestId::generate(),
    })
    .await
    .outcome
    .map_err(|e| e.to_string())
}

fn blob_count(dir: &Path) -> usize {
    let root = dir.join("storage").join("blobs");
    std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "tmp")
        .map(|shard| std::fs::read_dir(shard.path()).unwrap().count())
        .sum()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_store_and_read_files_and_deletes_remove_blobs_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());

    let id = run(&rt, "files:store", json(json!({"text": "hello storage"})))
        .await
        .unwrap();
    let id = id.as_str().unwrap().to_string();
    let args = obj(&[("storageId", Value::String(id.clone()))]);
    assert_eq!(
        run(&rt, "files:read", args.clone()).await.unwrap(),
        Value::String("hello storage".into())
    );

    // The `_storage` row through ctx.db, in Convex's shape.
    let row = run(&rt, "files:row", args.clone()).await.unwrap();
    let row = row.to_clean_json();
    assert_eq!(row["size"], json!(13.0));
    assert_eq!(row["contentType"], json!("text/plain"));
    assert_eq!(
        row["sha256"],
        json!("raetF+7/GCa98eadanDVQlSKbwo8OAl0ijYHbZdnEEc=")
    );

    // getMetadata: {storageId (uuid), sha256 (hex), size, contentType}.
    let meta = run(&rt, "files:meta", args.clone()).await.unwrap();
    let meta = meta.to_clean_json();
    assert_eq!(
        meta["sha256"],
        json!("ada7ad17eeff1826bdf1e69d6a70d542548a6f0a3c3809748a36076d97671047")
    );
    assert_eq!(meta["size"], json!(13.0));
    assert_eq!(meta["contentType"], json!("text/plain"));
    let uuid = meta["storageId"].as_str().unwrap().to_string();
    let url = run(&rt, "files:url", args.clone()).await.unwrap();
    assert_eq!(
        url,
        Value::String(format!("http://127.0.0.1:3210/api/storage/{uuid}"))
    );
    // The uuid names the same file.
    assert_eq!(
        run(&rt, "files:urlOfAny", obj(&[("text", Value::String(uuid))]))
            .await
            .unwrap(),
        url
    );

    let upload_url = run(&rt, "files:uploadUrl", json(json!({}))).await.unwrap();
    assert!(upload_url
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:3210/api/storage/upload?token="));

    // The same content twice is one blob; it goes only with the last row.
    let twin = run(&rt, "files:store", json(json!({"text": "hello storage"})))
        .await
        .unwrap();
    let twin_args = obj(&[("storageId", twin)]);
    assert_eq!(blob_count(dir.path()), 1);
    run(&rt, "files:delete", args.clone()).await.unwrap();
    assert_eq!(
        run(&rt, "files:url", args.clone()).await.unwrap(),
        Value::Null
    );
    assert_eq!(
        run(&rt, "files:read", args.clone()).await.unwrap(),
        Value::Null
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        blob_count(dir.path()),
        1,
        "the twin row still needs the blob"
    );
    run(&rt, "files:remove", twin_args.clone()).await.unwrap();
    eventually("the blob's removal", || blob_count(dir.path()) == 0).await;

    // Deleting again, or an id of another kind, fails clearly.
    let again = run(&rt, "files:delete", args.clone()).await.unwrap_err();
    assert!(again.contains("does not exist"), "{again}");
    let wrong = run(
        &rt,
        "files:url",
        obj(&[(
            "storageId",
            Value::String("z43zp6c3e75gkmz1kfwj6mbbx5sw281h".into()),
        )]),
    )
    .await
    .unwrap_err();
    assert!(wrong.contains("ArgumentValidationError"), "{wrong}");
    rt.store().close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_keeps_the_blob_and_start_up_collects_orphans() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = runtime(dir.path());
        run(&rt, "files:store", json(json!({"text": "kept"})))
            .await
            .unwrap();
        rt.store().close().unwrap();
    }
    // A blob no row references (a crash between publishing and committing), and a torn temp file.
    let orphan = dir.path().join("storage/blobs/ab");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("ab".repeat(32)), b"orphan").unwrap();
    std::fs::write(dir.path().join("storage/blobs/tmp/x.part"), b"torn").unwrap();
    assert_eq!(blob_count(dir.path()), 2);
    let rt = runtime(dir.path());
    assert_eq!(
        blob_count(dir.path()),
        1,
        "the orphan is collected, the file kept"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("storage/blobs/tmp"))
            .unwrap()
            .count(),
        0
    );
    rt.store().close().unwrap();
}
