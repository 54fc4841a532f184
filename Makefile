# secretscope: `make run` starts the webhook locally, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
BIN_DEBUG := target/debug/secretscope
BIN_RELEASE := target/release/secretscope
LISTEN ?= 127.0.0.1:8443

.PHONY: all build release run test lint fmt bench bench-apiserver bench-load certs clean fuzz-build fuzz-smoke controlplane

all: build

build:
	$(CARGO) build --locked

release:
	$(CARGO) build --locked --release

# Development CA and serving certificate for localhost (certs/ is git-ignored).
certs/tls.crt: | release
	$(BIN_RELEASE) certs --out certs --dns localhost --dns secretscope.secretscope.svc --ip 127.0.0.1 > certs/ca-bundle.b64

certs: certs/tls.crt

# Builds, makes dev certs, and serves /validate in standalone mode over examples/state.
run: release certs/tls.crt
	@echo
	@echo "secretscope is starting on https://$(LISTEN). In another shell, get a denial with:"
	@echo
	@echo "  curl -sS --cacert certs/ca.crt -H 'Content-Type: application/json' --data @examples/review-deny.json https://localhost:$(lastword $(subst :, ,$(LISTEN)))/validate"
	@echo
	$(BIN_RELEASE) serve --standalone --state examples/state \
		--listen $(LISTEN) --tls-cert certs/tls.crt --tls-key certs/tls.key

# The real control plane for the end-to-end tier (tests/real_cluster.rs): etcd, kube-apiserver,
# kube-controller-manager and kubectl built from pinned Go modules, cached under target/. Without
# Go it says how to get it and that tier skips (with CI=true it fails instead).
controlplane:
	@bash tests/controlplane/build.sh >/dev/null || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

# Unit, property, corpus and end-to-end tests: the real binary over real TLS, against the
# in-process fake API server for fault injection and against a real kube-apiserver.
test: controlplane
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench --locked

# Latency secretscope adds to ClusterRole CREATEs through the real API server, beside no webhook
# and an equivalent CEL ValidatingAdmissionPolicy (benches/apiserver.rs); builds the control plane.
bench-apiserver: controlplane
	$(CARGO) bench --locked --bench apiserver

# The release binary against the echo and parse ceilings (benches/load.rs), driven by oha, which is
# installed from crates.io under target/tools the first time. `cargo bench` builds the optimized
# binary itself (target/release/secretscope, with the bench's feature set); a separate
# `cargo build --release` would resolve features without dev-dependencies and rebuild it twice.
OHA := target/tools/bin/oha
LOAD_ARGS ?= --seconds 3 --rounds 3 --rate 2000
$(OHA):
	$(CARGO) install --locked oha --root target/tools

bench-load: $(OHA)
	OHA=$(OHA) $(CARGO) bench --locked --bench load -- $(LOAD_ARGS)

# Builds the cargo-fuzz targets in fuzz/ (nightly, or stable with RUSTC_BOOTSTRAP=1) and runs each
# for FUZZ_SECONDS seconds from seeds (examples/, deploy/, ../shared/corpus/rbac); fails on any crash.
# `make fuzz-build` only builds them (CI builds them while the control plane builds).
FUZZ_SECONDS ?= 60
fuzz-smoke:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/smoke.sh

fuzz-build:
	fuzz/smoke.sh --build-only

clean:
	$(CARGO) clean
	rm -f certs/*.crt certs/*.key certs/*.b64
