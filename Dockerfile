# Build: the workspace compiled in release with the machine's stable toolchain.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin imagegpt \
    && strip target/release/imagegpt

# Run: a small Debian with CA certificates (rustls uses webpki roots; the certificates are for
# anything else), as a user without privileges.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home imagegpt
COPY --from=build /src/target/release/imagegpt /usr/local/bin/imagegpt
USER imagegpt
WORKDIR /app
ENV HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# SIGTERM starts the graceful shutdown (SHUTDOWN_GRACE_SECONDS, 30 by default).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/imagegpt", "--version"]
ENTRYPOINT ["/usr/local/bin/imagegpt"]
CMD ["serve"]
