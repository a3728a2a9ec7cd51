#!/usr/bin/env bash
# Push and pull of one 1 GiB random layer to a loopback distribution registry, img-registry
# (examples/transfer.rs) side by side with skopeo, each timed with /usr/bin/time -v for wall
# time and peak RSS. Not part of `cargo test`: it moves gigabytes.
#
#   crates/registry/benches/transfer-1g.sh            # SIZE=1073741824 by default
#   SIZE=104857600 crates/registry/benches/transfer-1g.sh
#
# Needs docker-registry, skopeo and GNU time (apt-get install docker-registry skopeo time).
set -euo pipefail
SIZE=${SIZE:-1073741824}
cd "$(dirname "$0")/../../.."
cargo build --release -q -p img-registry --example transfer
BIN=$PWD/target/release/examples/transfer
WORK=$(mktemp -d /tmp/img-registry-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() { [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
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

DIGEST=$("$BIN" make-image "$WORK/src" "$SIZE")
echo "image $DIGEST, layer of $SIZE bytes, registry 127.0.0.1:$PORT"
printf '%-28s %12s %14s\n' "operation" "wall" "peak RSS (MB)"

measure() {
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -v "$@" >"$WORK/out.txt" 2>"$WORK/time.txt" || { cat "$WORK/time.txt"; exit 1; }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
  printf '%-28s %12s %14s\n' "$name" "$wall" "$((rss / 1024))"
}

H=127.0.0.1:$PORT
measure "img push" "$BIN" push "$WORK/src" "$DIGEST" "$H/bench/img:1"
measure "img push (16 MiB chunks)" "$BIN" push "$WORK/src" "$DIGEST" "$H/bench/img-chunked:1" --chunk 16777216
measure "skopeo push" skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/src:bench" "docker://$H/bench/skopeo:1"
measure "img pull" "$BIN" pull "$H/bench/img:1" "$WORK/dst-img"
measure "skopeo pull" skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$H/bench/skopeo:1" "oci:$WORK/dst-skopeo:bench"
cmp "$WORK/src/blobs/sha256/${DIGEST#sha256:}" "$WORK/dst-img/blobs/sha256/${DIGEST#sha256:}" && echo "pulled manifest identical"
