//! Arbitrary bytes as a `POST /mutate` body: never a panic; an accepted body gets a bounded
//! response that echoes its uid, and a patch only ever as a base64 JSON Patch.
#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use secretscope::admission::Mutator;
use secretscope::policy::Policy;

mod common;

static MUTATOR: LazyLock<Mutator> = LazyLock::new(|| Mutator::new(Arc::new(Policy::default())));

fuzz_target!(|body: &[u8]| {
    if let Ok(mutation) = MUTATOR.review(body) {
        let response = &mutation.response;
        common::check_response(body, response);
        assert!(response.allowed, "/mutate never denies");
        if response.patch.is_some() {
            assert_eq!(response.patch_type, Some("JSONPatch"));
            let tenant = mutation
                .tenant
                .as_deref()
                .expect("a patch is returned for a tenant");
            let patch = base64::engine::general_purpose::STANDARD
                .decode(response.patch.as_deref().unwrap_or_default())
                .expect("the patch is base64");
            let patch: serde_json::Value =
                serde_json::from_slice(&patch).expect("the patch is JSON");
            let ops = patch.as_array().expect("a JSON Patch is an array");
            assert_eq!(ops.len(), 1, "{patch}");
            assert_eq!(ops[0]["op"], "add", "{patch}");
            let path = ops[0]["path"].as_str().expect("a path");
            assert!(path.starts_with("/metadata/labels"), "{patch}");
            let value = &ops[0]["value"];
            assert!(
                value == tenant
                    || value
                        .as_object()
                        .is_some_and(|m| m.values().any(|v| v == tenant)),
                "the patch sets the tenant label: {patch}"
            );
        }
    }
});
