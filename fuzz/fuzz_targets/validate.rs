//! Arbitrary bytes as a `POST /validate` body: never a panic; an accepted body gets a bounded
//! response that echoes its uid.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use secretscope::admission::{StaticState, Validator};
use secretscope::policy::Policy;
use secretscope::rbac::ClusterState;

mod common;

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    Validator::new(
        Arc::new(Policy::default()),
        Arc::new(StaticState(Arc::new(ClusterState::with_builtins()))),
    )
});

fuzz_target!(|body: &[u8]| {
    if let Ok(verdict) = VALIDATOR.review(body) {
        common::check_response(body, &verdict.response);
    }
});
