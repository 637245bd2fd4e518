# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian image
# as an unprivileged user.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY loadtests ./loadtests
RUN cargo build --release --locked --bin ratelimiter

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ratelimiter
COPY --from=build /src/target/release/ratelimiter /usr/local/bin/ratelimiter
COPY config/ratelimiter.toml /etc/ratelimiter/ratelimiter.toml
USER ratelimiter
ENV RATELIMITER_CONFIG=/etc/ratelimiter/ratelimiter.toml \
    RATELIMITER__SERVER__LISTEN=0.0.0.0:8080 \
    RATELIMITER__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/ratelimiter"]
CMD ["serve"]
