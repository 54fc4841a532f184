//! An in-process fake Kubernetes API server for tests: real REST paths and JSON for the RBAC
//! kinds secretscope watches, over plain HTTP on 127.0.0.1.
//!
//! Supported: list (`GET /apis/rbac.authorization.k8s.io/v1/<resource>`, items carry
//! `metadata.resourceVersion`, the List carries the store's) and watch (`?watch=1&resourceVersion=N`:
//! newline-delimited JSON events after N, then live ones; BOOKMARK events when
//! `allowWatchBookmarks=true`; the stream ends after `timeoutSeconds`). Injectable faults: list
//! latency, failing lists with 500, and the next watch answering 410 Expired.
//!
//! Where this may differ from a real API server (unverified here, no real one can run):
//! - the real server can also refuse a too-old resourceVersion on the watch request itself with
//!   HTTP 410; this fake always uses the 200 + ERROR-event form, which kube-runtime also handles;
//! - bookmarks are sent every 200 ms here, far more often than a real server (about a minute);
//! - `limit`/`continue` are accepted and ignored: every list is a single page.
//!
//! Server-side apply and the namespaced kinds come with the reconciler (issue 3, part 2).

#![allow(dead_code)] // each test file uses part of the fake

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

const GROUP_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// `resource` (plural) to `kind`, for the cluster-scoped RBAC kinds.
fn kind_of(resource: &str) -> Option<&'static str> {
    match resource {
        "clusterroles" => Some("ClusterRole"),
        "clusterrolebindings" => Some("ClusterRoleBinding"),
        _ => None,
    }
}

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    log: Vec<WatchEvent>,
}

#[derive(Default)]
struct Faults {
    list_delay: Duration,
    /// Holds back live watch events: a cache that lags behind what was just written.
    watch_delay: Duration,
    failing_lists: u32,
    expire_next_watch: bool,
}

#[derive(Clone)]
pub struct FakeApiServer {
    store: Arc<Mutex<Store>>,
    faults: Arc<Mutex<Faults>>,
    events: broadcast::Sender<WatchEvent>,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub url: String,
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(4096);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = Self {
            store: Default::default(),
            faults: Default::default(),
            events,
            requests: Default::default(),
            url,
        };
        let app = Router::new()
            .route(
                "/apis/rbac.authorization.k8s.io/v1/{resource}",
                get(list_or_watch),
            )
            .route(
                "/apis/rbac.authorization.k8s.io/v1/{resource}/{name}",
                get(get_one),
            )
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// Creates or replaces an object (by kind and name), as a PUT or apply would.
    pub fn apply(&self, mut object: Value) {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let resource = match kind.as_str() {
            "ClusterRole" => "clusterroles",
            "ClusterRoleBinding" => "clusterrolebindings",
            other => panic!("the fake does not serve {other}"),
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut store = self.store.lock().expect("store");
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        object["metadata"]["uid"] = format!("uid-{resource}-{name}").into();
        let key = (resource.to_string(), name);
        let kind_event = if store.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.objects.insert(key, object.clone());
        self.publish(&mut store, rv, resource, kind_event, object);
    }

    pub fn delete(&self, resource: &str, name: &str) {
        let mut store = self.store.lock().expect("store");
        let Some(mut object) = store
            .objects
            .remove(&(resource.to_string(), name.to_string()))
        else {
            return;
        };
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.publish(&mut store, rv, resource, "DELETED", object);
    }

    fn publish(
        &self,
        store: &mut Store,
        rv: u64,
        resource: &str,
        kind: &'static str,
        object: Value,
    ) {
        let event = WatchEvent {
            rv,
            resource: resource.to_string(),
            kind,
            object,
        };
        store.log.push(event.clone());
        let _ = self.events.send(event);
    }

    pub fn set_list_delay(&self, d: Duration) {
        self.faults.lock().expect("faults").list_delay = d;
    }

    pub fn set_watch_delay(&self, d: Duration) {
        self.faults.lock().expect("faults").watch_delay = d;
    }

    /// The next `n` lists answer 500 InternalError.
    pub fn fail_lists(&self, n: u32) {
        self.faults.lock().expect("faults").failing_lists = n;
    }

    /// The next watch answers with a 410 Expired ERROR event, forcing a re-list.
    pub fn expire_next_watch(&self) {
        self.faults.lock().expect("faults").expire_next_watch = true;
    }

    pub fn request_count(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or_default()
    }

    /// A kubeconfig for this server (no credentials: the fake authorizes everyone).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url
        )
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn list_or_watch(
    State(fake): State<FakeApiServer>,
    Path(resource): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    fake.requests
        .lock()
        .map(|mut r| r.push(format!("GET {resource}?{}", query.join("&"))))
        .ok();
    let Some(kind) = kind_of(&resource) else {
        let body = status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({resource})"),
        );
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    if watching {
        watch(fake, resource, kind, &q)
    } else {
        list(fake, resource, kind).await
    }
}

async fn get_one(
    State(fake): State<FakeApiServer>,
    Path((resource, name)): Path<(String, String)>,
) -> Response {
    fake.requests
        .lock()
        .map(|mut r| r.push(format!("GET {resource}/{name}")))
        .ok();
    let found = fake
        .store
        .lock()
        .expect("store")
        .objects
        .get(&(resource.clone(), name.clone()))
        .cloned();
    match (kind_of(&resource), found) {
        (Some(_), Some(o)) => axum::Json(o).into_response(),
        _ => {
            let body = status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

async fn list(fake: FakeApiServer, resource: String, kind: &'static str) -> Response {
    let (delay, fail) = {
        let mut f = fake.faults.lock().expect("faults");
        let fail = f.failing_lists > 0;
        if fail {
            f.failing_lists -= 1;
        }
        (f.list_delay, fail)
    };
    tokio::time::sleep(delay).await;
    if fail {
        let body = status(500, "InternalError", "injected failure");
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    let store = fake.store.lock().expect("store");
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((r, _), _)| *r == resource)
        .map(|(_, o)| o.clone())
        .collect();
    axum::Json(json!({
        "apiVersion": GROUP_VERSION,
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": store.rv.to_string()},
        "items": items
    }))
    .into_response()
}

fn watch(
    fake: FakeApiServer,
    resource: String,
    kind: &'static str,
    q: &HashMap<String, String>,
) -> Response {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let expired = std::mem::take(&mut fake.faults.lock().expect("faults").expire_next_watch);
    // Subscribe before reading the log so nothing falls between the two.
    let mut live = fake.events.subscribe();
    let backlog: Vec<WatchEvent> = fake
        .store
        .lock()
        .expect("store")
        .log
        .iter()
        .filter(|e| e.rv > from && e.resource == resource)
        .cloned()
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |v: Value| format!("{v}\n");
        if expired {
            let _ = tx
                .send(Ok(line(json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}))))
                .await;
            return;
        }
        let mut last = from;
        for e in backlog {
            last = e.rv;
            if tx
                .send(Ok(line(json!({"type": e.kind, "object": e.object}))))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = fake.store.lock().map(|s| s.rv).unwrap_or(last);
                    let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": GROUP_VERSION,
                        "metadata": {"resourceVersion": rv.to_string()}}});
                    if tx.send(Ok(line(bookmark))).await.is_err() { return; }
                }
                e = live.recv() => match e {
                    Ok(e) if e.resource == resource && e.rv > last => {
                        last = e.rv;
                        let lag = fake.faults.lock().map(|f| f.watch_delay).unwrap_or_default();
                        tokio::time::sleep(lag).await;
                        if tx.send(Ok(line(json!({"type": e.kind, "object": e.object})))).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<String, std::io::Error>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
