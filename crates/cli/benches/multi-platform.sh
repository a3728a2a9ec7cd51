#!/usr/bin/env bash
# Multi-platform builds (issue #13): a two-stage cross-compiling Dockerfile (one `sleep 1` in
# each stage: the first on $BUILDPLATFORM, the second on the target) built for linux/amd64,
# linux/arm64 and both, by img (release) and by buildah (`--platform ... --manifest`), in the
# same run. Each build is cold (`--no-cache`; the base image is already local); medians of
# RUNS runs. The base is a busybox index (amd64 and arm64, Debian's busybox-static) built by
# img and served by Debian's docker-registry on loopback. arm64 steps run through QEMU.
#
#   crates/cli/benches/multi-platform.sh        # RUNS=3 by default
#   IMG=target/debug/img crates/cli/benches/multi-platform.sh
#
# Needs docker-registry, buildah, runc, qemu-user-static + binfmt-support with handlers
# registered, and the arm64 architecture in apt's lists (dpkg --add-architecture arm64 &&
# apt-get update) for busybox-static:arm64.
set -euo pipefail
RUNS=${RUNS:-3}
cd "$(dirname "$0")/../../.."
# IMG=path/to/img measures that binary instead of a fresh release build.
if [ -z "${IMG:-}" ]; then
  CARGO_INCREMENTAL=0 cargo build --release -q -p img-cli
  IMG=$PWD/target/release/img
fi
WORK=$(mktemp -d /tmp/img-multi-platform-bench.XXXXXX)
# RUN steps run as subordinate ids, which must reach the state directories inside.
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null
  buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" rm --all >/dev/null 2>&1 || true
  buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/storage"
cat > "$WORK/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/storage}}
http: {addr: 127.0.0.1:$PORT, secret: bench}
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
BASE=127.0.0.1:$PORT/bench/busybox:latest

# The base index, built by img itself for both platforms.
mkdir -p "$WORK/base/arm64" "$WORK/base/amd64"
cp /bin/busybox "$WORK/base/amd64/busybox"
(cd "$WORK" && apt-get download -q busybox-static:arm64 >/dev/null 2>&1) || {
  echo "cannot download busybox-static:arm64: dpkg --add-architecture arm64 && apt-get update" >&2
  exit 1
}
dpkg-deb -x "$WORK"/busybox-static_*_arm64.deb "$WORK/deb"
cp "$WORK/deb/bin/busybox" "$WORK/base/arm64/busybox"
cat > "$WORK/base/Dockerfile" <<'EOF'
FROM scratch
ARG TARGETARCH
COPY $TARGETARCH/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
EOF
IMG_STATE=$WORK/base-state "$IMG" --progress quiet build --platform linux/amd64,linux/arm64 \
  -o "type=image,name=$BASE,push=true" "$WORK/base" >/dev/null

mkdir -p "$WORK/ctx"
cat > "$WORK/ctx/Dockerfile" <<EOF
FROM --platform=\$BUILDPLATFORM $BASE AS build
ARG TARGETARCH
RUN sleep 1 && echo "app for \$TARGETARCH" > /app

FROM $BASE
COPY --from=build /app /app
RUN sleep 1 && cat /app > /built
EOF

export IMG_STATE=$WORK/img-state
"$IMG" --progress quiet pull --all-platforms "$BASE" >/dev/null
BUILDAH=(buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run")
for arch in amd64 arm64; do
  "${BUILDAH[@]}" pull -q --tls-verify=false --platform "linux/$arch" "$BASE" >/dev/null
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_one() { # prints the wall time of "$@" in seconds
  local start end
  start=$(date +%s.%N)
  "$@" >"$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

printf '%-22s %12s %14s\n' "platforms" "img median" "buildah median"
for platforms in linux/amd64 linux/arm64 linux/amd64,linux/arm64; do
  img_times=() buildah_times=()
  for run in $(seq "$RUNS"); do
    img_times+=("$(time_one "$IMG" --progress quiet build --no-cache --platform "$platforms" \
      -t "bench/app:$run" "$WORK/ctx")")
    "${BUILDAH[@]}" manifest rm "bench-app-$run" >/dev/null 2>&1 || true
    buildah_times+=("$(time_one "${BUILDAH[@]}" build --no-cache --runtime runc --network host \
      --tls-verify=false --platform "$platforms" --manifest "bench-app-$run" "$WORK/ctx")")
  done
  img_median=$(printf '%s\n' "${img_times[@]}" | median)
  buildah_median=$(printf '%s\n' "${buildah_times[@]}" | median)
  printf '%-22s %11.2fs %13.2fs\n' "$platforms" "$img_median" "$buildah_median"
done
