//! The validating webhook against a (fake) API server: the RBAC cache is fed by list + watch,
//! verdicts are binding-aware once synced and strict before, and outages are ridden out.

mod common;
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::{object, review, Webhook};
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};

fn secrets_role(name: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name},
           "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})
}

fn binding(name: &str, role: &str, user: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
}

/// A review of creating `role` (a ClusterRole with Secrets access): allowed exactly when no
/// ClusterRoleBinding grants it, in bindings scope.
async fn role_allowed(wh: &Webhook, role: &str) -> bool {
    let body = review(
        "CREATE",
        Some(&object(&secrets_role(role).to_string())),
        None,
    );
    wh.review(&body).await["response"]["allowed"] == true
}

async fn ready(wh: &Webhook) -> bool {
    matches!(wh.client().get(wh.url("/readyz")).send().await, Ok(r) if r.status() == 200)
}

async fn eventually(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn state_objects(wh: &Webhook) -> u64 {
    let objects = wh.metric("secretscope_state_objects ").await;
    objects.expect("secretscope_state_objects") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_the_cluster_and_reviews_make_no_api_calls() {
    let fake = FakeApiServer::start().await;
    fake.apply(secrets_role("reader"));
    fake.apply(binding("bob-reads", "reader", "bob"));
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &["--metrics-listen", "127.0.0.1:0"]);
    eventually("synced", Duration::from_secs(15), async || ready(&wh).await).await;
    assert_eq!(state_objects(&wh).await, 2);

    // Judged from the cache alone: a binding of a cached Secrets role, a bound Secrets role,
    // a harmless role. Not one request reaches the API server for them.
    let before = fake.requests.lock().map(|r| r.len()).unwrap_or_default();
    let crb = binding("mallory-reads", "reader", "mallory");
    let out = wh
        .review(&review("CREATE", Some(&object(&crb.to_string())), None))
        .await;
    assert_eq!(out["response"]["allowed"], false);
    assert!(!role_allowed(&wh, "reader").await);
    let harmless = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "viewer"},
                          "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]});
    let out = wh
        .review(&review(
            "CREATE",
            Some(&object(&harmless.to_string())),
            None,
        ))
        .await;
    assert_eq!(out["response"]["allowed"], true);
    let after = fake.requests.lock().map(|r| r.len()).unwrap_or_default();
    assert_eq!(
        after,
        before,
        "{:?}",
        fake.requests.lock().map(|r| r[before..].to_vec())
    );

    // Watched: adds and deletes reach the cache.
    fake.apply(binding("eve-reads", "reader", "eve"));
    eventually("add seen", Duration::from_secs(10), async || {
        state_objects(&wh).await == 3
    })
    .await;
    fake.delete("clusterrolebindings", "eve-reads");
    eventually("delete seen", Duration::from_secs(10), async || {
        state_objects(&wh).await == 2
    })
    .await;
}

/// A binding written a moment ago, then a Secrets rule added to its role: the role's review
/// must not be judged unbound because the binding has not reached the cache yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_verdict_on_a_secrets_role_is_confirmed_live() {
    let fake = FakeApiServer::start().await;
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    eventually("synced", Duration::from_secs(15), async || ready(&wh).await).await;
    fake.set_watch_delay(Duration::from_secs(30));
    fake.apply(binding("eve-reads", "late", "eve"));

    let body = review(
        "UPDATE",
        Some(&object(&secrets_role("late").to_string())),
        Some(&object(&secrets_role("late").to_string())),
    );
    let out = wh.review(&body).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains(r#"grants User "eve" cluster-wide read of Secrets (get, list) through ClusterRoleBinding "eve-reads""#), "{msg}");

    // Really unbound: the live list confirms it and the role is admitted.
    assert!(role_allowed(&wh, "nobody-binds-this").await);
    // The list cannot be read: fail closed.
    fake.fail_lists(1);
    let out = wh
        .review(&review(
            "CREATE",
            Some(&object(&secrets_role("unsure").to_string())),
            None,
        ))
        .await;
    assert_eq!(out["response"]["allowed"], false);
    let msg = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("could not be confirmed"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_sync_it_is_not_ready_and_judges_strictly() {
    let fake = FakeApiServer::start().await;
    fake.set_list_delay(Duration::from_secs(3));
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    assert!(!ready(&wh).await, "not ready before the lists return");
    // No binding exists, but without a complete picture the webhook fails closed.
    assert!(!role_allowed(&wh, "unbound").await);
    eventually("synced", Duration::from_secs(15), async || ready(&wh).await).await;
    // (Lists still take 3s here, longer than the live confirmation may: that would fail closed.)
    fake.set_list_delay(Duration::ZERO);
    assert!(role_allowed(&wh, "unbound").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_errors_and_expired_watches_lose_nothing() {
    let fake = FakeApiServer::start().await;
    fake.fail_lists(3);
    fake.apply(secrets_role("reader"));
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    // Retried with backoff through the 500s.
    eventually(
        "synced after failures",
        Duration::from_secs(30),
        async || ready(&wh).await,
    )
    .await;
    assert!(
        wh.logs().iter().any(|l| l.contains("RBAC watch failed")),
        "the outage is logged"
    );

    // The watch expires (410): the cache re-lists, and what changed meanwhile is seen.
    fake.expire_next_watch();
    fake.apply(binding("bob-reads", "reader", "bob"));
    eventually(
        "change after 410 seen",
        Duration::from_secs(20),
        async || !role_allowed(&wh, "reader").await,
    )
    .await;
}

/// Issue 9 bug 2: after an outage the old watch position is gone and events may be missing. The
/// cache counts as unsynced (strict verdicts, /readyz 503) from the failure until a fresh list,
/// and that list starts within seconds of the API server being back, not after a backoff grown
/// during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_it_is_unsynced_until_relisted_within_seconds() {
    let fake = FakeApiServer::start().await;
    fake.apply(secrets_role("reader"));
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    eventually("synced", Duration::from_secs(20), async || ready(&wh).await).await;
    assert!(role_allowed(&wh, "reader").await, "unbound: allowed");

    fake.set_unavailable();
    eventually(
        "unsynced during the outage",
        Duration::from_secs(10),
        async || !ready(&wh).await,
    )
    .await;
    // Strict meanwhile: a Secrets ClusterRole is denied whatever its bindings.
    assert!(!role_allowed(&wh, "reader").await, "strict while unsynced");
    // Long enough for a growing backoff to pass several seconds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    fake.set_available();
    let back = std::time::Instant::now();
    eventually(
        "re-listed after the outage",
        Duration::from_secs(10),
        async || ready(&wh).await,
    )
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "re-listed {took:?} after the API server was back"
    );
    assert!(role_allowed(&wh, "reader").await, "binding-aware again");
}

#[test]
fn without_a_cluster_or_standalone_it_says_what_to_do() {
    let certs = common::Certs::new();
    let out = common::bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(certs.path("tls.crt"))
        .arg("--tls-key")
        .arg(certs.path("tls.key"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot build a Kubernetes client") && err.contains("--standalone"),
        "{err}"
    );
}

/// `kubectl apply` of a Secrets ClusterRole followed at once by its binding: the binding's review
/// can arrive before the role reaches the cache. One live GET closes that gap; a binding to a role
/// that does not exist is refused, so the role cannot be judged later against a binding the cache
/// has not seen yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_whose_role_the_cache_has_not_seen_is_judged_by_a_live_read() {
    let fake = FakeApiServer::start().await;
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    eventually("synced", Duration::from_secs(15), async || ready(&wh).await).await;
    fake.set_watch_delay(Duration::from_secs(30));

    fake.apply(secrets_role("fresh"));
    let crb = binding("bob-fresh", "fresh", "bob");
    let out = wh
        .review(&review("CREATE", Some(&object(&crb.to_string())), None))
        .await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains(
            r#"grants User "bob" cluster-wide read of Secrets (get, list) via ClusterRole "fresh""#
        ),
        "{msg}"
    );
    assert_eq!(fake.request_count("GET clusterroles/fresh"), 1);

    let crb = binding("bob-ghost", "ghost", "bob");
    let out = wh
        .review(&review("CREATE", Some(&object(&crb.to_string())), None))
        .await;
    assert_eq!(out["response"]["allowed"], false);
    let msg = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains(
            r#"ClusterRole "ghost" does not exist; create the ClusterRole before binding it"#
        ),
        "{msg}"
    );

    // A harmless role read live is judged harmless: the binding goes through.
    fake.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "viewer"},
                      "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}));
    let crb = binding("bob-views", "viewer", "bob");
    let out = wh
        .review(&review("CREATE", Some(&object(&crb.to_string())), None))
        .await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_who_holds_cluster_wide_secrets_access() {
    let fake = FakeApiServer::start().await;
    fake.apply(secrets_role("reader"));
    fake.apply(binding("bob-reads", "reader", "bob"));
    fake.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "cluster-admin"},
                      "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    );
    fake.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                      "metadata": {"name": "cluster-admin"},
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                      "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]}));
    fake.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "exec"},
                      "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}));
    fake.apply(binding("ci-exec", "exec", "ci"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).expect("write");

    let path = kubeconfig.clone();
    let run = move |format: &str| {
        let out = common::bin()
            .args(["audit", "--format", format])
            .env("KUBECONFIG", &path)
            .output()
            .expect("audit");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = tokio::task::spawn_blocking(move || (run("json"), run("text")))
        .await
        .expect("join");
    let (code_json, json_out) = code;
    assert_eq!(code_json, Some(1), "bob holds Secrets access: {json_out}");
    let v: Value = serde_json::from_str(&json_out).expect("json");
    let subjects: Vec<(String, bool)> = v["subjects"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| {
            (
                s["subject"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["exempt"] == true,
            )
        })
        .collect();
    assert_eq!(
        subjects,
        vec![
            ("system:masters".into(), true),
            ("bob".into(), false),
            ("ci".into(), false)
        ]
    );
    assert_eq!(
        v["summary"],
        json!({"secrets": 1, "exempt": 1, "indirect_only": 1})
    );
    let (_, text) = text;
    assert!(
        text.contains(
            "User \"bob\"\n  Secrets: get, list through ClusterRoleBinding \"bob-reads\""
        ),
        "{text}"
    );
    assert!(
        text.contains("indirect route: exec into pods (pods/exec)"),
        "{text}"
    );

    // The API server unreachable: exit 2 with the reason.
    std::fs::write(
        &kubeconfig,
        fake.kubeconfig().replace(&fake.url, "http://127.0.0.1:9"),
    )
    .expect("write");
    let out = common::bin()
        .args(["audit"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("audit");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot list ClusterRoles and ClusterRoleBindings"));
}
