//! `secretscope audit` as a report other tools read: `--kubeconfig`/`--context`, a one-line
//! error when no cluster answers, and `--format policyreport` round-tripped through the
//! wg-policy ClusterPolicyReport CRD's schema (tests/fixtures/wgpolicyk8s.io_clusterpolicyreports.yaml).

mod cli_support;
mod fake_apiserver;

use std::path::Path;

use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};

fn crd_schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wgpolicyk8s.io_clusterpolicyreports.yaml");
    let text = std::fs::read_to_string(&path).expect("CRD fixture");
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD is YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// What an API server keeps of `value` under a structural schema: unknown fields are pruned.
fn prune(value: &Value, schema: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let extra = &schema["additionalProperties"];
            Value::Object(
                map.iter()
                    .filter_map(|(k, v)| match props.and_then(|p| p.get(k)) {
                        Some(s) => Some((k.clone(), prune(v, s))),
                        None if extra.is_object() => Some((k.clone(), prune(v, extra))),
                        None if schema["type"] == "object" && props.is_none() => {
                            Some((k.clone(), v.clone()))
                        }
                        None => None,
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| prune(v, &schema["items"])).collect())
        }
        v => v.clone(),
    }
}

fn audit(args: &[&str], env_kubeconfig: Option<&Path>) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(cli_support::BIN);
    cmd.arg("audit").args(args).env_remove("KUBECONFIG");
    if let Some(k) = env_kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output().expect("audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// User "ci" with `pods/exec` cluster-wide: an indirect route only.
fn apply_ci_exec(fake: &FakeApiServer) {
    let rbac = "rbac.authorization.k8s.io";
    fake.apply(json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "exec"},
                      "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}));
    fake.apply(json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRoleBinding", "metadata": {"name": "ci-exec"},
                      "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "exec"},
                      "subjects": [{"apiGroup": rbac, "kind": "User", "name": "ci"}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policyreport_kubeconfig_context_and_unreachable() {
    let fake = FakeApiServer::start().await;
    let rbac = "rbac.authorization.k8s.io";
    fake.apply(json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "reader"},
                      "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}));
    fake.apply(json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRoleBinding", "metadata": {"name": "bob-reads"},
                      "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "reader"},
                      "subjects": [{"kind": "ServiceAccount", "name": "bob", "namespace": "apps"}]}));
    apply_ci_exec(&fake);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("my kubeconfig");
    // A second context pointing nowhere: `--context fake` must pick the one that works.
    let two = fake
        .kubeconfig()
        .replace("current-context: fake", "current-context: broken")
        .replace(
            "contexts:\n",
            "contexts:\n- name: broken\n  context: {cluster: nowhere, user: fake}\n",
        )
        .replace(
            "clusters:\n",
            "clusters:\n- name: nowhere\n  cluster:\n    server: http://127.0.0.1:9\n",
        );
    std::fs::write(&kubeconfig, two).expect("write");
    let k = kubeconfig.to_str().expect("utf-8").to_string();

    let out = tokio::task::spawn_blocking(move || {
        let report = audit(
            &[
                "--kubeconfig",
                &k,
                "--context",
                "fake",
                "--format",
                "policyreport",
            ],
            None,
        );
        let current = audit(&["--kubeconfig", &k], None);
        let missing = audit(&["--kubeconfig", &k, "--context", "nope"], None);
        let no_file = audit(&["--kubeconfig", "/nonexistent/kubeconfig"], None);
        // Logs asked for, stderr a pipe: no colour escape codes.
        let logged = std::process::Command::new(cli_support::BIN)
            .args(["audit", "--kubeconfig", &k])
            .env("RUST_LOG", "debug")
            .output()
            .expect("audit");
        let logged = String::from_utf8_lossy(&logged.stderr).into_owned();
        assert!(logged.lines().count() > 1, "{logged}");
        assert!(!logged.contains('\x1b'), "{logged}");
        (report, current, missing, no_file)
    })
    .await
    .expect("join");
    let ((code, report, err), current, missing, no_file) = out;
    assert_eq!(code, 1, "{err}");
    let report: Value = serde_json::from_str(&report).expect("json");
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(report["kind"], "ClusterPolicyReport");
    let schema = crd_schema();
    cli_support::assert_valid_value(&schema, &report);
    assert_eq!(
        prune(&report, &schema),
        report,
        "every field survives the CRD's pruning"
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0})
    );
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "one result per subject");
    let bob = results
        .iter()
        .find(|r| r["resources"][0]["name"] == "bob")
        .expect("bob");
    assert_eq!(bob["result"], "fail");
    assert_eq!(
        bob["resources"][0],
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "name": "bob", "namespace": "apps"})
    );
    assert!(
        bob["message"].as_str().is_some_and(
            |m| m.contains("Secrets get, list through ClusterRoleBinding \"bob-reads\"")
        ),
        "{bob}"
    );
    let ci = results
        .iter()
        .find(|r| r["resources"][0]["name"] == "ci")
        .expect("ci");
    assert_eq!(
        (&ci["result"], &ci["severity"]),
        (&json!("warn"), &json!("medium"))
    );

    // The current context points nowhere: exit 2, one short line naming the cause.
    for (what, (code, _, err)) in [
        ("unreachable", current),
        ("unknown context", missing),
        ("no file", no_file),
    ] {
        assert_eq!(code, 2, "{what}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {err}");
        assert!(err.len() < 300, "{what}: {} chars: {err}", err.len());
        eprintln!("{what}: {err}");
    }
}

/// The README's audit section shows real output: `secretscope audit` over the seed case
/// (examples/fix/portal-api.yaml) bound cluster-wide and a User with `pods/exec`, and the first
/// result of the same `--format policyreport`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_shows_real_audit_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fake = FakeApiServer::start().await;
    let seed = std::fs::read_to_string(root.join("examples/fix/portal-api.yaml")).expect("seed");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&seed).expect("seed is YAML");
    for doc in docs {
        fake.apply(doc);
    }
    apply_ci_exec(&fake);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).expect("write");
    let ((code, text, err), (_, report, _)) = tokio::task::spawn_blocking(move || {
        (
            audit(&[], Some(&kubeconfig)),
            audit(&["--format", "policyreport"], Some(&kubeconfig)),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "{err}");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let block = format!("$ secretscope audit\n{text}```\n");
    assert!(readme.contains(&block), "README lacks, exactly:\n{block}");

    let report: Value = serde_json::from_str(&report).expect("json");
    let r = &report["results"][0];
    let mut want = serde_json::Map::new();
    for k in [
        "policy",
        "rule",
        "result",
        "severity",
        "source",
        "category",
        "message",
        "resources",
    ] {
        want.insert(k.into(), r[k].clone());
    }
    let shown: String = readme
        .split("jq '.results[0] | {policy, rule, result, severity, source, category, message, resources}'")
        .nth(1)
        .and_then(|rest| rest.split("```json\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the policyreport example")
        .into();
    let shown: Value = serde_json::from_str(&shown).expect("the example is JSON");
    assert_eq!(shown, Value::Object(want));
}
