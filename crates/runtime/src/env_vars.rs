//! Deployment environment variables: what `npx convex env set|get|list|remove` manages.
//!
//! They are kept durably in the system table `_environment_variables` (`name`, `value`; index
//! `by_name`), Convex's own layout, and mirrored in memory so `ctx.env(name)` in actions and HTTP
//! actions never touches the store. A function sees a deployment variable first and the server
//! process's environment second: the variable set with `npx convex env set` wins, so an operator
//! can rotate a webhook secret without a restart (apps read secrets per request).
//!
//! The mirror is replaced after each update commits. Updates carry a sequence number taken on
//! the writer thread (which runs them one at a time, in commit order), so two updates finishing
//! in the other order cannot leave the older map in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tickethub_store::{DocReader, IndexDef, IndexQuery, Order, StoreError, TableDef};
use tickethub_value::{validator::v, Object, Value};
use tokio::sync::watch;

use crate::{FnError, Runtime};

pub const ENV_VARS_TABLE: &str = "_environment_variables";
const BY_NAME: &str = "by_name";
/// Convex's limits (`common/src/types/environment_variables.rs`).
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
pub const MAX_VARIABLES: usize = 100;

/// One change of `POST /api/update_environment_variables`: set (`Some`) or remove (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVarChange {
    pub name: String,
    pub value: Option<String>,
}

/// Why an update was refused; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum EnvVarError {
    #[error("Environment variable name {0:?} is invalid: names start with a letter or `_` and contain only letters, digits and `_`.")]
    NameInvalid(String),
    #[error("Environment variable name {name:?}… is longer than {MAX_NAME_LEN} characters.", name = .0.chars().take(40).collect::<String>())]
    NameTooLong(String),
    #[error("The value of environment variable {0:?} is larger than {MAX_VALUE_BYTES} bytes.")]
    ValueTooLarge(String),
    #[error("A deployment may have at most {MAX_VARIABLES} environment variables; this update would leave {0}.")]
    LimitMet(usize),
    #[error(transparent)]
    Internal(#[from] FnError),
}

impl EnvVarError {
    /// Convex's error codes for the same refusals.
    pub fn code(&self) -> &'static str {
        match self {
            EnvVarError::NameInvalid(_) => "EnvironmentVariableNameInvalid",
            EnvVarError::NameTooLong(_) => "EnvironmentVariableNameTooLong",
            EnvVarError::ValueTooLarge(_) => "EnvironmentVariableValueTooLarge",
            EnvVarError::LimitMet(_) => "EnvVarLimitMet",
            EnvVarError::Internal(e) => e.code(),
        }
    }
}

pub(crate) fn system_table() -> TableDef {
    TableDef {
        name: ENV_VARS_TABLE.to_string(),
        fields: [
            ("name".to_string(), v::string()),
            ("value".to_string(), v::string()),
        ]
        .into_iter()
        .collect(),
        indexes: vec![IndexDef {
            name: BY_NAME.to_string(),
            fields: vec!["name".to_string()],
        }],
        validate: true,
    }
}

/// The in-memory mirror of the table, and a counter bumped after every applied update.
pub(crate) struct EnvVars {
    vars: RwLock<Mirror>,
    /// Taken on the writer thread, so it follows commit order.
    next_seq: AtomicU64,
    changed: watch::Sender<u64>,
}

struct Mirror {
    seq: u64,
    vars: BTreeMap<String, String>,
}

impl EnvVars {
    pub(crate) fn load(txn: &dyn DocReader) -> Result<EnvVars, StoreError> {
        Ok(EnvVars {
            vars: RwLock::new(Mirror {
                seq: 0,
                vars: read_all(txn)?,
            }),
            next_seq: AtomicU64::new(1),
            changed: watch::channel(0).0,
        })
    }
}

/// Replace the mirror with the table as it is now (cluster mode: on taking the lead, since the
/// previous leader's updates only reached its own mirror).
pub(crate) async fn reload(rt: &Runtime) -> Result<(), FnError> {
    let inner = rt.inner.clone();
    let (seq, vars) = crate::scheduler::system_mutation(rt, move |txn| {
        let vars = read_all(txn)?;
        Ok((inner.env_vars.next_seq.fetch_add(1, Ordering::SeqCst), vars))
    })
    .await?;
    let env = &rt.inner.env_vars;
    let changed = {
        let mut mirror = env.vars.write();
        let changed = mirror.vars != vars;
        if mirror.seq < seq {
            *mirror = Mirror { seq, vars };
        }
        changed
    };
    if changed {
        env.changed.send_modify(|generation| *generation += 1);
    }
    Ok(())
}

fn all_rows() -> IndexQuery {
    IndexQuery {
        index: BY_NAME.to_string(),
        ..IndexQuery::full_scan(ENV_VARS_TABLE, Order::Asc)
    }
}

fn read_all(txn: &dyn DocReader) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(txn
        .collect(&all_rows(), None)?
        .into_iter()
        .filter_map(|doc| {
            let name = doc.fields.get("name")?.as_str()?.to_string();
            let value = doc.fields.get("value")?.as_str()?.to_string();
            Some((name, value))
        })
        .collect())
}

fn validate(change: &EnvVarChange) -> Result<(), EnvVarError> {
    let name = &change.name;
    if name.chars().count() > MAX_NAME_LEN {
        return Err(EnvVarError::NameTooLong(name.clone()));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(EnvVarError::NameInvalid(name.clone()));
    }
    if change
        .value
        .as_ref()
        .is_some_and(|v| v.len() > MAX_VALUE_BYTES)
    {
        return Err(EnvVarError::ValueTooLarge(name.clone()));
    }
    Ok(())
}

impl Runtime {
    /// An environment variable as functions see it: the deployment's (`npx convex env set`)
    /// first, then the server process's.
    pub fn env_var(&self, name: &str) -> Option<String> {
        if let Some(value) = self.inner.env_vars.vars.read().vars.get(name) {
            return Some(value.clone());
        }
        self.inner.config.env.get(name).cloned()
    }

    /// The deployment's own variables (not the process environment), by name.
    pub fn deployment_env_vars(&self) -> BTreeMap<String, String> {
        self.inner.env_vars.vars.read().vars.clone()
    }

    /// Bumped after every applied update: the server rebuilds what it derives from variables
    /// (its JWT verifier) when this changes.
    pub fn watch_env_vars(&self) -> watch::Receiver<u64> {
        self.inner.env_vars.changed.subscribe()
    }

    /// Apply `changes` in one transaction, in order (a later change of the same name wins).
    /// All are validated first; on any refusal nothing is written.
    pub async fn update_environment_variables(
        &self,
        changes: Vec<EnvVarChange>,
    ) -> Result<(), EnvVarError> {
        for change in &changes {
            validate(change)?;
        }
        let inner = self.inner.clone();
        let outcome = crate::scheduler::system_mutation(self, move |txn| {
            let existing = txn.collect(&all_rows(), None)?;
            let mut after = read_all(txn)?;
            for change in &changes {
                match &change.value {
                    Some(value) => after.insert(change.name.clone(), value.clone()),
                    None => after.remove(&change.name),
                };
            }
            if after.len() > MAX_VARIABLES {
                return Ok(Err(EnvVarError::LimitMet(after.len())));
            }
            // Rewrite only what differs: unchanged rows keep their ids and creation times.
            let mut kept = BTreeSet::new();
            for doc in existing {
                let name = doc.fields.get("name").and_then(Value::as_str);
                let value = doc.fields.get("value").and_then(Value::as_str);
                match (name, value) {
                    (Some(name), Some(value))
                        if after.get(name).map(String::as_str) == Some(value)
                            && !kept.contains(name) =>
                    {
                        kept.insert(name.to_string());
                    }
                    _ => txn.delete_doc(doc.id)?,
                }
            }
            for (name, value) in &after {
                if !kept.contains(name) {
                    let mut row = Object::new();
                    row.insert("name".into(), Value::from(name.clone()));
                    row.insert("value".into(), Value::from(value.clone()));
                    txn.insert_doc(ENV_VARS_TABLE, row)?;
                }
            }
            let seq = inner.env_vars.next_seq.fetch_add(1, Ordering::SeqCst);
            Ok(Ok((seq, after)))
        })
        .await?;
        let (seq, vars) = outcome?;
        let env = &self.inner.env_vars;
        {
            let mut mirror = env.vars.write();
            if mirror.seq < seq {
                *mirror = Mirror { seq, vars };
            }
        }
        env.changed.send_modify(|generation| *generation += 1);
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct GetArgs {
    name: String,
}

impl crate::Args for GetArgs {
    fn validator() -> Option<tickethub_value::Validator> {
        Some(v::object([("name", v::string())]))
    }
}

/// `_system/cli/queryEnvironmentVariables:default` (every variable as its row, by name) and
/// `:get` (`{name, value}` or null): what `npx convex env list|get` subscribe to. They read the
/// table, so a subscription sees updates.
pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query(
        "_system/cli/queryEnvironmentVariables:default",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Vec<Value>, FnError> {
            let rows = ctx
                .db
                .query(ENV_VARS_TABLE)
                .with_index(BY_NAME, |q| q)
                .order(Order::Asc)
                .take(MAX_VARIABLES * 2)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
    app.internal_query(
        "_system/cli/queryEnvironmentVariables:get",
        |ctx: &crate::QueryCtx, args: GetArgs| -> Result<Value, FnError> {
            let row = ctx
                .db
                .query(ENV_VARS_TABLE)
                .with_index(BY_NAME, |q| q.eq("name", args.name.as_str()))
                .first()?;
            Ok(match row {
                None => Value::Null,
                Some(doc) => {
                    let mut out = Object::new();
                    out.insert("name".into(), Value::from(args.name));
                    out.insert(
                        "value".into(),
                        doc.get("value").cloned().unwrap_or(Value::Null),
                    );
                    Value::Object(out)
                }
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: Option<&str>, expected: Option<&str>) {
        let change = EnvVarChange {
            name: name.to_string(),
            value: value.map(str::to_string),
        };
        assert_eq!(
            validate(&change).err().map(|e| e.code()),
            expected,
            "{name}"
        );
    }

    #[test]
    fn names_and_values() {
        check("CLERK_WEBHOOK_SECRET", Some("whsec_x"), None);
        check("_private1", None, None);
        check("1ABC", Some("x"), Some("EnvironmentVariableNameInvalid"));
        check("A-B", Some("x"), Some("EnvironmentVariableNameInvalid"));
        check("", Some("x"), Some("EnvironmentVariableNameInvalid"));
        check(
            &"A".repeat(257),
            Some("x"),
            Some("EnvironmentVariableNameTooLong"),
        );
        check(
            "BIG",
            Some(&"x".repeat(8193)),
            Some("EnvironmentVariableValueTooLarge"),
        );
        check("BIG", Some(&"x".repeat(8192)), None);
    }
}
