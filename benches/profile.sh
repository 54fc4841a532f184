#!/usr/bin/env bash
# Instructions per review of the release binary under callgrind (stable on a shared machine):
# serves the bench bodies in standalone mode over the corpus state, warms up, zeroes the counters,
# sends N reviews of one body with oha, dumps, and prints instructions per review and the top
# functions (inclusive and self).
#
#   benches/profile.sh [BODY_INDEX (0: 1.5 KB ClusterRole, 1: 20 KB, 2: ClusterRoleBinding)] [N] [h2|h1]
#
# Needs valgrind, a release build (BIN=...), oha (OHA=..., default target/tools/bin/oha) and the
# bench bodies (written by `cargo bench --bench load -- --write-bodies DIR`, BODIES=DIR).
# CEILING=echo|parse|kube-rs profiles that ceiling server of benches/load.rs instead (the bench
# binary, LOAD=..., default the newest target/release/deps/load-*), for a same-run comparison.
# VALGRIND_ARGS adds callgrind options, e.g. `--cache-sim=yes` for instruction- and data-cache
# misses (then also totalled per review).
set -euo pipefail
cd "$(dirname "$0")/.."
idx=${1:-0}
n=${2:-2000}
proto=${3:-h2}
bin=${BIN:-target/release/secretscope}
oha=${OHA:-target/tools/bin/oha}
bodies=${BODIES:-target/bench-bodies}
out=${OUT:-target/callgrind}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'kill "$vg" 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$bin" certs --out "$tmp" --dns localhost --ip 127.0.0.1 >/dev/null
state=()
for p in ../shared/corpus/rbac examples/state; do [ -e "$p" ] && state+=(--state "$p"); done
if [ -n "${CEILING:-}" ]; then
  load=${LOAD:-$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)}
  tag=$CEILING-body$idx-$proto
  export SECRETSCOPE_LOAD_CEILING="$CEILING" CERT="$tmp/tls.crt" KEY="$tmp/tls.key"
  cmd=("$load")
else
  tag=$(basename "$bin")-body$idx-$proto
  cmd=("$bin" serve --standalone "${state[@]}" --listen 127.0.0.1:0 --log-format json
    --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key")
fi
# shellcheck disable=SC2086 # VALGRIND_ARGS is a list of options
valgrind --tool=callgrind ${VALGRIND_ARGS:-} --callgrind-out-file="$out/$tag.%p" \
  "${cmd[@]}" 2>"$tmp/log" &
vg=$!
for _ in $(seq 1 600); do
  port=$(grep -o '"addr":"[^"]*"' "$tmp/log" 2>/dev/null | head -1 | sed 's/.*:\([0-9]*\)"/\1/') || true
  [ -n "$port" ] && break
  sleep 0.2
done
[ -n "$port" ] || { cat "$tmp/log"; exit 1; }
args=(--no-tui --insecure -m POST -T application/json -D "$bodies/body-$idx.json")
if [ "$proto" = h2 ]; then args+=(--http2 -c 1 -p 64); else args+=(--http-version 1.1 -c 64); fi
url="https://localhost:$port/validate"
"$oha" "${args[@]}" -n 300 "$url" >/dev/null
callgrind_control -z "$vg" >/dev/null
"$oha" "${args[@]}" -n "$n" "$url" >"$tmp/oha.txt"
grep -E "Success rate|Requests/sec" "$tmp/oha.txt" || true
callgrind_control -d "$vg" >/dev/null
# The dump is all we need: no final dump at exit. (`sed -n` rather than `head` below: head
# closing the pipe early would fail the pipeline under pipefail.)
kill -KILL "$vg"; wait "$vg" 2>/dev/null || true
file="$out/$tag.$vg.1"
total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$file: $total instructions for $n reviews = $((total / n)) per review"
if [[ "${VALGRIND_ARGS:-}" == *cache-sim=yes* ]]; then
  # Columns by the header's names (Ir Dr Dw I1mr D1mr D1mw ...), each total followed by its (%).
  callgrind_annotate "$file" 2>/dev/null | awk -v n="$n" '
    $1 == "Ir" && !names { for (i = 1; i <= NF; i++) col[$i] = i; names = 1 }
    /PROGRAM TOTALS/ { gsub(/\([^)]*\)/, ""); gsub(",", "")
      printf "per review: I1 misses %.0f, D1 misses %.0f (reads %.0f, writes %.0f)\n",
        $col["I1mr"] / n, ($col["D1mr"] + $col["D1mw"]) / n, $col["D1mr"] / n, $col["D1mw"] / n }'
fi
# --threshold=100: the default (99%) lists only the thread entry points once LTO has inlined
# the call tree into them.
callgrind_annotate --threshold=100 --inclusive=yes "$file" 2>/dev/null | sed -n '/file:function/,$p' | sed -n 1,45p >"$file.inclusive.txt"
callgrind_annotate --threshold=100 --inclusive=no "$file" 2>/dev/null | sed -n '/file:function/,$p' | sed -n 1,45p >"$file.self.txt"
echo "top (inclusive): $file.inclusive.txt; top (self): $file.self.txt"
