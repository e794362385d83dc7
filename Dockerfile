# Multi-stage build: compile with the full toolchain, run on a slim base as
# a non-root user with the log on a volume.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flashsale

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data flashsale \
    && mkdir -p /data && chown flashsale /data
COPY --from=build /src/target/release/flashsale /usr/local/bin/flashsale
USER flashsale
VOLUME /data
ENV FLASHSALE_LISTEN=0.0.0.0:8080 \
    FLASHSALE_DATA_DIR=/data \
    FLASHSALE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
# SIGTERM: stop accepting, finish requests in flight, make the log durable.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flashsale"]
CMD ["serve"]
