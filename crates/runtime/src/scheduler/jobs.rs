//! Job rows of `_scheduled_functions` and running one due job.

use std::sync::Arc;

use serde::Serialize;
use tickethub_store::{DocReader, Document, IndexQuery, Order, StoreError};
use tickethub_value::{DocumentId, Object, Value};

use super::{system_mutation, JobState, BY_STATE, SCHEDULED_FUNCTIONS_TABLE};
use crate::ctx::LogSink;
use crate::db::WriteOps;
use crate::engine::{args_value, run_mutation_in_txn, Access, Inner, ReadAt};
use crate::{Auth, FnError, FunctionKind, FunctionSpec, Identity, Runtime};

// ---- rows -------------------------------------------------------------------------------

fn state_object(state: JobState, error: Option<String>) -> Value {
    let mut o = Object::new();
    o.insert("kind".into(), Value::from(state.as_str()));
    if let Some(error) = error {
        o.insert("error".into(), Value::String(error));
    }
    Value::Object(o)
}

fn job_state(doc: &Document) -> Option<&str> {
    doc.fields
        .get("state")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
}

/// Check a job target: a mutation or an action (internal ones too), with object args.
pub(crate) fn prepare_job(
    inner: &Inner,
    path: &str,
    args: impl Serialize,
) -> Result<(String, Value), FnError> {
    let spec = inner.resolve(path, Access::Internal, None)?;
    if !matches!(spec.kind, FunctionKind::Mutation | FunctionKind::Action) {
        return Err(FnError::msg(format!(
            "Only mutations and actions can be scheduled, but {path} is a {}",
            spec.kind.to_string().to_lowercase()
        )));
    }
    Ok((spec.path.to_string(), args_value(args)?))
}

pub(crate) fn insert_job(
    txn: &mut dyn WriteOps,
    canonical: &str,
    args: Value,
    at_ms: f64,
) -> Result<DocumentId, StoreError> {
    let mut row = Object::new();
    row.insert("name".into(), Value::from(canonical));
    row.insert("args".into(), args);
    row.insert("scheduledTime".into(), Value::Float64(at_ms));
    row.insert("state".into(), state_object(JobState::Pending, None));
    txn.insert_doc(SCHEDULED_FUNCTIONS_TABLE, row)
}

pub(super) fn set_state(
    txn: &mut dyn WriteOps,
    id: DocumentId,
    state: JobState,
    error: Option<String>,
    completed_ms: Option<f64>,
) -> Result<(), StoreError> {
    let mut fields = vec![("state".to_string(), Some(state_object(state, error)))];
    if let Some(ms) = completed_ms {
        fields.push(("completedTime".to_string(), Some(Value::Float64(ms))));
    }
    txn.patch_doc(id, fields)
}

fn is_pending(txn: &dyn DocReader, id: DocumentId) -> Result<bool, StoreError> {
    Ok(txn.get(id)?.as_ref().and_then(job_state) == Some(JobState::Pending.as_str()))
}

pub(crate) fn cancel_job(txn: &mut dyn WriteOps, job_id: &str, now_ms: f64) -> Result<(), FnError> {
    let id = DocumentId::decode(job_id)?;
    if txn.table_name(id.table).as_deref() != Some(SCHEDULED_FUNCTIONS_TABLE) {
        return Err(FnError::msg(format!(
            "{job_id} is not the id of a scheduled function"
        )));
    }
    if is_pending(&*txn, id)? {
        set_state(txn, id, JobState::Canceled, None, Some(now_ms))?;
    }
    Ok(())
}

/// Cancel job `job_id` only if it is still pending; otherwise say what it is.
pub(crate) fn cancel_if_pending(
    txn: &mut dyn WriteOps,
    job_id: &str,
    now_ms: f64,
) -> Result<super::CancelOutcome, FnError> {
    use super::CancelOutcome;
    let Ok(id) = DocumentId::decode(job_id) else {
        return Ok(CancelOutcome::NoSuchJob);
    };
    if txn.table_name(id.table).as_deref() != Some(SCHEDULED_FUNCTIONS_TABLE) {
        return Ok(CancelOutcome::NoSuchJob);
    }
    let Some(doc) = txn.get(id)? else {
        return Ok(CancelOutcome::NoSuchJob);
    };
    match job_state(&doc) {
        Some(state) if state == JobState::Pending.as_str() => {
            set_state(txn, id, JobState::Canceled, None, Some(now_ms))?;
            Ok(CancelOutcome::Canceled)
        }
        other => Ok(CancelOutcome::NotPending(
            other.unwrap_or("unknown").to_string(),
        )),
    }
}

pub(super) fn by_state(state: JobState) -> IndexQuery {
    IndexQuery {
        table: SCHEDULED_FUNCTIONS_TABLE.to_string(),
        index: BY_STATE.to_string(),
        eq: vec![("state.kind".to_string(), Some(Value::from(state.as_str())))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

pub(super) struct DueJob {
    pub(super) id: DocumentId,
    pub(super) name: String,
    pub(super) args: Value,
}

fn admin(rt: &Runtime) -> Auth {
    Auth::new(Identity::Admin, rt.inner.auth_enabled())
}

/// What is recorded as a failed job's error: internal details stay in the server log.
fn recorded_error(e: &FnError) -> String {
    if e.is_user_visible() {
        e.to_string()
    } else {
        "Server Error".to_string()
    }
}

pub(super) async fn run_job(rt: &Runtime, job: DueJob) {
    let spec = match rt.inner.resolve(&job.name, Access::Internal, None) {
        Ok(spec) if matches!(spec.kind, FunctionKind::Mutation | FunctionKind::Action) => spec,
        Ok(_) | Err(_) => {
            let error = format!("Could not find a mutation or action named {}", job.name);
            mark_finished(rt, job.id, Err(error)).await;
            return;
        }
    };
    match spec.kind {
        FunctionKind::Mutation => run_scheduled_mutation(rt, spec, job).await,
        _ => run_scheduled_action(rt, spec, job).await,
    }
}

/// Record a job's end if it is still pending or in progress (a canceled one stays canceled).
async fn mark_finished(rt: &Runtime, id: DocumentId, result: Result<(), String>) {
    let now = rt.now_ms();
    let marked = system_mutation(rt, move |txn| {
        let state = txn
            .get(id)?
            .as_ref()
            .and_then(job_state)
            .map(str::to_string);
        if matches!(state.as_deref(), Some("pending") | Some("inProgress")) {
            let (state, error) = match result {
                Ok(()) => (JobState::Success, None),
                Err(e) => (JobState::Failed, Some(e)),
            };
            set_state(txn, id, state, error, Some(now))?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = marked {
        tracing::error!(job = %id, error = %e, "could not record the end of a scheduled job");
    }
}

async fn run_scheduled_mutation(rt: &Runtime, spec: Arc<FunctionSpec>, job: DueJob) {
    let started = std::time::Instant::now();
    let id = job.id;
    let inner = rt.inner.clone();
    let auth = admin(rt);
    let path = spec.path.clone();
    let logs = LogSink::default();
    let job_logs = logs.clone();
    // Ok(true) ran and committed, Ok(false) skipped (no longer pending), Err failed.
    let result = system_mutation(rt, move |txn| {
        if !is_pending(&*txn, id)? {
            return Ok(false);
        }
        let run = run_mutation_in_txn(&inner, &spec, txn, &auth, &job_logs, job.args);
        run.result?;
        let now = inner.now_ms();
        set_state(txn, id, JobState::Success, None, Some(now))?;
        Ok(true)
    })
    .await;
    if !matches!(result, Ok(false)) {
        let kind = Some(crate::FunctionKind::Mutation);
        rt.record_call(
            path.clone(),
            kind,
            started,
            result.as_ref().err(),
            &logs,
            None,
        );
    }
    match result {
        Ok(true) => {
            tracing::info!(job = %id, path = &*path, duration_ms = started.elapsed().as_secs_f64() * 1000.0, "scheduled mutation succeeded")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(job = %id, path = &*path, error = %e, "scheduled mutation failed");
            mark_finished(rt, id, Err(recorded_error(&e))).await;
        }
    }
}

async fn run_scheduled_action(rt: &Runtime, spec: Arc<FunctionSpec>, job: DueJob) {
    let id = job.id;
    let claimed = system_mutation(rt, move |txn| {
        if !is_pending(&*txn, id)? {
            return Ok(false);
        }
        set_state(txn, id, JobState::InProgress, None, None)?;
        Ok(true)
    })
    .await;
    match claimed {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(job = %id, error = %e, "could not start a scheduled action");
            return;
        }
    }
    let started = std::time::Instant::now();
    let logs = LogSink::default();
    let execution = rt
        .run_spec(
            spec.clone(),
            job.args,
            admin(rt),
            ReadAt::Latest,
            logs.clone(),
        )
        .await;
    rt.record_call(
        spec.path.clone(),
        Some(spec.kind),
        started,
        execution.outcome.as_ref().err(),
        &logs,
        None,
    );
    let result = match execution.outcome {
        Ok(_) => {
            tracing::info!(job = %id, path = &*spec.path, "scheduled action succeeded");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(job = %id, path = &*spec.path, error = %e, "scheduled action failed");
            Err(recorded_error(&e))
        }
    };
    mark_finished(rt, id, result).await;
}
