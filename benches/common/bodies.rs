//! Request bodies and cluster state shared by the benchmarks.

#![allow(dead_code)] // each bench uses part of it

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The cluster state the benchmarks judge against: every corpus object (when ../shared is there)
/// and the examples.
pub fn state_paths() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared/corpus/rbac"),
        root.join("examples/state"),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect()
}

/// An AdmissionReview as the API server sends it, with `rules` rules and realistic metadata.
pub fn review_body(name: &str, rules: usize, managed_fields: usize) -> Vec<u8> {
    let rules: Vec<Value> = (0..rules)
        .map(|i| {
            json!({"apiGroups": ["", "apps", format!("group{i}.example.com")],
                   "resources": ["pods", "services", "configmaps", format!("things{i}")],
                   "verbs": ["get", "list", "watch"]})
        })
        .collect();
    let managed: Vec<Value> = (0..managed_fields)
        .map(|i| json!({"manager": format!("helm-{i}"), "operation": "Update", "apiVersion": "rbac.authorization.k8s.io/v1",
                        "time": "2026-11-23T02:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/name": {}}}, "f:rules": {}}}))
        .collect();
    let object = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "uid": "0b6a5ba2-36d3-4d6c-9a3b-5b8b35c7ad10", "resourceVersion": "48213",
                     "labels": {"app.kubernetes.io/name": name}, "managedFields": managed},
        "rules": rules
    });
    envelope(
        "ClusterRole",
        name,
        json!({"username": "system:serviceaccount:argocd:argocd-application-controller"}),
        object,
    )
}

/// An AdmissionReview CREATE request of `object` (`kind`, rbac.authorization.k8s.io/v1) by `user`,
/// as the API server sends it.
fn envelope(kind: &str, name: &str, user: Value, object: Value) -> Vec<u8> {
    let resource = format!("{}s", kind.to_lowercase());
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": kind},
                    "resource": {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": resource},
                    "name": name, "operation": "CREATE", "userInfo": user,
                    "object": object, "oldObject": null, "dryRun": false}
    }))
    .unwrap_or_default()
}

/// `n` ClusterRoles chained by aggregation (`agg-i` selects the role labelled `chain: i-1`) and
/// a ClusterRoleBinding of the last one: a role labelled `chain: "0"` is bound through all `n`.
pub fn aggregation_chain(n: usize) -> String {
    let mut yaml = String::new();
    for i in 1..=n {
        yaml.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
             metadata: {{name: agg-{i}, labels: {{chain: \"{i}\"}}}}\n\
             aggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{chain: \"{}\"}}}}]}}\n",
            i - 1
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: top}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agg-{n}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}]\n"
    ));
    yaml
}

/// A rendered platform: `n` objects, half ClusterRoles (every tenth aggregated into one of a few
/// aggregating roles, every seventh with a Secrets rule) and half ClusterRoleBindings of them.
pub fn platform_manifests(n: usize) -> String {
    let mut yaml = String::new();
    for a in 0..4 {
        yaml.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: platform-{a}}}\n\
             aggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{platform.example.com/aggregate-to: \"{a}\"}}}}]}}\n"
        ));
    }
    for i in 0..n / 2 {
        let labels = if i % 10 == 0 {
            format!(
                "{{app: a{i}, platform.example.com/aggregate-to: \"{}\"}}",
                i % 4
            )
        } else {
            format!("{{app: a{i}}}")
        };
        let secrets = if i % 7 == 0 {
            "\n- {apiGroups: [\"\"], resources: [secrets], verbs: [get, list]}"
        } else {
            ""
        };
        yaml.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: role-{i}, labels: {labels}}}\n\
             rules:\n- {{apiGroups: [\"\", apps], resources: [pods, deployments, configmaps], verbs: [get, list, watch]}}{secrets}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: binding-{i}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: role-{i}}}\n\
             subjects: [{{kind: ServiceAccount, name: sa-{i}, namespace: ns-{}}}]\n",
            i % 50
        ));
    }
    yaml
}

/// A review of a ClusterRole with `labels` and one Secrets rule.
pub fn role_review(name: &str, labels: Value) -> Vec<u8> {
    let object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": name, "labels": labels},
                        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    envelope("ClusterRole", name, json!({"username": "admin"}), object)
}

/// A review of a ClusterRoleBinding of `role` to a ServiceAccount, with realistic metadata (~1 KB).
pub fn binding_review(name: &str, role: &str) -> Vec<u8> {
    let object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": name, "uid": "0b6a5ba2-36d3-4d6c-9a3b-5b8b35c7ad10",
                                     "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "Helm"},
                                     "annotations": {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": name}},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": name}]});
    let user = json!({"username": "system:serviceaccount:argocd:argocd-application-controller",
                      "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]});
    envelope("ClusterRoleBinding", name, user, object)
}

/// The three bodies of issue 11's table: label and body.
pub fn load_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("1.5 KB ClusterRole", review_body("ingress-nginx", 6, 1)),
        ("20 KB ClusterRole", review_body("ingress-nginx", 60, 25)),
        (
            "ClusterRoleBinding",
            binding_review("metrics-reader", "view"),
        ),
    ]
}
