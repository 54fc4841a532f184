//! `LiveState`: the cluster's ClusterRoles and ClusterRoleBindings, kept by kube-runtime watchers
//! (list, then watch) and published to the admission handlers as immutable `ClusterState`
//! snapshots. Reviews never call the API server.
//!
//! A watch that fails may have missed events (an API-server restart answers the old position
//! with "too old resource version"), so the kind counts as unsynced, and verdicts are strict,
//! from the first error until a fresh list completes; that list starts within a bounded backoff
//! (at most [`RELIST_MAX`]) that resets on success, so a recovered API server is re-listed within
//! seconds, not after a backoff grown during the outage.
//!
//! One task owns the mutable state. Watch events for both kinds arrive on a channel; after each
//! burst the owner publishes a new snapshot through an `ArcSwap`, so readers take a snapshot
//! without locks and a burst of events costs one publish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::rbac::v1 as rbacv1;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::backoff::{RelistBackoff, RELIST_MAX};
use super::to_engine;
use crate::admission::{BindingsLookup, Lookup, NamespaceLookup, StateSource};
use crate::rbac::{ClusterState, RbacKind, RbacObject};

/// The kinds binding-aware verdicts need. Roles and RoleBindings never grant cluster-wide access,
/// so they are not cached (they are the bulk of a large cluster's RBAC objects).
const WATCHED: [RbacKind; 2] = [RbacKind::ClusterRole, RbacKind::ClusterRoleBinding];

/// What a watcher tells the owner task.
#[derive(Debug)]
enum Change {
    /// The watch failed: events may be missing until the next complete list.
    Lost(RbacKind),
    /// A (re-)list began: collect the objects that follow.
    Relist(RbacKind),
    Listed(RbacObject),
    /// The (re-)list is complete: what was not listed is gone.
    Synced(RbacKind),
    Applied(RbacObject),
    Deleted(RbacObject),
}

pub struct LiveState {
    current: ArcSwap<ClusterState>,
    synced: [AtomicBool; WATCHED.len()],
    client: Client,
}

/// A cache-miss lookup must not hold a review past the API server's webhook timeout (5s).
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One live read for a review, bounded by [`LOOKUP_TIMEOUT`]; errors say `what` failed.
async fn live<T>(
    what: &str,
    read: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, read).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: the API server did not answer within {LOOKUP_TIMEOUT:?}"
        )),
    }
}

impl StateSource for LiveState {
    fn snapshot(&self) -> Arc<ClusterState> {
        self.current.load_full()
    }

    /// True once both kinds have been listed completely, and false again from a watch failure
    /// until the next complete list: the previous picture keeps serving, with strict verdicts.
    fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    fn fetch_cluster_role(&self, name: &str) -> Option<Lookup> {
        let api = Api::<rbacv1::ClusterRole>::all(self.client.clone());
        let name = name.to_string();
        Some(Box::pin(async move {
            let got = live("could not be read from the API server", api.get_opt(&name)).await?;
            Ok(got.as_ref().and_then(to_engine).and_then(|o| match o {
                RbacObject::ClusterRole(cr) => Some(cr),
                _ => None,
            }))
        }))
    }

    fn fetch_namespace_labels(&self, name: &str) -> Option<NamespaceLookup> {
        let api = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());
        let name = name.to_string();
        Some(Box::pin(async move {
            let ns = live("cannot read the namespace", api.get_opt(&name)).await?;
            Ok(ns.map(|ns| ns.metadata.labels.unwrap_or_default()))
        }))
    }

    fn fetch_cluster_role_bindings(&self) -> Option<BindingsLookup> {
        let api = Api::<rbacv1::ClusterRoleBinding>::all(self.client.clone());
        Some(Box::pin(async move {
            // No resourceVersion: a consistent read, not the API server's possibly stale cache.
            let list = live(
                "cannot list ClusterRoleBindings",
                api.list(&kube::api::ListParams::default()),
            )
            .await?;
            Ok(list
                .items
                .iter()
                .filter_map(to_engine)
                .filter_map(|o| match o {
                    RbacObject::ClusterRoleBinding(b) => Some(b),
                    _ => None,
                })
                .collect())
        }))
    }
}

impl LiveState {
    /// Starts the watchers and the owner task on the current runtime.
    pub fn start(client: Client) -> Arc<Self> {
        let state = Arc::new(Self {
            current: ArcSwap::from_pointee(ClusterState::new()),
            synced: Default::default(),
            client: client.clone(),
        });
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(forward(
            RbacKind::ClusterRole,
            Api::<rbacv1::ClusterRole>::all(client.clone()),
            tx.clone(),
        ));
        tokio::spawn(forward(
            RbacKind::ClusterRoleBinding,
            Api::<rbacv1::ClusterRoleBinding>::all(client),
            tx,
        ));
        tokio::spawn(own(state.clone(), rx));
        state
    }
}

/// Watches one kind forever. Each failure ends the watch: the owner marks the kind unsynced, and
/// a new watcher starts with a complete list after a short backoff (reset by any success).
async fn forward<K>(kind: RbacKind, api: Api<K>, tx: mpsc::Sender<Change>)
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
{
    let mut backoff = RelistBackoff::default();
    loop {
        let mut stream = std::pin::pin!(watcher::watcher(api.clone(), watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(Event::Init) => Some(Change::Relist(kind)),
                Ok(Event::InitApply(o)) => to_engine(&o).map(Change::Listed),
                Ok(Event::InitDone) => Some(Change::Synced(kind)),
                Ok(Event::Apply(o)) => to_engine(&o).map(Change::Applied),
                Ok(Event::Delete(o)) => to_engine(&o).map(Change::Deleted),
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "RBAC watch failed; strict verdicts until it is listed again");
                    if tx.send(Change::Lost(kind)).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            kube::runtime::utils::Backoff::reset(&mut backoff);
            if let Some(change) = change {
                if tx.send(change).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff.next().unwrap_or(RELIST_MAX)).await;
    }
}

/// Applies changes in bursts and publishes one snapshot per burst.
async fn own(live: Arc<LiveState>, mut rx: mpsc::Receiver<Change>) {
    let mut state = ClusterState::new();
    let mut relisting: [Option<Vec<RbacObject>>; WATCHED.len()] = Default::default();
    let slot = |kind: RbacKind| WATCHED.iter().position(|k| *k == kind);
    while let Some(first) = rx.recv().await {
        let mut now_synced = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next {
            match change {
                Change::Lost(kind) => {
                    if let Some(i) = slot(kind) {
                        relisting[i] = None;
                        live.synced[i].store(false, Ordering::Release);
                    }
                }
                Change::Relist(kind) => {
                    if let Some(i) = slot(kind) {
                        relisting[i] = Some(Vec::new());
                    }
                }
                Change::Listed(o) => match slot(o.kind()).and_then(|i| relisting[i].as_mut()) {
                    Some(buffer) => buffer.push(o),
                    None => state.insert(o),
                },
                Change::Synced(kind) => {
                    if let Some(i) = slot(kind) {
                        state.replace_kind(kind, relisting[i].take().unwrap_or_default());
                        now_synced.push(i);
                        tracing::info!(
                            kind = kind.as_str(),
                            objects = state.len(),
                            "RBAC cache synced"
                        );
                    }
                }
                Change::Applied(o) => state.insert(o),
                Change::Deleted(o) => state.remove(&o.object_ref()),
            }
            next = rx.try_recv().ok();
        }
        live.current.store(Arc::new(state.clone()));
        // Only after the snapshot holding the complete list is visible.
        for i in now_synced {
            live.synced[i].store(true, Ordering::Release);
        }
    }
}
