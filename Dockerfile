# syntax=docker/dockerfile:1
# mukaika: multi-stage build. The builder compiles a release binary with the committed
# Cargo.lock; the runtime image holds only that binary and fonts to draw SVG text, runs as an
# unprivileged user, and keeps every piece of state under /var/lib/mukaika (a volume).
# Review accounts are made inside the running container, through its control socket:
#   docker exec -it CONTAINER mukaika admin user add kanri --role admin --config /etc/mukaika/mukaika.toml

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads. benches/ is here because Cargo.toml declares a bench target and
# cargo refuses a manifest whose targets are missing (a stub-`main.rs` dependency layer failed
# on exactly that). The registry and target/ live in BuildKit cache mounts instead, so a
# source edit recompiles only the two workspace crates.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY sanitizers/Cargo.toml sanitizers/Cargo.toml
COPY sanitizers/src sanitizers/src
# A workspace member (test fixtures); cargo reads every member's manifest even for one binary.
COPY fixtures fixtures
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mukaika \
 && install -D -m 0755 target/release/mukaika /out/mukaika \
 && strip /out/mukaika

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini fonts-ipaexfont-gothic fonts-ipaexfont-mincho fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mukaika \
 && useradd --system --uid 10001 --gid mukaika --home-dir /var/lib/mukaika --shell /usr/sbin/nologin mukaika \
 && install -d -o mukaika -g mukaika -m 0750 /var/lib/mukaika
COPY --from=build /out/mukaika /usr/local/bin/mukaika
USER mukaika:mukaika
WORKDIR /var/lib/mukaika
VOLUME ["/var/lib/mukaika"]
# Healthy while the service's own /healthz answers 200 (spool writable, disk above the floor,
# audit writes succeeding, delivery not failing for long); `mukaika health` reads the admin
# address from the same configuration, so it needs no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD /usr/local/bin/mukaika health --config /etc/mukaika/mukaika.toml
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/mukaika"]
# The configuration is mounted read-only (see README, "In a container"); without one the
# service refuses to start rather than guess addresses.
CMD ["serve", "--config", "/etc/mukaika/mukaika.toml"]
