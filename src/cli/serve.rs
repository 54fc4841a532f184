//! `secretscope serve`: the webhook over HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::admission::{Mutator, StateSource, StaticState, Validator};
use crate::cluster::{
    LeaseConfig, LiveState, ReconcilerHandle, RegistrationConfig, TenancyNudge, TenancyReconciler,
    WebhookTarget,
};
use crate::manifest;
use crate::policy::Policy;
use crate::rbac::ClusterState;
use crate::server::conn::Limits;
use crate::server::tls::TlsFiles;
use crate::server::{self, App, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "0.0.0.0:8443", env = "SECRETSCOPE_LISTEN")]
    pub listen: SocketAddr,
    /// PEM serving certificate (chain); reloaded when it changes.
    #[arg(long, default_value = "certs/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long, default_value = "certs/tls.key")]
    pub tls_key: PathBuf,
    /// Require client certificates signed by this CA (the API server's
    /// AdmissionConfiguration kubeconfig).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// How often to look for new certificate files.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Policy file (secretscope.yaml); safe defaults apply without one.
    #[arg(long, env = "SECRETSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run without a cluster: cluster state comes from --state manifests. Without it, the RBAC
    /// state is watched from the cluster in KUBECONFIG or the in-cluster config.
    #[arg(long)]
    pub standalone: bool,
    /// Manifests (files or directories) that make up the cluster state in standalone mode.
    /// The built-in ClusterRoles (cluster-admin, admin, edit, view) are always present.
    #[arg(long, requires = "standalone")]
    pub state: Vec<PathBuf>,
    /// Plain-HTTP address for Prometheus `/metrics` (e.g. 0.0.0.0:9090); off when unset.
    #[arg(long, env = "SECRETSCOPE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// After SIGTERM, keep accepting and serving this long (with /readyz failing) before
    /// draining: the API server keeps sending here until the endpoint's removal reaches it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Time to drain connections after the shutdown delay; then the process exits.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Budget for reading and answering one request (head, body, handler); slower clients get 408.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// HTTP/1.1: from a request's first byte to its complete head; the connection is closed
    /// past it. Also bounds the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection with no request in flight this long is closed (HTTP/1.1) or sent GOAWAY
    /// (HTTP/2). Keep it above the API server's 90s idle timeout for pooled connections, so the
    /// client always closes an idle HTTP/1.1 connection first.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open webhook connections at most; more are closed right after accept.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A review not judged within this (queue, judging, live lookups) is denied (fail closed).
    /// Below the webhooks' timeoutSeconds (5s), with room for the network.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub review_deadline: Duration,
    /// Reviews judged at once; defaults to the number of CPUs.
    #[arg(long)]
    pub judges: Option<usize>,
    /// MiB of request bodies held at once across all connections (at least 3, one body of the
    /// largest size); a body that finds no room is refused at once with 503 and Retry-After.
    #[arg(long, default_value_t = crate::server::body::DEFAULT_BODY_BUDGET_MIB, value_parser = clap::value_parser!(u32).range(3..=4096))]
    pub body_budget_mib: u32,
    #[command(flatten)]
    pub reconciler: ReconcilerArgs,
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

/// Self-registration of the webhook configurations (README "Install": no lockout).
#[derive(Debug, clap::Args)]
pub struct RegistrationArgs {
    /// Once ready (RBAC state synced, listener up), create and keep the Validating- and
    /// MutatingWebhookConfiguration (server-side apply; re-applied every minute). The install
    /// ships none, so no RBAC write is refused before a secretscope can answer it.
    #[arg(long, env = "SECRETSCOPE_REGISTER_WEBHOOKS")]
    pub register_webhooks: bool,
    /// Name of both configurations, and of secretscope's ClusterRole, which owns them (deleting
    /// it garbage-collects them).
    #[arg(long, default_value = "secretscope")]
    pub webhook_name: String,
    /// The Service the API server calls: NAMESPACE/NAME[:PORT] (port 443 by default).
    #[arg(
        long,
        value_name = "NAMESPACE/NAME[:PORT]",
        conflicts_with = "webhook_url"
    )]
    pub webhook_service: Option<WebhookTarget>,
    /// Instead of a Service, a base URL (https://host:port) for a secretscope outside the
    /// cluster; /validate and /mutate are appended.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// PEM of the CA that signed the serving certificate: the configurations' caBundle (read
    /// again at every re-apply, so a rotated CA is registered within a minute).
    #[arg(long, value_name = "FILE")]
    pub webhook_ca_bundle: Option<PathBuf>,
    /// How often the configurations are applied again (a no-op when nothing changed): the
    /// longest an edit such as `failurePolicy: Ignore` or a rotated CA goes unrepaired.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub webhook_resync: Duration,
}

impl RegistrationArgs {
    /// The registration to run, if asked for; errors name the missing flag.
    fn config(
        &self,
        namespace: &str,
        listen: SocketAddr,
    ) -> anyhow::Result<Option<RegistrationConfig>> {
        if !self.register_webhooks {
            return Ok(None);
        }
        let target = match (&self.webhook_service, &self.webhook_url) {
            (Some(service), _) => service.clone(),
            (None, Some(url)) if url.starts_with("https://") => WebhookTarget::Url(url.clone()),
            (None, Some(url)) => anyhow::bail!("--webhook-url {url:?}: must start with https://"),
            (None, None) => {
                anyhow::bail!("--register-webhooks needs --webhook-service or --webhook-url")
            }
        };
        let ca_bundle = self
            .webhook_ca_bundle
            .clone()
            .context("--register-webhooks needs --webhook-ca-bundle (the CA's PEM file)")?;
        // Fail at start, not at the first apply, on a CA file that cannot work.
        crate::cluster::registration::read_ca_bundle(&ca_bundle)?;
        Ok(Some(RegistrationConfig {
            name: self.webhook_name.clone(),
            target,
            ca_bundle,
            namespace: namespace.to_string(),
            listener: (listen.port() != 0).then_some(listen),
            resync: self.webhook_resync,
        }))
    }
}

/// The tenancy reconciler (cluster mode, when `tenancy.subjects` is set) and its Lease.
#[derive(Debug, clap::Args)]
pub struct ReconcilerArgs {
    /// Namespace of the leader-election Lease (secretscope's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "secretscope")]
    pub lease_namespace: String,
    #[arg(long, default_value = "secretscope-reconciler")]
    pub lease_name: String,
    /// This replica's identity in the Lease; defaults to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long the Lease stays valid without renewal: the longest a dead leader delays handover.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// The leader renews this long before the Lease expires.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub lease_grace: Duration,
    /// secretscope's own ClusterRole, named in the fix a 403 Event suggests.
    #[arg(long, default_value = "secretscope")]
    pub own_cluster_role: String,
}

/// Go-style durations as humantime reads them: `250ms`, `10s`, `1m30s`, `1.5h`; a bare number
/// is seconds, as it always was here.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 10s, 1m30s or 250ms: {e}"))
}

fn standalone_state(paths: &[PathBuf]) -> anyhow::Result<ClusterState> {
    let loaded = manifest::load_paths(paths);
    if let Some(first) = loaded.errors.first() {
        anyhow::bail!(
            "cannot load --state ({} errors); first: {first}",
            loaded.errors.len()
        );
    }
    let mut state = ClusterState::with_builtins();
    state.extend(loaded.objects.into_iter().map(|o| o.object));
    Ok(state)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let policy = match &args.config {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    for warning in policy.warnings() {
        tracing::warn!("policy: {warning}");
    }
    let registration = args
        .registration
        .config(&args.reconciler.lease_namespace, args.listen)?;
    if registration.is_some() && args.standalone {
        anyhow::bail!("--register-webhooks needs a cluster: it cannot be used with --standalone");
    }
    let mut client = None;
    let source: Arc<dyn StateSource> = if args.standalone {
        let state = standalone_state(&args.state).context("standalone state")?;
        tracing::info!(
            objects = state.len(),
            mode = policy.mode.as_str(),
            "standalone: cluster state loaded from manifests"
        );
        Arc::new(StaticState(Arc::new(state)))
    } else {
        // KUBECONFIG / ~/.kube/config, or the in-cluster ServiceAccount.
        let c = crate::cluster::client()
            .await
            .context("cannot build a Kubernetes client (no kubeconfig or in-cluster config; use --standalone to run without a cluster)")?;
        tracing::info!(
            mode = policy.mode.as_str(),
            "cluster: watching ClusterRoles and ClusterRoleBindings"
        );
        let live = LiveState::start(c.clone());
        client = Some(c);
        live
    };
    let policy = Arc::new(policy);
    let validator = Validator::new(policy.clone(), source.clone());
    let mut app = App::new(validator, Mutator::new(policy.clone()), source)
        .with_judging(
            args.review_deadline,
            args.judges.unwrap_or_else(server::default_judges),
        )
        .with_body_budget(args.body_budget_mib as usize * 1024 * 1024);
    app.metrics.initialise(policy.mode);
    if let (Some(config), Some(client)) = (registration, &client) {
        let state = app.state.clone();
        tokio::spawn(crate::cluster::registration::run(
            client.clone(),
            config,
            app.metrics.registration.clone(),
            move || state.synced(),
        ));
    }
    let reconciler = match client {
        Some(client) if !policy.file.tenancy.subjects.is_empty() => {
            let (nudge, nudges) = TenancyNudge::channel();
            app.nudge = Some(nudge);
            Some(start_reconciler(
                client,
                policy,
                &app,
                &args.reconciler,
                nudges,
            ))
        }
        Some(_) => {
            tracing::info!("tenancy.subjects is empty: no Roles to manage, reconciler off");
            None
        }
        None => None,
    };
    let app = Arc::new(app);
    let opts = ServeOptions {
        listen: args.listen,
        tls: TlsFiles {
            cert: args.tls_cert,
            key: args.tls_key,
            client_ca: args.client_ca,
        },
        tls_reload_interval: args.tls_reload_interval,
        request_timeout: args.request_timeout,
        shutdown_delay: args.shutdown_delay,
        shutdown_grace: args.shutdown_grace,
        metrics_listen: args.metrics_listen,
        limits: Limits {
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections as usize,
        },
    };
    let served = server::serve(opts, app).await;
    if let Some(reconciler) = reconciler {
        reconciler.shutdown().await;
    }
    served
}

fn start_reconciler(
    client: kube::Client,
    policy: Arc<Policy>,
    app: &App,
    args: &ReconcilerArgs,
    nudges: tokio::sync::mpsc::Receiver<String>,
) -> ReconcilerHandle {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "secretscope".into());
        format!("{host}-{}", std::process::id())
    });
    let lease = LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        duration: args.lease_duration,
        grace: args.lease_grace,
    };
    let ctx = TenancyReconciler::new(
        client,
        policy,
        app.metrics.reconcile.clone(),
        args.own_cluster_role.clone(),
        identity,
    );
    ReconcilerHandle::spawn(Arc::new(ctx), lease, nudges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }
}
