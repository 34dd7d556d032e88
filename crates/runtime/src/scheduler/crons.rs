//! Cron rows of `_cron_jobs` and firing the due ones.

use tickethub_store::{DocReader, Document, IndexQuery, Order, StoreError};
use tickethub_value::{Object, Value};

use super::jobs::insert_job;
use super::{system_mutation, BY_NAME, CRON_JOBS_TABLE};
use crate::{FnError, Runtime};

pub(super) fn cron_row(txn: &dyn DocReader, name: &str) -> Result<Option<Document>, StoreError> {
    let query = IndexQuery {
        table: CRON_JOBS_TABLE.to_string(),
        index: BY_NAME.to_string(),
        eq: vec![("name".to_string(), Some(Value::from(name)))],
        lower: None,
        upper: None,
        order: Order::Asc,
    };
    Ok(txn.collect(&query, Some(1))?.into_iter().next())
}

pub(super) fn describe_schedule(schedule: &crate::CronSchedule) -> String {
    match schedule {
        crate::CronSchedule::Interval { ms } => format!("every {ms} ms"),
        crate::CronSchedule::Cron(expr) => format!("cron {expr}"),
    }
}

/// Turn each due cron into a job due now and move its next run past now, in one transaction.
pub(super) async fn fire_due_crons(rt: &Runtime, now: f64) -> Result<(), FnError> {
    let due: Vec<crate::registry::CronSpec> = {
        let next = rt.inner.sched.cron_next.lock();
        rt.crons()
            .into_iter()
            .filter(|c| next.get(&c.name).is_some_and(|t| *t <= now))
            .collect()
    };
    if due.is_empty() {
        return Ok(());
    }
    let next_runs = system_mutation(rt, move |txn| {
        let mut next_runs = Vec::new();
        for cron in &due {
            let row = cron_row(&*txn, &cron.name)?;
            let stored_next = row
                .as_ref()
                .and_then(|r| r.fields.get("nextRunMs"))
                .and_then(|v| v.as_f64());
            if let Some(stored_next) = stored_next.filter(|t| *t > now) {
                // Another leader (cluster mode) fired this run already: the row is the truth,
                // the in-memory mirror was stale.
                next_runs.push((cron.name.clone(), stored_next));
                continue;
            }
            let next = cron.parsed.next_after(now).map_err(FnError::Internal)?;
            insert_job(txn, &cron.path, cron.args.clone(), now)?;
            let fields = vec![
                ("lastRunMs".to_string(), Some(Value::Float64(now))),
                ("nextRunMs".to_string(), Some(Value::Float64(next))),
            ];
            match row {
                Some(row) => txn.patch_doc(row.id, fields)?,
                None => {
                    let mut row: Object = fields
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect();
                    row.insert("name".into(), Value::from(cron.name.as_str()));
                    row.insert(
                        "schedule".into(),
                        Value::from(describe_schedule(&cron.schedule)),
                    );
                    txn.insert_doc(CRON_JOBS_TABLE, row)?;
                }
            }
            tracing::info!(cron = cron.name, path = cron.path, "cron fired");
            next_runs.push((cron.name.clone(), next));
        }
        Ok(next_runs)
    })
    .await?;
    rt.inner.sched.cron_next.lock().extend(next_runs);
    Ok(())
}
