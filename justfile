# Ordo's routine tasks. On a fresh machine run them through ./dev, which
# installs just, grpcurl and nats-server first: ./dev up, ./dev test.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/tmp/ordo-target")
export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/ordo")
export NATS_URL := env_var_or_default("NATS_URL", "nats://127.0.0.1:4222")

# list the recipes
default:
    @just --list

# start PostgreSQL and NATS when missing, the local trace viewer, the three services, a local Prometheus with the alert rules, and place a demo order
up: deps build
    scripts/up.sh

# build the local Jaeger (ordo-trace-viewer) with a vendored protoc
trace-viewer:
    scripts/trace-viewer.sh build

# stop what `just up` started
down:
    scripts/down.sh

# make sure PostgreSQL and NATS answer (installing or starting them)
deps:
    scripts/tools.sh
    scripts/postgres.sh
    scripts/nats.sh

# build every binary
build:
    cargo build --workspace --bins

# the whole test suite: unit and integration tests (the state machines model-checked), the grpcurl smoke test (plaintext, then every connection over TLS), the image check (the smoke test again on the binaries started from the runtime image's root filesystem), the Helm checks, the release script on a copy of the tree, the alert rules (promtool) and the dashboard against a live Prometheus, the API checks, the client examples, the chaos suite (bounded, on a three-node NATS cluster)
test: deps
    scripts/drop-test-databases.sh
    if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace; else cargo test --workspace; fi
    cargo build --workspace --bins
    scripts/smoke.sh
    ORDO_SMOKE_TLS=1 scripts/smoke.sh
    scripts/image-check.sh
    scripts/helm-check.sh
    scripts/release-check.sh
    scripts/prometheus-check.sh
    scripts/proto-check.sh
    scripts/clients.sh
    "$CARGO_TARGET_DIR/debug/ordo-chaos" --orders 3000 --nats-nodes 3

# buf lint (STANDARD, COMMENTS) and buf breaking against the released API (proto/released/)
proto-check:
    scripts/proto-check.sh

# generate the Python and TypeScript stubs; run the Rust and Python examples, type-check the TypeScript one
clients: build
    scripts/clients.sh

# the chaos suite at full size (20,000 orders); --seed N replays a run
chaos *ARGS: deps
    cargo build --workspace --bins
    "$CARGO_TARGET_DIR/debug/ordo-chaos" {{ARGS}}

# the alert rules (promtool check and test), then the rules and the Grafana dashboard against a real Prometheus scraping the services as an outage plays out
prometheus-check: deps
    cargo build --workspace --bins
    scripts/prometheus-check.sh

# the runtime image without a container engine: distroless cc-debian12's Debian packages and the binaries assembled into a root filesystem as the Dockerfile says, its layout checked (no shell, uid 65532, every library inside), the smoke test (plaintext and TLS) run on the binaries started from it (chroot), podman import when podman is installed
image-check: deps
    cargo build --workspace --bins
    scripts/image-check.sh

# lint, render and validate the Helm chart (real Helm engine, Kubernetes schemas; no cluster)
helm-check:
    scripts/helm-check.sh

# cut release VERSION from a clean tree: bump Cargo.toml, Cargo.lock and the chart, date CHANGELOG's Unreleased, commit, tag vVERSION, print the image and chart commands (nothing is pushed); `just release 0.2.0 --dry-run` shows the changes and makes none
release VERSION *FLAGS:
    scripts/release.sh {{FLAGS}} {{VERSION}}

# scripts/release.sh on a throwaway copy of the tree: the dry run changes nothing, refusals, a real release
release-check:
    scripts/release-check.sh

# benchmarks (release build): the outbox relay beside the raw limits of this machine; run on a quiet machine
bench *ARGS: deps
    cargo build --release -p ordo-bench -p order-service -p processor -p payments-sim
    "$CARGO_TARGET_DIR/release/ordo-bench" {{ARGS}}

# perf over one phase of the benchmark: CPU by process, hottest symbols, flamegraph (.ordo/profile)
profile PHASE="life cycle at": deps
    cargo build --release -p ordo-bench -p order-service -p processor -p payments-sim
    scripts/profile.sh "{{PHASE}}"

# formatting and clippy, warnings as errors
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# format the code
fmt:
    cargo fmt --all

# apply migrations to DATABASE_URL
migrate:
    cargo run -q -p ordo-migrations --bin ordo-migrate -- up

# run the order service in the foreground
run-order-service:
    cargo run -p order-service

# drop every database the tests created, templates included
clean-test-databases:
    scripts/drop-test-databases.sh --all
