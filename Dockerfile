# Multi-stage build: compile with the full toolchain, run on a slim base as
# a non-root user with the data directory on a volume.
#
#   docker build -t flashsale .
#   docker run --stop-timeout 30 -p 8080:8080 -v flashsale-data:/data flashsale
#
# Stop timeout: on SIGTERM the server stops accepting, finishes requests in
# flight (up to 20 s) and closes the log; give it 30 s before SIGKILL
# (`docker run --stop-timeout 30`, compose `stop_grace_period: 30s`;
# Docker's default of 10 s can cut the grace short).
#
# Data: the image's /data belongs to uid 10001, so a named volume works as
# is. A bind mount keeps the host's owner: `chown -R 10001:10001 DIR` first.

FROM rust:1.89.0-slim-bookworm AS build
WORKDIR /src
# No debug info, symbols stripped: the release profile keeps line tables
# for profiling, which an image does not need.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, on stub sources: this layer is rebuilt only when a
# manifest or the lock file changes, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY wal/Cargo.toml wal/Cargo.toml
COPY load/Cargo.toml load/Cargo.toml
RUN mkdir -p src wal/src load/src/bin benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs wal/src/lib.rs load/src/lib.rs \
    && echo 'fn main() {}' > load/src/main.rs \
    && echo 'fn main() {}' > load/src/bin/baseline.rs \
    && for bench in wal engine export identity; do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --release --locked --bin flashsale \
    && rm -rf src wal/src load/src benches

COPY . .
# The copied sources may be older than the stub build: touch them so that
# cargo rebuilds our crates (the dependencies stay built).
RUN touch src/main.rs src/lib.rs wal/src/lib.rs \
    && cargo build --release --locked --bin flashsale

FROM debian:12.8-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin flashsale \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /src/target/release/flashsale /usr/local/bin/flashsale
USER 10001:10001
VOLUME /data
ENV FLASHSALE_LISTEN=0.0.0.0:8080 \
    FLASHSALE_DATA_DIR=/data \
    FLASHSALE_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
# The port comes from FLASHSALE_LISTEN, so a changed listen address keeps
# the check right. bash's /dev/tcp: no HTTP client in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${FLASHSALE_LISTEN##*:} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM: stop accepting, finish requests in flight, make the log durable.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flashsale"]
CMD ["serve"]
