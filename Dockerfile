# secretscope image: built from source with the pinned lockfile, run as non-root on distroless.
# (Not built in this repository's CI: no container engine runs there.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Embedded at compile time by `secretscope manifests` and the policy's default test.
COPY deploy/base ./deploy/base
RUN cargo build --release --locked --bin secretscope

# glibc + libgcc only; no shell, no package manager. UID 65532 matches the Deployment.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/secretscope /usr/local/bin/secretscope
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/secretscope"]
CMD ["serve"]
