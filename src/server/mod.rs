//! HTTPS for the webhooks: axum on rustls, HTTP/1.1 and h2, `/validate`, `/healthz`, `/readyz`.

pub mod metrics;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsAcceptor;
use axum_server::Handle;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{AdmissionResponse, Mutator, ReviewError, StateSource, Validator, Verdict};
use crate::cluster::TenancyNudge;
use crate::rbac::RbacObject;
use metrics::Metrics;
use tls::{ReloadingTls, TlsFiles};

/// The API server never sends more than this; Kubernetes itself caps request bodies at 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: TlsFiles,
    pub tls_reload_interval: Duration,
    /// Whole-request budget (headers and body); slower clients get 408.
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Plain-HTTP listener for `/metrics`; none when unset.
    pub metrics_listen: Option<SocketAddr>,
}

pub struct App {
    pub validator: Validator,
    pub mutator: Mutator,
    pub state: Arc<dyn StateSource>,
    pub metrics: Arc<Metrics>,
    /// Set when a reconciler runs in this process.
    pub nudge: Option<TenancyNudge>,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(validator: Validator, mutator: Mutator, state: Arc<dyn StateSource>) -> Self {
        Self {
            validator,
            mutator,
            state,
            metrics: Arc::new(Metrics::new()),
            nudge: None,
            shutting_down: AtomicBool::new(false),
        }
    }
}

pub fn router(app: Arc<App>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(app)
}

async fn validate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    match review(&app, &body).await {
        Ok(verdict) => {
            app.metrics
                .observe(&verdict, app.validator.mode(), started.elapsed());
            verdict.log(app.validator.mode());
            review_response(&verdict.response)
        }
        Err(e) => bad_review(&app, &e, body.len()),
    }
}

async fn mutate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match app.mutator.review(&body) {
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
        Err(e) => bad_review(&app, &e, body.len()),
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

/// The review, confirmed live where the cache may lag behind a write made a moment ago: a
/// binding whose ClusterRole the cache lacks, and a Secrets ClusterRole the cache shows unbound.
/// Anything that cannot be confirmed is denied (fail closed).
async fn review(app: &App, body: &[u8]) -> Result<Verdict, ReviewError> {
    let mut verdict = app.validator.review(body)?;
    if let Some(role) = verdict.missing_role.clone() {
        if let Some(lookup) = app.state.fetch_cluster_role(&role) {
            match lookup.await {
                Ok(Some(cr)) => {
                    verdict = app
                        .validator
                        .review_with(body, vec![RbacObject::ClusterRole(cr)])?
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
                    verdict = app.validator.review_with(body, live)?;
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

async fn readyz(State(app): State<Arc<App>>) -> Response {
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

/// Serves until SIGTERM or SIGINT, then drains connections for `shutdown_grace`.
pub async fn serve(opts: ServeOptions, app: Arc<App>) -> anyhow::Result<()> {
    let tls = ReloadingTls::new(opts.tls.clone(), app.metrics.clone())?;
    let rustls = tls.rustls_config();
    let reloader = tokio::spawn(tls.watch(opts.tls_reload_interval));

    let handle: Handle<SocketAddr> = Handle::new();
    tokio::spawn(shutdown_on_signal(
        handle.clone(),
        app.clone(),
        opts.shutdown_grace,
    ));
    let announce = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = announce.listening().await {
            tracing::info!(%addr, "secretscope webhook listening (https, h2 and http/1.1)");
        }
    });

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

    let acceptor = RustlsAcceptor::new(rustls).handshake_timeout(Duration::from_secs(10));
    let result = axum_server::bind(opts.listen)
        .acceptor(acceptor)
        .first_request_timeout(opts.request_timeout)
        .handle(handle)
        .serve(router(app, opts.request_timeout).into_make_service())
        .await;
    reloader.abort();
    result.map_err(|e| anyhow::anyhow!("serving on {}: {e}", opts.listen))
}

async fn shutdown_on_signal(handle: Handle<SocketAddr>, app: Arc<App>, grace: Duration) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: draining connections"
    );
    app.shutting_down.store(true, Ordering::Relaxed);
    handle.graceful_shutdown(Some(grace));
}
