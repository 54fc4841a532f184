//! AdmissionReview in, engine call, AdmissionResponse out. Handlers stay thin: everything they
//! decide comes from [`crate::rbac`] over a [`StateSource`].

pub mod review;
pub mod validate;

use std::sync::Arc;

use crate::rbac::ClusterState;

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
