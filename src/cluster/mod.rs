//! All API-server I/O lives here: the watch-fed RBAC cache, one-off reads for `audit`, the
//! tenancy reconciler (server-side apply) and its leader election.

pub mod backoff;
pub mod leader;
pub mod rbac_cache;
pub mod registration;
pub mod tenancy;

use k8s_openapi::api::rbac::v1 as rbacv1;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use crate::rbac::{ClusterState, RbacObject};

pub use leader::LeaseConfig;
pub use rbac_cache::LiveState;
pub use registration::{RegistrationConfig, RegistrationMetrics, WebhookTarget};
pub use tenancy::{ReconcileMetrics, ReconcilerHandle, TenancyNudge, TenancyReconciler};

/// A client for the cluster in KUBECONFIG / ~/.kube/config, or the in-cluster ServiceAccount.
/// kube's built-in retry of 429/503/504 is off: it retries 15 times with a delay doubling to
/// minutes, which hid an API-server outage from the RBAC watch for a minute and more (the cache
/// kept claiming to be synced). Every caller here retries on its own terms: the watches re-list
/// within seconds, the reconciler backs off per namespace, a review's live read fails closed.
pub async fn client() -> Result<Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    Client::try_from(config)
}

/// The engine's model of a k8s-openapi object (off the hot path: once per watch event).
pub(crate) fn to_engine<K: Serialize>(object: &K) -> Option<RbacObject> {
    let value = serde_json::to_value(object).ok()?;
    match RbacObject::from_value(&value) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "skipping an RBAC object the engine cannot read");
            None
        }
    }
}

/// The cluster's ClusterRoles and ClusterRoleBindings, listed once (for `audit`).
pub async fn list_rbac(client: Client) -> Result<ClusterState, kube::Error> {
    let mut state = ClusterState::new();
    let roles = Api::<rbacv1::ClusterRole>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let bindings = Api::<rbacv1::ClusterRoleBinding>::all(client)
        .list(&ListParams::default())
        .await?;
    state.extend(roles.items.iter().filter_map(to_engine));
    state.extend(bindings.items.iter().filter_map(to_engine));
    Ok(state)
}
