//! A Ticket Hub runtime on a real store in a temporary directory, driven the way the router
//! drives it: `Runtime::call` with a caller identity, `Runtime::http_action` for webhooks, and
//! the test clock's `advance_time` for scheduled jobs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use tickethub_runtime::{
    App, CallRequest, Caller, Clock, FnError, Identity, ReadAt, Runtime, RuntimeConfig, Schema,
    Store, StoreOptions, UserIdentity, Value,
};

pub const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

pub struct Hub {
    pub rt: Runtime,
    _dir: tempfile::TempDir,
}

/// Whether the server has an auth provider (caller checks apply only then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    Enabled,
    Disabled,
}

impl Hub {
    pub fn new(auth: AuthMode) -> Hub {
        Hub::with_env(auth, [("CLERK_WEBHOOK_SECRET", WEBHOOK_SECRET)])
    }

    pub fn with_env<const N: usize>(auth: AuthMode, env: [(&str, &str); N]) -> Hub {
        Hub::with_app(ticket_hub_functions::app(), auth, env)
    }

    /// Ticket Hub plus whatever a test registered on `app` (e.g. a bulk seeding mutation).
    pub fn with_app<const N: usize>(app: App, auth: AuthMode, env: [(&str, &str); N]) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut schema =
            Schema::from_toml(ticket_hub_functions::SCHEMA).expect("schema.toml parses");
        for table in Runtime::system_tables() {
            schema.add_system_table(table);
        }
        let store = Store::open(
            dir.path(),
            schema,
            StoreOptions {
                durable: false,
                ..StoreOptions::default()
            },
        )
        .expect("store opens");
        let config = RuntimeConfig {
            clock: Clock::Test,
            auth_enabled: auth == AuthMode::Enabled,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..RuntimeConfig::default()
        };
        Hub {
            rt: Runtime::new(app, store, config),
            _dir: dir,
        }
    }

    /// Call `path` with `args` (JSON; numbers become float64, as a JS client sends them).
    pub async fn call(
        &self,
        who: &Identity,
        path: &str,
        args: serde_json::Value,
    ) -> Result<Value, FnError> {
        let request = CallRequest {
            path: path.to_string(),
            args: js(&args),
            expected_kind: None,
            caller: Caller {
                identity: who.clone(),
            },
            read_at: ReadAt::Latest,
            request_id: tickethub_runtime::RequestId::generate(),
        };
        self.rt.call(request).await.outcome
    }

    /// Like [`Hub::call`], as the admin; panics on failure.
    pub async fn admin(&self, path: &str, args: serde_json::Value) -> Value {
        match self.call(&Identity::Admin, path, args).await {
            Ok(value) => value,
            Err(error) => panic!("{path} failed: {error}"),
        }
    }

    /// The error text of a call that must fail.
    pub async fn error(&self, who: &Identity, path: &str, args: serde_json::Value) -> String {
        match self.call(who, path, args).await {
            Ok(value) => panic!("{path} unexpectedly succeeded with {value}"),
            Err(error) => error.to_string(),
        }
    }

    /// POST a Clerk event signed with `secret` (or the test secret) to the webhook route.
    pub async fn deliver(&self, svix_id: &str, body: &serde_json::Value) -> (u16, String) {
        self.deliver_signed(svix_id, body, WEBHOOK_SECRET).await
    }

    pub async fn deliver_signed(
        &self,
        svix_id: &str,
        body: &serde_json::Value,
        secret: &str,
    ) -> (u16, String) {
        let body = serde_json::to_vec(body).unwrap();
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = tickethub_runtime::WebhookVerifier::new(secret)
            .unwrap()
            .sign(svix_id, now_secs, &body)
            .unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri("/clerk-users-webhook")
            .header("svix-id", svix_id)
            .header("svix-timestamp", now_secs.to_string())
            .header("svix-signature", signature)
            .header("content-type", "application/json")
            .body(Bytes::from(body))
            .unwrap();
        self.post(request).await
    }

    pub async fn post(&self, request: http::Request<Bytes>) -> (u16, String) {
        let response = self
            .rt
            .http_action(
                request,
                Caller {
                    identity: Identity::Anonymous,
                },
                &tickethub_runtime::RequestId::generate(),
            )
            .await
            .expect("the webhook route exists");
        // A failed action is answered 500 by the router.
        match response {
            Ok(response) => (
                response.status().as_u16(),
                String::from_utf8_lossy(response.body()).into_owned(),
            ),
            Err(error) => (500, error.to_string()),
        }
    }
}

pub fn user(subject: &str) -> Identity {
    Identity::User(UserIdentity {
        token_identifier: format!("https://clerk.example|{subject}"),
        subject: subject.to_string(),
        issuer: "https://clerk.example".to_string(),
        attributes: Default::default(),
    })
}

/// JSON as a JS client would send it: every number is a float64.
pub fn js(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Float64(n.as_f64().unwrap()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(js).collect()),
        serde_json::Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), js(v))).collect())
        }
    }
}

pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string `{field}` in {value}"))
}

pub fn num_field(value: &Value, field: &str) -> f64 {
    value
        .get(field)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number `{field}` in {value}"))
}
