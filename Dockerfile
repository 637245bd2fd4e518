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
RUN cargo build --release --locked --bin ratelimiter

FROM debian:bookworm-slim
# curl is the health check's client (Docker HEALTHCHECK, ECS healthCheck).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ratelimiter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ratelimiter
COPY --from=build /src/target/release/ratelimiter /usr/local/bin/ratelimiter
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
    CMD curl -fsS http://127.0.0.1:8080/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/ratelimiter"]
CMD ["serve"]
