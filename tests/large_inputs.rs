//! Issue 10, end to end through the real `secretscope check`: a 50,000-document stream (rendered
//! manifests of a large platform) is read whole, a broken document in it is one input error and
//! every other document is still judged; a directory with a symlink loop is walked once.

mod common;

use serde_json::Value;

fn role(i: usize) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: app-{i}\n\
         rules:\n- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list]\n"
    )
}

fn binding(i: usize) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: app-{i}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: app-{i}}}\n\
         subjects:\n- {{kind: ServiceAccount, name: app-{i}, namespace: apps}}\n"
    )
}

const BROKEN: &str = "apiVersion: v1\nkind: ClusterRole\nmetadata: {name: broken\n";
const LATE_ADMIN: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
    metadata:\n  name: late-admin\n\
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
    subjects:\n- {kind: User, name: mallory}\n";

fn check_json(args: &[&std::ffi::OsStr]) -> (i32, Value) {
    let out = common::bin()
        .args(["check", "--format", "json"])
        .args(args)
        .output()
        .expect("check");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn fifty_thousand_documents_with_one_broken_are_all_judged() {
    let mut docs: Vec<String> = (0..25_000).flat_map(|i| [role(i), binding(i)]).collect();
    // Document 20,001 is broken; document 40,001, far after it, binds cluster-admin.
    docs[20_000] = BROKEN.into();
    docs[40_000] = LATE_ADMIN.into();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, docs.join("---\n")).expect("write");

    let (code, report) = check_json(&[file.as_os_str()]);
    assert_eq!(
        code, 2,
        "an input error wins over findings: {}",
        report["summary"]
    );
    assert_eq!(
        report["summary"]["objects"], 49_999,
        "{}",
        report["summary"]
    );
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["document"], 20_001, "{}", errors[0]);
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unclosed bracket")),
        "{}",
        errors[0]
    );
    let denies: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "deny")
        .collect();
    assert_eq!(denies.len(), 1, "{denies:?}");
    assert_eq!(
        denies[0]["object"],
        serde_json::json!({"kind": "ClusterRoleBinding", "name": "late-admin"})
    );
}

#[test]
fn a_directory_with_a_symlink_loop_is_walked_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("platform/team")).expect("mkdir");
    std::fs::write(root.join("platform/team/admin.yaml"), LATE_ADMIN).expect("write");
    std::fs::write(root.join("platform/roles.yaml"), role(1)).expect("write");
    std::os::unix::fs::symlink(root.join("platform"), root.join("platform/team/again"))
        .expect("symlink");
    let (code, report) = check_json(&[root.as_os_str()]);
    assert_eq!(report["summary"]["files"], 2, "{report:#}");
    assert_eq!(report["summary"]["objects"], 2, "{report:#}");
    assert_eq!(
        report["summary"]["deny"], 1,
        "judged once, not once per lap: {report:#}"
    );
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("loop")),
        "{}",
        errors[0]
    );
    assert_eq!(code, 2, "the loop is reported as an input error");
}
