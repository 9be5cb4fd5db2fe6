# One image with every Ordo binary (order-service, processor, payments-sim,
# ordo-migrate, and the operator's command ordo); the Helm chart picks the
# command per Deployment, and `kubectl exec … -- ordo lag` works in any pod.
#
#   docker build -t ghcr.io/ordo/ordo:0.1.0 .
#
# Build stage: release binaries. protox compiles the protos in Rust, so no
# protoc is needed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The commit `--version` prints (the build context has no .git):
#   docker build --build-arg ORDO_GIT_COMMIT=$(git rev-parse --short HEAD) .
ARG ORDO_GIT_COMMIT=unknown
ENV ORDO_GIT_COMMIT=$ORDO_GIT_COMMIT
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p order-service -p processor -p payments-sim -p ordo-migrations -p ordo-cli \
    && mkdir -p /out \
    && cp target/release/order-service target/release/processor \
          target/release/payments-sim target/release/ordo-migrate target/release/ordo /out/

# Runtime stage: glibc and CA certificates only, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 50051 50052 50053 9101 9102 9103
ENTRYPOINT []
CMD ["/usr/local/bin/order-service"]
