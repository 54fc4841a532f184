#!/usr/bin/env bash
# `make fuzz-smoke`: builds every fuzz target and runs each for $FUZZ_SECONDS seconds (default
# 60), one after the other; exits non-zero if any target crashed, leaked, timed out or ran out of
# memory (libFuzzer writes the reproducer to fuzz/artifacts/<target>/).
#
#   FUZZ_SECONDS=10 make fuzz-smoke          # the CI smoke
#   FUZZ_TARGETS="engine policy" make fuzz-smoke
#   FUZZ_SANITIZER=none make fuzz-smoke      # faster, no AddressSanitizer
#   fuzz/smoke.sh --build-only               # `make fuzz-build`: build them, run nothing
set -euo pipefail
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz"

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-validate mutate manifests policy engine}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly flags (-Zsanitizer, -Cpasses=sancov-module); without a nightly
# toolchain, stable accepts them under RUSTC_BOOTSTRAP=1.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz_cmd=(cargo +nightly fuzz)
else
    echo "fuzz-smoke: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    fuzz_cmd=(cargo fuzz)
fi

max_len() {
    case "$1" in
        manifests) echo 262144 ;;
        engine) echo 4096 ;;
        *) echo 65536 ;;
    esac
}

for t in $targets; do
    "${fuzz_cmd[@]}" build --sanitizer "$sanitizer" "$t"
done
[ "${1:-}" = "--build-only" ] && exit 0
"$fuzz/seed.sh"

# The binaries are run directly rather than through `cargo fuzz run`, which would rebuild them
# (and everything under src/) if a source file changed meanwhile.
bin="$fuzz/target/x86_64-unknown-linux-gnu/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
failed=()
mkdir -p "$fuzz/artifacts"
for t in $targets; do
    log="$fuzz/artifacts/$t.log"
    echo "fuzz-smoke: $t for ${seconds}s (log: fuzz/artifacts/$t.log)"
    mkdir -p "$fuzz/artifacts/$t"
    if "$bin/$t" "$fuzz/corpus/$t" -artifact_prefix="$fuzz/artifacts/$t/" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
        -timeout=25 -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | awk '{print $2}')"
        rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | awk '{print $2}')"
        echo "fuzz-smoke: $t ok: ${runs:-?} executions, ${rate:-?} exec/s"
    else
        echo "fuzz-smoke: $t FAILED; the end of its log:"
        tail -n 60 "$log"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: failed: ${failed[*]} (reproducers in fuzz/artifacts/<target>/; replay with"
    echo "  fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/<crash-file>)"
    exit 1
fi
echo "fuzz-smoke: all targets ran ${seconds}s without a crash"
