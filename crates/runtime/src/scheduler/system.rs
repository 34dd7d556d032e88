//! The built-in admin-only queries over the scheduler's tables.

use tickethub_store::Order;
use tickethub_value::{validator::v, Value};

use super::{JobState, BY_STATE, CRON_JOBS_TABLE, SCHEDULED_FUNCTIONS_TABLE};
use crate::FnError;

// ---- built-in system queries ---------------------------------------------------------------

/// Rows `_system/scheduler:list` returns when no `limit` is given, and the most it returns.
pub const SYSTEM_LIST_DEFAULT_LIMIT: usize = 1000;
pub const SYSTEM_LIST_MAX_LIMIT: usize = 10_000;

/// Args of `_system/scheduler:list`: an optional state kind and row limit.
#[derive(serde::Deserialize)]
struct ListJobsArgs {
    state: Option<String>,
    limit: Option<f64>,
}

impl crate::Args for ListJobsArgs {
    fn validator() -> Option<tickethub_value::Validator> {
        Some(v::object([
            ("state", v::optional(v::string())),
            ("limit", v::optional(v::number())),
        ]))
    }
}

fn list_limit(limit: Option<f64>) -> Result<usize, FnError> {
    match limit {
        None => Ok(SYSTEM_LIST_DEFAULT_LIMIT),
        Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 => {
            Ok((n as usize).min(SYSTEM_LIST_MAX_LIMIT))
        }
        Some(n) => Err(FnError::ArgumentValidation(format!(
            "limit must be a positive integer, got {n}"
        ))),
    }
}

/// Internal (admin-only) queries that make the scheduler's tables visible without app code:
/// `_system/scheduler:list` (newest first; by state, latest `scheduledTime` first) and
/// `_system/crons:list`.
pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query(
        "_system/scheduler:list",
        |ctx: &crate::QueryCtx, args: ListJobsArgs| -> Result<Vec<Value>, FnError> {
            let limit = list_limit(args.limit)?;
            let query = match args.state.as_deref() {
                None => ctx.db.query(SCHEDULED_FUNCTIONS_TABLE),
                Some(kind) => {
                    let state = JobState::parse(kind).ok_or_else(|| {
                        let known: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                        FnError::ArgumentValidation(format!(
                            "state must be one of {}, got {kind:?}",
                            known.join(", ")
                        ))
                    })?;
                    ctx.db
                        .query(SCHEDULED_FUNCTIONS_TABLE)
                        .with_index(BY_STATE, |q| q.eq("state.kind", state.as_str()))
                }
            };
            let rows = query.order(Order::Desc).take(limit)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
    app.internal_query(
        "_system/crons:list",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Vec<Value>, FnError> {
            let rows = ctx.db.query(CRON_JOBS_TABLE).take(SYSTEM_LIST_MAX_LIMIT)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
}
