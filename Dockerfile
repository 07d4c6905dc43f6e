# syntax=docker/dockerfile:1
# tollgate's container image: built from this repository, run as a non-root user, with the
# bundled demo configuration (gateway-configs/) and its public demo credentials (certs/) baked
# in as defaults. Mount your own over /etc/tollgate/config and /etc/tollgate/certs.
#   docker build -t tollgate:dev .

# --- Build stage: a release binary from the locked dependency graph. ---
FROM rust:1-bookworm AS builder
WORKDIR /src
# Only what `cargo build` needs (the benches are declared in Cargo.toml, so they must exist).
COPY Cargo.toml Cargo.lock ./
COPY benches/ benches/
COPY src/ src/
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/tollgate /usr/local/bin/tollgate

# --- Runtime stage: Debian slim with CA roots (for upstream TLS origination) and the binary. ---
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tollgate \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tollgate
COPY --from=builder /usr/local/bin/tollgate /usr/local/bin/tollgate
# Default configuration and credentials (public demo material), readable by the runtime user
# whatever the build machine's umask.
COPY gateway-configs/ /etc/tollgate/config/
COPY certs/ /etc/tollgate/certs/
RUN chmod -R a+rX /etc/tollgate
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# Gateway ports under the standard port plan (80 on 8080, 443 on 8443, 31400 as is), readiness
# (/healthz/ready) and Prometheus metrics (/stats/prometheus). The admin API stays on loopback.
EXPOSE 8080 8443 31400 15021 15090
# SIGTERM drains: readiness turns 503, listeners close, open connections get --drain-timeout.
STOPSIGNAL SIGTERM
# The image has no curl: `tollgate health` probes http://127.0.0.1:15021/healthz/ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["tollgate", "health"]
ENTRYPOINT ["tollgate"]
CMD ["run", "--config-dir", "/etc/tollgate/config", "--certs-dir", "/etc/tollgate/certs", "--port-map", "80=8080", "--port-map", "443=8443", "--drain-timeout", "5s"]
