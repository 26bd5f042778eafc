#!/usr/bin/env bash
# UDP round trip through rvs NAT, one datagram at a time: client -> VIP:53 -> r1:5353 (echo)
# -> client; prints p50/p90/p99 of 2000 round trips (after 200 warm-up). Compares I/O backends:
#
#   sudo RVS_IO=xdp lab/udp_rtt.sh
#   sudo RVS_IO=afpacket lab/udp_rtt.sh
#   sudo RVS_IO=xdp RVSD_ARGS=--busy-poll lab/udp_rtt.sh
#
# Everything shares this machine's CPUs; the figures compare wake-up paths, not capacities.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "udp_rtt.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-rtt$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
build_rvs
setup_topology 1
start_rs_servers r1 --udp 5353
in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
start_rvsd d
adm -A -u "$VIP:53" -s rr
adm -a -u "$VIP:53" -r "$(rs_ip r1):5353" -m
in_ns c python3 - "$VIP" "${RVS_IO:-auto} ${RVSD_ARGS:-}" <<'PY'
import socket, sys, time, statistics
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((sys.argv[1], 53))
rtts = []
lost = 0
for i in range(2200):
    t0 = time.perf_counter()
    s.send(b"x" * 64)
    try:
        s.recv(2048)
    except socket.timeout:
        lost += 1
        continue
    if i >= 200:
        rtts.append((time.perf_counter() - t0) * 1e6)
rtts.sort()
print(f"RTT io={sys.argv[2]}: n={len(rtts)} lost={lost} p50={rtts[len(rtts)//2]:.0f}us p90={rtts[len(rtts)*9//10]:.0f}us p99={rtts[len(rtts)*99//100]:.0f}us")
PY
