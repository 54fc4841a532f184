//! `examples/azure/`: one Azure role definition per case, each held to its verdict (the table in
//! examples/azure/README.md) through the real `secretscope check`.

mod common;

use std::path::Path;

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
        let out = common::bin()
            .current_dir(&dir)
            .args(["check", "--show-info", file])
            .output()
            .expect("check");
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
