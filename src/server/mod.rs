//! HTTPS for the webhooks: hyper on rustls, HTTP/1.1 and h2, `/validate`, `/mutate`, `/healthz`,
//! `/readyz` ([`Routes`]). Connections are accepted and bounded in [`conn`]; judging runs on the
//! async worker when it is quick, else on the blocking pool, a few at a time, with a deadline.

pub mod body;
pub mod conn;
pub mod metrics;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};

use crate::admission::review::Operation;
use crate::admission::{AdmissionResponse, Mutator, ReviewError, StateSource, Validator, Verdict};
use crate::cluster::TenancyNudge;
use crate::rbac::RbacObject;
use conn::{Limits, Phase};
use metrics::Metrics;
use tls::{ReloadingTls, TlsFiles};

pub use body::MAX_BODY;
use body::{BodyBudget, DEFAULT_BODY_BUDGET};

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: TlsFiles,
    pub tls_reload_interval: Duration,
    /// Budget for reading a request's body and answering it, from its complete head (the head
    /// is bounded by `Limits::header_timeout`); slower clients get 408.
    pub request_timeout: Duration,
    /// After SIGTERM: keep accepting and serving this long (with `/readyz` failing) before
    /// draining, so the API server stops sending here before the listener closes.
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    /// Plain-HTTP listener for `/metrics`; none when unset.
    pub metrics_listen: Option<SocketAddr>,
    pub limits: Limits,
}

pub struct App {
    pub validator: Validator,
    pub mutator: Mutator,
    pub state: Arc<dyn StateSource>,
    pub metrics: Arc<Metrics>,
    /// Set when a reconciler runs in this process.
    pub nudge: Option<TenancyNudge>,
    shutting_down: Arc<AtomicBool>,
    /// Reviews being judged at once (on the blocking pool).
    judges: Arc<Semaphore>,
    review_deadline: Duration,
    bodies: BodyBudget,
}

/// A review is answered within this by default: below the webhooks' `timeoutSeconds: 5`, with
/// room for the network.
pub const DEFAULT_REVIEW_DEADLINE: Duration = Duration::from_secs(3);

/// One judge per core: judging is CPU work, more at once only queues in the kernel.
pub fn default_judges() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl App {
    pub fn new(validator: Validator, mutator: Mutator, state: Arc<dyn StateSource>) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            validator,
            mutator,
            state,
            bodies: BodyBudget::new(DEFAULT_BODY_BUDGET, metrics.bodies_refused.clone()),
            metrics,
            nudge: None,
            shutting_down: Arc::new(AtomicBool::new(false)),
            judges: Arc::new(Semaphore::new(default_judges())),
            review_deadline: DEFAULT_REVIEW_DEADLINE,
        }
    }

    /// Request-body bytes held at once across all connections (`--body-budget-mib`).
    pub fn with_body_budget(mut self, bytes: usize) -> Self {
        self.bodies = BodyBudget::new(bytes, self.metrics.bodies_refused.clone());
        self
    }

    /// How long a review may take (queueing for a judge, judging, live lookups) before it is
    /// answered without a judgement, and how many are judged at once.
    pub fn with_judging(mut self, deadline: Duration, judges: usize) -> Self {
        self.review_deadline = deadline;
        self.judges = Arc::new(Semaphore::new(judges.max(1)));
        self
    }
}

/// Runs synchronous judging on the blocking pool once a judge is free. When the caller gives up
/// (the review deadline), the closure still runs to its end holding the judge, so abandoned work
/// cannot pile up beyond the judge count.
async fn judge<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> T + Send + 'static,
) -> Result<T, Overdue> {
    let permit = app
        .judges
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Overdue::Failed)?;
    let app = app.clone();
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&app)
    })
    .await
    {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::error!(error = %e, "judging panicked");
            Err(Overdue::Failed)
        }
    }
}

/// A review answered without a judgement.
#[derive(Debug)]
enum Overdue {
    /// Past `--review-deadline`.
    Deadline,
    /// The judging task failed (a panic): treated like a timeout, fail closed.
    Failed,
}

/// The envelope fields a response and a log line need, for a review that was not judged.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    request: Option<PeekRequest<'a>>,
}

#[derive(Deserialize)]
struct PeekRequest<'a> {
    #[serde(borrow, default)]
    uid: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Option<PeekKind<'a>>,
    #[serde(default)]
    operation: Option<Operation>,
}

#[derive(Deserialize)]
struct PeekKind<'a> {
    #[serde(borrow, default)]
    kind: std::borrow::Cow<'a, str>,
}

fn deadline_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The answer to a review that was not judged in time: `/validate` denies (fail closed: an
/// unjudged RBAC write is refused, as the API server's own timeout with `failurePolicy: Fail`
/// would refuse it, only sooner and with a reason); `/mutate` admits unlabelled, as its
/// `failurePolicy: Ignore` would.
fn unjudged(app: &App, body: &[u8], why: Overdue, validate: bool) -> Response {
    // Decoded only on this rare path; a body that is not even an envelope gets an empty uid.
    let peek = serde_json::from_slice::<Peek<'_>>(body)
        .ok()
        .and_then(|p| p.request);
    let uid = peek.as_ref().map_or("", |r| r.uid.as_ref());
    let kind = peek
        .as_ref()
        .and_then(|r| r.kind.as_ref())
        .and_then(|k| crate::rbac::RbacKind::from_kind(&k.kind))
        .map_or("unknown", |k| k.as_str());
    let operation = peek.as_ref().and_then(|r| r.operation);
    let deadline = deadline_text(app.review_deadline);
    let what = match why {
        Overdue::Deadline => {
            app.metrics.review_timeouts.inc();
            format!("took longer than {deadline} to judge")
        }
        Overdue::Failed => "could not be judged (internal error)".to_string(),
    };
    let response = if validate {
        app.metrics.observe_unjudged(
            kind,
            operation.map_or("unknown", |o| o.as_str()),
            app.validator.mode(),
        );
        tracing::warn!(
            uid,
            kind,
            operation = operation.map_or("unknown", |o| o.as_str()),
            deadline = deadline.as_str(),
            "review not judged in time; denied (fail closed)"
        );
        AdmissionResponse::deny(
            uid,
            500,
            format!("secretscope: this review {what} and was denied (fail closed); the webhook is overloaded or the RBAC objects this one is connected to are too many to judge in time. Retry; if it persists, see secretscope_review_timeouts_total and the webhook's logs"),
        )
    } else {
        tracing::warn!(
            uid,
            deadline = deadline.as_str(),
            "namespace review not judged in time; admitted unlabelled"
        );
        let mut r = AdmissionResponse::allow(uid);
        r.warnings.push(format!(
            "secretscope: this namespace review {what} and was admitted without the tenancy label"
        ));
        r
    };
    review_response(&response)
}

/// The webhook port's requests: each endpoint with its method, every request read and answered
/// within `--request-timeout`, every body within [`MAX_BODY`] and the body budget ([`body`]).
///
/// A `match` over four paths rather than an axum `Router`: every review the API server sends
/// crosses this, and the Router with its timeout and body-limit layers and the `Bytes` extractor
/// cost ~6k of the ~110k instructions of a 1.5 KB review (callgrind, README "Performance").
pub struct Routes {
    app: Arc<App>,
    request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Validate,
    Mutate,
    Healthz,
    Readyz,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/validate" => Some(Self::Validate),
            "/mutate" => Some(Self::Mutate),
            "/healthz" => Some(Self::Healthz),
            "/readyz" => Some(Self::Readyz),
            _ => None,
        }
    }

    /// The methods it answers, as an `Allow` header lists them.
    fn allow(self) -> &'static str {
        match self {
            Self::Validate | Self::Mutate => "POST",
            Self::Healthz | Self::Readyz => "GET, HEAD",
        }
    }

    fn allows(self, method: &Method) -> bool {
        self.allow().split(", ").any(|m| m == method.as_str())
    }
}

impl Routes {
    pub fn new(app: Arc<App>, request_timeout: Duration) -> Self {
        Self {
            app,
            request_timeout,
        }
    }

    async fn serve(&self, endpoint: Endpoint, body: Incoming) -> Response {
        match endpoint {
            Endpoint::Healthz => "ok".into_response(),
            Endpoint::Readyz => readyz(&self.app),
            // The body's share of the budget is held until its answer is ready.
            Endpoint::Validate => match self.app.bodies.read(body).await {
                Ok(held) => validate(&self.app, held.bytes.clone()).await,
                Err(refused) => refused.into_response(),
            },
            Endpoint::Mutate => match self.app.bodies.read(body).await {
                Ok(held) => mutate(&self.app, held.bytes.clone()).await,
                Err(refused) => refused.into_response(),
            },
        }
    }
}

impl conn::Handler for Routes {
    // Not an `async fn`: that would keep the request's head (~260 bytes) in every review's
    // future for as long as it runs (README "Performance"); only the body is carried on.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response> + Send + 'static {
        let endpoint = Endpoint::of(req.uri().path());
        let allowed = endpoint.is_some_and(|e| e.allows(req.method()));
        let body = req.into_body();
        async move {
            let Some(endpoint) = endpoint else {
                return (StatusCode::NOT_FOUND, "not found\n").into_response();
            };
            if !allowed {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, endpoint.allow())],
                    "method not allowed\n",
                )
                    .into_response();
            }
            tokio::time::timeout(self.request_timeout, self.serve(endpoint, body))
                .await
                .unwrap_or_else(|_| StatusCode::REQUEST_TIMEOUT.into_response())
        }
    }
}

async fn validate(app: &Arc<App>, body: Bytes) -> Response {
    let started = Instant::now();
    let judged = tokio::time::timeout_at(
        (started + app.review_deadline).into(),
        review(app, body.clone()),
    )
    .await
    .unwrap_or(Err(Overdue::Deadline.into()));
    match judged {
        Err(Unjudged::Overdue(why)) => unjudged(app, &body, why, true),
        Err(Unjudged::Review(e)) => bad_review(app, &e, body.len()),
        Ok(verdict) => {
            app.metrics
                .observe(&verdict, app.validator.mode(), started.elapsed());
            verdict.log(app.validator.mode(), &body);
            review_response(&verdict.response)
        }
    }
}

async fn mutate(app: &Arc<App>, body: Bytes) -> Response {
    let started = Instant::now();
    let work = body.clone();
    let judged = tokio::time::timeout_at(
        (started + app.review_deadline).into(),
        judge(app, move |app| app.mutator.review(&work)),
    )
    .await
    .unwrap_or(Err(Overdue::Deadline));
    let reviewed = match judged {
        Ok(r) => r,
        Err(why) => return unjudged(app, &body, why, false),
    };
    match reviewed {
        Ok(m) => {
            app.metrics.observe_mutation(m.tenant.is_some());
            // Dry-run requests have no side effects (sideEffects: NoneOnDryRun).
            if let (true, false, Some(nudge)) = (m.tenancy, m.dry_run, &app.nudge) {
                nudge.namespace_created(&m.namespace);
            }
            if let Some(tenant) = &m.tenant {
                tracing::info!(
                    uid = m.response.uid.as_str(),
                    namespace = m.namespace.as_str(),
                    tenant = tenant.as_str(),
                    dry_run = m.dry_run,
                    "labelled a new tenancy namespace"
                );
            }
            review_response(&m.response)
        }
        Err(e) => bad_review(app, &e, body.len()),
    }
}

fn review_response(response: &AdmissionResponse) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        response.to_review_json(),
    )
        .into_response()
}

/// 400 with the reason, for a body that is not a usable AdmissionReview.
fn bad_review(app: &App, e: &ReviewError, bytes: usize) -> Response {
    app.metrics.observe_error(app.validator.mode());
    tracing::warn!(error = %e, bytes, "rejected a request that is not a usable AdmissionReview");
    (StatusCode::BAD_REQUEST, format!("secretscope: {e}\n")).into_response()
}

/// Bodies up to this size are first judged right on the async worker, within the quick work
/// budget: handing every review to the blocking pool cost ~2.8 context switches per review and
/// most of the throughput (README "Performance"). Anything larger, or needing more work, goes to
/// the pool, where `--review-deadline` can answer before judging ends.
const QUICK_MAX_BODY: usize = 64 * 1024;

/// The review, confirmed live where the cache may lag behind a write made a moment ago: a
/// binding whose ClusterRole the cache lacks, and a Secrets ClusterRole the cache shows unbound.
/// Anything that cannot be confirmed is denied (fail closed).
async fn review(app: &Arc<App>, body: Bytes) -> Result<Verdict, Unjudged> {
    // In a block, so the verdict's storage ends before the await and stays out of the future.
    let slowly = {
        let quick = if body.len() <= QUICK_MAX_BODY {
            app.validator.review_quick(&body)?
        } else {
            None
        };
        match quick {
            // The common case: judged on the worker, nothing to confirm, no await.
            Some(verdict) if !verdict.needs_live_confirmation() => return Ok(verdict),
            // Boxed: the pool's and the live lookups' futures are large, and inline they would
            // be part of every review's future, which hyper boxes and moves per request and 64
            // concurrent streams keep out of the cache (README "Performance").
            quick => Box::pin(review_slowly(app, body, quick)),
        }
    };
    slowly.await
}

/// `review` for what the worker could not settle: judged on the pool (`quick` is `None`), then
/// confirmed live where it must be.
async fn review_slowly(
    app: &Arc<App>,
    body: Bytes,
    quick: Option<Verdict>,
) -> Result<Verdict, Unjudged> {
    let verdict = match quick {
        Some(v) => v,
        None => {
            let b = body.clone();
            judge(app, move |app| app.validator.review(&b)).await??
        }
    };
    if !verdict.needs_live_confirmation() {
        return Ok(verdict);
    }
    confirm_live(app, body, verdict).await
}

/// Confirms against the API server what the cache may not show yet (see `review`).
async fn confirm_live(
    app: &Arc<App>,
    body: Bytes,
    mut verdict: Verdict,
) -> Result<Verdict, Unjudged> {
    if let Some(role) = verdict.missing_role.clone() {
        if let Some(lookup) = app.state.fetch_cluster_role(&role) {
            match lookup.await {
                Ok(Some(cr)) => {
                    let b = body.clone();
                    verdict = judge(app, move |app| {
                        app.validator
                            .review_with(&b, vec![RbacObject::ClusterRole(cr)])
                    })
                    .await??
                }
                Ok(None) => app
                    .validator
                    .deny_missing_role(&mut verdict, &role, "does not exist"),
                Err(why) => {
                    tracing::warn!(
                        role = role.as_str(),
                        error = why.as_str(),
                        "live ClusterRole lookup failed"
                    );
                    app.validator.deny_missing_role(&mut verdict, &role, &why);
                }
            }
        }
    }
    if let Some(usage) = verdict.needs_tenancy_label.clone() {
        let labels = match app.state.fetch_namespace_labels(&usage.namespace) {
            Some(lookup) => lookup.await,
            None => Err("no live cluster to ask".to_string()),
        };
        app.validator.judge_managed_name_use(&mut verdict, labels);
    }
    if verdict.rests_on_no_bindings {
        if let Some(lookup) = app.state.fetch_cluster_role_bindings() {
            match lookup.await {
                Ok(bindings) => {
                    let live = bindings
                        .into_iter()
                        .map(RbacObject::ClusterRoleBinding)
                        .collect();
                    let b = body.clone();
                    verdict = judge(app, move |app| app.validator.review_with(&b, live)).await??;
                }
                Err(why) => {
                    tracing::warn!(error = why.as_str(), "live ClusterRoleBinding list failed");
                    app.validator.deny_unconfirmed(
                        &mut verdict,
                        format!("secretscope: this ClusterRole carries Secrets access, and that no ClusterRoleBinding grants it cluster-wide could not be confirmed: {why}"),
                    );
                }
            }
        }
    }
    Ok(verdict)
}

/// Why a review has no verdict.
enum Unjudged {
    Overdue(Overdue),
    Review(ReviewError),
}

impl From<Overdue> for Unjudged {
    fn from(o: Overdue) -> Self {
        Self::Overdue(o)
    }
}

impl From<ReviewError> for Unjudged {
    fn from(e: ReviewError) -> Self {
        Self::Review(e)
    }
}

fn readyz(app: &App) -> Response {
    if app.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if app.state.synced() {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "RBAC state not synced\n").into_response()
    }
}

/// `/metrics` in Prometheus text format; state gauges are read at scrape time.
fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                app.metrics.state_synced.set(i64::from(app.state.synced()));
                app.metrics.body_bytes_held.set(app.bodies.held() as i64);
                app.metrics
                    .state_objects
                    .set(app.state.snapshot().len() as i64);
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    app.metrics.encode(),
                )
            }),
        )
        .with_state(app)
}

/// Serves until SIGTERM or SIGINT; then `/readyz` fails at once while serving goes on for
/// `shutdown_delay` (the API server learns of the endpoint's removal with a lag, and keeps
/// sending here until then), then stops accepting and drains connections for `shutdown_grace`.
pub async fn serve(opts: ServeOptions, app: Arc<App>) -> anyhow::Result<()> {
    let tls = ReloadingTls::new(opts.tls.clone(), app.metrics.clone())?;
    let rustls = tls.rustls_config();
    let reloader = tokio::spawn(tls.watch(opts.tls_reload_interval));

    if let Some(addr) = opts.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("metrics listener on {addr}: {e}"))?;
        tracing::info!(metrics_addr = %listener.local_addr()?, "metrics listening (http, /metrics)");
        let router = metrics_router(app.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }

    // Before anyone can know the address: a SIGTERM right after start must drain, not kill.
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", opts.listen))?;
    let addr = listener.local_addr()?;
    let limits = opts.limits;
    tracing::info!(
        %addr,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
        max_connections = limits.max_connections,
        review_deadline_ms = app.review_deadline.as_millis() as u64,
        "secretscope webhook listening (https, h2 and http/1.1)"
    );

    let (phase_tx, phase) = watch::channel(Phase::Serving);
    tokio::spawn(shutdown_on_signal(
        sigterm,
        phase_tx,
        app.clone(),
        opts.shutdown_delay,
    ));
    let server = Arc::new(conn::Server::new(
        limits,
        rustls,
        Arc::new(Routes::new(app.clone(), opts.request_timeout)),
        app.metrics.clone(),
        app.shutting_down.clone(),
    ));
    server.run(listener, phase, opts.shutdown_grace).await;
    reloader.abort();
    Ok(())
}

async fn shutdown_on_signal(
    mut sigterm: tokio::signal::unix::Signal,
    phase: watch::Sender<Phase>,
    app: Arc<App>,
    delay: Duration,
) {
    let terminate = sigterm.recv();
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!(
        delay_seconds = delay.as_secs_f64(),
        "shutting down: /readyz fails now; still serving until the delay ends, then draining"
    );
    app.shutting_down.store(true, Ordering::Relaxed);
    let _ = phase.send(Phase::Draining);
    tokio::time::sleep(delay).await;
    let _ = phase.send(Phase::Closing);
}
