//! The install manifests: every overlay renders with `kubectl kustomize` and carries no webhook
//! configuration (secretscope registers its own once ready: the no-lockout property at the
//! manifest level), secretscope's own RBAC has exactly the strict-check findings README "Own RBAC"
//! explains, and every object is a valid Kubernetes object (it round-trips through the
//! k8s-openapi type of its kind without losing or changing a field).

mod common;
#[path = "common/install.rs"]
mod install;

use std::process::Command;

use serde_json::Value;

use install::{
    assert_no_lockout_install, assert_own_findings, assert_valid_object, by_key, check_strict,
    deploy_copy, documents, find, kubectl, kustomize, OWN_FINDINGS,
};
#[test]
fn every_overlay_renders_without_webhooks_passes_its_own_strict_check_and_is_valid() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let root = copy.path().join("deploy");
    for dir in [
        root.clone(),
        root.join("overlays/cert-manager"),
        root.join("overlays/plain"),
        root.join("overlays/grant-clusterrole"),
    ] {
        let context = dir.display().to_string();
        let yaml = kustomize(&kubectl, &dir);
        let docs = documents(&yaml);
        assert_no_lockout_install(&docs, &context);
        // secretscope's own RBAC in strict scope: exactly the findings README "Own RBAC" explains.
        // grant-clusterrole adds the shared ClusterRole (exempt by name in its policy, so no
        // finding) and finds the same two routes: the named grant is then `bind` on that
        // ClusterRole with create/patch of RoleBindings of its name.
        let objects = if dir.ends_with("grant-clusterrole") {
            7
        } else {
            6
        };
        assert_own_findings(&check_strict(&yaml), objects, OWN_FINDINGS, &context);

        let deployment = find(&docs, "Deployment", "secretscope");
        assert_eq!(deployment["spec"]["replicas"], 2);
        // No cainjector: the CA reaches the webhooks through the Secret's ca.crt.
        assert!(!yaml.contains("inject-ca-from"), "{context}");
    }
}

/// cert-manager's CA issuer writes `ca.crt` into the serving Secret (what secretscope registers
/// as its caBundle) only when the serving Certificate is issued by a CA Issuer.
#[test]
fn the_cert_manager_overlay_issues_the_serving_secret_from_a_ca_issuer() {
    let Some(kubectl) = kubectl() else { return };
    let docs = documents(&kustomize(&kubectl, &install::repo().join("deploy")));
    let serving = find(&docs, "Certificate", "secretscope-serving");
    assert_eq!(serving["spec"]["secretName"], "secretscope-tls");
    let issuer = serving["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuer");
    let issuer = find(&docs, "Issuer", issuer);
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA issuer");
    let ca = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["spec"]["secretName"] == ca_secret)
        .expect("the CA certificate");
    assert_eq!(ca["spec"]["isCA"], true);
}

/// The plain overlay's Secret carries the CA that signed its serving certificate as `ca.crt`
/// (the file `--webhook-ca-bundle` reads), never the CA's key.
#[test]
fn the_plain_overlay_secret_carries_the_ca_of_its_serving_certificate() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let plain = copy.path().join("deploy/overlays/plain");
    let docs = by_key(documents(&kustomize(&kubectl, &plain)));
    let secret = &docs["Secret/secretscope/secretscope-tls"];
    assert_eq!(secret["type"], "kubernetes.io/tls");
    use base64::Engine;
    let b64 = |file: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(plain.join("certs").join(file)).expect(file))
    };
    let mut keys: Vec<&String> = secret["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert_eq!(secret["data"][file], b64(file).as_str(), "{file}");
    }
    // No other Secret: the CA key stays in certs/.
    assert_eq!(docs.keys().filter(|k| k.starts_with("Secret/")).count(), 1);
}

/// Without certificates the plain overlay fails, naming the missing file in certs/, where the
/// committed README.md says to run `secretscope certs` first (kustomize prints no custom
/// message; `secretscope manifests` names the missing file too).
#[test]
fn the_plain_overlay_without_certs_points_at_secretscope_certs() {
    let Some(kubectl) = kubectl() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(install::repo().join("deploy"))
        .arg(tmp.path())
        .status()
        .expect("cp")
        .success());
    // As cloned: certs/ holds only its README (the certificates are git-ignored).
    let copy = tmp.path().join("deploy/overlays/plain");
    for f in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        let _ = std::fs::remove_file(copy.join("certs").join(f));
    }
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(&copy)
        .output()
        .expect("kubectl kustomize");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}/certs/tls.crt", copy.display())),
        "{stderr}"
    );
    let readme = std::fs::read_to_string(copy.join("certs/README.md")).expect("certs/README.md");
    assert!(readme.contains(
        "secretscope certs --out deploy/overlays/plain/certs --dns secretscope.secretscope.svc"
    ));

    let out = common::bin()
        .arg("manifests")
        .arg("--ca-file")
        .arg(copy.join("certs/ca.crt"))
        .output()
        .expect("manifests");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certs/ca.crt"));
}

/// `secretscope manifests` prints what the plain overlay renders, and it passes strict check.
#[test]
fn manifests_command_matches_the_plain_overlay() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let plain = copy.path().join("deploy/overlays/plain");
    let certs = plain.join("certs");
    let out = common::bin()
        .arg("manifests")
        .arg("--ca-file")
        .arg(certs.join("ca.crt"))
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .output()
        .expect("manifests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    assert_own_findings(&check_strict(&printed), 6, OWN_FINDINGS, "manifests");
    let printed = documents(&printed);
    for d in &printed {
        assert_valid_object(d);
    }
    let printed = by_key(printed);
    let rendered = by_key(documents(&kustomize(&kubectl, &plain)));
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        rendered.keys().collect::<Vec<_>>()
    );
    for (k, v) in &printed {
        assert_eq!(v, &rendered[k], "{k}");
    }
}

#[test]
fn manifests_command_refuses_a_bad_ca_bundle() {
    let out = common::bin()
        .args(["manifests", "--ca-bundle", "aGVsbG8="])
        .output()
        .expect("manifests");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no PEM certificate"));
}

/// The grant-clusterrole overlay: the policy is the shipped one but for its two lines, secretscope
/// holds exactly what ClusterRole mode needs (README "Tenancy namespaces"), and the ClusterRole
/// it binds carries the policy's verbs.
#[test]
fn the_grant_clusterrole_overlay_changes_only_what_the_mode_needs() {
    let Some(kubectl) = kubectl() else { return };
    let root = install::repo().join("deploy");
    let base = documents(&kustomize(&kubectl, &root));
    let docs = documents(&kustomize(
        &kubectl,
        &root.join("overlays/grant-clusterrole"),
    ));
    let policy = install::shipped_policy(&docs);
    let shipped = install::shipped_policy(&base);
    let changed: Vec<(&str, &str)> = shipped
        .lines()
        .zip(policy.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(shipped.lines().count(), policy.lines().count());
    assert_eq!(
        changed
            .iter()
            .map(|(_, b)| b.split('#').next().unwrap().trim())
            .collect::<Vec<_>>(),
        ["clusterRoles: [secretscope-secrets]", "grant: clusterRole"],
        "{changed:?}"
    );
    let parsed =
        secretscope::policy::Policy::parse(&policy, "grant-clusterrole").expect("policy parses");
    assert_eq!(
        parsed.file.tenancy.grant,
        secretscope::policy::GrantMode::ClusterRole
    );

    let role = find(&docs, "ClusterRole", "secretscope");
    let rules = role["rules"].as_array().expect("rules");
    let text = serde_json::to_string(rules).unwrap();
    assert!(!text.contains("escalate"), "{text}");
    assert!(rules
        .iter()
        .any(|r| r["resources"] == serde_json::json!(["clusterroles"])
            && r["verbs"] == serde_json::json!(["bind"])
            && r["resourceNames"] == serde_json::json!(["secretscope-secrets"])));
    assert!(!rules
        .iter()
        .any(|r| r["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == "roles")
                && r["verbs"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x == "create")))));
    let shared = find(&docs, "ClusterRole", "secretscope-secrets");
    assert_eq!(
        shared["rules"][0]["verbs"],
        serde_json::to_value(&parsed.file.tenancy.verbs).unwrap()
    );
}

/// The optional components: added to the default install they render valid objects, change
/// nothing else, and keep the own check's findings.
#[test]
fn the_monitoring_and_network_policy_components_add_only_their_objects() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let root = copy.path().join("deploy");
    let kit = install::overlay(&copy, "deploy/overlays/kit", install::KIT);
    let yaml = kustomize(&kubectl, &kit);
    let docs = documents(&yaml);
    assert_no_lockout_install(&docs, "kit");
    assert_own_findings(&check_strict(&yaml), 6, OWN_FINDINGS, "kit");
    let mut with = by_key(docs.clone());
    let without = by_key(documents(&kustomize(&kubectl, &root)));
    for (k, v) in &without {
        assert_eq!(with.remove(k).as_ref(), Some(v), "{k}");
    }
    assert_eq!(
        with.keys().collect::<Vec<_>>(),
        [
            "ConfigMap/secretscope/secretscope-dashboard",
            "NetworkPolicy/secretscope/secretscope",
            "PrometheusRule/secretscope/secretscope",
            "ServiceMonitor/secretscope/secretscope",
        ]
    );
    let alerts: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PrometheusRule")
        .flat_map(|d| install::prometheus_rules(d))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "SecretscopeWebhookErrors",
            "SecretscopeWebhookSlow",
            "SecretscopeTenancyForbidden",
            "SecretscopeServingCertExpiresSoon",
            "SecretscopeLeaderCount",
            "SecretscopeStateNotSynced",
            "SecretscopeRegistrationFailing",
        ]
    );
    // The Service selects the pods the ServiceMonitor's port is on, and the NetworkPolicy admits
    // that port only from the monitoring namespace, the webhook's from anywhere.
    let policy = find(&docs, "NetworkPolicy", "secretscope");
    assert_eq!(policy["spec"]["ingress"][0]["from"], Value::Null);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8443);
    assert_eq!(policy["spec"]["ingress"][1]["ports"][0]["port"], 9090);
    let service = find(&docs, "Service", "secretscope");
    assert!(service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "metrics" && p["port"] == 9090));
}

/// Every metric the PrometheusRule's alerts and the dashboard's panels use is one the real
/// binary exposes on `/metrics` (a renamed metric would leave an alert that never fires).
#[tokio::test]
async fn every_metric_the_monitoring_kit_uses_is_exposed_by_the_binary() {
    let Some(kubectl) = kubectl() else { return };
    let dir = install::repo().join("deploy/components/monitoring");
    let docs = documents(&kustomize(&kubectl, &dir));
    let state = std::fs::read_to_string(install::repo().join("examples/state/platform-rbac.yaml"))
        .expect("examples/state");
    let webhook = common::Webhook::start(&state, "", &["--metrics-listen", "127.0.0.1:0"]);
    let url = webhook.metrics_url().expect("metrics address");
    let page = common::scrape(&webhook.client(), &url)
        .await
        .expect("scrape");
    // Sample names: what precedes the labels or the value.
    let exposed: std::collections::BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .collect();
    let exprs = install::monitoring_expressions(&docs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    for expr in &exprs {
        let names = install::metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                exposed.contains(name.as_str()),
                "{name} (in {expr}) is not on /metrics: {exposed:?}"
            );
        }
    }
}

/// README "Install": an overlay of one's own sets the image with kustomize `images:`, and only
/// the image changes.
#[test]
fn an_overlay_sets_the_image_with_kustomize_images() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let mine = install::overlay(
        &copy,
        "platform/secretscope",
        "resources:\n- ../../deploy\nimages:\n- name: ghcr.io/secretscope/secretscope\n  newName: registry.example.com/platform/secretscope\n  newTag: 0.1.0\n",
    );
    let mut docs = by_key(documents(&kustomize(&kubectl, &mine)));
    let mut base = by_key(documents(&kustomize(&kubectl, &copy.path().join("deploy"))));
    let key = "Deployment/secretscope/secretscope";
    let image = |d: &mut std::collections::BTreeMap<String, Value>| {
        d.get_mut(key).expect("deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .take()
    };
    assert_eq!(
        image(&mut docs),
        "registry.example.com/platform/secretscope:0.1.0"
    );
    assert_eq!(image(&mut base), "ghcr.io/secretscope/secretscope:0.1.0");
    assert_eq!(docs, base);
}

/// The image the release workflow publishes is the one the installs run, built from the
/// Dockerfile for two architectures with an SBOM; the Dockerfile's final stage is static and runs
/// as the UID the Deployment requires. (Neither is built here: no container engine.)
#[test]
fn the_release_workflow_and_dockerfile_match_the_install() {
    let repo = install::repo();
    let workflow: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo.join(".github/workflows/release.yml")).expect("release.yml"),
    )
    .expect("release.yml is YAML");
    let steps = workflow["jobs"]["image"]["steps"]
        .as_array()
        .expect("steps");
    let build = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action"))
        })
        .expect("a build-push step");
    assert_eq!(build["with"]["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(build["with"]["sbom"], true);
    assert_eq!(build["with"]["push"], true);
    let meta = steps
        .iter()
        .find(|s| s["id"] == "meta")
        .expect("a metadata step");
    assert!(meta["with"]["images"]
        .as_str()
        .is_some_and(|i| i.starts_with("ghcr.io/") && i.ends_with("/secretscope")));
    assert_eq!(workflow["on"]["push"]["tags"], serde_json::json!(["v*"]));

    let dockerfile = std::fs::read_to_string(repo.join("Dockerfile")).expect("Dockerfile");
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("FROM");
    assert!(last_from.contains("distroless/static"), "{last_from}");
    assert!(dockerfile.contains("+crt-static"));
    let deployment = std::fs::read_to_string(repo.join("deploy/base/deployment.yaml")).unwrap();
    let deployment: Value = serde_saphyr::from_str(&deployment).expect("deployment");
    let uid = &deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"];
    assert!(
        dockerfile.contains(&format!("USER {uid}:{uid}")),
        "{uid} {dockerfile}"
    );
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/secretscope/secretscope:"))
    );
}
