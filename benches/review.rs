//! The admission hot path without HTTP: AdmissionReview bytes in, response bytes out, against a
//! cluster state of every corpus object plus the built-in roles.
//!
//! Each group also measures the baseline DESIGN.md names: parsing the same body into a generic
//! `serde_json::Value`, which the webhook deliberately never does. Read the ratio between the two
//! lines of a group (both run in the same process, on the same machine, in the same run).
//!
//! `cargo bench --bench review`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secretscope::admission::review::AdmissionReview;
use secretscope::admission::{StateSource, StaticState, Validator};
use secretscope::manifest;
use secretscope::policy::Policy;
use secretscope::rbac::{AnyRbacObject, ClusterState, RbacKind};
use serde_json::Value;

#[path = "common/bodies.rs"]
mod bodies;
use bodies::review_body;

fn state() -> ClusterState {
    let mut state = ClusterState::with_builtins();
    let loaded = manifest::load_paths(&bodies::state_paths());
    state.extend(loaded.objects.into_iter().map(|o| o.object));
    state
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
        g.bench_function("secretscope: decode only", |b| {
            b.iter(|| {
                // One pass, the object decoded with the envelope, as a review reads it.
                let req = AdmissionReview::<AnyRbacObject>::parse(black_box(&body)).ok()?;
                black_box(req.object?.into_kind(RbacKind::ClusterRole))
            })
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

/// The built-in ClusterRoles and the objects of a YAML stream.
fn builtins_and(yaml: &str) -> ClusterState {
    let mut state = ClusterState::with_builtins();
    state.extend(
        manifest::parse_stream(yaml, "bench.yaml", false)
            .objects
            .into_iter()
            .map(|o| o.object),
    );
    state
}

/// Issue 8: review cost must not grow with the square of the cluster. A role bound through a
/// chain of 8,000 aggregating ClusterRoles, against the same review with no chain (same run).
fn aggregation(c: &mut Criterion) {
    let policy = Arc::new(Policy::default());
    let validator_over = |yaml: &str| {
        let source: Arc<dyn StateSource> = Arc::new(StaticState(Arc::new(builtins_and(yaml))));
        Validator::new(policy.clone(), source)
    };
    let chained = validator_over(&bodies::aggregation_chain(8_000));
    let empty = validator_over("");
    let leaf = bodies::role_review("leaf", serde_json::json!({"chain": "0"}));
    let mut g = c.benchmark_group("aggregation_chain_8000");
    g.bench_function("baseline: same review, no chain", |b| {
        b.iter(|| black_box(empty.review(black_box(&leaf)).ok()))
    });
    g.bench_function("secretscope: leaf under 8,000 chained aggregators", |b| {
        b.iter(|| black_box(chained.review(black_box(&leaf)).ok()))
    });
    g.finish();

    // Issue 11: a review's cost independent of unrelated cluster state (target: within 1.2x of
    // the empty cache). 10,000 ClusterRoles and 10,000 ClusterRoleBindings of them.
    let unrelated = validator_over(&bodies::platform_manifests(20_000));
    let body = bodies::role_review("new-role", serde_json::json!({"app": "new"}));
    let mut g = c.benchmark_group("cache_10000_clusterroles_and_bindings");
    g.bench_function("baseline: empty cache", |b| {
        b.iter(|| black_box(empty.review(black_box(&body)).ok()))
    });
    g.bench_function(
        "secretscope: 10,000 ClusterRoles + 10,000 bindings cached",
        |b| b.iter(|| black_box(unrelated.review(black_box(&body)).ok())),
    );
    g.finish();
}

/// `check` over rendered manifests of 10k/50k/100k objects: judging against reading alone (the
/// baseline: parsing the same stream), so the ratio shows whether judging stays linear.
fn check_scaling(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("check");
    g.sample_size(10);
    for n in [10_000, 50_000, 100_000] {
        let yaml = bodies::platform_manifests(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("baseline: parse {n} objects"), |b| {
            b.iter(|| black_box(manifest::parse_stream(black_box(&yaml), "p.yaml", false)))
        });
        let loaded = manifest::parse_stream(&yaml, "p.yaml", false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
        g.bench_function(format!("secretscope: judge {n} objects"), |b| {
            b.iter(|| black_box(secretscope::cli::check::judge(&loaded, &policy, true)))
        });
    }
    g.finish();
}

/// What the cluster cache does per burst of watch events: apply a change to its state and publish
/// a copy as the new snapshot. The cost must not grow with the cluster: 20,000 objects against
/// the built-in roles alone (same run).
fn publish(c: &mut Criterion) {
    let change = manifest::parse_stream(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: changed\n  labels: {app: new}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]\n",
        "change.yaml",
        false,
    )
    .objects
    .remove(0)
    .object;
    let mut g = c.benchmark_group("snapshot_publish_after_one_change");
    for (label, mut state) in [
        ("baseline: built-in roles only", builtins_and("")),
        (
            "secretscope: 10,000 ClusterRoles + 10,000 bindings",
            builtins_and(&bodies::platform_manifests(20_000)),
        ),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                state.insert(change.clone());
                drop(black_box(Arc::new(state.clone())));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, aggregation, check_scaling, publish);
criterion_main!(benches);
