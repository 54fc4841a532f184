//! `LiveState`: the cluster's ClusterRoles and ClusterRoleBindings, kept by kube-runtime watchers
//! (list, then watch; re-list on 410 Gone; exponential backoff on errors) and published to the
//! admission handlers as immutable `ClusterState` snapshots. Reviews never call the API server.
//!
//! One task owns the mutable state. Watch events for both kinds arrive on a channel; after each
//! burst the owner publishes a new snapshot through an `ArcSwap`, so readers take a snapshot
//! without locks and a burst of events costs one publish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt};
use k8s_openapi::api::rbac::v1 as rbacv1;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::to_engine;
use crate::admission::{BindingsLookup, Lookup, NamespaceLookup, StateSource};
use crate::rbac::{ClusterState, RbacKind, RbacObject};

/// The kinds binding-aware verdicts need. Roles and RoleBindings never grant cluster-wide access,
/// so they are not cached (they are the bulk of a large cluster's RBAC objects).
const WATCHED: [RbacKind; 2] = [RbacKind::ClusterRole, RbacKind::ClusterRoleBinding];

/// What a watcher tells the owner task.
#[derive(Debug)]
enum Change {
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

    /// True once both kinds have been listed completely. A later re-list (after 410 Gone) keeps
    /// serving the previous, complete picture until it finishes.
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
            watcher(
                Api::<rbacv1::ClusterRole>::all(client.clone()),
                watcher::Config::default(),
            ),
            tx.clone(),
        ));
        tokio::spawn(forward(
            RbacKind::ClusterRoleBinding,
            watcher(
                Api::<rbacv1::ClusterRoleBinding>::all(client),
                watcher::Config::default(),
            ),
            tx,
        ));
        tokio::spawn(own(state.clone(), rx));
        state
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff()
}

async fn forward<K, S>(kind: RbacKind, stream: S, tx: mpsc::Sender<Change>)
where
    K: Serialize,
    S: Stream<Item = watcher::Result<Event<K>>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(Event::Init) => Some(Change::Relist(kind)),
            Ok(Event::InitApply(o)) => to_engine(&o).map(Change::Listed),
            Ok(Event::InitDone) => Some(Change::Synced(kind)),
            Ok(Event::Apply(o)) => to_engine(&o).map(Change::Applied),
            Ok(Event::Delete(o)) => to_engine(&o).map(Change::Deleted),
            Err(e) => {
                // The backoff wrapper retries; the last complete picture keeps serving.
                tracing::warn!(kind = kind.as_str(), error = %e, "RBAC watch failed; retrying with backoff");
                None
            }
        };
        if let Some(change) = change {
            if tx.send(change).await.is_err() {
                return;
            }
        }
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
