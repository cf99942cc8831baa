# Ferry in a container: build with the Rust toolchain, run on a slim Debian.
#   docker build -t ferry .
#   docker run --rm -p 7700:7700/udp -v $PWD/ferry.toml:/etc/ferry/ferry.toml ferry
FROM rust:1-bookworm AS build
# etcd-client (the etcd registry) compiles etcd's .proto files at build time.
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferry-control --bin ferry

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/ferry --create-home ferry
COPY --from=build /src/target/release/ferry /usr/local/bin/ferry
USER ferry
ENV FERRY_STATE_DIR=/var/lib/ferry \
    FERRY_CONFIG=/etc/ferry/ferry.toml
# 7700/udp: the tunnel. 7701 (outbound) and 7702 (admin) listen on loopback by default:
# a sidecar shares its application's network namespace.
EXPOSE 7700/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["ferry"]
CMD ["run"]
