#!/usr/bin/env bash
# Fetches the Go toolchain that build.sh needs, for machines without one (Debian 12's golang-go
# is 1.19, too old). The toolchain comes from the Go module proxy as the module
# golang.org/toolchain, the same way `go` itself switches toolchains (GOTOOLCHAIN); its
# checksum is verified against sum.golang.org's entry copied below.
#
# Prints the directory to put on PATH (…/bin). Usage in CI:
#   export PATH="$(bash tests/controlplane/fetch-go.sh):$PATH"
# Honours GO_TOOLCHAIN_DIR (default: $XDG_CACHE_HOME or ~/.cache, then secretscope-go/).
set -euo pipefail

version=go1.26.8
# From sum.golang.org (via https://proxy.golang.org/sumdb/sum.golang.org/lookup/golang.org/toolchain@<module>).
declare -A h1=(
    [amd64]="h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM="
)
case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    *) echo "fetch-go.sh: no toolchain for $(uname -m)" >&2; exit 3 ;;
esac
module="v0.0.1-$version.linux-$arch"
root="${GO_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secretscope-go}"
dir="$root/$module"

if [ -x "$dir/bin/go" ]; then
    echo "$dir/bin"
    exit 0
fi
for tool in curl unzip sha256sum base64 sort xargs; do
    command -v "$tool" >/dev/null || { echo "fetch-go.sh: needs $tool" >&2; exit 3; }
done

mkdir -p "$root"
tmp="$(mktemp -d "$root/.fetch-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
url="${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/$module.zip"
echo "fetch-go.sh: downloading $url" >&2
curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
unzip -q "$tmp/go.zip" -d "$tmp/x"
# Go's dirhash "h1": SHA-256 over the sorted lines "<sha256 hex>  <path in zip>\n".
hex="$(cd "$tmp/x" && find golang.org -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
got="h1:$(printf "$(sed 's/../\\x&/g' <<<"$hex")" | base64)"
if [ "$got" != "${h1[$arch]}" ]; then
    echo "fetch-go.sh: $module has hash $got, expected ${h1[$arch]}" >&2
    exit 1
fi
src="$tmp/x/golang.org/toolchain@$module"
# Module zips carry no file modes.
chmod +x "$src"/bin/* "$src"/pkg/tool/*/*
"$src/bin/go" version >&2
rm -rf "$dir"
mv "$src" "$dir"
echo "$dir/bin"
