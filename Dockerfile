# secretscope image: one static binary (musl; ring and mimalloc are its only C code), built from
# source with the pinned lockfile, on an image with nothing else in it, run as non-root.
#
#   docker build -t registry.example.com/secretscope:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --sbom=true --provenance=true \
#       -t registry.example.com/secretscope:0.1.0 --push .    # what .github/workflows/release.yml does
#
# (Not built in this repository's CI: no container engine runs there.)
FROM rust:1.95-alpine AS build
# ring's assembly and C, and mimalloc's C, need a compiler and the musl headers; nothing else is
# linked. (mimalloc replaces musl's malloc, which is slow for a server's many small allocations.)
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Embedded at compile time by `secretscope manifests`.
COPY deploy/base ./deploy/base
# On Alpine the host target is musl, which links statically by default; say so anyway, and fail
# the build if anything dynamic slipped in.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --bin secretscope \
 && if readelf -d target/release/secretscope | grep -q NEEDED; then \
        echo "secretscope is not static" >&2; exit 1; \
    fi \
 && ./target/release/secretscope --version

# No libc, no shell, no package manager: the binary, plus the base's /etc/passwd entry for UID
# 65532 ("nonroot") that the Deployment's securityContext names.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/secretscope /usr/local/bin/secretscope
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/secretscope"]
CMD ["serve"]
