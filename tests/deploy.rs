//! The install manifests: every overlay renders with `kubectl kustomize`, secretscope's own RBAC
//! passes its own check in strict scope, and every object is a valid Kubernetes object (it
//! round-trips through the k8s-openapi type of its kind without losing or changing a field).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl (for `kubectl kustomize`) is missing in CI"
        );
        eprintln!("skipping: kubectl not found");
    }
    found
}

/// A copy of deploy/ with dev certificates in the plain overlay, as its README says to make them.
fn deploy_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(tmp.path())
        .status()
        .expect("cp");
    assert!(status.success());
    let certs = tmp.path().join("deploy/overlays/plain/certs");
    let out = common::bin()
        .args(["certs", "--dns", "secretscope.secretscope.svc", "--out"])
        .arg(&certs)
        .output()
        .expect("certs");
    assert!(out.status.success());
    tmp
}

fn render(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple_with_options(yaml, secretscope::manifest::yaml_options())
        .expect("rendered YAML parses")
}

/// Go's base64 decoder, which the API server uses for `[]byte` fields, skips line breaks, and
/// kustomize wraps long values; k8s-openapi's decoder does not skip them. Unwrap exactly those
/// fields so the typed check sees what the API server would.
fn unwrap_base64(v: &mut Value) {
    if v["kind"] == "Secret" {
        if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                if let Some(s) = value.as_str() {
                    *value = s.split_whitespace().collect::<String>().into();
                }
            }
        }
    }
    if let Some(webhooks) = v.get_mut("webhooks").and_then(Value::as_array_mut) {
        for w in webhooks {
            if let Some(b) = w["clientConfig"].get_mut("caBundle") {
                if let Some(s) = b.as_str() {
                    *b = s.split_whitespace().collect::<String>().into();
                }
            }
        }
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
    let typed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", v["kind"], v["metadata"]["name"]));
    serde_json::to_value(&typed).expect("serialize")
}

/// Parses `v` as the k8s-openapi type of its kind and checks nothing was dropped or changed.
fn assert_valid_object(v: &Value) {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, core::v1 as core, policy::v1 as policy,
        rbac::v1 as rbac,
    };
    let mut v = v.clone();
    unwrap_base64(&mut v);
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let back = match (v["apiVersion"].as_str().unwrap_or_default(), kind.as_str()) {
        ("v1", "Namespace") => round_trip::<core::Namespace>(&v),
        ("v1", "ServiceAccount") => round_trip::<core::ServiceAccount>(&v),
        ("v1", "ConfigMap") => round_trip::<core::ConfigMap>(&v),
        ("v1", "Secret") => round_trip::<core::Secret>(&v),
        ("v1", "Service") => round_trip::<core::Service>(&v),
        ("apps/v1", "Deployment") => round_trip::<apps::Deployment>(&v),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<policy::PodDisruptionBudget>(&v),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<rbac::ClusterRole>(&v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::ClusterRoleBinding>(&v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::Role>(&v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<rbac::RoleBinding>(&v),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            round_trip::<adm::ValidatingWebhookConfiguration>(&v)
        }
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            round_trip::<adm::MutatingWebhookConfiguration>(&v)
        }
        // cert-manager's CRDs have no k8s-openapi types: check the fields cert-manager requires.
        ("cert-manager.io/v1", "Issuer") => {
            let spec = &v["spec"];
            assert!(
                spec.get("selfSigned").is_some() || spec["ca"]["secretName"].is_string(),
                "{v}"
            );
            return;
        }
        ("cert-manager.io/v1", "Certificate") => {
            assert!(v["spec"]["secretName"].is_string(), "{v}");
            assert!(v["spec"]["issuerRef"]["name"].is_string(), "{v}");
            return;
        }
        (api, kind) => panic!("unexpected object {api} {kind} in the install"),
    };
    assert_eq!(
        back, v,
        "{kind} changed in a round trip through its type (a misspelled or misplaced field?)"
    );
}

fn check_strict(yaml: &str) -> Value {
    let mut child = common::bin()
        .args([
            "check",
            "--scope",
            "strict",
            "--format",
            "json",
            "--show-info",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("check");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(yaml.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    report
}

#[test]
fn every_overlay_renders_passes_its_own_strict_check_and_is_valid() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let root = copy.path().join("deploy");
    for dir in [
        root.clone(),
        root.join("overlays/cert-manager"),
        root.join("overlays/plain"),
    ] {
        let yaml = render(&kubectl, &dir);
        let docs = documents(&yaml);
        for d in &docs {
            assert_valid_object(d);
        }
        // secretscope's own RBAC in strict scope: exactly one finding, the reconciler's named
        // escalate/bind (README "Own RBAC"), shown as info because the shipped policy exempts
        // secretscope's ServiceAccount by one entry with its reason.
        let report = check_strict(&yaml);
        assert_eq!(
            report["summary"]["objects"],
            6,
            "{}: {report}",
            dir.display()
        );
        let findings = report["findings"].as_array().expect("findings");
        assert_eq!(findings.len(), 1, "{}: {report:#}", dir.display());
        let f = &findings[0];
        assert_eq!(f["severity"], "info", "{f:#}");
        assert_eq!(
            f["route"],
            serde_json::json!({"type": "indirect", "name": "named-role-grant"})
        );
        assert_eq!(
            f["object"],
            serde_json::json!({"kind": "ClusterRoleBinding", "name": "secretscope"})
        );
        let message = f["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(r#"(only those named "secretscope-secrets")"#)
                && message.contains("exempt by policy: secretscope's tenancy reconciler"),
            "{message}"
        );

        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for want in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ConfigMap",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(&want), "{}: no {want}", dir.display());
        }
        let by_kind = |k: &str| {
            docs.iter()
                .find(|d| d["kind"] == k)
                .cloned()
                .unwrap_or_default()
        };
        let vwh = &by_kind("ValidatingWebhookConfiguration")["webhooks"][0];
        assert_eq!(vwh["failurePolicy"], "Fail");
        assert_eq!(vwh["sideEffects"], "None");
        assert_eq!(vwh["timeoutSeconds"], 5);
        assert_eq!(vwh["admissionReviewVersions"], serde_json::json!(["v1"]));
        let conditions = vwh["matchConditions"].to_string();
        assert!(
            conditions.contains("system:apiserver")
                && conditions.contains("system:serviceaccount:secretscope:secretscope")
        );
        let mwh = &by_kind("MutatingWebhookConfiguration")["webhooks"][0];
        assert_eq!(mwh["sideEffects"], "NoneOnDryRun");
        assert_eq!(mwh["reinvocationPolicy"], "Never");
        let ca_injected = |w: &Value| {
            w["webhooks"][0]["clientConfig"]["caBundle"].is_string()
                || w["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_string()
        };
        assert!(
            ca_injected(&by_kind("ValidatingWebhookConfiguration")),
            "{}: no CA",
            dir.display()
        );
        assert!(
            ca_injected(&by_kind("MutatingWebhookConfiguration")),
            "{}: no CA",
            dir.display()
        );
        let pod = &by_kind("Deployment")["spec"]["template"]["spec"];
        assert_eq!(by_kind("Deployment")["spec"]["replicas"], 2);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert!(c["readinessProbe"]["httpGet"]["path"] == "/readyz");
        // Each replica has its own Lease identity.
        assert_eq!(c["env"][0]["name"], "POD_NAME");
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
    }
}

/// The plain overlay's caBundle is the CA that signed the serving certificate in its Secret.
#[test]
fn the_plain_overlay_carries_the_ca_of_its_serving_certificate() {
    let Some(kubectl) = kubectl() else { return };
    let copy = deploy_copy();
    let plain = copy.path().join("deploy/overlays/plain");
    let docs = documents(&render(&kubectl, &plain));
    let ca = std::fs::read(plain.join("certs/ca.crt")).expect("ca.crt");
    use base64::Engine;
    let want = base64::engine::general_purpose::STANDARD.encode(&ca);
    for d in docs.iter().filter(|d| {
        d["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("WebhookConfiguration"))
    }) {
        let got: String = d["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(got, want, "{}", d["kind"]);
    }
    let secret = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "secretscope-tls")
        .expect("tls secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert!(secret["data"].get("ca.key").is_none() && secret["data"].get("tls.key").is_some());
}

/// `secretscope manifests` prints what the plain overlay renders (less the overlay's helper
/// Secret that carries the caBundle to its replacement), and it is valid and passes strict check.
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
    check_strict(&printed);

    let key = |v: &Value| {
        format!(
            "{}/{}/{}",
            v["kind"], v["metadata"]["namespace"], v["metadata"]["name"]
        )
    };
    let normalise = |docs: Vec<Value>| {
        let mut m = std::collections::BTreeMap::new();
        for mut d in docs {
            assert_valid_object(&d);
            unwrap_base64(&mut d);
            m.insert(key(&d), d);
        }
        m
    };
    let mut rendered = normalise(documents(&render(&kubectl, &plain)));
    rendered
        .remove(r#""Secret"/"secretscope"/"secretscope-ca-bundle""#)
        .expect("helper secret");
    let printed = normalise(documents(&printed));
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
