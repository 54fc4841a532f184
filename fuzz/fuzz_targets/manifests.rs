//! Arbitrary text as a manifest stream, read the way `secretscope check` reads a file (YAML, and
//! JSON for `.json` files), then judged: never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use secretscope::cli::check::judge;
use secretscope::manifest::parse_stream;
use secretscope::policy::Policy;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [false, true] {
        let loaded = parse_stream(text, "fuzz.yaml", json);
        let report = judge(&loaded, &POLICY, true);
        // Azure role definitions count as objects too.
        assert!(report.summary.objects >= loaded.objects.len());
        assert!(report.errors.len() >= loaded.errors.len());
        let _ = report.exit_code();
    }
});
