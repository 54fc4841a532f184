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
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "ClusterRole"},
                    "resource": {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "clusterroles"},
                    "name": name, "operation": "CREATE",
                    "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller"},
                    "object": object, "oldObject": null, "dryRun": false}
    }))
    .unwrap_or_default()
}
