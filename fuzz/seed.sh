#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ (git-ignored; libFuzzer adds what it finds there) with seeds:
# fuzz/seeds/<target>/ (committed, hand-written), examples/*.json, the RBAC corpus
# ($SHARED_CORPUS, default ../shared/corpus/rbac, copied at run time, never committed), the
# repository's own manifests, and the policy embedded in deploy/base/configmap.yaml.
set -euo pipefail
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz")"
shared="${SHARED_CORPUS:-$repo/../shared/corpus/rbac}"
corpus="$fuzz/corpus"

for t in validate mutate manifests policy engine; do
    mkdir -p "$corpus/$t"
    if [ -d "$fuzz/seeds/$t" ]; then
        cp -f "$fuzz/seeds/$t"/* "$corpus/$t"/ 2>/dev/null || true
    fi
done

# AdmissionReview bodies.
for f in "$repo"/examples/*.json; do
    cp -f "$f" "$corpus/validate/example-$(basename "$f")"
    cp -f "$f" "$corpus/mutate/example-$(basename "$f")"
done

# Manifest streams: the repository's own, and the shared RBAC corpus when it is there.
for f in "$repo"/examples/state/*.yaml "$repo"/deploy/base/*.yaml; do
    [ -f "$f" ] && cp -f "$f" "$corpus/manifests/repo-$(basename "$f")"
done
if [ -d "$shared" ]; then
    n=0
    for f in "$shared"/*.yaml; do
        [ -f "$f" ] || continue
        cp -f "$f" "$corpus/manifests/shared-$(basename "$f")"
        n=$((n + 1))
    done
    echo "seed: $n manifest streams from $shared"
else
    echo "seed: $shared not found; manifests start from the repository's own files only"
fi

# The policy: the `secretscope.yaml: |` block of the ConfigMap, de-indented.
awk '
    /^  secretscope\.yaml: \|/ { inside = 1; next }
    inside && /^[^ ]/ { inside = 0 }
    inside { sub(/^    /, ""); print }
' "$repo/deploy/base/configmap.yaml" > "$corpus/policy/configmap-secretscope.yaml"
printf '' > "$corpus/policy/empty.yaml"

for t in validate mutate manifests policy engine; do
    echo "seed: $t: $(find "$corpus/$t" -type f | wc -l) inputs"
done
