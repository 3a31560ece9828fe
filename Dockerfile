# syntax=docker/dockerfile:1
# mukaika: multi-stage build. The builder compiles a release binary with the committed
# Cargo.lock; the runtime image holds only that binary and fonts to draw SVG text, runs as an
# unprivileged user, and keeps every piece of state under /var/lib/mukaika (a volume).
# Review accounts are made inside the running container, through its control socket:
#   docker exec CONTAINER mukaika admin user add kanri --role admin --config /etc/mukaika.toml

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY sanitizers/Cargo.toml sanitizers/Cargo.toml
RUN mkdir -p src sanitizers/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs sanitizers/src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src sanitizers/src
COPY src src
COPY sanitizers/src sanitizers/src
RUN touch src/main.rs src/lib.rs sanitizers/src/lib.rs \
 && cargo build --release --locked \
 && strip target/release/mukaika

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini fonts-ipaexfont-gothic fonts-ipaexfont-mincho fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mukaika \
 && useradd --system --uid 10001 --gid mukaika --home-dir /var/lib/mukaika --shell /usr/sbin/nologin mukaika \
 && install -d -o mukaika -g mukaika -m 0750 /var/lib/mukaika
COPY --from=build /src/target/release/mukaika /usr/local/bin/mukaika
USER mukaika:mukaika
WORKDIR /var/lib/mukaika
VOLUME ["/var/lib/mukaika"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/mukaika"]
CMD ["--help"]
