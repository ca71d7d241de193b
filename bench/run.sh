#!/usr/bin/env bash
# Side-by-side benchmark: kbgp, BIRD 2, FRR bgpd and GoBGP on the same input,
# the same method, in one run (the bgperf method; see docs/BENCHMARKS.md).
#
#   sudo bench/run.sh                 sizes 10000 100000 1000000
#   sudo bench/run.sh --quick         small sizes: checks the harness works (CI)
#   sudo bench/run.sh --sizes "N ..." --daemons "kbgp bird ..."
#   sudo bench/run.sh --kernel-sizes "N ..."   scenario (d) sizes (default: as --sizes)
#   sudo bench/run.sh --peer-sizes "N ..."     scenario (b) sizes, 10 peers (default: 100000)
#   sudo bench/run.sh --rr-sizes "K ..."       scenario (c) route-reflector client counts (default: 1000)
#   sudo bench/run.sh --repeat N      run scenarios (a), (b) and (c) N times, the daemons in
#                                     turn each time; the tables show each daemon's medians
#   KBGP_BIN=/path/to/kbgp sudo bench/run.sh   measure another kbgp build (A/B comparisons)
#   KBGP_BENCH_BIN=/path/to/kbgp-bench ...     with another build of the injector and monitor
#
# Scenarios (a) and (e), one peer announcing then withdrawing N prefixes, run
# in one network namespace made for the run, on addresses of 198.18.0.0/15 on
# an interface in it; so does scenario (b), ten peers announcing the same N
# prefixes (198.18.0.10-19); so does scenario (c), the daemon reflecting for
# K iBGP clients (198.19.0.1 onwards), each announcing 11 prefixes. Scenario (d), kernel install of N routes by kbgp against
# `ip -batch` of the same routes, runs each measurement in a fresh namespace.
# Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="10000 100000 1000000"
DAEMONS="kbgp bird frr gobgp"
KSIZES=""
PSIZES="100000"
PEERS=10
RSIZES="1000"
REPEAT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZES="10000"; PSIZES="5000"; RSIZES="50"; shift ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --daemons) DAEMONS="$2"; shift 2 ;;
    --kernel-sizes) KSIZES="$2"; shift 2 ;;
    --peer-sizes) PSIZES="$2"; shift 2 ;;
    --rr-sizes) RSIZES="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    *) echo "usage: $0 [--quick] [--sizes \"N ...\"] [--daemons \"kbgp bird frr gobgp\"] [--kernel-sizes \"N ...\"] [--peer-sizes \"N ...\"] [--rr-sizes \"K ...\"] [--repeat N]" >&2; exit 2 ;;
  esac
done
KSIZES=${KSIZES:-$SIZES}
case "$REPEAT" in ''|*[!0-9]*|0) echo "bench/run.sh: --repeat takes a positive number" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (network namespace)" >&2; exit 2; }
cargo build --release --locked -p kbgp -p bench >&2
KBGP_BIN=$(realpath "${KBGP_BIN:-target/release/kbgp}")
BENCH_BIN=$(realpath "${KBGP_BENCH_BIN:-target/release/kbgp-bench}")
NS=kbbench$$
W=$(mktemp -d /tmp/kbgp-bench.XXXXXX)
chmod 755 "$W"
KNS=kbbenchk$$
cleanup() {
  for n in "$NS" "$KNS"; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  [ -n "${KBGP_BENCH_KEEP:-}" ] && cp -a "$W" "$KBGP_BENCH_KEEP"; rm -rf "$W"
}
trap cleanup EXIT
# A namespace with a veth pair kept inside it: 198.18.0.0/15 is then a
# connected subnet whose other addresses (the injected next hop 198.18.0.100)
# are not local.
bench_ns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip -n "$1" link add bench0 type veth peer name bench1
  ip -n "$1" link set bench0 up
  ip -n "$1" link set bench1 up
  # the daemon (.2), injector (.1), monitor (.3); scenario (b)'s injectors (.10-.19)
  for a in 1 2 3 10 11 12 13 14 15 16 17 18 19; do ip -n "$1" addr add "198.18.0.$a/15" dev bench0; done
}
# Scenario (c)'s clients: 198.19.0.0 + i + 1 for i < $2, on the same interface.
client_addrs() {
  python3 -c 'import ipaddress,sys
for i in range(int(sys.argv[1])): print(f"addr add {ipaddress.IPv4Address(0xC6130001 + i)}/15 dev bench0")' "$2" \
    | ip -n "$1" -batch -
}
bench_ns "$NS"
RESULTS="$W/results.jsonl"
KRESULTS="$W/kernel.jsonl"
PRESULTS="$W/peers.jsonl"
RRESULTS="$W/rr.jsonl"
: > "$PRESULTS"
: > "$RRESULTS"
: > "$RESULTS"
: > "$KRESULTS"
# One kbgp-bench run of daemon $3 with $4 prefixes in namespace $1, its JSON
# line appended to $2 (a failure line if it fails); the rest are its options.
measure() {
  local ns=$1 out=$2 d=$3 n=$4 dir=$5; shift 5
  if ! ip netns exec "$ns" timeout 900 "$BENCH_BIN" --daemon "$d" --prefixes "$n" "$@" \
      --workdir "$W/$dir" --kbgp "$KBGP_BIN" >> "$out"; then
    echo "{\"daemon\":\"$d\",\"prefixes\":$n,\"failed\":true}" >> "$out"
    tail -5 "$W/$dir/$d.log" >&2 || true
  fi
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
}
# (With --repeat, the daemons take turns in each round: a machine whose
# speed drifts slows them alike.)
for n in $SIZES; do
  for r in $(seq "$REPEAT"); do
    for d in $DAEMONS; do
      echo "== $d, $n prefixes (round $r)" >&2
      measure "$NS" "$RESULTS" "$d" "$n" "$d-$n-$r"
      sleep 1
    done
  done
done
for n in $PSIZES; do
  for r in $(seq "$REPEAT"); do
    for d in $DAEMONS; do
      echo "== $PEERS peers (b): $d, $n prefixes each (round $r)" >&2
      measure "$NS" "$PRESULTS" "$d" "$n" "peers-$d-$n-$r" --peers "$PEERS"
      sleep 1
    done
  done
done
MAXK=$(for k in $RSIZES; do echo "$k"; done | sort -n | tail -1)
[ -n "$MAXK" ] && client_addrs "$NS" "$MAXK"
for k in $RSIZES; do
  for r in $(seq "$REPEAT"); do
    for d in $DAEMONS; do
      echo "== route reflector (c): $d, $k clients (round $r)" >&2
      measure "$NS" "$RRESULTS" "$d" "$k" "rr-$d-$k-$r" --rr-clients "$k"
      sleep 1
    done
  done
done
for n in $KSIZES; do
  for d in ip kbgp; do
    echo "== kernel install (d): $d, $n routes" >&2
    bench_ns "$KNS"
    measure "$KNS" "$KRESULTS" "$d" "$n" "kernel-$d-$n" --kernel
    ip netns del "$KNS"
  done
done
python3 - "$RESULTS" "$KRESULTS" "$PRESULTS" "$RRESULTS" "$REPEAT" <<'PY'
import json, statistics, sys
REPEAT = int(sys.argv[5])
def medians(rows, size):
    """One row per (size, daemon), in first-seen order: the median of each
    measurement over the rounds (a daemon that failed in any round failed)."""
    groups = {}
    for r in rows:
        groups.setdefault((size(r), r['daemon']), []).append(r)
    out = []
    for (_, d), rs in groups.items():
        if any(r.get('failed') for r in rs):
            out.append(next(r for r in rs if r.get('failed'))); continue
        m = dict(rs[0])
        # (Measurements only: sizes and counts are the same every round.)
        for k, v in rs[0].items():
            if k.endswith(('_ms', '_kb')) and isinstance(v, (int, float)):
                m[k] = statistics.median(r[k] for r in rs)
        m['rounds'] = [r.get('converge_ms') for r in rs]
        out.append(m)
    return out
rows = medians([json.loads(l) for l in open(sys.argv[1]) if l.strip()], lambda r: r['prefixes'])
prows = medians([json.loads(l) for l in open(sys.argv[3]) if l.strip()], lambda r: r['prefixes'])
if REPEAT > 1:
    print(f"Each figure is a daemon's median over {REPEAT} rounds (the daemons took turns in each round); 'rounds' lists each round's convergence time.\n")
def rounds(r):
    return " (" + ", ".join(f"{x/1000:.2f}" for x in r['rounds']) + ")" if REPEAT > 1 else ""
def table(rows):
    print(f"| prefixes | daemon | converge s | withdraw s | peak RSS MiB | CPU s | time vs BIRD | RSS vs BIRD |")
    print(f"|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in sorted({r['prefixes'] for r in rows}):
        bird = next((r for r in rows if r['prefixes'] == n and r['daemon'] == 'bird' and not r.get('failed')), None)
        for r in [r for r in rows if r['prefixes'] == n]:
            if r.get('failed'):
                print(f"| {n} | {r['daemon']} | failed | | | | | |"); continue
            tv = f"{r['converge_ms']/bird['converge_ms']:.2f}x" if bird and bird['converge_ms'] else "-"
            rv = f"{r['rss_peak_kb']/bird['rss_peak_kb']:.2f}x" if bird and bird['rss_peak_kb'] else "-"
            print(f"| {n} | {r['daemon']} | {r['converge_ms']/1000:.2f}{rounds(r)} | {r['withdraw_ms']/1000:.2f} | {r['rss_peak_kb']/1024:.1f} | {r['cpu_total_ms']/1000:.2f} | {tv} | {rv} |")
table(rows)
inj = [r for r in rows if not r.get('failed')]
if inj:
    r = max(inj, key=lambda r: r['prefixes'])
    print(f"\nInjector: {r['prefixes']} prefixes in {r['updates']} UPDATEs ({r['table_bytes']/1e6:.1f} MB, "
          f"{r['attribute_sets']} attribute sets) written in {r['inject_write_ms']} ms "
          f"(the socket write returns once the daemon has read it; the daemon is the bottleneck).")
if prows:
    k = prows[0].get('peers', 10)
    print(f"\nScenario (b): {k} peers each announcing the same prefixes (peer i prepends its AS i+1 times; converged when the monitor holds every prefix via peer 0):\n")
    table(prows)
krows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if krows:
    print(f"\nScenario (d), kernel install into a fresh namespace (protocol 186, main table):\n")
    print(f"| routes | installer | install s | routes/s | rate vs ip -batch |")
    print(f"|---:|---|---:|---:|---:|")
    for n in sorted({r['prefixes'] for r in krows}):
        base = next((r for r in krows if r['prefixes'] == n and r['daemon'] == 'ip' and not r.get('failed')), None)
        for r in [r for r in krows if r['prefixes'] == n]:
            if r.get('failed'):
                print(f"| {n} | {r['daemon']} | failed | | |"); continue
            rate = n / max(r['install_ms'], 1) * 1000
            rel = f"{base['install_ms']/max(r['install_ms'],1):.2f}x" if base else "-"
            name = "ip -batch" if r['daemon'] == 'ip' else "kbgp (from first UPDATE)"
            print(f"| {n} | {name} | {r['install_ms']/1000:.2f} | {rate:,.0f} | {rel} |")
ck = lambda r: r.get('clients', r['prefixes'])  # a failure line has the client count as 'prefixes'
rrows = medians([json.loads(l) for l in open(sys.argv[4]) if l.strip()], ck)
if rrows:
    print(f"\nScenario (c), route reflector: K iBGP clients each announce one /26 and ten /32s at once; converged when every client holds the other clients' prefixes:\n")
    print(f"| clients | daemon | sessions up s | converge s | peak RSS MiB | RSS per client KiB | CPU s | time vs BIRD | RSS/client vs BIRD |")
    print(f"|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in sorted({ck(r) for r in rrows}):
        bird = next((r for r in rrows if ck(r) == k and r['daemon'] == 'bird' and not r.get('failed')), None)
        for r in [r for r in rrows if ck(r) == k]:
            if r.get('failed'):
                print(f"| {k} | {r['daemon']} | failed | | | | | | |"); continue
            tv = f"{r['converge_ms']/bird['converge_ms']:.2f}x" if bird and bird['converge_ms'] else "-"
            rv = f"{r['rss_per_client_kb']/bird['rss_per_client_kb']:.2f}x" if bird else "-"
            print(f"| {k} | {r['daemon']} | {r['establish_ms']/1000:.2f} | {r['converge_ms']/1000:.2f}{rounds(r)} | {r['rss_peak_kb']/1024:.1f} | {r['rss_per_client_kb']:.1f} | {r['cpu_total_ms']/1000:.2f} | {tv} | {rv} |")
failed = [r for r in rows + krows + prows + rrows if r.get('failed')]
sys.exit(1 if failed else 0)
PY
