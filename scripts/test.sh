#!/usr/bin/env bash
# The full test suite.
#   1. unit and end-to-end tests as the current user (root in CI);
#   2. as root: the end-to-end tests again as an unprivileged user (rootless
#      mode), with the binaries copied somewhere that user can read.
# Tests that need something this host lacks print "SKIP ..." and pass.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export AIBOX_SCHEMATHESIS="${AIBOX_TEST_VENV:-/var/tmp/aibox-test-venv}/bin/schemathesis"

# A sandbox in full network mode (root) turns on IPv4 forwarding; put back
# what the host had.
fwd=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo "")
restore_fwd() { [ -n "$fwd" ] && [ "$(id -u)" = 0 ] && echo "$fwd" >/proc/sys/net/ipv4/ip_forward || true; }
log=$(mktemp /tmp/aibox-test-log.XXXXXX)
trap 'rm -f "$log"; restore_fwd' EXIT
echo "== cargo test (as $(id -un))"
if ! cargo test --workspace --locked -- --nocapture >"$log" 2>&1; then
  cat "$log"
  echo "== FAILED (as $(id -un))"
  exit 1
fi
grep -E "^test result|SKIP|Running" "$log" | sed 's/^/   /'
# One-shot runs leave an idle per-slot cgroup for the next run; leave the
# host as we found it.
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target/x86_64-unknown-linux-gnu/debug/aibox" gc >/dev/null || true

# The SDKs' own suites, against a live server each starts.
venv="${AIBOX_TEST_VENV:-/var/tmp/aibox-test-venv}"
echo "== Python SDK (pytest)"
if ! AIBOX_BIN="$target/x86_64-unknown-linux-gnu/debug/aibox" "$venv/bin/python" -m pytest -q -p no:cacheprovider sdk/python/tests >"$log" 2>&1; then
  cat "$log"
  echo "== FAILED: Python SDK"
  exit 1
fi
tail -n 1 "$log" | sed 's/^/   /'
echo "== TypeScript SDK (node --test)"
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] && command -v npm >/dev/null; then
  if ! (cd sdk/typescript && npm ci --no-audit --no-fund >/dev/null 2>&1 \
        && AIBOX_BIN="$target/x86_64-unknown-linux-gnu/debug/aibox" npm test) >"$log" 2>&1; then
    cat "$log"
    echo "== FAILED: TypeScript SDK"
    exit 1
  fi
  grep -E "^# (tests|pass|fail)" "$log" | tr '\n' ' ' | sed 's/^/   /'; echo
else
  echo "   SKIP TypeScript SDK: needs Node.js 20+ and npm"
fi
echo "== dashboard (headless Chromium via playwright-core)"
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] && command -v npm >/dev/null; then
  # The vendored xterm.js in the binary must be what ui/package-lock.json pins.
  if ! (cd ui && npm ci --no-audit --no-fund >/dev/null 2>&1 && node vendor.mjs --check \
        && AIBOX_BIN="$target/x86_64-unknown-linux-gnu/debug/aibox" npm test) >"$log" 2>&1; then
    cat "$log"
    echo "== FAILED: dashboard (screenshots in ui/artifacts/)"
    exit 1
  fi
  grep -E "^SKIP" "$log" | sed 's/^/   /' || true
  grep -E "^# (tests|pass|fail|skipped)" "$log" | tr '\n' ' ' | sed 's/^/   /'; echo
  echo "   screenshots: ui/artifacts/"
else
  echo "   SKIP dashboard: needs Node.js 20+ and npm"
fi

if [ "$(id -u)" != 0 ]; then
  echo "== rootless pass skipped: it needs root to create the test user (this run already was rootless)"
  exit 0
fi

user=aibox-test
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
dir=$(mktemp -d /tmp/aibox-rootless.XXXXXX)
trap 'rm -rf "$dir" "$log"; restore_fwd' EXIT
chmod 755 "$dir"
cp "$target/x86_64-unknown-linux-gnu/debug/aibox" "$dir/aibox"  # .cargo/config.toml names the target
cargo test -p aibox-cli --locked --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["test"] and m.get("executable"):
        print(m["executable"])' \
  | while read -r exe; do cp "$exe" "$dir/test-$(basename "$exe")"; done
chmod -R a+rX "$dir"
failed=0
for t in "$dir"/test-*; do
  echo "== rootless: $(basename "$t")"
  if (cd / && runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$user" \
        AIBOX_BIN="$dir/aibox" RUST_BACKTRACE=1 "$t" --nocapture >"$log" 2>&1); then
    grep -E "^test result|SKIP" "$log" | sed 's/^/   /'
  else
    cat "$log"
    echo "== FAILED rootless: $(basename "$t")"
    failed=1
  fi
done
exit $failed
