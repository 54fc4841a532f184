//! The admission hot path without HTTP: AdmissionReview bytes in, response bytes out, against a
//! cluster state of every corpus object plus the built-in roles.
//!
//! Each group also measures the baseline DESIGN.md names: parsing the same body into a generic
//! `serde_json::Value`, which the webhook deliberately never does. Read the ratio between the two
//! lines of a group (both run in the same process, on the same machine, in the same run).
//!
//! `cargo bench --bench review`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secretscope::admission::{StateSource, StaticState, Validator};
use secretscope::manifest;
use secretscope::policy::Policy;
use secretscope::rbac::ClusterState;
use serde_json::{json, Value};

fn state() -> ClusterState {
    let mut state = ClusterState::with_builtins();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/rbac");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/state");
    let loaded = manifest::load_paths(&[corpus, example]);
    state.extend(loaded.objects.into_iter().map(|o| o.object));
    state
}

/// An AdmissionReview as the API server sends it, with `rules` rules and realistic metadata.
fn review_body(name: &str, rules: usize, managed_fields: usize) -> Vec<u8> {
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

fn bench(c: &mut Criterion) {
    let source: Arc<dyn StateSource> = Arc::new(StaticState(Arc::new(state())));
    let validator = Validator::new(Arc::new(Policy::default()), source);
    // ~1.5 KB: a typical controller ClusterRole. ~20 KB: a big one with heavy managedFields.
    // "ingress-nginx" is bound cluster-wide in the corpus state, so the binding walk is real.
    for (label, body) in [
        ("review_1.5KB", review_body("ingress-nginx", 6, 1)),
        ("review_20KB", review_body("ingress-nginx", 60, 25)),
    ] {
        let mut g = c.benchmark_group(format!("{label}_{}B", body.len()));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("baseline: serde_json::Value parse only", |b| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&body)).ok()))
        });
        g.bench_function("secretscope: decode + judge + encode", |b| {
            b.iter(|| {
                let verdict = validator.review(black_box(&body)).ok();
                black_box(verdict.map(|v| v.response.to_review_json()))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
