#!/usr/bin/env bash
# Builds the real control plane the tests run on loopback: kube-apiserver and
# kube-controller-manager from k8s.io/kubernetes, and etcd from go.etcd.io/etcd/server/v3,
# at the versions pinned in this directory's go.mod/go.sum; and kubectl of the same release,
# so the tests see exactly what a user's kubectl prints. Also helm (tests/helm/build-helm.sh, its
# own pin and cache), linked into the same directory for tests/helm.rs.
#
# Output: <target>/controlplane/<hash>/{etcd,kube-apiserver,kube-controller-manager,kubectl}, where
# <target> is $CARGO_TARGET_DIR or <repo>/target and <hash> covers go.mod, go.sum and this
# script, so changing a pin or a build flag builds afresh and an unchanged tree builds once.
# The directory is the last line on stdout; progress goes to stderr.
#
# Exit codes: 0 built or cached, 3 a required tool (go) is missing, anything else a build failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac

hash="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
out="$target/controlplane/$hash"
bins=(etcd kube-apiserver kube-controller-manager kubectl)

# helm has its own pin and cache (target/helm/<hash>); a missing helm never fails the control
# plane (tests/helm.rs says so itself).
finish() {
    local helm_dir
    if helm_dir="$(bash "$repo/tests/helm/build-helm.sh" | tail -n 1)"; then
        ln -sfn "$helm_dir/helm" "$out/helm"
    else
        echo "build.sh: helm was not built (see above)" >&2
    fi
    echo "$out"
}

have_all() {
    local b
    for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if have_all; then
    finish
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<'EOF'
build.sh: `go` is not on PATH; it is needed to build kube-apiserver, kube-controller-manager
and etcd for the real-cluster tests. Install Go 1.26 or newer (https://go.dev/dl/, or
`apt-get install golang-go` where the distribution ships 1.26+) and put it on PATH.
Go fetches the pinned modules from the Go module proxy on first build.
EOF
    exit 3
fi

mkdir -p "$target/controlplane"
# Two test binaries may ask at once: one builds, the other waits and finds it built.
exec 9>"$target/controlplane/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if have_all; then
    finish
    exit 0
fi

k8s_version="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done

tmp="$(mktemp -d "$target/controlplane/.build-$hash-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
echo "build.sh: building kube-apiserver, kube-controller-manager, kubectl ($k8s_version) and etcd into $out" >&2
echo "build.sh: (a cold build takes several minutes and a few GB of Go build cache)" >&2
start=$SECONDS
(
    cd "$here"
    export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
    go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kubectl
    go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
# Builds for earlier pins are ~250 MB each and never used again.
for old in "$target"/controlplane/*/; do
    [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
echo "build.sh: built in $((SECONDS - start))s" >&2
finish
