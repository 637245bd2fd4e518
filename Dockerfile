# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian image
# as an unprivileged user (numeric, so Kubernetes' runAsNonRoot can check it).
#
# Configuration: the image carries config/ratelimiter.toml at
# /etc/ratelimiter/ratelimiter.toml (mount your own over it, e.g. a
# Kubernetes ConfigMap) and every setting can be overridden with
# RATELIMITER__<SECTION>__<KEY> variables. See deploy/README.md.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY loadtests ./loadtests
COPY client ./client
COPY benches ./benches
COPY tests/support ./tests/support
# The registry and the target directory are BuildKit cache mounts: a source
# change rebuilds the service, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ratelimiter \
    && cp target/release/ratelimiter /usr/local/bin/ratelimiter

FROM debian:bookworm-slim
# The health check is the binary's own (`ratelimiter health`): no curl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ratelimiter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ratelimiter
COPY --from=build /usr/local/bin/ratelimiter /usr/local/bin/ratelimiter
COPY config/ratelimiter.toml /etc/ratelimiter/ratelimiter.toml
USER 10001:10001
ENV RATELIMITER_CONFIG=/etc/ratelimiter/ratelimiter.toml \
    RATELIMITER__SERVER__LISTEN=0.0.0.0:8080 \
    RATELIMITER__LOG__FORMAT=json
EXPOSE 8080
# SIGTERM: /health/ready turns 503 for server.drain_grace, in-flight requests
# finish within server.shutdown_timeout, then the process exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/ratelimiter", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/ratelimiter"]
CMD ["serve"]
