//! The one way the runtime runs a transaction on the store's writer thread: submit a job and
//! await its commit without blocking an async worker. (The store itself stays synchronous.)

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::Mutex;
use tickethub_store::{panic_message, CommitInfo, Outcome, Store, StoreError, WriteTxn};
use tokio::sync::oneshot;

/// Run `f` as one transaction on the writer thread: commit on `Ok`, roll back on `Err` (or a
/// panic, which becomes [`StoreError::JobPanicked`] so the writer thread survives). The job's own
/// error wins over a commit failure: a rolled-back job has nothing to commit.
pub(crate) async fn run_on_writer<R, E, F>(store: &Store, f: F) -> Result<(R, CommitInfo), E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut WriteTxn<'_>) -> Result<R, E> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let slot: Arc<Mutex<Option<Result<R, E>>>> = Arc::new(Mutex::new(None));
    let job_slot = slot.clone();
    store.submit(
        Box::new(move |txn| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(txn)))
                .unwrap_or_else(|p| Err(StoreError::JobPanicked(panic_message(&*p)).into()));
            let outcome = if result.is_ok() {
                Outcome::Commit
            } else {
                Outcome::Rollback
            };
            *job_slot.lock() = Some(result);
            outcome
        }),
        Box::new(move |commit| {
            let _ = sender.send(commit);
        }),
    );
    let commit = receiver.await;
    let result = slot.lock().take();
    match (result, commit) {
        (Some(Err(e)), _) => Err(e),
        (_, Err(_)) => Err(StoreError::ShuttingDown.into()),
        (_, Ok(Err(e))) => Err(e.into()),
        (None, Ok(Ok(_))) => Err(StoreError::JobPanicked("a writer job did not run".into()).into()),
        (Some(Ok(value)), Ok(Ok(info))) => Ok((value, info)),
    }
}
