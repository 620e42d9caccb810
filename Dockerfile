# syntax=docker/dockerfile:1
# Multi-stage build of a static clb-ingress binary (musl, rustls: no OpenSSL, no libc at run time)
# into a distroless image that runs as a non-root user with a read-only root filesystem.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > benches/build_plan.rs \
    && cargo build --release --locked --bin clb-ingress || true
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin clb-ingress \
    && strip target/release/clb-ingress

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/clb-ingress /usr/local/bin/clb-ingress
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/clb-ingress"]
CMD ["run"]
