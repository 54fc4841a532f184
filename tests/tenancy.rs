//! Tenancy namespaces against a (fake) API server, through the real binary: new namespaces get
//! their secrets Role and RoleBinding, existing ones are backfilled, drift is repaired, dry-run has
//! no side effect, outages lose nothing, 403s name the missing permission, and of two replicas only
//! the Lease holder reconciles.

mod common;
mod fake_apiserver;

use std::time::{Duration, Instant};

use axum::http::Method;
use common::{review, Webhook};
use fake_apiserver::{Authorizer, FakeApiServer};
use serde_json::{json, Value};

const ROLE: &str = "secretscope-secrets";

const POLICY: &str = "tenancy:
  subjects:
  - {kind: ServiceAccount, name: portal, namespace: platform}
";

/// Short leases so handover fits in a test.
const FAST_LEASE: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--lease-grace",
    "1s",
    "--metrics-listen",
    "127.0.0.1:0",
];

async fn fake() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.create_namespace("secretscope", &[]);
    fake
}

fn start(fake: &FakeApiServer, policy: &str, identity: &str) -> Webhook {
    let mut args = FAST_LEASE.to_vec();
    args.extend(["--identity", identity]);
    Webhook::start_cluster(&fake.kubeconfig(), policy, &args)
}

async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_grant(fake: &FakeApiServer, ns: &str) -> bool {
    fake.get("roles", ns, ROLE).is_some() && fake.get("rolebindings", ns, ROLE).is_some()
}

fn leading(wh: &Webhook) -> bool {
    wh.logs().iter().any(|l| l.contains("leading: reconciling"))
}

fn namespace_review(name: &str, dry_run: bool) -> Value {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let mut body = review("CREATE", Some(&ns), None);
    body["request"]["dryRun"] = dry_run.into();
    body
}

#[tokio::test]
async fn a_new_tenancy_namespace_gets_its_role_and_binding_and_dry_run_gets_nothing() {
    let fake = fake().await;
    let wh = start(&fake, POLICY, "replica-a");
    eventually("leadership", Duration::from_secs(10), || leading(&wh)).await;

    // As the API server does it: the mutating webhook first, then the write.
    let resp = wh
        .post_review("/mutate", &namespace_review("az-acme", false))
        .await;
    assert!(resp["response"]["patch"].is_string(), "labelled: {resp}");
    fake.create_namespace("az-acme", &[("secretscope.io/tenant", "acme")]);
    eventually(
        "Role and RoleBinding in az-acme",
        Duration::from_secs(5),
        || has_grant(&fake, "az-acme"),
    )
    .await;

    let role = fake.get("roles", "az-acme", ROLE).expect("role");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"],
                "verbs": ["get", "list", "create", "update", "patch", "delete"]}])
    );
    assert_eq!(
        role["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "secretscope"
    );
    assert_eq!(role["metadata"]["labels"]["secretscope.io/tenant"], "acme");
    let binding = fake.get("rolebindings", "az-acme", ROLE).expect("binding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "portal", "namespace": "platform"}])
    );
    assert!(
        fake.request_count(&format!(
            "PATCH roles/az-acme/{ROLE}?fieldManager=secretscope&force=true"
        )) >= 1,
        "server-side apply with secretscope's field manager, forced"
    );
    // Nothing in namespaces that are not tenancy namespaces.
    assert!(fake.get("roles", "default", ROLE).is_none());

    // Dry-run: labelled in the response, and no side effect at all.
    let resp = wh
        .post_review("/mutate", &namespace_review("az-dry", true))
        .await;
    assert!(resp["response"]["patch"].is_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.request_count("az-dry"),
        0,
        "no API call about a dry-run namespace"
    );
}

#[tokio::test]
async fn existing_namespaces_are_backfilled_and_drift_is_repaired() {
    let fake = fake().await;
    for i in 0..40 {
        fake.create_namespace(&format!("az-t{i}"), &[]);
    }
    fake.create_namespace("tools", &[("secretscope.io/tenant", "tools")]);
    fake.create_namespace("payments", &[]);
    fake.create_namespace("az-leaving", &[]);
    fake.delete("namespaces", "az-leaving"); // Terminating
    let wh = start(&fake, POLICY, "replica-a");

    eventually("backfill of 41 namespaces", Duration::from_secs(15), || {
        (0..40).all(|i| has_grant(&fake, &format!("az-t{i}"))) && has_grant(&fake, "tools")
    })
    .await;
    assert!(!has_grant(&fake, "payments"));
    assert_eq!(
        fake.request_count("PATCH roles/az-leaving"),
        0,
        "a Terminating namespace is left alone"
    );
    assert!(
        wh.metric("secretscope_tenancy_reconciles_total{outcome=\"skipped_terminating\"}")
            .await
            >= Some(1.0)
    );

    // Deleted: put back.
    fake.delete_in("roles", "az-t1", ROLE);
    eventually("deleted Role put back", Duration::from_secs(5), || {
        fake.get("roles", "az-t1", ROLE).is_some()
    })
    .await;

    // Edited by someone else: secretscope's apply is forced, its fields win.
    fake.edit("roles", "az-t2", ROLE, |r| {
        r["rules"] = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    });
    eventually("edited Role repaired", Duration::from_secs(5), || {
        fake.get("roles", "az-t2", ROLE)
            .is_some_and(|r| r["rules"][0]["resources"] == json!(["secrets"]))
    })
    .await;

    // A RoleBinding whose subjects were replaced.
    fake.edit("rolebindings", "az-t3", ROLE, |b| {
        b["subjects"] =
            json!([{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]);
    });
    eventually(
        "edited RoleBinding repaired",
        Duration::from_secs(5),
        || {
            fake.get("rolebindings", "az-t3", ROLE)
                .is_some_and(|b| b["subjects"][0]["name"] == "portal")
        },
    )
    .await;

    // The managed-by label removed: the object leaves the watch's selection; put back too.
    fake.edit("rolebindings", "az-t4", ROLE, |b| {
        b["metadata"]["labels"] = json!({});
    });
    eventually("label restored", Duration::from_secs(5), || {
        fake.get("rolebindings", "az-t4", ROLE).is_some_and(|b| {
            b["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "secretscope"
        })
    })
    .await;
}

#[tokio::test]
async fn an_api_server_outage_delays_bootstraps_and_loses_none() {
    let fake = fake().await;
    let wh = start(&fake, POLICY, "replica-a");
    eventually("leadership", Duration::from_secs(10), || leading(&wh)).await;
    fake.create_namespace("az-before", &[]);
    eventually("first grant", Duration::from_secs(5), || {
        has_grant(&fake, "az-before")
    })
    .await;

    fake.set_unavailable();
    for i in 0..5 {
        fake.create_namespace(&format!("az-during{i}"), &[]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!((0..5).all(|i| !has_grant(&fake, &format!("az-during{i}"))));
    fake.set_available();

    eventually(
        "every namespace created during the outage",
        Duration::from_secs(30),
        || (0..5).all(|i| has_grant(&fake, &format!("az-during{i}"))),
    )
    .await;
    // Transient write failures are retried the same way.
    fake.inject(
        Method::PATCH,
        "rolebindings",
        500,
        "etcdserver: request timed out",
        3,
    );
    // A conflict (as from an apply racing another writer) is retried too.
    fake.inject(
        Method::PATCH,
        "roles",
        409,
        "Operation cannot be fulfilled on roles.rbac.authorization.k8s.io \"secretscope-secrets\": the object has been modified",
        1,
    );
    fake.create_namespace("az-flaky", &[]);
    eventually(
        "grant after a 409 and three 500s",
        Duration::from_secs(20),
        || has_grant(&fake, "az-flaky"),
    )
    .await;
    assert!(
        wh.metric("secretscope_tenancy_reconciles_total{outcome=\"error\"}")
            .await
            >= Some(4.0)
    );
}

fn deploy_rbac() -> Vec<secretscope::rbac::RbacObject> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml");
    let loaded = secretscope::manifest::load_file(&path);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.objects.into_iter().map(|o| o.object).collect()
}

#[tokio::test]
async fn deploy_rbac_is_enough_and_a_403_names_the_missing_permission() {
    let fake = fake().await;
    let rbac = deploy_rbac();
    fake.authorize(Authorizer::for_service_account(
        &rbac,
        "secretscope",
        "secretscope",
    ));
    fake.create_namespace("az-ok", &[]);
    let wh = start(&fake, POLICY, "replica-a");
    eventually(
        "grant with exactly deploy/'s permissions",
        Duration::from_secs(10),
        || has_grant(&fake, "az-ok"),
    )
    .await;
    let lease = fake
        .get("leases", "secretscope", "secretscope-reconciler")
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    // Without `escalate`: escalation prevention refuses the Role.
    let without_escalate: Vec<_> = rbac
        .iter()
        .cloned()
        .map(|mut o| {
            if let secretscope::rbac::RbacObject::ClusterRole(cr) = &mut o {
                for rule in &mut cr.rules {
                    rule.verbs.retain(|v| v != "escalate");
                }
            }
            o
        })
        .collect();
    fake.authorize(Authorizer::for_service_account(
        &without_escalate,
        "secretscope",
        "secretscope",
    ));
    fake.create_namespace("az-refused", &[]);
    eventually("an Event naming the missing verb", Duration::from_secs(10), || {
        fake.list("events").iter().any(|e| {
            e["regarding"]["name"] == "az-refused"
                && e["type"] == "Warning"
                && e["note"].as_str().is_some_and(|n| {
                    n.contains("verb \"escalate\" on roles.rbac.authorization.k8s.io with resourceNames [\"secretscope-secrets\"] in ClusterRole \"secretscope\"")
                })
        })
    })
    .await;
    assert!(!has_grant(&fake, "az-refused"));
    assert!(
        wh.metric("secretscope_tenancy_reconciles_total{outcome=\"forbidden\"}")
            .await
            >= Some(1.0)
    );
    assert!(wh.wait_for_log("secretscope lacks a permission", Duration::from_secs(1)));

    // Fixed: the retry succeeds.
    fake.authorize(Authorizer::for_service_account(
        &rbac,
        "secretscope",
        "secretscope",
    ));
    eventually(
        "grant once the permission is back",
        Duration::from_secs(20),
        || has_grant(&fake, "az-refused"),
    )
    .await;
}

#[tokio::test]
async fn two_replicas_one_reconciler_and_handover_when_it_dies() {
    let fake = fake().await;
    let ids = ["replica-a", "replica-b"];
    let mut replicas = [start(&fake, POLICY, ids[0]), start(&fake, POLICY, ids[1])];
    eventually("a leader", Duration::from_secs(10), || {
        replicas.iter().any(leading)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leaders: Vec<usize> = (0..2).filter(|&i| leading(&replicas[i])).collect();
    assert_eq!(leaders.len(), 1, "exactly one replica leads");
    let (l, f) = (leaders[0], 1 - leaders[0]);
    fake.create_namespace("az-one", &[]);
    eventually("grant by the leader", Duration::from_secs(5), || {
        has_grant(&fake, "az-one")
    })
    .await;
    let granted = "secretscope_tenancy_reconciles_total{outcome=\"granted\"}";
    assert!(replicas[l].metric(granted).await >= Some(1.0));
    // Every labelled counter exists from the start, at 0: the follower's stays there.
    assert_eq!(
        replicas[f].metric(granted).await,
        Some(0.0),
        "the follower reconciles nothing"
    );
    assert_eq!(
        replicas[f].metric("secretscope_tenancy_leader").await,
        Some(0.0)
    );

    // The leader dies without releasing the Lease: the other takes over once it expires.
    replicas[l].child.kill().expect("kill");
    eventually("handover", Duration::from_secs(15), || {
        leading(&replicas[f])
    })
    .await;
    fake.create_namespace("az-two", &[]);
    eventually("grant by the new leader", Duration::from_secs(5), || {
        has_grant(&fake, "az-two")
    })
    .await;
    let lease = fake
        .get("leases", "secretscope", "secretscope-reconciler")
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], ids[f]);
}

#[tokio::test]
async fn prune_removes_only_what_secretscope_made() {
    let fake = fake().await;
    let policy = format!("{POLICY}  prune: true\n");
    fake.create_namespace("team-x", &[("secretscope.io/tenant", "x")]);
    // Someone else's Role of the same name in a namespace that is not a tenancy namespace.
    fake.create_namespace("other", &[]);
    fake.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ROLE, "namespace": "other"}, "rules": []}),
    );
    let _wh = start(&fake, &policy, "replica-a");
    eventually("grant", Duration::from_secs(10), || {
        has_grant(&fake, "team-x")
    })
    .await;

    fake.edit("namespaces", "", "team-x", |ns| {
        ns["metadata"]["labels"] = json!({});
    });
    eventually("pruned", Duration::from_secs(5), || {
        fake.get("roles", "team-x", ROLE).is_none()
            && fake.get("rolebindings", "team-x", ROLE).is_none()
    })
    .await;
    assert!(
        fake.get("roles", "other", ROLE).is_some(),
        "not secretscope's: kept"
    );
}

#[tokio::test]
async fn cluster_role_mode_binds_the_shared_cluster_role() {
    let fake = fake().await;
    let policy = format!("{POLICY}  grant: clusterRole\n");
    fake.create_namespace("az-shared", &[]);
    let _wh = start(&fake, &policy, "replica-a");
    eventually("binding", Duration::from_secs(10), || {
        fake.get("rolebindings", "az-shared", ROLE).is_some()
    })
    .await;
    let binding = fake
        .get("rolebindings", "az-shared", ROLE)
        .expect("binding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert!(
        fake.get("roles", "az-shared", ROLE).is_none(),
        "no per-namespace Role"
    );
}

#[tokio::test]
async fn the_managed_role_name_is_allowed_only_in_tenancy_namespaces() {
    let fake = fake().await;
    fake.create_namespace("labelled", &[("secretscope.io/tenant", "t")]);
    fake.create_namespace("plain", &[]);
    let wh = Webhook::start_cluster(&fake.kubeconfig(), "", &[]);
    let binding = |ns: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "grab", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}]})
    };
    let allowed = |resp: Value| resp["response"]["allowed"] == true;
    assert!(allowed(
        wh.review(&review("CREATE", Some(&binding("labelled")), None))
            .await
    ));
    let resp = wh
        .review(&review("CREATE", Some(&binding("plain")), None))
        .await;
    assert!(!allowed(resp.clone()));
    assert!(resp["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("this namespace is not one")));
    let resp = wh
        .review(&review("CREATE", Some(&binding("ghost")), None))
        .await;
    assert!(resp["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("the namespace does not exist")));
    // By name pattern no lookup is needed.
    let before = fake.request_count("GET namespaces/");
    assert!(allowed(
        wh.review(&review("CREATE", Some(&binding("az-x")), None))
            .await
    ));
    assert_eq!(fake.request_count("GET namespaces/"), before);
}

#[tokio::test]
async fn a_nudge_serves_a_new_namespace_even_when_the_watch_lags() {
    let fake = fake().await;
    let wh = start(&fake, POLICY, "replica-a");
    eventually("leadership", Duration::from_secs(10), || leading(&wh)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.set_watch_delay(Duration::from_secs(30));
    let resp = wh
        .post_review("/mutate", &namespace_review("az-quick", false))
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    fake.create_namespace("az-quick", &[("secretscope.io/tenant", "quick")]);
    eventually(
        // The bar is one second; the budget leaves room for a loaded CI machine.
        "grant within seconds despite a 30 s watch lag",
        Duration::from_secs(3),
        || has_grant(&fake, "az-quick"),
    )
    .await;
}
