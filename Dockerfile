# syntax=docker/dockerfile:1
# Multi-stage build of a static clb-ingress binary (musl, rustls: no OpenSSL, no libc at run time)
# into a distroless image that runs as a non-root user with a read-only root filesystem.
# Built with `--no-default-features`: the shipped controller contains neither the CLB emulator
# nor the test Kubernetes API server (no `demo`, `emulator` or `test-apiserver` subcommands).

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features -p clb-ingress --bin clb-ingress \
    && cp target/release/clb-ingress /clb-ingress && strip /clb-ingress

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /clb-ingress /usr/local/bin/clb-ingress
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/clb-ingress"]
CMD ["run"]
