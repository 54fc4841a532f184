//! Arbitrary text as `secretscope.yaml`: never a panic; a policy that parses compiles again
//! from its own file and answers the questions the webhook asks of it.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use secretscope::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, "fuzz.yaml") else {
        return;
    };
    let _ = policy.warnings();
    Policy::compile(policy.file.clone()).expect("a parsed policy compiles from its own file");
    let labels = BTreeMap::from([(policy.file.tenancy.label.clone(), "t".to_string())]);
    for ns in ["az-team", "default", "kube-system", text] {
        let _ = policy.tenant_of(ns, &BTreeMap::new());
        let tenant = policy.tenant_of(ns, &labels);
        assert!(
            tenant.is_some(),
            "the tenancy label makes any namespace a tenancy namespace"
        );
    }
});
