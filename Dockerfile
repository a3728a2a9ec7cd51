# img's own image: `img build -t img .` (or any BuildKit-compatible builder).
#
#   BASE_IMAGE      the Debian bookworm image the build and final stages start from (a mirror's copy works)
#   CARGO_PROFILE   the cargo profile the binary is built with (release; `dev` for a quick check)
#   IMG_BINARY      where the binary comes from: `source` (the default) compiles it here;
#                   `context` takes an `img` already built (for the same Debian release) from the
#                   root of the build context instead (the context need hold only that binary
#                   and this file), as img's own tests do with the binary cargo has just built
#
# Behind a TLS-intercepting proxy, hand the build your CA bundle as a secret: it reaches cargo
# and apt in the build stage only, and no layer, cache key or history entry holds it:
#
#   img build --secret id=cacerts,src=/etc/ssl/certs/ca-certificates.crt -t img .
#
# Running the image: deploy/README.md.

ARG BASE_IMAGE=debian:bookworm-slim
ARG IMG_BINARY=source

FROM ${BASE_IMAGE} AS binary-source
ARG DEBIAN_FRONTEND=noninteractive
# Debian's packaged Rust: bookworm-security carries a rustc-web new enough for the workspace's
# dependencies (bookworm's own 1.85 is not: rusqlite 0.43 needs 1.89).
RUN --mount=type=secret,id=cacerts \
    set -eu; \
    if [ -f /run/secrets/cacerts ]; then set -- -o Acquire::https::CAInfo=/run/secrets/cacerts; fi; \
    apt-get "$@" update; \
    apt-get "$@" install -y --no-install-recommends ca-certificates cargo-web rustc-web; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo
WORKDIR /src
# Only what cargo reads: editing docs or deploy files does not rebuild the binary.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY xtask xtask
ARG CARGO_PROFILE=release
# The registry and target caches outlive the layer: after a source change cargo recompiles only
# the crates that changed, and downloads nothing it already has. The image's binary is stripped
# of its debug information, most of its size; symbols stay for backtraces.
RUN --mount=type=cache,id=img-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=img-cargo-target,target=/src/target \
    --mount=type=secret,id=cacerts \
    set -eu; \
    if [ -f /run/secrets/cacerts ]; then export CARGO_HTTP_CAINFO=/run/secrets/cacerts; fi; \
    cargo build --locked --profile "$CARGO_PROFILE" --package img-cli --bin img; \
    out="$CARGO_PROFILE"; if [ "$out" = dev ]; then out=debug; fi; \
    strip --strip-debug -o /usr/local/bin/img "target/$out/img"; \
    chmod 0755 /usr/local/bin/img

# Only the stage IMG_BINARY names is built: the other one, and its inputs, are never read.
FROM scratch AS binary-context
COPY --chmod=0755 img /usr/local/bin/img

FROM binary-${IMG_BINARY} AS binary

FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# uidmap: newuidmap/newgidmap map the subordinate ids of /etc/subuid into the user namespace of
# each RUN step. Debian installs them setuid root, which a container without CAP_SYS_ADMIN
# cannot use: the kernel lets a helper write another process's uid_map only if it owns that
# user namespace or holds CAP_SYS_ADMIN above it, and setuid root makes the helper no longer
# its owner. With file capabilities instead (CAP_SETUID, CAP_SETGID) the helper keeps the
# caller's uid, owns the namespace and may map the caller's ranges: this is what lets uid 1000
# in an unprivileged pod build with 65536 ids. git: git build contexts and `ADD <git URL>`.
RUN --mount=type=secret,id=cacerts \
    set -eu; \
    if [ -f /run/secrets/cacerts ]; then set -- -o Acquire::https::CAInfo=/run/secrets/cacerts; fi; \
    apt-get "$@" update; \
    apt-get "$@" install -y --no-install-recommends ca-certificates git libcap2-bin uidmap; \
    chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap; \
    setcap cap_setuid=ep /usr/bin/newuidmap; \
    setcap cap_setgid=ep /usr/bin/newgidmap; \
    apt-get purge -y --auto-remove libcap2-bin; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
# The unprivileged user and its subordinate ids. 100000-165535 suits a container in the host's
# user namespace; a pod with its own user namespace (hostUsers: false) maps only ids 0-65535 and
# needs ranges inside them (deploy/kubernetes mounts them from a ConfigMap).
RUN set -eu; \
    useradd --uid 1000 --user-group --create-home --shell /bin/sh img; \
    echo img:100000:65536 > /etc/subuid; \
    echo img:100000:65536 > /etc/subgid; \
    install -d -o img -g img -m 0700 /var/lib/img
COPY --from=binary /usr/local/bin/img /usr/local/bin/img
# One state directory for every user the image runs as; a volume, because overlayfs snapshots
# cannot live on the container's own overlay root.
ENV IMG_STATE=/var/lib/img
VOLUME /var/lib/img
USER img
WORKDIR /home/img
LABEL org.opencontainers.image.title="img" \
      org.opencontainers.image.description="A daemonless, rootless container image builder" \
      org.opencontainers.image.source="https://github.com/img-build/img" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["img"]
