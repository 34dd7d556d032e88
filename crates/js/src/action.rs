//! Actions and HTTP actions of pushed JavaScript. Unlike queries and mutations they wait on the
//! world (`fetch`, timers, `ctx.runMutation`...), so their driver loop services syscalls
//! concurrently on the tokio runtime and sleeps until one completes or a timer is due, on the
//! blocking thread that owns the QuickJS runtime.
//!
//! Every syscall runs as its own tokio task, never inline on this thread: a `ctx.runQuery` of a
//! pushed query must run in another thread's QuickJS runtime, since this one is busy.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rquickjs::promise::PromiseState;
use rquickjs::{Ctx, Function, Object, Promise};
use serde_json::{json, Value as Json};
use tickethub_runtime::{ActionCtx, FnError, FunctionKind, HttpRequest, HttpResponse, Value};
use tokio::runtime::Handle;

use crate::host::{self, exception_text, rejection, settle_one, Target, Worker};
use crate::syscalls::{bad_args, function_name, optional_json};

/// What an action is asked to do, and what it gives back: a call with arguments answers a
/// value ([`Args`]); an HTTP request answers a response (`Box<HttpRequest>`).
pub(crate) trait ActionInput: Send + 'static {
    type Output: Send + 'static;
    /// Start the call in `function` (the export, or for HTTP the `httpRouter()`).
    fn start<'js>(self, js: &Ctx<'js>, function: &Object<'js>) -> rquickjs::Result<Promise<'js>>;
    /// Read the settled promise's value.
    fn finish<'js>(js: &Ctx<'js>, value: rquickjs::Value<'js>) -> Result<Self::Output, FnError>;
}

/// An action's arguments.
pub(crate) struct Args(pub(crate) Value);

impl ActionInput for Args {
    type Output = Value;
    fn start<'js>(self, _js: &Ctx<'js>, function: &Object<'js>) -> rquickjs::Result<Promise<'js>> {
        let invoke: Function = function.get("invokeAction")?;
        let args_json = format!("[{}]", self.0.to_convex_json());
        // The request id only travels back in syscalls, which need none here.
        invoke.call(("", args_json))
    }
    fn finish<'js>(js: &Ctx<'js>, value: rquickjs::Value<'js>) -> Result<Value, FnError> {
        action_value(js, value)
    }
}

impl ActionInput for Box<HttpRequest> {
    type Output = HttpResponse;
    fn start<'js>(self, js: &Ctx<'js>, router: &Object<'js>) -> rquickjs::Result<Promise<'js>> {
        start_http(js, router, &self)
    }
    fn finish<'js>(js: &Ctx<'js>, value: rquickjs::Value<'js>) -> Result<HttpResponse, FnError> {
        http_response(js, value)
    }
}

/// Run an action on this (blocking) thread; its syscalls run on `handle`'s runtime.
pub(crate) fn call<I: ActionInput>(
    target: &Target,
    ctx: &ActionCtx,
    input: I,
    handle: &Handle,
) -> Result<I::Output, FnError> {
    host::with_worker(&target.bundle, |worker| {
        worker.begin_call(ctx.runtime(), *tickethub_knobs::JS_ACTION_TIME_LIMIT);
        let outcome = worker
            .context
            .clone()
            .with(|js| drive(worker, &js, target, ctx, input, handle));
        for (level, text) in worker.take_logs() {
            ctx.log(level, text);
        }
        worker.end_call(outcome)
    })
}

/// One syscall's answer, sent back from its task.
struct Completion {
    id: f64,
    result: Result<Json, FnError>,
}

fn drive<'js, I: ActionInput>(
    worker: &Worker,
    js: &Ctx<'js>,
    target: &Target,
    ctx: &ActionCtx,
    input: I,
    handle: &Handle,
) -> Result<I::Output, FnError> {
    let fail = |e: rquickjs::Error| FnError::msg(exception_text(js, e));
    let deadline = Instant::now() + *tickethub_knobs::JS_ACTION_TIME_LIMIT;
    let begin: Function = js.globals().get("__tickethub_begin").map_err(fail)?;
    // Actions are not deterministic: a running clock, and a seed from the OS.
    let seed = rand::random::<u32>();
    begin
        .call::<_, ()>((ctx.now_ms(), seed as f64, true))
        .map_err(fail)?;
    let namespace = worker.namespace(js, &target.module).map_err(FnError::msg)?;
    let function: Object = namespace.get(target.name.as_str()).map_err(fail)?;
    let promise = input.start(js, &function).map_err(fail)?;
    let hooks: Object = js.globals().get("__tickethub_action").map_err(fail)?;
    let next_timer: Function = hooks.get("nextTimer").map_err(fail)?;
    let fire_timers: Function = hooks.get("fireTimers").map_err(fail)?;
    let settle: Function = js.globals().get("__tickethub_settle").map_err(fail)?;
    let (sender, completions) = mpsc::channel::<Completion>();
    let mut in_flight = 0usize;
    let mut last_error: Option<FnError> = None;
    loop {
        Worker::run_jobs(js);
        match promise.state() {
            PromiseState::Resolved => {
                let value: rquickjs::Value = promise
                    .result()
                    .unwrap_or(Err(rquickjs::Error::Unknown))
                    .map_err(fail)?;
                return I::finish(js, value);
            }
            PromiseState::Rejected => {
                let _ = promise.result::<rquickjs::Value>();
                return Err(rejection(&js.catch(), last_error));
            }
            PromiseState::Pending => {}
        }
        if worker.interrupted() {
            return Err(FnError::msg("interrupted"));
        }
        for request in worker.take_requests() {
            in_flight += 1;
            let sender = sender.clone();
            let ctx = ctx.clone();
            handle.spawn(async move {
                let result = service(&ctx, &request.op, &request.args).await;
                let _ = sender.send(Completion {
                    id: request.id,
                    result,
                });
            });
        }
        let timer_ms: f64 = next_timer.call(()).map_err(fail)?;
        if in_flight == 0 && timer_ms < 0.0 {
            return Err(FnError::msg(
                "The action did not finish: it waits on a promise that nothing settles (no request or timer is pending)",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(host::timeout_error(*tickethub_knobs::JS_ACTION_TIME_LIMIT));
        }
        let wait = if timer_ms >= 0.0 {
            left.min(Duration::from_secs_f64(timer_ms / 1000.0))
        } else {
            left
        };
        if in_flight > 0 {
            let first = match completions.recv_timeout(wait) {
                Ok(completion) => Some(completion),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("this loop holds a sender")
                }
            };
            for completion in first.into_iter().chain(completions.try_iter()) {
                in_flight -= 1;
                settle_one(&settle, completion.id, completion.result, &mut last_error)
                    .map_err(fail)?;
            }
        } else {
            std::thread::sleep(wait);
        }
        if timer_ms >= 0.0 {
            fire_timers.call::<_, ()>(()).map_err(fail)?;
        }
    }
}

/// Hand `request` to the route's action: `function` is `http.js`'s default export, the
/// `httpRouter()`, whose `lookup` finds the action as Convex's own dispatch does.
fn start_http<'js>(
    js: &Ctx<'js>,
    router: &Object<'js>,
    request: &HttpRequest,
) -> rquickjs::Result<Promise<'js>> {
    let bridge: Object = js.globals().get("__tickethub_http")?;
    let make: Function = bridge.get("request")?;
    let headers: Vec<Vec<String>> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some(vec![
                name.as_str().to_string(),
                value.to_str().ok()?.to_string(),
            ])
        })
        .collect();
    let body = (!request.body().is_empty()).then(|| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(request.body())
    });
    let method = request.method().as_str();
    let js_request: rquickjs::Value = make.call((absolute_url(request), method, headers, body))?;
    let lookup: Function = router.get("lookup")?;
    let found: Option<rquickjs::Array> = lookup.call((request.uri().path(), method))?;
    // The runtime matched the route from the same router's `getRoutes()`: a miss is a bug.
    let Some(found) = found else {
        return Err(rquickjs::Exception::throw_internal(
            js,
            &format!(
                "the router has no route for {method} {}",
                request.uri().path()
            ),
        ));
    };
    let endpoint: Object = found.get(0)?;
    let invoke: Function = endpoint.get("invokeHttpAction")?;
    invoke.call((js_request,))
}

/// The request's URL as the action sees it: absolute, on the origin the client used.
fn absolute_url(request: &HttpRequest) -> String {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    format!("http://{host}{path}")
}

/// `invokeAction`'s result: Convex JSON text.
fn action_value<'js>(js: &Ctx<'js>, value: rquickjs::Value<'js>) -> Result<Value, FnError> {
    let text: String = value
        .get()
        .map_err(|e| FnError::msg(exception_text(js, e)))?;
    let json: Json =
        serde_json::from_str(&text).map_err(|e| FnError::Internal(format!("result JSON: {e}")))?;
    Value::from_convex_json(&json).map_err(|e| {
        FnError::msg(format!(
            "The function returned a value that is not a Convex value: {e}"
        ))
    })
}

/// `invokeHttpAction`'s `Response`, read out by `web.js`.
fn http_response<'js>(js: &Ctx<'js>, value: rquickjs::Value<'js>) -> Result<HttpResponse, FnError> {
    let fail = |e: rquickjs::Error| FnError::msg(exception_text(js, e));
    let bridge: Object = js.globals().get("__tickethub_http").map_err(fail)?;
    let read: Function = bridge.get("response").map_err(fail)?;
    let text: String = read.call((value,)).map_err(fail)?;
    #[derive(serde::Deserialize)]
    struct Wire {
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<String>,
    }
    let wire: Wire = serde_json::from_str(&text)
        .map_err(|e| FnError::Internal(format!("the HTTP action's response: {e}")))?;
    let mut response = http::Response::builder().status(wire.status);
    for (name, value) in &wire.headers {
        response = response.header(name, value);
    }
    let body = match wire.body {
        Some(body) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| FnError::Internal(format!("the HTTP action's body: {e}")))?
        }
        None => Vec::new(),
    };
    response
        .body(bytes::Bytes::from(body))
        .map_err(|e| FnError::msg(format!("The HTTP action's response: {e}")))
}

/// Service one syscall of an action.
async fn service(ctx: &ActionCtx, op: &str, args: &str) -> Result<Json, FnError> {
    let args: Json =
        serde_json::from_str(args).map_err(|e| bad_args(op, format_args!("not JSON: {e}")))?;
    let string = |name: &str| -> Result<String, FnError> {
        args.get(name)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad_args(op, format_args!("`{name}` must be a string")))
    };
    let value_of = |name: &str| -> Result<Value, FnError> {
        Value::from_convex_json(args.get(name).unwrap_or(&Json::Null))
            .map_err(|e| FnError::msg(format!("Invalid value: {e}")))
    };
    match op {
        "1.0/actions/query" | "1.0/actions/mutation" | "1.0/actions/action" => {
            let kind = match op {
                "1.0/actions/query" => FunctionKind::Query,
                "1.0/actions/mutation" => FunctionKind::Mutation,
                _ => FunctionKind::Action,
            };
            let path = function_name(op, &args)?.to_string();
            let value = ctx.run_value(kind, &path, value_of("args")?).await?;
            Ok(value.to_convex_json())
        }
        "1.0/actions/schedule" => {
            let path = function_name(op, &args)?.to_string();
            let seconds = args
                .get("ts")
                .and_then(Json::as_f64)
                .ok_or_else(|| bad_args(op, "`ts` must be a number of seconds"))?;
            let id = ctx
                .run_at(seconds * 1000.0, &path, value_of("args")?)
                .await?;
            Ok(json!(id))
        }
        "1.0/createFunctionHandle" => crate::syscalls::function_handle(&ctx.runtime(), op, &args),
        "1.0/actions/cancel_job" => {
            ctx.cancel(&string("id")?).await?;
            Ok(Json::Null)
        }
        "1.0/getUserIdentity" => optional_json("identity", ctx.auth.get_user_identity()?),
        "1.0/storageGenerateUploadUrl" => Ok(json!(ctx.storage.generate_upload_url()?)),
        "1.0/storageGetUrl" => Ok(json!(ctx.storage.get_url(&string("storageId")?)?)),
        "1.0/storageGetMetadata" => {
            optional_json("metadata", ctx.storage.get_metadata(&string("storageId")?)?)
        }
        "1.0/storageDelete" => {
            ctx.storage.delete(&string("storageId")?).await?;
            Ok(Json::Null)
        }
        "1.0/storageStore" => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let bytes = b64
                .decode(string("blob")?)
                .map_err(|e| bad_args(op, format_args!("`blob` is not base64: {e}")))?;
            let content_type = args
                .get("contentType")
                .and_then(Json::as_str)
                .filter(|t| !t.is_empty());
            let expected = match args.get("sha256").and_then(Json::as_str) {
                Some(text) => Some(b64.decode(text).map_err(|_| {
                    FnError::msg(
                        "ctx.storage.store: `sha256` must be the base64 of a SHA-256 digest",
                    )
                })?),
                None => None,
            };
            let id = ctx.storage.store(bytes, content_type).await?;
            if let Some(expected) = expected {
                let stored = ctx.storage.get_metadata(&id)?.map(|m| m.sha256);
                let wanted: String = expected.iter().map(|b| format!("{b:02x}")).collect();
                if stored.as_deref() != Some(wanted.as_str()) {
                    ctx.storage.delete(&id).await?;
                    return Err(FnError::msg(format!(
                        "ctx.storage.store: the file's SHA-256 is {}, not the {wanted} given",
                        stored.unwrap_or_default()
                    )));
                }
            }
            Ok(json!(id))
        }
        "1.0/storageGet" => {
            let id = string("storageId")?;
            let Some(bytes) = ctx.storage.get(&id).await? else {
                return Ok(Json::Null);
            };
            let content_type = ctx.storage.get_metadata(&id)?.and_then(|m| m.content_type);
            use base64::Engine as _;
            Ok(json!({
                "blob": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "contentType": content_type,
            }))
        }
        "tickethub/fetch" => crate::fetch::send(&args).await,
        other => Err(FnError::msg(format!(
            "The syscall {other} is not supported by tickethub's JavaScript runtime yet"
        ))),
    }
}
