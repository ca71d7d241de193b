#!/usr/bin/env bash
# kbgp demo: the field reports' clusters in network namespaces.
#
# Part 1, seed 000 (pod networks outside the cluster):
#   three kbgp nodes (examples/seed-000) ── LAN 192.168.100.0/24 ── route reflector ── core switch (BIRD)
#   The reflector is kbgp (examples/seed-000-kbgp-rr) or, with RR=frr, FRR's bgpd.
#   Prints the core switch's kernel routes, a node's `ip route` with the other
#   nodes' pod blocks via their node IPs, and pings a pod address from the core.
# Part 2, seed 002 (services and communities):
#   two kbgp nodes (examples/seed-002, unchanged) ── LAN 172.21.1.0/24 ── ToR (BIRD 2, AS 65535)
#   Prints the ToR's view of the pod and service routes with seed 002's
#   communities, and `kbgp status` of a node.
# Everything lives in namespaces this script creates and removes.
#
#   sudo ./demo/run.sh          run, print, clean up
#   sudo RR=frr ./demo/run.sh   FRR as seed 000's route reflector
#   sudo ./demo/run.sh --keep   leave part 2 running until Ctrl-C, to explore
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

if [ "$(id -u)" != 0 ]; then
  echo "demo/run.sh: run as root (it creates network namespaces)" >&2
  exit 2
fi
RR=${RR:-kbgp}
need=()
command -v bird >/dev/null 2>&1 || need+=(bird2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ "$RR" = frr ] && [ ! -x /usr/lib/frr/bgpd ]; then need+=(frr); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" iproute2
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
  for ns in sw tor cp w1 lan rahu maitreya mahsth rr core; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

N=0
host() { # bridge-namespace name address
  N=$((N + 1))
  ip netns add "$P-$2"
  ip -n "$P-$2" link set lo up
  ip link add "kbd$$h$N" netns "$P-$2" type veth peer name "port$N" netns "$P-$1"
  ip -n "$P-$2" link set "kbd$$h$N" name eth0
  ip -n "$P-$2" addr add "$3/24" dev eth0
  ip -n "$P-$2" link set eth0 up
  ip -n "$P-$1" link set "port$N" master br0 up
}
bridge() {
  ip netns add "$P-$1"
  ip -n "$P-$1" link add br0 type bridge
  ip -n "$P-$1" link set br0 up
}

echo
echo "######## Part 1: seed 000, route reflector ($RR) and core switch ########"
bridge lan
host lan rahu 192.168.100.132
host lan maitreya 192.168.100.172
host lan mahsth 192.168.100.173
host lan rr 192.168.100.41
host lan core 192.168.100.1
cat > "$W/core.conf" <<BIRD
router id 192.168.100.1;
protocol device {}
protocol kernel { ipv4 { export all; }; }
protocol bgp to_rr { local 192.168.100.1 as 64515; neighbor 192.168.100.41 as 64515; direct; ipv4 { import all; export none; gateway direct; }; }
BIRD
ip netns exec "$P-core" bird -f -c "$W/core.conf" -s "$W/core.ctl" >"$W/core.log" 2>&1 &
PIDS+=($!)
if [ "$RR" = frr ]; then
  mkdir -p "$W/frr" && chmod 777 "$W/frr"
  {
    echo "frr defaults traditional"; echo "router bgp 64515"; echo " bgp router-id 192.168.100.41"
    for ip in 132 172 173 174 175 1; do echo " neighbor 192.168.100.$ip remote-as 64515"; done
    echo " address-family ipv4 unicast"
    for ip in 132 172 173 174 175 1; do echo "  neighbor 192.168.100.$ip route-reflector-client"; done
    echo " exit-address-family"
  } > "$W/frr/frr.conf"
  ip netns exec "$P-rr" /usr/lib/frr/bgpd -S -f "$W/frr/frr.conf" -i "$W/frr/bgpd.pid" -z "$W/frr/zserv.api" \
    --vty_socket "$W/frr" -u root -g root >"$W/frr.log" 2>&1 &
  PIDS+=($!)
  RRCFG=$ROOT/examples/seed-000
else
  RRCFG=$ROOT/examples/seed-000-kbgp-rr
  ip netns exec "$P-rr" "$KBGP" daemon --config-dir "$RRCFG" --node zenmai --api-socket "$W/rr.sock" >"$W/rr.log" 2>&1 &
  PIDS+=($!)
fi
for n in rahu maitreya mahsth; do
  ip netns exec "$P-$n" "$KBGP" daemon --config-dir "$RRCFG" --node "$n" --api-socket "$W/$n.sock" >"$W/$n.log" 2>&1 &
  PIDS+=($!)
done
echo "== waiting for every node's pod block to reach the core switch's kernel"
for _ in $(seq 1 60); do
  r=$(ip -n "$P-core" route)
  if grep -q 10.240.26.192/26 <<<"$r" && grep -q 10.240.239.0/26 <<<"$r" && grep -q 10.240.162.128/26 <<<"$r"; then break; fi
  sleep 0.5
done
echo
echo "==== core switch: ip route (pod blocks learned through the route reflector) ===="
ip -n "$P-core" route
echo
echo "==== node rahu: ip route (the other nodes' pod blocks via their node IPs, its own as a blackhole) ===="
ip -n "$P-rahu" route
echo
echo "==== core switch: ping a pod address on maitreya (10.240.239.1) ===="
ip -n "$P-maitreya" addr add 10.240.239.1/32 dev lo
ip netns exec "$P-core" ping -c 3 -W 2 10.240.239.1
if [ "$RR" = kbgp ]; then
  echo
  echo "==== kbgp status on the route reflector ===="
  "$KBGP" status --api-socket "$W/rr.sock"
fi

echo
echo "######## Part 2: seed 002, services and communities to a ToR ########"
echo "== network: LAN 172.21.1.0/24 on a bridge, one namespace per host"
bridge sw
host sw tor 172.21.1.254
host sw cp 172.21.1.8
host sw w1 172.21.1.18

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
BIRD_PID=$!
PIDS+=($!)
sleep 0.5
if ! kill -0 "$BIRD_PID" 2>/dev/null; then
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
