//! Tests against a real control plane (etcd, kube-apiserver, kube-controller-manager) that
//! `real_apiserver` builds from `tests/controlplane/` and runs on loopback. These first ones
//! prove the harness: admin access, the aggregation controller, TokenRequest and RBAC denials.

mod real_apiserver;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use real_apiserver::{control_plane, eventually, unique_name};
use serde_json::json;

/// Bound on any wait for a controller to act; they react within about a second when idle.
const CONTROLLER: Duration = Duration::from_secs(30);

#[tokio::test]
async fn admin_creates_a_namespace() {
    let Some(cp) = control_plane() else { return };
    let client = cp.admin_client().await;
    eprintln!(
        "control plane {} at {} started in {:?} ({})",
        cp.version,
        cp.server,
        cp.startup,
        cp.dir.display()
    );
    assert!(cp.version.starts_with("v1."), "version {:?}", cp.version);
    assert!(cp.kubeconfig_path.is_file());

    let name = unique_name("ns");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let got = namespaces.get(&name).await.expect("get namespace");
    assert_eq!(got.status.and_then(|s| s.phase).as_deref(), Some("Active"));

    // The serviceaccount controller gives it a `default` ServiceAccount.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    eventually(CONTROLLER, "the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;

    // The namespace controller finalizes a deletion: the namespace is gone, not stuck Terminating.
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually(CONTROLLER, "the namespace to be deleted", || async {
        matches!(namespaces.get_opt(&name).await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn aggregation_controller_adds_rules_to_view() {
    let Some(cp) = control_plane() else { return };
    let roles: Api<ClusterRole> = Api::all(cp.admin_client().await);
    let name = unique_name("aggregate-secrets-to-view");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name,
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }))
    .unwrap();
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create ClusterRole");

    let start = Instant::now();
    let grants_secrets = |r: &ClusterRole| {
        r.rules.iter().flatten().any(|rule| {
            rule.resources.iter().flatten().any(|x| x == "secrets")
                && rule.verbs.iter().any(|v| v == "get")
        })
    };
    eventually(
        CONTROLLER,
        "`view` to aggregate the secrets rule",
        || async { roles.get("view").await.ok().filter(|v| grants_secrets(v)) },
    )
    .await;
    eprintln!("aggregated into view after {:?}", start.elapsed());

    // And out again when the label goes.
    roles
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete ClusterRole");
    eventually(CONTROLLER, "`view` to drop the secrets rule", || async {
        roles.get("view").await.ok().filter(|v| !grants_secrets(v))
    })
    .await;
}

#[tokio::test]
async fn service_account_token_authenticates_and_rbac_denies() {
    let Some(cp) = control_plane() else { return };
    let admin = cp.admin_client().await;
    let ns = unique_name("tokens");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap();
    accounts
        .create(&PostParams::default(), &sa)
        .await
        .expect("create ServiceAccount");

    let token = cp.service_account_token(&ns, "reader").await;
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let as_sa = cp.client_with_token(&token).await;

    // Authenticated (a bad token would be 401)...
    let own: Api<ServiceAccount> = Api::namespaced(as_sa.clone(), &ns);
    match own.get("reader").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403 reading a ServiceAccount, got {other:?}"),
    }
    // ... as the ServiceAccount, and not allowed to list Secrets.
    let secrets: Api<Secret> = Api::namespaced(as_sa, &ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{ns}:reader")),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403 listing secrets, got {other:?}"),
    }

    let bad = cp.client_with_token("not-a-token").await;
    match Api::<Secret>::namespaced(bad, &ns)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401, "{s:?}"),
        other => panic!("expected 401 with a bad token, got {other:?}"),
    }

    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

#[tokio::test]
async fn client_certificate_users_are_authorized_by_rbac() {
    let Some(cp) = control_plane() else { return };
    let alice = cp.client_for_user("alice", Some("developers")).await;
    match Api::<Secret>::namespaced(alice, "default")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("User \"alice\""), "{}", s.message);
        }
        other => panic!("expected 403 for alice, got {other:?}"),
    }
    // Without credentials a request is anonymous, and RBAC gives system:anonymous nothing here.
    let anonymous = cp.anonymous_client().await;
    match Api::<Secret>::namespaced(anonymous, "default")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("system:anonymous"), "{}", s.message);
        }
        other => panic!("expected 403 for anonymous, got {other:?}"),
    }
}
