//! HTTP actions: route a request to its handler and run it as an action. The runtime decides no
//! status code or body shape here: a failure is returned as an [`FnError`] for the router to answer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::call::{join_error, panicked};
use super::{log_call, Caller};
use crate::ctx::LogSink;
use crate::registry::match_route;
use crate::{
    ActionCtx, Auth, FnError, FunctionKind, HttpRequest, HttpResponse, RequestId, Runtime,
};

impl Runtime {
    /// Route and run an HTTP action. `None` when no route matches; `Some(Err(_))` when the
    /// handler failed (logged here under `request_id`).
    pub async fn http_action(
        &self,
        request: HttpRequest,
        caller: Caller,
        request_id: &RequestId,
    ) -> Option<Result<HttpResponse, FnError>> {
        let pushed = self.inner.pushed_routes.read().clone();
        let (method, path) = (request.method(), request.uri().path());
        let route = match_route(&self.inner.routes, method, path)
            .or_else(|| match_route(&pushed, method, path))?;
        let handler = route.handler.clone();
        let label = format!("{} {}", request.method(), request.uri().path());
        let span = tracing::debug_span!(
            "function_call",
            path = %label,
            kind = FunctionKind::HttpAction.as_str(),
            request_id = %request_id,
        );
        let started = Instant::now();
        let logs = LogSink::default();
        let ctx = ActionCtx::new(
            self.clone(),
            Auth::new(caller.identity, self.inner.auth_enabled()),
            logs.clone(),
        );
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, request))) {
            Ok(future) => tokio::spawn(future.instrument(span.clone()))
                .await
                .unwrap_or_else(|e| Err(join_error(&label, e))),
            Err(payload) => Err(panicked(&label, &*payload)),
        };
        span.in_scope(|| {
            log_call(
                &label,
                Some(FunctionKind::HttpAction),
                started,
                result.as_ref().err(),
                Some(request_id),
            )
        });
        self.record_call(
            Arc::from(label.as_str()),
            Some(FunctionKind::HttpAction),
            started,
            result.as_ref().err(),
            &logs,
            Some(request_id.clone()),
        );
        Some(result)
    }
}
