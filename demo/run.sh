#!/usr/bin/env bash
# kbgp demo: seed 002's cluster in network namespaces.
#
#   two kbgp nodes (examples/seed-002, unchanged) ── LAN 172.21.1.0/24 ── ToR (BIRD 2, AS 65535)
#
# The nodes peer with each other (node-to-node mesh on port 178) and with the
# ToR (global BGPPeer 172.21.1.254). The demo prints the ToR's view of the pod
# and service routes, with seed 002's communities, and `kbgp status` of a node.
# Everything lives in namespaces this script creates and removes.
#
#   sudo ./demo/run.sh          run, print, clean up
#   sudo ./demo/run.sh --keep   leave it running until Ctrl-C, to explore
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

if [ "$(id -u)" != 0 ]; then
  echo "demo/run.sh: run as root (it creates network namespaces)" >&2
  exit 2
fi
if ! command -v bird >/dev/null 2>&1; then
  echo "== installing bird2 (the ToR)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends bird2 iproute2
fi
echo "== building kbgp"
cargo build --release --locked -p kbgp
KBGP=$ROOT/target/release/kbgp

P=kbdemo$$
W=$(mktemp -d /tmp/kbgp-demo.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in sw tor cp w1; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

echo "== network: LAN 172.21.1.0/24 on a bridge, one namespace per host"
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
host() { # name address
  ip netns add "$P-$1"
  ip -n "$P-$1" link set lo up
  ip link add "$P$1" netns "$P-$1" type veth peer name "$1" netns "$P-sw"
  ip -n "$P-$1" link set "$P$1" name eth0
  ip -n "$P-$1" addr add "$2/24" dev eth0
  ip -n "$P-$1" link set eth0 up
  ip -n "$P-sw" link set "$1" master br0 up
}
host tor 172.21.1.254
host cp 172.21.1.8
host w1 172.21.1.18

cat > "$W/bird.conf" <<BIRD
router id 172.21.1.254;
protocol device {}
template bgp node {
  local 172.21.1.254 as 65535;
  direct;
  ipv4 { import all; export none; gateway direct; };
  connect retry time 1;
}
protocol bgp kube_controlplane_001 from node { neighbor 172.21.1.8 port 178 as 65535; }
protocol bgp kube_worker_001 from node { neighbor 172.21.1.18 port 178 as 65535; }
BIRD
ip netns exec "$P-tor" bird -f -c "$W/bird.conf" -s "$W/bird.ctl" >"$W/bird.log" 2>&1 &
PIDS+=($!)
sleep 0.5
if ! kill -0 "${PIDS[0]}" 2>/dev/null; then
  echo "demo: BIRD did not start:" >&2; cat "$W/bird.log" >&2; exit 1
fi

for n in cp:kube-controlplane-001 w1:kube-worker-001; do
  ns=${n%%:*}; node=${n#*:}
  ip netns exec "$P-$ns" "$KBGP" daemon --config-dir "$ROOT/examples/seed-002" --node "$node" \
    --api-socket "$W/$ns.sock" >"$W/$ns.log" 2>&1 &
  PIDS+=($!)
done

echo "== waiting for the ToR to learn both nodes' pod blocks"
for _ in $(seq 1 60); do
  out=$(birdc -s "$W/bird.ctl" show route 2>/dev/null || true)
  if grep -q 192.168.170.0/24 <<<"$out" && grep -q 192.168.181.0/24 <<<"$out"; then break; fi
  sleep 0.5
done

echo
echo "==== ToR (BIRD) routing table: pod blocks and service range from the kbgp nodes ===="
birdc -s "$W/bird.ctl" show route all | grep -vE '^BIRD|^$'
echo
echo "==== kbgp status on kube-controlplane-001 ===="
"$KBGP" status --api-socket "$W/cp.sock"
echo
echo "==== kbgp show rib on kube-controlplane-001 (advertised and received) ===="
"$KBGP" show rib --api-socket "$W/cp.sock"

if ! birdc -s "$W/bird.ctl" show route | grep -q 192.168.181.0/24; then
  echo "demo: the ToR did not learn the pod routes; logs in $W" >&2
  trap - EXIT
  exit 1
fi

if [ $KEEP = 1 ]; then
  echo
  echo "Running. Try:"
  echo "  $KBGP status --api-socket $W/w1.sock"
  echo "  $KBGP show neighbors --api-socket $W/cp.sock"
  echo "  birdc -s $W/bird.ctl show protocols"
  echo "Ctrl-C to stop and clean up."
  while sleep 3600; do :; done
fi
