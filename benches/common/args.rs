//! `--name value` flags of the load tools (`cargo bench --bench X -- --name value`), and whether
//! `cargo bench` (not `cargo test --benches`) started us.

/// The value after `--name`, or `default` when absent or not a number.
pub fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: nothing to do then.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}
