#!/usr/bin/env bash
# Installs what the test suite needs from Debian packages, when missing.
# Idempotent; does nothing without root (then the tools must already exist).
set -euo pipefail

need=()
[ -x /usr/bin/python3 ] || need+=(python3)          # probes run the host's /usr/bin/python3 inside sandboxes
command -v runuser >/dev/null || need+=(util-linux)  # rootless tests run as an unprivileged user
command -v useradd >/dev/null || need+=(passwd)
command -v ps >/dev/null || need+=(procps)
command -v script >/dev/null || need+=(bsdutils)      # gives `aibox run -t` a terminal in tests
[ -x /usr/bin/curl ] || need+=(curl)                 # egress tests run the host's curl inside sandboxes
[ -x /usr/bin/openssl ] || need+=(openssl)             # the HTTPS egress test makes a certificate and a TLS handshake
[ -x /bin/busybox ] || need+=(busybox-static)        # OCI template tests build images around a static busybox
if [ "$(id -u)" = 0 ]; then                          # L4 egress (veth + nftables) needs root anyway
  [ -x /usr/sbin/nft ] || need+=(nftables)
  [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
  command -v docker-registry >/dev/null || need+=(docker-registry)   # OCI pull tests: a registry on loopback,
  command -v skopeo >/dev/null || need+=(skopeo)                     # filled by skopeo
  command -v umoci >/dev/null || need+=(umoci)
  command -v debootstrap >/dev/null || need+=(debootstrap)          # FROM debootstrap:bookworm (the Debian test image)
  [ -x /usr/bin/qemu-system-x86_64 ] || need+=(qemu-system-x86)          # microVM guests boot under its microvm machine (TCG here)
  [ -x /usr/lib/qemu/virtiofsd ] || [ -x /usr/libexec/virtiofsd ] || need+=(qemu-system-common)  # the host template's /usr in a microVM
  [ -x /usr/sbin/mkfs.ext4 ] || need+=(e2fsprogs)                      # microVM disks (mkfs.ext4 -d)
  [ -x /usr/bin/chromium ] || need+=(chromium)                       # the dashboard's end-to-end tests (playwright-core drives it)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)  # legible screenshots
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
  else
    echo "setup: missing ${need[*]} and not root; install them first" >&2
    exit 1
  fi
fi

# vhost-device-vsock (rust-vmm, from crates.io): QEMU's vhost-user vsock
# device, for the microVM vsock transport (the same hybrid vsock protocol
# as Firecracker's). Built once, into /usr/local/bin.
if [ "$(id -u)" = 0 ] && ! [ -x /usr/local/bin/vhost-device-vsock ] && command -v cargo >/dev/null; then
  echo "setup: building vhost-device-vsock 0.3.0 (cargo install, about a minute)"
  # From / so that this repository's .cargo/config.toml (static flags) stays out of it.
  (cd / && cargo install --quiet --locked vhost-device-vsock --version 0.3.0 --root /usr/local 2>&1 | tail -5) \
    || echo "setup: vhost-device-vsock did not build: the vsock transport test will skip" >&2
fi

# A Python venv for the test tools from PyPI: schemathesis fuzzes the served
# OpenAPI spec; the official MCP SDK (`mcp`) is the client of the MCP tests;
# the Python SDK's own suite runs in it too.
venv="${AIBOX_TEST_VENV:-/var/tmp/aibox-test-venv}"
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      echo "setup: cannot create a Python venv (install python3-venv)" >&2
      exit 1
    fi
  fi
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "setup: installing schemathesis into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
if ! "$venv/bin/python" -c "import mcp" 2>/dev/null; then
  echo "setup: installing the MCP SDK into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==1.27.0"
fi
# The Python SDK's dependencies and test tools (sdk/python), and what builds
# its wheel and sdist.
if ! "$venv/bin/python" -c "import httpx, websockets, pytest, pytest_asyncio, build, wheel" 2>/dev/null; then
  echo "setup: installing the Python SDK's dependencies into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "httpx>=0.27" "websockets==15.0.1" \
    "pytest>=8" "pytest-asyncio==1.2.0" "build==1.3.0" "setuptools==80.9.0" "wheel==0.45.1"
fi
