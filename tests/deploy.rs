//! The install manifests: every overlay renders with `kubectl kustomize` and carries no webhook
//! configuration (secretscope registers its own once ready: the no-lockout property at the
//! manifest level), secretscope's own RBAC has exactly the strict-check findings README "Own RBAC"
//! explains, and every object is a valid Kubernetes object (it round-trips through the
//! k8s-openapi type of its kind without losing or changing a field).

mod common;
#[path = "common/install.rs"]
mod install;

use std::process::Command;

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
