#!/usr/bin/env bash
# Install what the tests need (Debian packages) and run every test:
# format and lint checks, unit tests, then interop tests against real
# BIRD / FRR / GoBGP / ExaBGP in network namespaces. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (the interop tests create network namespaces)" >&2
  exit 2
fi

need=()
for p in bird2 frr gobgpd exabgp iproute2 iputils-ping python3 procps systemd; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# The cluster-mode tests drive the fake API server with a real kubectl: the
# one on the machine image if there is one, else Debian's kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "== installing kubernetes-client (kubectl)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

echo "== build (once)"
cargo build --workspace --all-targets --locked
echo "== fmt + clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== unit tests"
cargo nextest run --workspace --locked --no-fail-fast -E 'not (package(kbgp) and kind(test))'
echo "== benchmark harness smoke run (bench/run.sh --quick: checks it works, asserts no speed)"
./bench/run.sh --quick
echo "== interop tests (real daemons in network namespaces)"
cargo nextest run --workspace --locked --no-fail-fast -E 'package(kbgp) and kind(test)'
