# syntax=docker/dockerfile:1
# faceid-receiver: multi-stage build. TLS is rustls everywhere, so the runtime image needs no
# OpenSSL.
#
# No cargo-chef: its `cook` step replaces path crates with stubs, and vendor/sqlx-core is one
# (a [patch.crates-io], see Cargo.toml), so cook could not build sqlx. BuildKit cache mounts
# keep the crates.io downloads and compiled dependencies between builds instead.
#
# The service alone: the workspace's other members (faceid-sim, the FaceID stand-in, and the
# load generator) are for tests and development and never reach the image.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /app
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target-cache \
    CARGO_TARGET_DIR=/app/target-cache cargo build --release --locked -p faceid-receiver --bin faceid-receiver \
 && mkdir -p target/release \
 && cp target-cache/release/faceid-receiver target/release/

FROM debian:bookworm-slim AS runtime
# ca-certificates is deliberately unpinned: it must track Debian's current trust store.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1001 --user-group --home-dir /app --no-create-home app \
 && mkdir -p /app/data \
 && chown app:app /app/data
WORKDIR /app
COPY --from=builder /app/target/release/faceid-receiver /usr/local/bin/faceid-receiver
COPY config config
ENV APP_ENVIRONMENT=production
# Numeric, so the host and orchestrators can tell it is not root (uid 1001 = app).
USER 1001:1001
# The embedded SQLite default writes here; mount a volume to keep it.
VOLUME /app/data
# FaceID calls back only on 443, 5000, 16003, 8883 and 8028.
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["faceid-receiver", "healthcheck", "http://127.0.0.1:5000/healthz"]
ENTRYPOINT ["faceid-receiver"]
CMD ["serve"]
