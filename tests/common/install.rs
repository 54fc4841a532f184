//! Checks shared by the install tests (tests/deploy.rs for kustomize, tests/helm.rs for the chart):
//! real renderers found or built, rendered YAML parsed, every object round-tripped through its
//! k8s-openapi type, and secretscope's own strict check run by the real binary with the policy
//! the install ships.

#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// `name` on PATH; outside CI a missing tool skips the test (None), in CI it fails.
pub fn tool_on_path(name: &str, what: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip_or_fail(&format!("{name} ({what}) is missing"));
    }
    found
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why} in CI");
    eprintln!("skipping: {why}");
}

pub fn kubectl() -> Option<PathBuf> {
    tool_on_path("kubectl", "for `kubectl kustomize`")
}

/// helm from PATH (CI puts the control-plane bin dir there, helm included), else built from its
/// pinned Go module by tests/helm/build-helm.sh (cached under target/ after the first build).
pub fn helm() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("helm"))
            .find(|p| p.is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let script = repo().join("tests/helm/build-helm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run build-helm.sh");
    match out.status.code() {
        Some(0) => {
            let dir = String::from_utf8_lossy(&out.stdout);
            Some(PathBuf::from(dir.lines().last().unwrap_or_default()).join("helm"))
        }
        Some(3) => {
            skip_or_fail("helm cannot be built: go is missing");
            None
        }
        code => panic!("build-helm.sh failed ({code:?})"),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of deploy/ with dev certificates in the plain overlay, as its README says to make them.
pub fn deploy_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("deploy"))
        .arg(tmp.path())
        .status()
        .expect("cp");
    assert!(status.success());
    let certs = tmp.path().join("deploy/overlays/plain/certs");
    let out = crate::common::bin()
        .args(["certs", "--dns", "secretscope.secretscope.svc", "--out"])
        .arg(&certs)
        .output()
        .expect("certs");
    assert!(out.status.success());
    tmp
}

/// An overlay at `dir` (relative to a `deploy_copy`, beside its `deploy/`) with `kustomization`
/// as its file.
pub fn overlay(copy: &tempfile::TempDir, dir: &str, kustomization: &str) -> PathBuf {
    let path = copy.path().join(dir);
    std::fs::create_dir_all(&path).expect("overlay dir");
    std::fs::write(path.join("kustomization.yaml"), kustomization).expect("kustomization");
    path
}

/// The default install with both optional components, as README "Install" adds them.
pub const KIT: &str = "resources: [../cert-manager]\ncomponents: [../../components/monitoring, ../../components/network-policy]\n";

/// Runs `cmd` (a renderer) and returns its stdout, failing with its stderr.
pub fn run_renderer(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run renderer");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub fn kustomize(kubectl: &Path, dir: &Path) -> String {
    run_renderer(Command::new(kubectl).arg("kustomize").arg(dir))
}

pub fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(yaml, secretscope::manifest::yaml_options())
            .expect("rendered YAML parses");
    // helm template separates templates that render empty with bare `---`.
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Go's base64 decoder, which the API server uses for `[]byte` fields, skips line breaks, and
/// kustomize wraps long values; k8s-openapi's decoder does not skip them. Unwrap exactly those
/// fields so the typed check sees what the API server would.
pub fn unwrap_base64(v: &mut Value) {
    if v["kind"] == "Secret" {
        if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                if let Some(s) = value.as_str() {
                    *value = s.split_whitespace().collect::<String>().into();
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
/// Objects of CRDs (cert-manager, prometheus-operator) have no such types: the fields their
/// controllers require are checked instead.
pub fn assert_valid_object(v: &Value) {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, core::v1 as core,
        networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac,
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
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<net::NetworkPolicy>(&v),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<rbac::ClusterRole>(&v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::ClusterRoleBinding>(&v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::Role>(&v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<rbac::RoleBinding>(&v),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            round_trip::<adm::ValidatingAdmissionPolicy>(&v)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            round_trip::<adm::ValidatingAdmissionPolicyBinding>(&v)
        }
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
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            assert!(v["spec"]["selector"]["matchLabels"].is_object(), "{v}");
            assert!(v["spec"]["endpoints"][0]["port"].is_string(), "{v}");
            return;
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            for rule in prometheus_rules(&v) {
                assert!(
                    rule["alert"].is_string() && rule["expr"].is_string(),
                    "{rule}"
                );
            }
            return;
        }
        (api, kind) => panic!("unexpected object {api} {kind} in the install"),
    };
    assert_eq!(
        back, v,
        "{kind} changed in a round trip through its type (a misspelled or misplaced field?)"
    );
}

/// The rules of a PrometheusRule, across its groups.
pub fn prometheus_rules(v: &Value) -> Vec<&Value> {
    v["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect()
}

/// The policy file (`secretscope.yaml`) the rendered install ships in its ConfigMap.
pub fn shipped_policy(docs: &[Value]) -> String {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "secretscope-policy")
        .and_then(|d| d["data"]["secretscope.yaml"].as_str())
        .expect("the policy ConfigMap")
        .to_string()
}

/// `secretscope check --scope strict --show-info --format json` on `yaml`, with the policy the
/// install ships (so an overlay that changes it is checked as it will run); must exit 0.
pub fn check_strict(yaml: &str) -> Value {
    let policy_dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_dir.path().join("secretscope.yaml");
    std::fs::write(&policy, shipped_policy(&documents(yaml))).expect("write policy");
    let mut child = crate::common::bin()
        .args([
            "check",
            "--scope",
            "strict",
            "--format",
            "json",
            "--show-info",
        ])
        .arg("--config")
        .arg(&policy)
        .arg("-")
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

/// The findings of secretscope's own strict check, exactly as README "Own RBAC" explains them:
/// (route name, ClusterRole rules it cites, a phrase of its message). Both are secretscope's own
/// named powers, info because the shipped policy exempts its ServiceAccount with a reason.
pub const OWN_FINDINGS: &[(&str, &[u64], &str)] = &[
    (
        "named-role-grant",
        &[3, 4],
        r#"(only those named "secretscope-secrets")"#,
    ),
    (
        "webhook-configurations",
        &[5],
        r#"(only those named "secretscope")"#,
    ),
];

/// Asserts the strict report judged `objects` RBAC objects and has exactly `want` findings, all
/// info, on secretscope's binding.
pub fn assert_own_findings(
    report: &Value,
    objects: u64,
    want: &[(&str, &[u64], &str)],
    context: &str,
) {
    assert_eq!(
        report["summary"]["objects"], objects,
        "{context}: {report:#}"
    );
    let findings = report["findings"].as_array().expect("findings");
    let got: Vec<(String, Vec<u64>)> = findings
        .iter()
        .map(|f| {
            let rules = f["via"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["rule"].as_u64())
                .collect();
            (
                f["route"]["name"].as_str().unwrap_or("?").to_string(),
                rules,
            )
        })
        .collect();
    let expected: Vec<(String, Vec<u64>)> = want
        .iter()
        .map(|(route, rules, _)| (route.to_string(), rules.to_vec()))
        .collect();
    assert_eq!(got, expected, "{context}: {report:#}");
    for (f, (_, _, phrase)) in findings.iter().zip(want) {
        assert_eq!(f["severity"], "info", "{context}: {f:#}");
        assert_eq!(f["route"]["type"], "indirect", "{context}: {f:#}");
        assert_eq!(
            f["object"],
            json!({"kind": "ClusterRoleBinding", "name": "secretscope"}),
            "{context}"
        );
        let message = f["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(phrase) && message.contains("exempt by policy: secretscope's"),
            "{context}: {message}"
        );
    }
}

/// What every rendering of the install must be, whatever the renderer and values: valid objects;
/// no webhook configuration at all (secretscope registers its own once ready, so nothing in the
/// install can refuse RBAC writes before a pod can answer); a Deployment that registers them; the
/// guard policy bounding what it may register.
pub fn assert_no_lockout_install(docs: &[Value], context: &str) {
    for d in docs {
        assert_valid_object(d);
    }
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in &kinds {
        assert!(
            !k.ends_with("WebhookConfiguration"),
            "{context}: the install carries a {k}: it would refuse RBAC writes before any pod is ready"
        );
    }
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ConfigMap",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.contains(&want), "{context}: no {want}");
    }
    let deployment = find(docs, "Deployment", "secretscope");
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or("secretscope");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{context}");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["limits"]["memory"].is_string(), "{context}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "--register-webhooks",
        "--webhook-service=$(POD_NAMESPACE)/secretscope",
        "--webhook-ca-bundle=/etc/secretscope/tls/ca.crt",
    ] {
        assert!(args.contains(&want), "{context}: args {args:?} lack {want}");
    }
    // $(POD_NAMESPACE) expands only from an env var defined on the container; each replica also
    // has its own Lease identity.
    let env = |name: &str| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(env("POD_NAMESPACE"), Some(json!("metadata.namespace")));
    assert_eq!(env("POD_NAME"), Some(json!("metadata.name")));
    // The CA file is the serving Secret's ca.crt, mounted where the flag reads it.
    let tls_mount = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == "/etc/secretscope/tls")
        .unwrap_or_else(|| panic!("{context}: no TLS mount"));
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == tls_mount["name"])
        .unwrap_or_else(|| panic!("{context}: no TLS volume"));
    assert_eq!(
        volume["secret"]["secretName"], "secretscope-tls",
        "{context}"
    );

    let guard = find(
        docs,
        "ValidatingAdmissionPolicy",
        "secretscope-webhook-guard",
    );
    assert_eq!(guard["spec"]["failurePolicy"], "Fail");
    assert!(
        guard["spec"]["matchConditions"][0]["expression"]
            .as_str()
            .is_some_and(
                |e| e.contains(&format!("'system:serviceaccount:{namespace}:secretscope'"))
            ),
        "{context}: {guard:#}"
    );
    let binding = find(
        docs,
        "ValidatingAdmissionPolicyBinding",
        "secretscope-webhook-guard",
    );
    assert_eq!(binding["spec"]["policyName"], "secretscope-webhook-guard");
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    let role = find(docs, "ClusterRole", "secretscope");
    assert!(
        role["rules"].as_array().into_iter().flatten().any(|r| {
            r["resourceNames"] == json!(["secretscope"])
                && r["resources"]
                    == json!([
                        "validatingwebhookconfigurations",
                        "mutatingwebhookconfigurations"
                    ])
        }),
        "{context}: secretscope cannot register its webhooks"
    );
}

/// The object of `kind` named `name`; panics naming what is missing.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name:?}"))
}

/// `kind/namespace/name` -> object (Secret data unwrapped), for comparing two renderings.
pub fn by_key(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for mut d in docs {
        unwrap_base64(&mut d);
        let key = format!(
            "{}/{}/{}",
            d["kind"].as_str().unwrap_or_default(),
            d["metadata"]["namespace"].as_str().unwrap_or_default(),
            d["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(m.insert(key.clone(), d).is_none(), "{key} twice");
    }
    m
}

/// The metric names (`secretscope_*`, `process_*`) a PromQL expression uses.
pub fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("secretscope_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every PromQL expression of the monitoring kit in `docs`: the PrometheusRule's alerts and the
/// dashboard's panel targets.
pub fn monitoring_expressions(docs: &[Value]) -> Vec<String> {
    let mut exprs: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "PrometheusRule")
        .flat_map(|d| prometheus_rules(d).into_iter())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect();
    let dashboard = find(docs, "ConfigMap", "secretscope-dashboard");
    let json: Value = serde_json::from_str(
        dashboard["data"]["secretscope.json"]
            .as_str()
            .expect("json"),
    )
    .expect("the dashboard is JSON");
    for panel in json["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}
