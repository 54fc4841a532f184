//! AdmissionReview in, engine call, AdmissionResponse out. Handlers stay thin: everything they
//! decide comes from [`crate::rbac`] over a [`StateSource`].

pub mod mutate;
pub mod review;
pub mod validate;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::rbac::{ClusterRole, ClusterRoleBinding, ClusterState};

/// A live lookup: `Ok(None)` when the object does not exist.
pub type Lookup = Pin<Box<dyn Future<Output = Result<Option<ClusterRole>, String>> + Send>>;

/// A live read of a Namespace's labels: `Ok(None)` when it does not exist.
pub type NamespaceLookup =
    Pin<Box<dyn Future<Output = Result<Option<BTreeMap<String, String>>, String>> + Send>>;

/// A live, consistent list of every ClusterRoleBinding.
pub type BindingsLookup =
    Pin<Box<dyn Future<Output = Result<Vec<ClusterRoleBinding>, String>> + Send>>;

pub use mutate::{Mutation, Mutator};
pub use review::{AdmissionResponse, ReviewError};
pub use validate::{Validator, Verdict};

/// Where the validating webhook gets the cluster's RBAC objects: fixed manifests in standalone
/// mode, a watch-fed cache against a live cluster.
pub trait StateSource: Send + Sync + 'static {
    /// The current state; cheap (an `Arc` clone), taken once per review.
    fn snapshot(&self) -> Arc<ClusterState>;
    /// False until the source has a complete picture; binding-aware verdicts are not trusted
    /// (the webhook falls back to strict scope) and `/readyz` fails until then.
    fn synced(&self) -> bool;

    /// Reads a ClusterRole from the source of truth, for a binding whose role the state does not
    /// hold (yet: a role created a moment ago may not have reached a watch-fed cache). `None` when
    /// the source has no live side, as with fixed manifests.
    fn fetch_cluster_role(&self, _name: &str) -> Option<Lookup> {
        None
    }

    /// Lists every ClusterRoleBinding from the source of truth, to confirm that a Secrets
    /// ClusterRole the state shows unbound really is (a binding written a moment ago may not have
    /// reached a watch-fed cache). `None` without a live side.
    fn fetch_cluster_role_bindings(&self) -> Option<BindingsLookup> {
        None
    }

    /// Reads a Namespace's labels, to tell whether it is a tenancy namespace by label. `None`
    /// without a live side (the use of the managed role's name is then denied: fail closed).
    fn fetch_namespace_labels(&self, _name: &str) -> Option<NamespaceLookup> {
        None
    }
}

/// State loaded once from manifests (`serve --standalone --state`).
#[derive(Debug, Clone)]
pub struct StaticState(pub Arc<ClusterState>);

impl StateSource for StaticState {
    fn snapshot(&self) -> Arc<ClusterState> {
        self.0.clone()
    }

    fn synced(&self) -> bool {
        true
    }
}
