# Ferry in a container: `ferry` alone on an empty base (with busybox for a shell and wget), run
# as a non-root user.
#
#   docker build -t ferry .
#
# Every stage's base is a build argument, because Docker's classic builder builds every stage
# it reads: where no registry can be reached, `scripts/image --local` makes a Debian root with
# debootstrap, imports it as BUILDER, and passes the binary it built on the host as
# FERRY_BINARY, so that nothing is pulled and nothing is compiled inside.
ARG BUILDER=rust:1-bookworm

FROM ${BUILDER} AS build
# A path in the build context to a `ferry` binary built for Debian 12 (glibc 2.36); empty:
# compile it here (the public path).
ARG FERRY_BINARY=
WORKDIR /src
COPY . .
RUN scripts/image-rootfs /rootfs "$FERRY_BINARY"

FROM scratch
COPY --from=build /rootfs /
# 65532: the "nonroot" user of distroless images; /etc/passwd in the root names it ferry.
USER 65532:65532
ENV FERRY_CONFIG=/etc/ferry/ferry.toml \
    FERRY_STATE_DIR=/var/lib/ferry \
    PATH=/usr/local/bin:/bin
# 7700/udp: the tunnel. 7701 (outbound), 7702 (admin) and 7703 (application API) listen on
# loopback: a sidecar shares its application's network namespace.
EXPOSE 7700/udp
VOLUME ["/var/lib/ferry"]
# The admin API's /healthz. A config that moves the admin API moves this too: override it
# (`healthcheck:` in Compose) with the new address.
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:7702/healthz"]
# SIGTERM drains: services are withdrawn, calls in flight finish, then the node exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ferry"]
CMD ["run"]
