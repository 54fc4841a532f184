//! An in-process fake Kubernetes API server for tests: the real REST paths and JSON for the kinds
//! secretscope reads and writes, over plain HTTP on 127.0.0.1.
//!
//! Kinds: Namespaces, ClusterRoles, ClusterRoleBindings, Roles, RoleBindings, Leases
//! (coordination.k8s.io/v1) and Events (events.k8s.io/v1).
//!
//! Verbs, on `/api/v1/...` and `/apis/<group>/<version>/...`, cluster-scoped, namespaced and
//! all-namespaces paths:
//! - list (the List carries the store's resourceVersion, items their own) and `labelSelector`
//!   (equality forms `k=v`, `k==v`, `k!=v`, `k`, `!k`; set-based forms answer 400);
//! - watch (`?watch=1&resourceVersion=N`): newline-delimited JSON events after N, then live
//!   ones; BOOKMARKs when `allowWatchBookmarks=true`; the stream ends after `timeoutSeconds`; with
//!   a label selector, an object that stops matching is sent as DELETED and one that starts
//!   matching as ADDED, as the real watch cache does;
//! - get (404 as a Status), create (POST; 409 AlreadyExists), update (PUT; 409 Conflict on a stale
//!   resourceVersion), delete (a Namespace goes to Terminating; its removal, with its content, is
//!   [`FakeApiServer::finish_namespace_deletion`]);
//! - patch: server-side apply (`application/apply-patch+yaml`, `fieldManager` required, `force`,
//!   field-ownership conflicts as 409; see `ssa.rs`), JSON merge patch, and strategic merge patch
//!   treated as a merge patch (equal for the kinds patched that way here: Lease spec and Event
//!   series have no lists);
//! - writes into a namespace that does not exist answer 404, creating in a Terminating one 403
//!   (the NamespaceLifecycle admission plugin's message).
//!
//! Injectable: latency on every request, list latency, failing lists (500), any status for the next
//! N requests matching a method and resource ([`FakeApiServer::inject`]), an outage (503 and open
//! watches closed), a lagging watch, the next watch expiring (410), and RBAC for the caller
//! ([`FakeApiServer::authorize`]; without it everyone may do everything).
//!
//! Where this may differ from a real API server (unverified here, no real one can run):
//! - a too-old resourceVersion on a watch is refused with the 200 + ERROR-event form, never a
//!   plain HTTP 410; kube-runtime handles both;
//! - bookmarks are sent every 200 ms, far more often than a real server (about a minute);
//! - `limit`/`continue` are accepted and ignored: every list is a single page;
//! - apply bodies must be JSON (which is YAML); kube-rs sends JSON;
//! - no defaulting, validation or admission beyond what is listed above; `managedFields` are
//!   tracked but not returned.

#![allow(dead_code)] // each test file uses part of the fake
#![allow(clippy::result_large_err)] // handlers return ready Responses as errors

mod authz;
mod ssa;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secretscope::rbac::rule::ResourceRequest;
use serde_json::{json, Value};
use tokio::sync::broadcast;

pub use authz::Authorizer;

/// One kind the fake serves.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

pub static KINDS: [Kind; 7] = [
    Kind {
        group: "",
        version: "v1",
        resource: "namespaces",
        kind: "Namespace",
        namespaced: false,
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "clusterroles",
        kind: "ClusterRole",
        namespaced: false,
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        namespaced: false,
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "roles",
        kind: "Role",
        namespaced: true,
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        kind: "Lease",
        namespaced: true,
    },
    Kind {
        group: "events.k8s.io",
        version: "v1",
        resource: "events",
        kind: "Event",
        namespaced: true,
    },
];

fn kind_by_resource(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

fn kind_by_name(kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// `(resource, namespace or "", name)`.
type Key = (&'static str, String, String);

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    resource: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
    /// The object before a MODIFIED event, to tell label-selector watches it stopped matching.
    previous: Option<Value>,
}

struct Stored {
    object: Value,
    fields: ssa::Ownership,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Key, Stored>,
    log: Vec<WatchEvent>,
}

/// A status the next matching requests get instead of being served.
#[derive(Debug, Clone)]
struct Injected {
    method: Method,
    resource: &'static str,
    code: u16,
    message: String,
    remaining: u32,
}

#[derive(Default)]
struct Faults {
    latency: Duration,
    list_delay: Duration,
    /// Holds back live watch events: a cache that lags behind what was just written.
    watch_delay: Duration,
    failing_lists: u32,
    expire_next_watch: bool,
    unavailable: bool,
    injected: Vec<Injected>,
}

#[derive(Clone)]
pub struct FakeApiServer {
    store: Arc<Mutex<Store>>,
    faults: Arc<Mutex<Faults>>,
    authorizer: Arc<Mutex<Option<Authorizer>>>,
    events: broadcast::Sender<WatchEvent>,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub url: String,
}

impl FakeApiServer {
    /// Starts with the namespaces every cluster has: default, kube-system, kube-public.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(1 << 16);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = Self {
            store: Default::default(),
            faults: Default::default(),
            authorizer: Default::default(),
            events,
            requests: Default::default(),
            url,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            fake.create_namespace(ns, &[]);
        }
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// Creates or replaces an object (by kind, namespace and name), as an administrator would.
    pub fn apply(&self, object: Value) {
        let kind = object["kind"].as_str().unwrap_or_default();
        let kind = kind_by_name(kind).unwrap_or_else(|| panic!("the fake does not serve {kind}"));
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut store = self.store.lock().expect("store");
        let key = (kind.resource, namespace, name);
        let fields = match store.objects.get(&key) {
            Some(old) => ssa::update(&old.object, &old.fields, &object, "test-admin"),
            None => ssa::update(&json!({}), &Default::default(), &object, "test-admin"),
        };
        self.store_object(&mut store, key, object, fields);
    }

    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        self.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}, "status": {"phase": "Active"}}));
    }

    /// `kubectl delete`: a Namespace turns Terminating, anything else is gone.
    pub fn delete(&self, resource: &str, name: &str) {
        self.delete_in(resource, "", name);
    }

    pub fn delete_in(&self, resource: &str, namespace: &str, name: &str) {
        let mut store = self.store.lock().expect("store");
        let Some(kind) = KINDS.iter().find(|k| k.resource == resource) else {
            return;
        };
        self.remove_object(&mut store, kind, namespace, name);
    }

    /// The namespace controller's last step: the namespace and everything in it are gone.
    pub fn finish_namespace_deletion(&self, name: &str) {
        let mut store = self.store.lock().expect("store");
        let inside: Vec<Key> = store
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == name)
            .cloned()
            .collect();
        for key in inside {
            self.erase(&mut store, &key);
        }
        self.erase(&mut store, &("namespaces", String::new(), name.to_string()));
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = KINDS.iter().find(|k| k.resource == resource)?;
        let store = self.store.lock().expect("store");
        store
            .objects
            .get(&(kind.resource, namespace.to_string(), name.to_string()))
            .map(|s| s.object.clone())
    }

    /// Objects of `resource` (in every namespace).
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let store = self.store.lock().expect("store");
        store
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == resource)
            .map(|(_, s)| s.object.clone())
            .collect()
    }

    /// How many objects of `resource` exist (in every namespace).
    pub fn count(&self, resource: &str) -> usize {
        let store = self.store.lock().expect("store");
        store
            .objects
            .keys()
            .filter(|(r, _, _)| *r == resource)
            .count()
    }

    /// Edits an object as another field manager would (`kubectl edit`), through `f`.
    pub fn edit(&self, resource: &str, namespace: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut store = self.store.lock().expect("store");
        let key = store
            .objects
            .keys()
            .find(|(r, ns, n)| *r == resource && ns == namespace && n == name)
            .cloned()
            .expect("object to edit");
        let old = store.objects.get(&key).expect("object");
        let mut object = old.object.clone();
        f(&mut object);
        let fields = ssa::update(&old.object, &old.fields, &object, "kubectl-edit");
        self.store_object(&mut store, key, object, fields);
    }

    fn store_object(&self, store: &mut Store, key: Key, mut object: Value, fields: ssa::Ownership) {
        store.rv += 1;
        let rv = store.rv;
        let (resource, namespace, name) = key.clone();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        let previous = store.objects.get(&key).map(|s| s.object.clone());
        match &previous {
            Some(p) => {
                object["metadata"]["uid"] = p["metadata"]["uid"].clone();
                object["metadata"]["creationTimestamp"] =
                    p["metadata"]["creationTimestamp"].clone();
            }
            None => {
                object["metadata"]["uid"] =
                    format!("uid-{resource}-{namespace}-{name}-{rv}").into();
                object["metadata"]["creationTimestamp"] = "2026-11-23T00:00:00Z".into();
            }
        }
        let kind = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.objects.insert(
            key,
            Stored {
                object: object.clone(),
                fields,
            },
        );
        self.publish(store, rv, resource, namespace, kind, object, previous);
    }

    fn remove_object(
        &self,
        store: &mut Store,
        kind: &Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let key = (kind.resource, namespace.to_string(), name.to_string());
        if kind.resource == "namespaces" {
            let stored = store.objects.get(&key)?;
            let mut object = stored.object.clone();
            let fields = stored.fields.clone();
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = "2026-11-23T00:00:01Z".into();
                object["status"]["phase"] = "Terminating".into();
                self.store_object(store, key, object.clone(), fields);
            }
            return Some(object);
        }
        self.erase(store, &key)
    }

    fn erase(&self, store: &mut Store, key: &Key) -> Option<Value> {
        let mut object = store.objects.remove(key)?.object;
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.publish(
            store,
            rv,
            key.0,
            key.1.clone(),
            "DELETED",
            object.clone(),
            None,
        );
        Some(object)
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        store: &mut Store,
        rv: u64,
        resource: &'static str,
        namespace: String,
        kind: &'static str,
        object: Value,
        previous: Option<Value>,
    ) {
        let event = WatchEvent {
            rv,
            resource,
            namespace,
            kind,
            object,
            previous,
        };
        store.log.push(event.clone());
        let _ = self.events.send(event);
    }

    pub fn set_latency(&self, d: Duration) {
        self.faults.lock().expect("faults").latency = d;
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

    /// An outage: every request answers 503 and open watches end, until `set_available`.
    pub fn set_unavailable(&self) {
        self.faults.lock().expect("faults").unavailable = true;
    }

    pub fn set_available(&self) {
        self.faults.lock().expect("faults").unavailable = false;
    }

    /// The next `times` requests with `method` on `resource` answer `code` with `message`.
    pub fn inject(
        &self,
        method: Method,
        resource: &'static str,
        code: u16,
        message: &str,
        times: u32,
    ) {
        self.faults.lock().expect("faults").injected.push(Injected {
            method,
            resource,
            code,
            message: message.to_string(),
            remaining: times,
        });
    }

    pub fn clear_injected(&self) {
        self.faults.lock().expect("faults").injected.clear();
    }

    /// From now on the caller has exactly `authorizer`'s permissions.
    pub fn authorize(&self, authorizer: Authorizer) {
        *self.authorizer.lock().expect("authorizer") = Some(authorizer);
    }

    pub fn request_count(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or_default()
    }

    /// A kubeconfig for this server (no credentials: the fake does not authenticate).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url
        )
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code});
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn not_found(kind: &Kind, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", kind.group_resource()),
    )
}

/// What a request path names.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (resource, namespace, name) = match rest {
        [resource] => (*resource, None, None),
        ["namespaces", ns, resource] => (*resource, Some(ns.to_string()), None),
        ["namespaces", ns, resource, name] => {
            (*resource, Some(ns.to_string()), Some(name.to_string()))
        }
        [resource, name] => (*resource, None, Some(name.to_string())),
        _ => return None,
    };
    let kind = kind_by_resource(group, version, resource)?;
    if namespace.is_some() != kind.namespaced && (namespace.is_some() || name.is_some()) {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
    })
}

/// An equality-based label selector.
#[derive(Debug, Default)]
struct Selector(Vec<(String, Option<String>, bool)>);

impl Selector {
    fn parse(s: &str) -> Result<Self, String> {
        if s.contains('(') {
            return Err("the fake supports only equality-based label selectors".into());
        }
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some((k, v)) = term.split_once("!=") {
                terms.push((k.to_string(), Some(v.to_string()), false));
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                terms.push((k.to_string(), Some(v.to_string()), true));
            } else if let Some(k) = term.strip_prefix('!') {
                terms.push((k.to_string(), None, false));
            } else {
                terms.push((term.to_string(), None, true));
            }
        }
        Ok(Self(terms))
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|(k, v, positive)| {
            let have = labels.get(k).and_then(Value::as_str);
            match v {
                Some(v) => (have == Some(v.as_str())) == *positive,
                None => have.is_some() == *positive,
            }
        })
    }
}

async fn handle(
    State(fake): State<FakeApiServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let Some(target) = parse_path(uri.path()) else {
        return status(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        );
    };
    let kind = target.kind;
    let ns = target.namespace.clone().unwrap_or_default();
    let mut query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    let log_line = match (&target.namespace, &target.name) {
        (None, None) => format!("{method} {}?{}", kind.resource, query.join("&")),
        (Some(ns), None) => format!("{method} {}/{ns}?{}", kind.resource, query.join("&")),
        (None, Some(n)) => format!("{method} {}/{n}?{}", kind.resource, query.join("&")),
        (Some(ns), Some(n)) => format!("{method} {}/{ns}/{n}?{}", kind.resource, query.join("&")),
    };
    fake.requests.lock().map(|mut r| r.push(log_line)).ok();

    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let latency = {
        let mut f = fake.faults.lock().expect("faults");
        if f.unavailable {
            drop(f);
            return status(
                503,
                "ServiceUnavailable",
                "the fake API server is down (injected outage)",
            );
        }
        let hit = f
            .injected
            .iter_mut()
            .find(|i| i.method == method && i.resource == kind.resource && i.remaining > 0);
        if let Some(hit) = hit {
            hit.remaining -= 1;
            let (code, message) = (hit.code, hit.message.clone());
            f.injected.retain(|i| i.remaining > 0);
            return status(code, reason_of(code), &message);
        }
        f.latency
    };
    if !watching {
        tokio::time::sleep(latency).await;
    }

    // RBAC, for the request's own verb.
    let verb = match (&method, &target.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => return status(405, "MethodNotAllowed", "method not allowed"),
    };
    let name = target.name.clone().unwrap_or_default();
    if let Some(denied) = fake.check(verb, kind, &ns, &name) {
        return denied;
    }

    // Decoded once here: the label selector of collection reads, the body of writes.
    let selector = match Selector::parse(q.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return status(400, "BadRequest", &e),
    };
    let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &format!("cannot decode body: {e}")),
        }
    } else {
        Value::Null
    };
    match (method, target.name) {
        (Method::GET, None) if watching => watch(fake, kind, target.namespace, selector, &q),
        (Method::GET, None) => list(fake, kind, target.namespace, selector).await,
        (Method::GET, Some(name)) => match fake.get(kind.resource, &ns, &name) {
            Some(o) => axum::Json(o).into_response(),
            None => not_found(kind, &name),
        },
        (Method::POST, None) => create(fake, kind, &ns, &q, body),
        (Method::PUT, Some(name)) => replace(fake, kind, &ns, &name, &q, body),
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            patch(fake, kind, &ns, &name, content_type, &q, body)
        }
        (Method::DELETE, Some(name)) => {
            let mut store = fake.store.lock().expect("store");
            match fake.remove_object(&mut store, kind, &ns, &name) {
                Some(o) => axum::Json(o).into_response(),
                None => not_found(kind, &name),
            }
        }
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

impl FakeApiServer {
    /// RBAC for one request; `Some(response)` when refused.
    fn check(&self, verb: &str, kind: &Kind, namespace: &str, name: &str) -> Option<Response> {
        let guard = self.authorizer.lock().expect("authorizer");
        let authz = guard.as_ref()?;
        let req = ResourceRequest::new(verb, kind.group, kind.resource).named(name);
        (!authz.allows(&req, namespace))
            .then(|| status(403, "Forbidden", &authz.forbidden_message(&req, namespace)))
    }

    /// Escalation prevention for a Role or RoleBinding about to be written.
    fn check_escalation(&self, kind: &Kind, namespace: &str, object: &Value) -> Option<Response> {
        let guard = self.authorizer.lock().expect("authorizer");
        let authz = guard.as_ref()?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let rules_of = |v: &Value| -> Vec<secretscope::rbac::PolicyRule> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
        let (rules, exempt_verb, resource, target) = match kind.resource {
            "roles" => (
                rules_of(&object["rules"]),
                "escalate",
                "roles",
                name.to_string(),
            ),
            "rolebindings" => {
                let role_ref = &object["roleRef"];
                let target = role_ref["name"].as_str().unwrap_or_default().to_string();
                let (res, rules) = if role_ref["kind"] == "ClusterRole" {
                    ("clusterroles", self.get("clusterroles", "", &target))
                } else {
                    ("roles", self.get("roles", namespace, &target))
                };
                let rules = rules.map(|r| rules_of(&r["rules"])).unwrap_or_default();
                (rules, "bind", res, target)
            }
            _ => return None,
        };
        let allowed_by_verb = authz.allows(
            &ResourceRequest::new(exempt_verb, RBAC, resource).named(&target),
            namespace,
        );
        let missing = authz.missing(namespace, &rules);
        (!allowed_by_verb && !missing.is_empty()).then(|| {
            status(
                403,
                "Forbidden",
                &authz.escalation_message(&kind.group_resource(), name, &missing),
            )
        })
    }

    /// NamespaceLifecycle: creating inside a missing or Terminating namespace is refused.
    fn check_namespace(&self, kind: &Kind, namespace: &str, name: &str) -> Option<Response> {
        if !kind.namespaced {
            return None;
        }
        match self.get("namespaces", "", namespace) {
            None => Some(status(404, "NotFound", &format!("namespaces \"{namespace}\" not found"))),
            Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => Some(status(
                403,
                "Forbidden",
                &format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    kind.group_resource()
                ),
            )),
            Some(_) => None,
        }
    }
}

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

fn create(
    fake: FakeApiServer,
    kind: &'static Kind,
    ns: &str,
    q: &HashMap<String, String>,
    mut object: Value,
) -> Response {
    let Some(name) = object["metadata"]["name"].as_str().map(String::from) else {
        return status(422, "Invalid", "metadata.name: Required value");
    };
    if kind.namespaced {
        object["metadata"]["namespace"] = ns.into();
    }
    if let Some(r) = fake
        .check_namespace(kind, ns, &name)
        .or_else(|| fake.check_escalation(kind, ns, &object))
    {
        return r;
    }
    let mut store = fake.store.lock().expect("store");
    let key = (kind.resource, ns.to_string(), name.clone());
    if store.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", kind.group_resource()),
        );
    }
    if dry_run(q) {
        return (StatusCode::CREATED, axum::Json(object)).into_response();
    }
    let manager = q.get("fieldManager").map_or("unknown", String::as_str);
    let fields = ssa::update(&json!({}), &Default::default(), &object, manager);
    fake.store_object(&mut store, key.clone(), object, fields);
    let stored = store.objects.get(&key).map(|s| s.object.clone());
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

fn replace(
    fake: FakeApiServer,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    object: Value,
) -> Response {
    if let Some(r) = fake.check_escalation(kind, ns, &object) {
        return r;
    }
    let mut store = fake.store.lock().expect("store");
    let key = (kind.resource, ns.to_string(), name.to_string());
    let Some(old) = store.objects.get(&key) else {
        return not_found(kind, name);
    };
    let sent_rv = object["metadata"]["resourceVersion"].as_str();
    if sent_rv.is_some_and(|rv| Some(rv) != old.object["metadata"]["resourceVersion"].as_str()) {
        return status(409, "Conflict", &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            kind.group_resource()
        ));
    }
    if dry_run(q) {
        return axum::Json(object).into_response();
    }
    let manager = q.get("fieldManager").map_or("unknown", String::as_str);
    let fields = ssa::update(&old.object, &old.fields, &object, manager);
    fake.store_object(&mut store, key.clone(), object, fields);
    axum::Json(store.objects.get(&key).map(|s| s.object.clone())).into_response()
}

fn patch(
    fake: FakeApiServer,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    content_type: &str,
    q: &HashMap<String, String>,
    patch: Value,
) -> Response {
    let key = (kind.resource, ns.to_string(), name.to_string());
    let existing = {
        let store = fake.store.lock().expect("store");
        store
            .objects
            .get(&key)
            .map(|s| (s.object.clone(), s.fields.clone()))
    };
    let manager = q.get("fieldManager").cloned();
    let (object, fields) = match content_type.split(';').next().unwrap_or_default() {
        "application/apply-patch+yaml" => {
            let Some(manager) = manager else {
                return status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
            };
            if patch["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n != name)
            {
                return status(
                    400,
                    "BadRequest",
                    "the name of the object does not match the name on the URL",
                );
            }
            let force = q.get("force").is_some_and(|v| v == "true");
            if existing.is_none() {
                // An apply that creates is also authorized as `create` (with the name).
                if let Some(denied) = fake
                    .check("create", kind, ns, name)
                    .or_else(|| fake.check_namespace(kind, ns, name))
                {
                    return denied;
                }
            }
            match ssa::apply(
                existing.as_ref().map(|(o, f)| (o, f)),
                &patch,
                &manager,
                force,
            ) {
                Ok((mut object, fields)) => {
                    object["metadata"]["name"] = name.into();
                    if kind.namespaced {
                        object["metadata"]["namespace"] = ns.into();
                    }
                    (object, fields)
                }
                Err(conflicts) => {
                    let fields: Vec<String> = conflicts
                        .iter()
                        .map(|c| {
                            format!(
                                "conflict with {:?} using {}: {}",
                                c.manager,
                                kind.api_version(),
                                c.field()
                            )
                        })
                        .collect();
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Apply failed with {} conflict{}: {}",
                            conflicts.len(),
                            if conflicts.len() == 1 { "" } else { "s" },
                            fields.join(", ")
                        ),
                    );
                }
            }
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let Some((old, old_fields)) = existing.clone() else {
                return not_found(kind, name);
            };
            let mut object = old.clone();
            json_patch::merge(&mut object, &patch);
            let manager = manager.unwrap_or_else(|| "unknown".into());
            let fields = ssa::update(&old, &old_fields, &object, &manager);
            (object, fields)
        }
        other => {
            return status(
                415,
                "UnsupportedMediaType",
                &format!("the fake does not support {other:?} patches"),
            )
        }
    };
    if let Some(r) = fake.check_escalation(kind, ns, &object) {
        return r;
    }
    if dry_run(q) {
        return axum::Json(object).into_response();
    }
    let mut store = fake.store.lock().expect("store");
    let unchanged = store.objects.get(&key).is_some_and(|s| {
        let mut a = s.object.clone();
        a["metadata"]["resourceVersion"] = Value::Null;
        let mut b = object.clone();
        b["metadata"]["resourceVersion"] = Value::Null;
        a == b
    });
    // A no-op apply writes nothing and sends no watch event, as on a real server.
    if !unchanged {
        fake.store_object(&mut store, key.clone(), object, fields);
    } else if let Some(s) = store.objects.get_mut(&key) {
        s.fields = fields;
    }
    let stored = store.objects.get(&key).map(|s| s.object.clone());
    let code = if existing.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, axum::Json(stored)).into_response()
}

async fn list(
    fake: FakeApiServer,
    kind: &'static Kind,
    namespace: Option<String>,
    selector: Selector,
) -> Response {
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
        return status(500, "InternalError", "injected failure");
    }
    let store = fake.store.lock().expect("store");
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((r, ns, _), s)| {
            *r == kind.resource
                && namespace.as_ref().is_none_or(|want| want == ns)
                && selector.matches(&s.object)
        })
        .map(|(_, s)| s.object.clone())
        .collect();
    axum::Json(json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.kind),
        "metadata": {"resourceVersion": store.rv.to_string()},
        "items": items
    }))
    .into_response()
}

fn watch(
    fake: FakeApiServer,
    kind: &'static Kind,
    namespace: Option<String>,
    selector: Selector,
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
    let relevant = {
        let namespace = namespace.clone();
        move |e: &WatchEvent| {
            e.resource == kind.resource && namespace.as_ref().is_none_or(|n| *n == e.namespace)
        }
    };
    // What a watcher with this selector sees of an event, if anything.
    let seen = move |e: &WatchEvent| -> Option<Value> {
        let now = selector.matches(&e.object);
        let before = e.previous.as_ref().is_some_and(|p| selector.matches(p));
        let kind = match (e.kind, before, now) {
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            ("ADDED" | "DELETED", _, true) => e.kind,
            _ => return None,
        };
        Some(json!({"type": kind, "object": e.object}))
    };
    // Subscribe before reading the log so nothing falls between the two.
    let mut live = fake.events.subscribe();
    let backlog: Vec<WatchEvent> = fake
        .store
        .lock()
        .expect("store")
        .log
        .iter()
        .filter(|e| e.rv > from && relevant(e))
        .cloned()
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(256);
    tokio::spawn(async move {
        let line = |v: Value| format!("{v}\n");
        if expired {
            let error = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
            let _ = tx.send(Ok(line(error))).await;
            return;
        }
        let mut last = from;
        for e in backlog {
            last = e.rv;
            if let Some(v) = seen(&e) {
                if tx.send(Ok(line(v))).await.is_err() {
                    return;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick() => {
                    if fake.faults.lock().map(|f| f.unavailable).unwrap_or(true) {
                        return;
                    }
                    if bookmarks {
                        let rv = fake.store.lock().map(|s| s.rv).unwrap_or(last);
                        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version(),
                            "metadata": {"resourceVersion": rv.to_string()}}});
                        if tx.send(Ok(line(bookmark))).await.is_err() { return; }
                    }
                }
                e = live.recv() => match e {
                    Ok(e) if relevant(&e) && e.rv > last => {
                        last = e.rv;
                        let lag = fake.faults.lock().map(|f| f.watch_delay).unwrap_or_default();
                        tokio::time::sleep(lag).await;
                        if let Some(v) = seen(&e) {
                            if tx.send(Ok(line(v))).await.is_err() { return; }
                        }
                    }
                    Ok(_) => {}
                    // Lagged or closed: end the watch; the client re-watches from its last RV.
                    Err(_) => return,
                }
            }
        }
    });
    let stream = receiver_stream(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn receiver_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<String, std::io::Error>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
