# syntax=docker/dockerfile:1
# warren's container image. Build and run (see README, "Install"):
#   docker build -t warren .
#   docker run -d --name warren -p 5672:5672 -p 15672:15672 -p 15692:15692 \
#       -v warren-data:/var/lib/warren warren
# Configuration: WARREN_* environment variables (every flag has one), or a
# file mounted at /etc/warren/warren.toml (keys as the flags, with _ for -).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warren -p warren-loadgen \
    && strip target/release/warren target/release/warrenctl target/release/warren-loadgen

FROM debian:bookworm-slim
# A fixed uid/gid (999), so that a volume's owner is the same in every image.
RUN groupadd --system --gid 999 warren \
    && useradd --system --uid 999 --gid warren --home-dir /var/lib/warren --no-create-home \
        --shell /usr/sbin/nologin warren \
    && mkdir -p /var/lib/warren /etc/warren \
    && chown warren:warren /var/lib/warren
COPY --from=build /src/target/release/warren /src/target/release/warrenctl /src/target/release/warren-loadgen /usr/bin/
COPY packaging/warren.toml /usr/share/doc/warren/warren.toml.example
# In a container the broker listens on every interface; the guest user
# still logs in only from the container's own loopback (--loopback-users).
ENV WARREN_BIND=0.0.0.0,:: \
    WARREN_DATA_DIR=/var/lib/warren \
    WARREN_NO_PIN=true
USER 999:999
VOLUME /var/lib/warren
EXPOSE 5672 5671 15672 15692
# A TCP probe of the AMQP port (the HTTP API would need a user's password).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${WARREN_PORT:-5672}"]
# SIGTERM (docker stop) shuts down gracefully: clients get 320
# CONNECTION_FORCED, in-flight writes reach the disk.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/warren"]
