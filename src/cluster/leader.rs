//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): every replica serves
//! admission, only the holder reconciles. A holder that dies stops renewing; another replica
//! takes the Lease once it has expired. A holder that shuts down releases it at once.

use std::time::Duration;

use anyhow::Context;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name.
    pub identity: String,
    /// How long a Lease stays valid after the last renewal.
    pub duration: Duration,
    /// The holder renews this long before expiry (and so tolerates this much clock skew).
    pub grace: Duration,
}

/// A running election: `leading` follows whether this replica holds the Lease.
pub struct Election {
    pub leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Election {
    pub async fn start(client: Client, config: &LeaseConfig) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration.as_secs().max(2))
            .with_grace(config.grace.as_secs().max(1))
            .build()
            .await
            .with_context(|| {
                format!(
                    "cannot set up the Lease {}/{} for leader election",
                    config.namespace, config.name
                )
            })?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Releases the Lease (when held) so another replica takes over without waiting for expiry.
    /// Every clone of `leading` must be dropped first: the manager releases when its channel
    /// has no receivers left.
    pub async fn release(self, within: Duration) {
        drop(self.leading);
        match tokio::time::timeout(within, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "cannot release the Lease; it will expire")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease manager task failed"),
            Err(_) => tracing::warn!("Lease not released in time; it will expire"),
        }
    }
}
