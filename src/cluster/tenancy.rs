//! `TenancyReconciler`: gives every tenancy namespace its secrets Role and RoleBinding by
//! server-side apply, and keeps them there.
//!
//! A kube-runtime `Controller` over Namespaces, also triggered by the Roles and RoleBindings
//! labelled `app.kubernetes.io/managed-by=secretscope` (a deleted or edited one is applied again).
//! Its initial list is the backfill of every existing tenancy namespace; each tenancy namespace is
//! re-applied hourly as a safety net. Failures are retried per namespace with exponential backoff,
//! so an API-server outage delays bootstraps and loses none. A 403 is logged, counted and recorded
//! as an Event on the namespace naming the permission secretscope lacks.
//!
//! Only the holder of the Lease runs it ([`run_while_leader`]); `/mutate` nudges it so a new
//! namespace is served even before the Namespace watch delivers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::policy::Policy;
use crate::tenancy::{self, Managed, Plan, FIELD_MANAGER};

/// How often a tenancy namespace is applied again without any trigger.
const RESYNC: Duration = Duration::from_secs(3600);
/// Concurrent reconciles: enough to backfill thousands of namespaces quickly without flooding the
/// API server (client-side rate limits are the API server's priority and fairness' job).
const CONCURRENCY: u16 = 16;
/// How long a nudge waits for its namespace to exist (admission runs before the write).
const NUDGE_PATIENCE: Duration = Duration::from_secs(10);

/// What one reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Pruned,
    Terminating,
    Ignored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Pruned => "pruned",
            Self::Terminating => "skipped_terminating",
            Self::Ignored => "ignored",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{kind} {namespace}/{name} refused by the API server (403): {message}")]
    Forbidden {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
        advice: Option<String>,
    },
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Forbidden { .. } => "forbidden",
            Self::Api { .. } => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// granted, pruned, skipped_terminating, ignored, forbidden, error.
    outcome: &'static str,
}

/// Reconcile outcomes, registered with the server's metrics.
#[derive(Clone)]
pub struct ReconcileMetrics {
    outcomes: Family<OutcomeLabels, Counter>,
    seconds: Histogram,
    /// 1 on the replica holding the Lease.
    pub leader: Gauge,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            outcomes: Family::default(),
            // 1 ms .. ~16 s.
            seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 15)),
            leader: Gauge::default(),
        }
    }
}

impl ReconcileMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tenancy_reconciles",
            "Namespace reconciles by outcome (granted, pruned, skipped_terminating, ignored, forbidden, error)",
            self.outcomes.clone(),
        );
        registry.register(
            "tenancy_reconcile_duration_seconds",
            "Time to reconcile one namespace, API calls included",
            self.seconds.clone(),
        );
        registry.register(
            "tenancy_leader",
            "1 on the replica holding the reconciler Lease",
            self.leader.clone(),
        );
    }

    /// Every outcome's series at 0 (see `Metrics::initialise`).
    pub fn initialise(&self) {
        for outcome in [
            "granted",
            "pruned",
            "skipped_terminating",
            "ignored",
            "forbidden",
            "error",
        ] {
            let _ = self.outcomes.get_or_create(&OutcomeLabels { outcome });
        }
    }

    fn observe(&self, outcome: &'static str, started: Instant) {
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.seconds.observe(started.elapsed().as_secs_f64());
    }
}

/// Tells the reconciler a tenancy namespace is being created (from `/mutate`, never on dry-run).
#[derive(Clone, Debug)]
pub struct TenancyNudge(mpsc::Sender<String>);

impl TenancyNudge {
    pub fn channel() -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(1024);
        (Self(tx), rx)
    }

    /// Never blocks admission: when the queue is full the Namespace watch covers it.
    pub fn namespace_created(&self, name: &str) {
        let _ = self.0.try_send(name.to_string());
    }
}

pub struct TenancyReconciler {
    client: Client,
    policy: Arc<Policy>,
    recorder: Recorder,
    metrics: ReconcileMetrics,
    /// secretscope's own ClusterRole, named in the advice on a 403.
    own_cluster_role: String,
    retries: Mutex<HashMap<String, ExponentialBackoff>>,
}

impl TenancyReconciler {
    pub fn new(
        client: Client,
        policy: Arc<Policy>,
        metrics: ReconcileMetrics,
        own_cluster_role: String,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: "secretscope".into(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            policy,
            metrics,
            own_cluster_role,
            retries: Mutex::default(),
        }
    }

    /// Carries out the plan for one namespace, counting the outcome and recording 403s as Events.
    pub async fn reconcile_namespace(&self, ns: &Namespace) -> Result<Outcome, ReconcileError> {
        let started = Instant::now();
        let result = self.carry_out(ns, tenancy::plan(&self.policy, ns)).await;
        match &result {
            Ok(outcome) => {
                self.metrics.observe(outcome.as_str(), started);
                if let Ok(mut retries) = self.retries.lock() {
                    retries.remove(&ns.name_any());
                }
                if *outcome == Outcome::Granted {
                    tracing::debug!(namespace = %ns.name_any(), "tenancy namespace has its secrets Role and RoleBinding");
                }
            }
            Err(e) => {
                self.metrics.observe(e.outcome(), started);
                if let ReconcileError::Forbidden { advice, .. } = e {
                    tracing::error!(namespace = %ns.name_any(), error = %e, advice = advice.as_deref().unwrap_or(""), "secretscope lacks a permission");
                    self.record_forbidden(ns, e, advice.as_deref()).await;
                } else {
                    tracing::warn!(namespace = %ns.name_any(), error = %e, "reconcile failed; retrying with backoff");
                }
            }
        }
        result
    }

    async fn carry_out(&self, ns: &Namespace, plan: Plan) -> Result<Outcome, ReconcileError> {
        match plan {
            Plan::Terminating => Ok(Outcome::Terminating),
            Plan::Ignore => Ok(Outcome::Ignored),
            Plan::Grant(grant) => {
                // The Role first: binding a Role that does not exist yet grants nothing, and
                // escalation prevention judges the binding by the Role it references.
                if let Some(role) = &grant.role {
                    self.apply(Managed::Role, role).await?;
                }
                match self.apply(Managed::RoleBinding, &grant.binding).await {
                    Err(ReconcileError::Api {
                        source: kube::Error::Api(s),
                        ..
                    }) if s.code == 422 && s.message.contains("roleRef") => {
                        self.replace_squatter(ns, &grant.binding).await?
                    }
                    other => other?,
                }
                Ok(Outcome::Granted)
            }
            Plan::Prune {
                namespace,
                role,
                binding,
            } => {
                // Unbind first, then remove the Role.
                let mut removed = self
                    .remove::<RoleBinding>(Managed::RoleBinding, &namespace, &binding)
                    .await?;
                if let Some(role) = role {
                    removed |= self
                        .remove::<Role>(Managed::Role, &namespace, &role)
                        .await?;
                }
                Ok(if removed {
                    Outcome::Pruned
                } else {
                    Outcome::Ignored
                })
            }
        }
    }

    async fn apply<K>(&self, what: Managed, object: &K) -> Result<(), ReconcileError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let api = Api::<K>::namespaced(self.client.clone(), &namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&name, &params, &Patch::Apply(object)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error("apply", what, namespace, name, e)),
        }
    }

    /// A RoleBinding of the managed name with another roleRef (made before the namespace became a
    /// tenancy namespace, when the name was nobody's) cannot be applied over: roleRef is
    /// immutable. It is deleted (that exact object, by UID) and the managed one applied in its
    /// place, with a Warning Event saying what was replaced.
    async fn replace_squatter(
        &self,
        ns: &Namespace,
        binding: &RoleBinding,
    ) -> Result<(), ReconcileError> {
        let namespace = binding.namespace().unwrap_or_default();
        let name = binding.name_any();
        let what = Managed::RoleBinding;
        let api = Api::<RoleBinding>::namespaced(self.client.clone(), &namespace);
        let err = |action, e| self.error(action, what, namespace.clone(), name.clone(), e);
        let Some(found) = api.get_opt(&name).await.map_err(|e| err("read", e))? else {
            // Gone meanwhile: apply again.
            return self.apply(what, binding).await;
        };
        let subjects: Vec<String> = found
            .subjects
            .iter()
            .flatten()
            .map(|s| format!("{} {:?}", s.kind, s.name))
            .collect();
        let replaced = format!(
            "replaced RoleBinding {namespace}/{name} (roleRef {} {:?}, subjects [{}]), which held the managed name, with secretscope's binding of {} {:?}",
            found.role_ref.kind,
            found.role_ref.name,
            subjects.join(", "),
            binding.role_ref.kind,
            binding.role_ref.name,
        );
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: found.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(err("delete", e)),
        }
        self.apply(what, binding).await?;
        tracing::warn!(namespace = %namespace, "{replaced}");
        let event = Event {
            type_: EventType::Warning,
            reason: "ManagedNameTaken".into(),
            note: Some(replaced.chars().take(1000).collect()),
            action: "ReplaceRoleBinding".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &ns.object_ref(&())).await {
            tracing::warn!(namespace = %namespace, error = %e, "cannot record the Event");
        }
        Ok(())
    }

    /// Removes a managed object, if it is there and secretscope's (never a same-named object
    /// someone else made).
    async fn remove<K>(
        &self,
        what: Managed,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ReconcileError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| self.error("read", what, namespace.into(), name.into(), e))?;
        let ours = found.is_some_and(|o| {
            o.labels().get(tenancy::MANAGED_BY_KEY).map(String::as_str) == Some(tenancy::MANAGED_BY)
        });
        if !ours {
            return Ok(false);
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.error("delete", what, namespace.into(), name.into(), e)),
        }
    }

    fn error(
        &self,
        action: &'static str,
        what: Managed,
        namespace: String,
        name: String,
        source: kube::Error,
    ) -> ReconcileError {
        match source {
            kube::Error::Api(s) if s.code == 403 => ReconcileError::Forbidden {
                kind: what.kind(),
                advice: tenancy::missing_permission(&self.policy, what, &s.message)
                    .map(|m| m.advice(&self.own_cluster_role)),
                message: s.message,
                namespace,
                name,
            },
            source => ReconcileError::Api {
                action,
                kind: what.kind(),
                namespace,
                name,
                source,
            },
        }
    }

    async fn record_forbidden(&self, ns: &Namespace, e: &ReconcileError, advice: Option<&str>) {
        let note = match advice {
            Some(advice) => format!("{e}. To fix: {advice}"),
            None => e.to_string(),
        };
        // An Event note is at most 1 kB.
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_: EventType::Warning,
            reason: "SecretsAccessForbidden".into(),
            note: Some(note),
            action: "ApplySecretsAccess".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &ns.object_ref(&())).await {
            tracing::warn!(namespace = %ns.name_any(), error = %err, "cannot record the Event");
        }
    }

    /// Delay before the next attempt for a namespace that failed: 500 ms doubling to 5 min.
    fn next_retry(&self, namespace: &str) -> Duration {
        let Ok(mut retries) = self.retries.lock() else {
            return Duration::from_secs(5);
        };
        retries
            .entry(namespace.to_string())
            .or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(300))
                    .with_jitter()
                    .without_max_times()
                    .build()
            })
            .next()
            .unwrap_or(Duration::from_secs(300))
    }

    /// A namespace `/mutate` just admitted: wait for it to exist, then reconcile it directly.
    async fn follow_nudge(self: Arc<Self>, name: String) {
        let api = Api::<Namespace>::all(self.client.clone());
        let fetch = || async {
            match api.get_opt(&name).await {
                Ok(Some(ns)) => Ok(ns),
                Ok(None) => Err(None),
                Err(e) => Err(Some(e)),
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_secs(1))
            .with_total_delay(Some(NUDGE_PATIENCE))
            .without_max_times();
        match fetch.retry(backoff).await {
            Ok(ns) => {
                let _ = self.reconcile_namespace(&ns).await;
            }
            // Never created (another webhook refused it) or unreadable: the watch decides.
            Err(_) => tracing::debug!(namespace = %name, "nudge: namespace did not appear"),
        }
    }
}

async fn reconcile(
    ns: Arc<Namespace>,
    ctx: Arc<TenancyReconciler>,
) -> Result<Action, ReconcileError> {
    match ctx.reconcile_namespace(&ns).await? {
        Outcome::Granted => Ok(Action::requeue(RESYNC)),
        _ => Ok(Action::await_change()),
    }
}

fn error_policy(ns: Arc<Namespace>, _: &ReconcileError, ctx: Arc<TenancyReconciler>) -> Action {
    Action::requeue(ctx.next_retry(&ns.name_any()))
}

/// The controller: runs until its stream ends (never, while the API server is reachable or not).
async fn run_controller(ctx: Arc<TenancyReconciler>) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels(&tenancy::managed_selector());
    let owner = |namespace: Option<String>| namespace.map(|ns| ObjectRef::<Namespace>::new(&ns));
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Role>::all(client.clone()),
        managed.clone(),
        move |r| owner(r.namespace()),
    )
    .watches(Api::<RoleBinding>::all(client), managed, move |b| {
        owner(b.namespace())
    })
    .with_config(controller::Config::default().concurrency(CONCURRENCY))
    // A watch that failed (an API-server restart) is listed again within seconds.
    .trigger_backoff(super::backoff::RelistBackoff::default())
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            match e {
                controller::Error::ReconcilerFailed(..) => {} // logged by reconcile_namespace
                e => tracing::debug!(error = %e, "tenancy controller"),
            }
        }
    })
    .await;
}

/// Runs the reconciler whenever `leader` says this replica holds the Lease, and stops it when
/// the Lease is lost. Nudges are followed only while leading.
pub async fn run_while_leader(
    ctx: Arc<TenancyReconciler>,
    mut leader: watch::Receiver<bool>,
    mut nudges: mpsc::Receiver<String>,
) {
    loop {
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                nudge = nudges.recv() => if nudge.is_none() { return },
            }
        }
        tracing::info!("leading: reconciling tenancy namespaces (backfill, then watch)");
        ctx.metrics.leader.set(1);
        // Aborted when leadership ends, and when this future is dropped (shutdown).
        let controller = AbortOnDrop(tokio::spawn(run_controller(ctx.clone())));
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() { break }
                }
                nudge = nudges.recv() => match nudge {
                    Some(name) => { tokio::spawn(ctx.clone().follow_nudge(name)); }
                    None => break,
                },
            }
        }
        drop(controller);
        ctx.metrics.leader.set(0);
        tracing::info!("no longer leading: reconciler stopped");
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reconciler in the background: joins the election (retrying until the API server answers),
/// reconciles while leading, and releases the Lease on [`ReconcilerHandle::shutdown`].
pub struct ReconcilerHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ReconcilerHandle {
    pub fn spawn(
        ctx: Arc<TenancyReconciler>,
        lease: super::leader::LeaseConfig,
        nudges: mpsc::Receiver<String>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let client = ctx.client.clone();
            let join = || super::leader::Election::start(client.clone(), &lease);
            let backoff = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(30))
                .without_max_times();
            let election = tokio::select! {
                joined = join
                    .retry(backoff)
                    .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "cannot join the leader election; retrying")) => match joined {
                    Ok(e) => e,
                    Err(_) => return,
                },
                _ = &mut stopped => return,
            };
            tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "joined the leader election");
            tokio::select! {
                _ = run_while_leader(ctx.clone(), election.leading.clone(), nudges) => {}
                _ = &mut stopped => {}
            }
            ctx.metrics.leader.set(0);
            election.release(Duration::from_secs(5)).await;
        });
        Self { stop, task }
    }

    /// Stops reconciling and releases the Lease.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}
