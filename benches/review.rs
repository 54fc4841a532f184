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
use secretscope::rbac::{ClusterState, RbacKind, RbacObject};
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
                let req = AdmissionReview::parse(black_box(&body)).ok()?;
                let raw = req.object?;
                let mut de = serde_json::Deserializer::from_str(raw.get());
                black_box(RbacObject::decode(RbacKind::ClusterRole, &mut de).ok())
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

criterion_group!(benches, bench);
criterion_main!(benches);
