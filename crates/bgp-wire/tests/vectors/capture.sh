#!/usr/bin/env bash
# Re-capture the wire vectors: GoBGP and BIRD each send their OPEN and UPDATEs
# to an independent listener (crates/kbgp/tests/tools/raw_bgp.py) in a network
# namespace; every message received is saved as one hex line.
# Run as root; needs gobgpd and bird2.
set -euo pipefail
cd "$(dirname "$0")"
TOOL=../../../kbgp/tests/tools/raw_bgp.py
P=kbvec$$
W=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; ip netns del $P-a 2>/dev/null || true; ip netns del $P-b 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ip netns add $P-a; ip netns add $P-b
ip link add ${P}x netns $P-a type veth peer name ${P}y netns $P-b
ip -n $P-a addr add 192.0.2.1/24 dev ${P}x; ip -n $P-b addr add 192.0.2.2/24 dev ${P}y
ip -n $P-a addr add 2001:db8::1/64 dev ${P}x nodad; ip -n $P-b addr add 2001:db8::2/64 dev ${P}y nodad
for n in a b; do ip -n $P-$n link set lo up; done
ip -n $P-a link set ${P}x up; ip -n $P-b link set ${P}y up

# GoBGP (AS 65003) → listener AS 65001.
cat > "$W/gobgp.toml" <<T
[global.config]
  as = 65003
  router-id = "192.0.2.1"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.2"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
T
ip netns exec $P-b python3 $TOOL --listen 192.0.2.2 --asn 65001 --id 192.0.2.2 --hold 6 > "$W/gobgp.out" &
L1=$!
sleep 0.5
ip netns exec $P-a gobgpd -f "$W/gobgp.toml" --api-hosts 127.0.0.1:50051 > "$W/gobgpd.log" 2>&1 &
G=$!
sleep 2
ip netns exec $P-a gobgp -u 127.0.0.1 global rib -a ipv4 add 198.18.8.0/24 med 10 community 65003:8,no-export large-community 65003:8:8 aggregator 4200000001:192.0.2.9
ip netns exec $P-a gobgp -u 127.0.0.1 global rib -a ipv6 add 2001:db8:8::/48 community 65003:6
wait $L1
grep -o '"hex": "[0-9a-f]*"' "$W/gobgp.out" | cut -d'"' -f4 > gobgp.hex
kill $G; wait $G || true

# BIRD (AS 65002) → listener AS 65001, IPv4 and IPv6 on one session.
cat > "$W/bird.conf" <<B
router id 192.0.2.1;
protocol device {}
protocol static s4 { ipv4; route 198.18.5.0/24 blackhole { bgp_community.add((65002,5)); bgp_large_community.add((65002,5,5)); bgp_path.prepend(4200000002); }; }
protocol static s6 { ipv6; route 2001:db8:5::/48 blackhole; }
protocol bgp k { local 192.0.2.1 as 65002; neighbor 192.0.2.2 as 65001; ipv4 { import none; export all; }; ipv6 { import none; export all; next hop address 2001:db8::1; }; }
B
ip netns exec $P-b python3 $TOOL --listen 192.0.2.2 --asn 65001 --id 192.0.2.2 --hold 8 > "$W/bird.out" &
L2=$!
sleep 0.5
ip netns exec $P-a bird -f -c "$W/bird.conf" -s "$W/bird.ctl" > "$W/bird.log" 2>&1 &
wait $L2
grep -o '"hex": "[0-9a-f]*"' "$W/bird.out" | cut -d'"' -f4 > bird.hex
wc -l gobgp.hex bird.hex
