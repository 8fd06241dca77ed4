#!/usr/bin/env bash
# One command for all benchmarks: installs the peers (Debian's bubblewrap)
# and hyperfine when missing, builds aibox in release mode, and writes the
# table to bench/results/latest.md. Needs root (for the full isolation).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v nsenter >/dev/null || need+=(util-linux)
command -v tinyproxy >/dev/null || need+=(tinyproxy)
[ -x /usr/sbin/nft ] || need+=(nftables)    # L4 egress
[ -x /usr/sbin/ip ] || need+=(iproute2)
command -v docker-registry >/dev/null || need+=(docker-registry)   # template pull
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v buildah >/dev/null || need+=(buildah)    # template build, the peer
command -v crun >/dev/null || need+=(crun)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)   # microVM boot
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi
./scripts/setup.sh >/dev/null   # the test venv: the Python SDK's dependencies
if command -v npm >/dev/null; then   # the TypeScript SDK, built; playwright-core for the dashboard
  (cd sdk/typescript && npm ci --no-audit --no-fund >/dev/null 2>&1 && npm run build >/dev/null 2>&1) || true
  (cd ui && npm ci --no-audit --no-fund >/dev/null 2>&1) || true
fi
cargo build --release --locked -p aibox-cli
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sync  # freshly written binaries show as dirty page cache in PSS until written back
exec python3 bench/bench.py "$target/x86_64-unknown-linux-gnu/release/aibox" "$@"  # .cargo/config.toml names the target
