#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v3, pinned in this directory's go.mod/go.sum) for
# tests/helm.rs: `helm lint` and `helm template` of charts/secretscope.
#
# Output: <target>/helm/<hash>/helm, where <target> is $CARGO_TARGET_DIR or <repo>/target and
# <hash> covers go.mod, go.sum and this script (a changed pin builds afresh, an unchanged one
# once). The directory is the last line on stdout; progress goes to stderr. Needs only `go` and
# the Go module proxy. tests/controlplane/build.sh calls this and links helm into its bin dir.
#
# Exit codes: 0 built or cached, 3 go is missing, anything else a build failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac

hash="$(cat "$here/go.mod" "$here/go.sum" "$here/build-helm.sh" | sha256sum | cut -c1-16)"
out="$target/helm/$hash"

if [ -x "$out/helm" ]; then
    echo "$out"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build-helm.sh: \`go\` is not on PATH (Go 1.26+ builds helm from its module)" >&2
    exit 3
fi

mkdir -p "$target/helm"
exec 9>"$target/helm/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -x "$out/helm" ]; then
    echo "$out"
    exit 0
fi

cd "$here"
version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
# What helm's own Makefile stamps: its version, and the Kubernetes release its client modules
# are (the default .Capabilities.KubeVersion of `helm template`, and lint's deprecation check).
k8s="$(go list -m -f '{{.Version}}' k8s.io/client-go)" # v0.MINOR.PATCH
k8s_minor="${k8s#v0.}"; k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

tmp="$(mktemp -d "$target/helm/.build-$hash-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
echo "build-helm.sh: building helm $version (Kubernetes 1.$k8s_minor) into $out" >&2
start=$SECONDS
CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
    go build -trimpath -ldflags="$ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
for old in "$target"/helm/*/; do
    [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
echo "build-helm.sh: built in $((SECONDS - start))s" >&2
echo "$out"
