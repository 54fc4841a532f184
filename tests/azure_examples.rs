//! `examples/azure/`: one Azure role definition per case, each held to its verdict (the table in
//! examples/azure/README.md) and to its remediation through the real `secretscope check`.

mod common;

use std::path::Path;

use serde_json::{json, Value};

const MC: &str = "Microsoft.ContainerService/managedClusters";
const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/platform/providers/Microsoft.ContainerService/managedClusters/aks-prod";
const GROUP: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/platform";
const ADMIN: &str = "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action";
const USER_CREDENTIAL: &str = "whoever needs a kubeconfig gets one through listClusterUserCredential/action, which Azure RBAC authorizes";

/// (file, the `fix:` line of the text report, `remediation.definition_edits` of the JSON one).
fn remediations() -> Vec<(&'static str, String, Value)> {
    vec![
        (
            "secrets-wildcard-at-cluster.json",
            format!(
                r#"in role "Portal secrets operator": remove "{MC}/secrets/*" from DataActions; or, to keep Secrets access where it is needed, replace AssignableScopes "{CLUSTER}" with one namespace scope per namespace that needs it ("{CLUSTER}/namespaces/<namespace>")"#
            ),
            json!([{"op": "remove", "field": "DataActions", "value": format!("{MC}/secrets/*")}]),
        ),
        (
            "all-data-actions-at-resource-group.json",
            format!(
                r#"in role "AKS data operator": add "{MC}/secrets/*" to NotDataActions; or, to keep Secrets access where it is needed, replace AssignableScopes "{GROUP}" with one namespace scope per namespace that needs it ("{GROUP}/providers/{MC}/<cluster>/namespaces/<namespace>")"#
            ),
            json!([{"op": "add", "field": "NotDataActions", "value": format!("{MC}/secrets/*")}]),
        ),
        (
            "admin-credential.json",
            format!(
                r#"in role "Cluster credential fetcher": remove "{ADMIN}" from Actions (it hands out the cluster-admin kubeconfig, which bypasses Azure RBAC); {USER_CREDENTIAL}"#
            ),
            json!([{"op": "remove", "field": "Actions", "value": ADMIN}]),
        ),
        (
            "admin-credential-by-wildcard.json",
            format!(
                r#"in role "AKS contributor (custom)": add "{ADMIN}" to NotActions (Actions pattern "{MC}/*" includes it and it hands out the cluster-admin kubeconfig, which bypasses Azure RBAC); {USER_CREDENTIAL}"#
            ),
            json!([{"op": "add", "field": "NotActions", "value": ADMIN}]),
        ),
        (
            "namespace-scoped-reader.json",
            format!(
                r#"nothing to change: role "Tenant secrets reader" can be assigned only at namespace scope ("{CLUSTER}/namespaces/az-acme"), where an assignment reaches that namespace's Secrets only"#
            ),
            Value::Null,
        ),
    ]
}

/// Each finding's remediation, exactly, in text and JSON; applying its edits to the example
/// makes the same check pass with no finding at all (the info case needs none).
#[test]
fn every_azure_example_gets_the_remediation_of_its_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/azure");
    let tmp = tempfile::tempdir().expect("tempdir");
    let findings: Vec<&str> = CASES
        .iter()
        .filter(|c| c.1 == 1 || c.3 == "DENY")
        .map(|c| c.0)
        .collect();
    let mut covered: Vec<&str> = remediations().iter().map(|r| r.0).collect();
    covered.sort();
    let mut want: Vec<&str> = findings.clone();
    want.sort();
    assert_eq!(
        covered, want,
        "every example with a finding has its remediation here"
    );
    for (file, text, edits) in remediations() {
        let out = check(&dir, &["--show-info", file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let fix = format!("\n      fix: {text}\n");
        assert!(
            stdout.contains(&fix),
            "{file}: expected\n{fix}\nin\n{stdout}"
        );

        let out = check(&dir, &["--show-info", "--format", "json", file]);
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        let remediation = &report["azure"][0]["remediation"];
        assert_eq!(remediation["text"], text.as_str(), "{file}");
        assert_eq!(remediation["definition_edits"], edits, "{file}");

        let Value::Array(edits) = edits else { continue };
        let original: Value =
            serde_json::from_slice(&std::fs::read(dir.join(file)).expect("read")).expect("json");
        let mut edited = original.clone();
        for e in &edits {
            apply(&mut edited, e);
        }
        assert_ne!(edited, original, "{file}");
        std::fs::write(
            tmp.path().join(file),
            serde_json::to_vec_pretty(&edited).expect("json"),
        )
        .expect("write");
        let out = check(tmp.path(), &["--show-info", file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file} with its edits:\n{stdout}"
        );
        assert!(
            stdout.contains("1 objects in 1 files: 0 deny, 0 warn, 0 info, 0 input errors"),
            "{file} with its edits:\n{stdout}"
        );
    }
}

/// `secretscope check ARGS` run in `dir`.
fn check(dir: &Path, args: &[&str]) -> std::process::Output {
    common::bin()
        .current_dir(dir)
        .arg("check")
        .args(args)
        .output()
        .expect("check")
}

/// The edit as a person makes it in the definition file (top-level fields here).
fn apply(doc: &mut Value, edit: &Value) {
    let field = edit["field"].as_str().expect("field");
    let value = edit["value"].clone();
    let list = doc[field].as_array_mut().expect("a list field");
    match edit["op"].as_str() {
        Some("add") => list.push(value),
        Some("remove") => list.retain(|v| *v != value),
        other => panic!("op {other:?}"),
    }
}

/// (file, exit code, what the report must say, what it must not).
const CASES: &[(&str, i32, &str, &str)] = &[
    (
        "secrets-wildcard-at-cluster.json",
        1,
        r#"DENY  secrets-wildcard-at-cluster.json:1: Azure role "Portal secrets operator" grants Secrets read, write, delete (granted by DataActions "Microsoft.ContainerService/managedClusters/secrets/*") and can be assigned at "/subscriptions/"#,
        "INFO",
    ),
    (
        "all-data-actions-at-resource-group.json",
        1,
        r#"Azure role "AKS data operator" grants Secrets read, write, delete (granted by DataActions "Microsoft.ContainerService/managedClusters/*") and can be assigned at "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/platform", wider than one namespace"#,
        "INFO",
    ),
    (
        "admin-credential.json",
        1,
        r#"Azure role "Cluster credential fetcher" can list the cluster-admin credential (Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action, granted by Actions pattern "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action"), a kubeconfig that bypasses Azure RBAC for Kubernetes"#,
        "INFO",
    ),
    (
        "admin-credential-by-wildcard.json",
        1,
        r#"granted by Actions pattern "Microsoft.ContainerService/managedClusters/*""#,
        "INFO",
    ),
    (
        "clean-with-exclusions.json",
        0,
        "1 objects in 1 files: 0 deny, 0 warn, 0 info, 0 input errors",
        "Azure role",
    ),
    (
        "namespace-scoped-reader.json",
        0,
        r#"INFO  namespace-scoped-reader.json:1: Azure role "Tenant secrets reader" grants Secrets read (granted by DataActions "Microsoft.ContainerService/managedClusters/secrets/read") and can be assigned only at namespace scope"#,
        "DENY",
    ),
    (
        "data-actions-as-a-string.json",
        2,
        "ERROR data-actions-as-a-string.json: document 1 (line 1): invalid Azure role definition: DataActions is a string; it must be a list of strings",
        "0 input errors",
    ),
];

#[test]
fn every_azure_example_gets_its_documented_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/azure");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/azure")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".json"))
        .collect();
    files.sort();
    let mut covered: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    covered.sort();
    assert_eq!(
        files, covered,
        "every example has a case here, and every case a file"
    );
    for (file, code, says, not) in CASES {
        assert!(
            readme.contains(&format!("`{file}`")),
            "{file} is not in the README table"
        );
        let out = check(&dir, &["--show-info", file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(*code), "{file}:\n{stdout}");
        assert!(
            stdout.contains(says),
            "{file}: expected\n{says}\nin\n{stdout}"
        );
        assert!(
            !stdout.contains(not),
            "{file}: unexpected {not:?} in\n{stdout}"
        );
    }
}
