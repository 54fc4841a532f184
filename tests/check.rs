//! `secretscope check` as a CI pipeline runs it: real files, stdin, exit codes, JSON.

mod cli_support;
mod common;

use serde_json::Value;

const SAFE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pod-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{kind: ServiceAccount, name: app, namespace: apps}]
"#;

/// A chart that binds the built-in cluster-admin: only the built-in role set makes this a denial.
const CHART: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: installer, namespace: tools}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: installer-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: installer, namespace: tools}]
"#;

fn check(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    cli_support::run(&all, stdin)
}

#[test]
fn exit_codes_clean_findings_and_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let safe = dir.path().join("safe.yaml");
    std::fs::write(&safe, SAFE).expect("write");
    let (code, out, _) = check(&[safe.to_str().unwrap_or_default()], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 objects in 1 files: 0 deny"), "{out}");

    let (code, out, _) = check(&["-"], Some(CHART));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 deny, 0 warn"),
        "full Secrets read makes indirect routes moot: {out}"
    );
    assert!(
        out.contains(r#"DENY  <stdin>:6: ClusterRoleBinding "installer-admin" grants ServiceAccount "tools/installer" cluster-wide read and write of Secrets"#),
        "{out}"
    );
    // Without the built-in roles, cluster-admin is unknown: a warning, not a denial.
    let (code, out, _) = check(&["--no-builtins", "-"], Some(CHART));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("which is not known"), "{out}");

    // Bad input wins over findings: exit 2, with file, document and line, and the good document
    // in the same stream is still judged.
    let broken = format!("{CHART}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: x}}\nrules: [{{verbs: 7}}]\n");
    let (code, out, _) = check(&["-"], Some(&broken));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ERROR <stdin>: document 3 (line 13): invalid ClusterRole: rule 1: verbs:"),
        "{out}"
    );
    assert!(out.contains("installer-admin"), "{out}");

    let (code, out, _) = check(&["-"], Some("a: [\n"));
    assert_eq!(code, 2);
    assert!(
        out.contains("ERROR <stdin>: document 1 (line 1): invalid YAML"),
        "{out}"
    );

    let (code, out, _) = check(&["/nonexistent/manifests.yaml"], None);
    assert_eq!(code, 2);
    assert!(
        out.contains("ERROR /nonexistent/manifests.yaml: No such file"),
        "{out}"
    );
}

#[test]
fn directories_json_lists_and_strict_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("charts/app/templates");
    std::fs::create_dir_all(&nested).expect("mkdir");
    // A kubectl-style List in JSON, and a role that carries secrets but is never bound.
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": [{
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "secret-syncer"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]}]
        }]
    });
    std::fs::write(nested.join("role.json"), list.to_string()).expect("write");
    std::fs::write(nested.join("notes.txt"), "not a manifest").expect("write");
    std::fs::write(dir.path().join("safe.yml"), SAFE).expect("write");
    let d = dir.path().to_str().unwrap_or_default();

    let (code, out, _) = check(&["--format", "json", "--show-info", d], None);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json output");
    assert_eq!(v["summary"]["files"], 2, "{v}");
    assert_eq!(v["summary"]["objects"], 3);
    let f = &v["findings"][0];
    assert_eq!(f["severity"], "info");
    assert_eq!(f["scope"], "unbound");
    assert_eq!(f["object"]["name"], "secret-syncer");
    assert_eq!(f["verbs"], serde_json::json!(["get", "update"]));
    assert!(f["file"]
        .as_str()
        .unwrap_or_default()
        .ends_with("role.json"));

    let (code, out, _) = check(&["--scope", "strict", d], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("scope strict allows no ClusterRole to carry a Secrets rule"),
        "{out}"
    );
}

#[test]
fn a_bad_policy_file_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("secretscope.yaml");
    std::fs::write(&policy, "tenancy:\n  verbs: [get, impersonate]\n").expect("write");
    let (code, _, err) = check(
        &["--config", policy.to_str().unwrap_or_default(), "-"],
        Some(SAFE),
    );
    assert_eq!(code, 2);
    assert!(err.contains("tenancy.verbs[1]"), "{err}");
}

#[test]
fn the_whole_corpus_is_judged_without_input_errors() {
    let Some(dir) = common::corpus_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "corpus missing in CI"
        );
        eprintln!("skipping: ../shared/corpus/rbac not found");
        return;
    };
    let (code, out, _) = check(
        &["--format", "json", dir.to_str().unwrap_or_default()],
        None,
    );
    assert_eq!(code, 1, "the corpus holds cluster-wide Secrets grants");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["summary"]["errors"], 0, "{}", v["errors"]);
    assert!(v["summary"]["objects"].as_u64().unwrap_or_default() > 400);
}

#[test]
fn azure_role_definitions_for_aks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/platform/providers/Microsoft.ContainerService/managedClusters/aks-prod";
    // The file `az role definition create --role-definition @file` takes.
    let cluster_wide = serde_json::json!({
        "Name": "Portal secrets operator",
        "IsCustom": true,
        "Description": "The seed case: Secrets everywhere",
        "Actions": [],
        "NotActions": [],
        "DataActions": ["Microsoft.ContainerService/managedClusters/secrets/*",
                        "Microsoft.ContainerService/managedClusters/namespaces/write"],
        "NotDataActions": ["Microsoft.ContainerService/managedClusters/secrets/delete"],
        "AssignableScopes": [cluster]
    });
    // `az role definition list` output: an array in the REST shape.
    let listed = serde_json::json!([
        {"name": "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b", "roleName": "Tenant secrets reader",
         "permissions": [{"actions": [], "notActions": [],
                          "dataActions": ["Microsoft.ContainerService/managedClusters/secrets/read"],
                          "notDataActions": []}],
         "assignableScopes": [format!("{cluster}/namespaces/az-acme")]},
        {"name": "7f951dda-4ed3-4680-a7ca-43fe172d538d", "roleName": "AKS viewer without secrets",
         "permissions": [{"dataActions": ["Microsoft.ContainerService/managedClusters/*/read"],
                          "notDataActions": ["Microsoft.ContainerService/managedClusters/secrets/*"]}],
         "assignableScopes": [cluster]}
    ]);
    std::fs::write(
        dir.path().join("portal-role.json"),
        cluster_wide.to_string(),
    )
    .expect("write");
    std::fs::write(dir.path().join("roles.json"), listed.to_string()).expect("write");
    let d = dir.path().to_str().unwrap_or_default();

    let (code, out, _) = check(&["--show-info", d], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"Azure role "Portal secrets operator" grants Secrets read, write (granted by DataActions "Microsoft.ContainerService/managedClusters/secrets/*") and can be assigned at "/subscriptions/"#)
            && out.contains("wider than one namespace"),
        "{out}"
    );
    assert!(
        out.contains(r#"INFO  "#)
            && out.contains(
                r#"Azure role "Tenant secrets reader" grants Secrets read (granted by DataActions "Microsoft.ContainerService/managedClusters/secrets/read") and can be assigned only at namespace scope"#
            ),
        "{out}"
    );
    assert!(!out.contains("AKS viewer without secrets"), "{out}");
    assert!(out.contains("1 deny, 0 warn, 1 info"), "{out}");

    let (_, out, _) = check(&["--format", "json", d], None);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["azure"][0]["verbs"], serde_json::json!(["read", "write"]));
}

/// Issue 10: the JSON says, per verb, whether all Secrets or only named ones are reached, for
/// mixed grants the old `names` field got wrong (it was filled only when every verb was named).
#[test]
fn json_carries_per_verb_reach_for_mixed_grants() {
    let role = |name: &str, rules: &str| {
        format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {name}}}\nrules: {rules}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}\nsubjects: [{{kind: User, name: bob}}]\n"
        )
    };
    let s = r#"apiGroups: [""], resources: [secrets]"#;
    let cases = [
        (
            "watch-all-patch-a",
            format!("[{{{s}, verbs: [watch]}}, {{{s}, verbs: [patch], resourceNames: [a]}}]"),
            serde_json::json!([{"verb": "watch", "secrets": "all"}, {"verb": "patch", "secrets": "named", "names": ["a"]}]),
        ),
        (
            "get-a-list-all",
            format!("[{{{s}, verbs: [get], resourceNames: [a]}}, {{{s}, verbs: [list]}}]"),
            serde_json::json!([{"verb": "get", "secrets": "named", "names": ["a"]}, {"verb": "list", "secrets": "all"}]),
        ),
        (
            "empty-name",
            format!(
                "[{{{s}, verbs: [list, create, deletecollection, get], resourceNames: [\"\"]}}]"
            ),
            serde_json::json!([{"verb": "list", "secrets": "all"}, {"verb": "create", "secrets": "all"}, {"verb": "deletecollection", "secrets": "all"}]),
        ),
        (
            "named-create",
            format!("[{{{s}, verbs: [create], resourceNames: [tls]}}]"),
            serde_json::json!([{"verb": "create", "secrets": "named", "names": ["tls"]}]),
        ),
        (
            "delete-all-update-b",
            format!("[{{{s}, verbs: [delete]}}, {{{s}, verbs: [update], resourceNames: [b, a]}}]"),
            serde_json::json!([{"verb": "update", "secrets": "named", "names": ["a", "b"]}, {"verb": "delete", "secrets": "all"}]),
        ),
    ];
    for (name, rules, want) in cases {
        let (code, out, err) = check(&["--format", "json", "-"], Some(&role(name, &rules)));
        assert_eq!(code, 1, "{name}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("json");
        let binding = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| {
                f["object"]["kind"] == "ClusterRoleBinding" && f["route"]["type"] == "secrets"
            })
            .unwrap_or_else(|| panic!("{name}: {report:#}"));
        assert_eq!(binding["reach"], want, "{name}: {binding:#}");
    }
}

/// Issue 10: the JSON output is documented by schemas/check-report.schema.json; real outputs
/// (the corpus with info findings, input errors, Azure roles, per-verb reach) validate against it.
#[test]
fn json_output_matches_its_schema() {
    let schema = "schemas/check-report.schema.json";
    let azure = serde_json::json!({
        "Name": "Portal secrets operator", "IsCustom": true, "Actions": [], "NotActions": [],
        "DataActions": ["Microsoft.ContainerService/managedClusters/secrets/*"], "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/0/resourceGroups/p/providers/Microsoft.ContainerService/managedClusters/c"]
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("azure.json"), azure.to_string()).expect("write");
    let named = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: n}\nrules: [{apiGroups: [\"\"], resources: [secrets], verbs: [watch]}, {apiGroups: [\"\"], resources: [secrets], verbs: [patch], resourceNames: [a]}]\n";
    std::fs::write(dir.path().join("named.yaml"), named).expect("write");
    std::fs::write(dir.path().join("chart.yaml"), CHART).expect("write");
    std::fs::write(dir.path().join("broken.yaml"), "kind: [\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules: [{verbs: 7}]\n").expect("write");
    let d = dir.path().to_str().unwrap_or_default();
    let mut outputs = vec![check(
        &["--format", "json", "--show-info", "--scope", "strict", d],
        None,
    )];
    if let Some(corpus) = common::corpus_dir() {
        outputs.push(check(
            &[
                "--format",
                "json",
                "--show-info",
                corpus.to_str().unwrap_or_default(),
            ],
            None,
        ));
    }
    for (_, out, err) in outputs {
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
        cli_support::assert_valid(schema, &v);
        assert!(v["findings"].as_array().is_some_and(|f| !f.is_empty()));
    }
    let (code, out, _) = check(
        &["--format", "json", "--show-info", "--scope", "strict", d],
        None,
    );
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).expect("json");
    // A Secrets-only DataActions pattern is removed, not excluded.
    assert!(v["azure"][0]["remediation"]["text"]
        .as_str()
        .is_some_and(|t| t.contains(
            "remove \"Microsoft.ContainerService/managedClusters/secrets/*\" from DataActions"
        )));
    assert_eq!(
        v["azure"][0]["remediation"]["definition_edits"][0]["op"],
        "remove"
    );
    assert!(
        v["errors"].as_array().is_some_and(|e| e.len() == 2),
        "{}",
        v["errors"]
    );
    assert!(v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["reach"][1]["names"] == serde_json::json!(["a"])));
}

/// `--fail-on` moves the gate; info findings appear in JSON only with `--show-info` (the
/// summary counts them either way); remediations are in text and JSON.
#[test]
fn fail_on_show_info_and_remediation() {
    let (code, out, _) = check(&["--no-builtins", "-"], Some(CHART));
    assert_eq!(code, 0, "a warning alone passes by default: {out}");
    let (code, _, _) = check(&["--no-builtins", "--fail-on", "warn", "-"], Some(CHART));
    assert_eq!(code, 1);
    let unbound = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: u}\nrules: [{apiGroups: [\"\"], resources: [secrets], verbs: [get]}]\n";
    let (code, out, _) = check(
        &["--format", "json", "--fail-on", "warn", "-"],
        Some(unbound),
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["findings"], serde_json::json!([]));
    assert_eq!(v["summary"]["info"], 1);
    let (code, out, _) = check(
        &["--format", "json", "--show-info", "--fail-on", "info", "-"],
        Some(unbound),
    );
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["findings"][0]["severity"], "info");

    let (_, out, _) = check(&["-"], Some(CHART));
    assert!(out.contains("\n      fix: ClusterRole \"cluster-admin\" rule 1 needs a person: ClusterRole \"cluster-admin\" is not among the inputs (a built-in role?)"), "{out}");

    let helm = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {{ .Release.Name }}\n";
    let (code, out, _) = check(&["-"], Some(helm));
    assert_eq!(code, 2);
    assert!(
        out.contains("unrendered Helm template: check the output of `helm template`"),
        "{out}"
    );
}
