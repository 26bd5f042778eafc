#!/usr/bin/env bash
# One benchmark command: the same topology, every way of balancing it, medians of several runs
# and the ratios, as a table for BENCHMARKS.md.
#
#   sudo lab/bench.sh                                   # 10 s per measurement, 3 runs
#   BENCH_DURATION=3 BENCH_RUNS=3 sudo lab/bench.sh     # a quick look
#
# Paths (client in c, director d, nginx on r1 r2 r3; tests/e2e/lib.sh draws the topology):
#   direct     http://r1:8080/             one nginx, no director (client routed through sw)
#   nftables   http://VIP:80/              the director's kernel: nftables DNAT (numgen rr),
#                                          ip_forward=1 for this run only
#   haproxy    http://VIP:80/              Debian's HAProxy, mode tcp, on the director (VIP on lo)
#   rvs-NAT    http://VIP:80/              rvsd Masq, rr over 3 nginx (replies through rvsd)
#   rvs-DR     http://VIP:8081/            rvsd Route (replies bypass the director)
#   rvs-TUN    http://VIP:8082/            rvsd Tunnel (IPIP, rvs-decap on each real server)
#   after-proxy rvs-NAT and rvs-DR again right after HAProxy held VIP:80 on the director
#                                          (its TIME_WAIT sockets still there)
# each rvs path once per io backend (BENCH_BACKENDS, default "afpacket", plus "xdp" when
# `rvsd --help` offers --io), each with keep-alive and with "Connection: close" (wrk
# -t$BENCH_THREADS -c$BENCH_CONNS --latency: req/s, p50, p99); and small UDP packets (60-byte
# frames, one flow per source port) from netsniff-ng's trafgen on one CPU, through rvs NAT
# and through nftables DNAT: packets per second arriving at the real servers, and for rvs
# its CPU time (utime + stime from /proc/<pid>/stat) per million packets.
#
# Environment: BENCH_DURATION (s, default 10), BENCH_RUNS (3), BENCH_CONNS (32), BENCH_THREADS
# (2), BENCH_MODES ("keepalive close"; "single" adds one keep-alive connection, one request at
# a time: the round trip without queueing), BENCH_BACKENDS, BENCH_UDP (1; 0 skips trafgen),
# BENCH_AFTER_PROXY (1; 0 skips HAProxy and the after-proxy measurements), BENCH_CLIENTS (1;
# N > 1 gives the client N addresses, 198.51.100.10 and up, and its kernel spreads wrk's
# connections over them round robin (nftables snat with numgen in the client's namespace),
# so that per-queue workers have many client addresses to share; every path sees them),
# BENCH_STATS=FILE (append rvsd's /v1/stats after each rvs measurement: drops by reason),
# BENCH_PERF=DIR (a system-wide `perf record -g` beside each wrk run of the paths matching
# BENCH_PERF_PATHS, an extended regex, default "rvs-NAT|nftables": DIR/PATH-MODE-RUN.data;
# lab/perf-summary.sh prints where the CPU time went).
# A backend may name its worker count, BACKEND:N (`--workers N`), e.g. BENCH_BACKENDS="xdp:1
# xdp:2" with RVS_QUEUES=2 (every veth with two queues, tests/e2e/lib.sh) compares one and two
# AF_XDP workers in the same run; BACKEND+busy adds --busy-poll (BENCH_BACKENDS="xdp xdp+busy");
# BACKEND@CPUS places the workers (`--worker-cpus CPUS`: "xdp@0 xdp@1 xdp@none"); a backend
# may end with ,NAME=VALUE settings for rvsd's environment (the AF_XDP worker's experiment
# knobs: "xdp xdp,RVS_XDP_KICK=turn xdp,RVS_XDP_BATCH=256").
# Every rvs measurement also records rvsd's I/O stage counters (GET /v1/stats per_worker):
# frames per batch, per transmit wake-up and per poll() sleep, in the table's last column.
# Everything shares this machine's CPUs: the numbers compare paths within one run, they are
# not absolute capacities.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-bench$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
DURATION="${BENCH_DURATION:-10}"
RUNS="${BENCH_RUNS:-3}"
CONNS="${BENCH_CONNS:-32}"
THREADS="${BENCH_THREADS:-2}"
MODES="${BENCH_MODES:-keepalive close}"
UDP="${BENCH_UDP:-1}"
UDP_PORT=9

say "checking packages (iproute2, python3, curl, ping, nginx, wrk, nft, haproxy, trafgen)"
need_base_packages nginx:nginx-light wrk:wrk nft:nftables haproxy:haproxy trafgen:netsniff-ng
if [ -n "${BENCH_PERF:-}" ]; then need_base_packages perf:linux-perf; fi
build_rvs
if [ -z "${BENCH_BACKENDS:-}" ]; then
    BENCH_BACKENDS=afpacket
    if "$RVSD" --help 2>&1 | grep -q -- '--io'; then BENCH_BACKENDS="afpacket xdp"; fi
fi
HAS_IO=0
if "$RVSD" --help 2>&1 | grep -q -- '--io'; then HAS_IO=1; fi

say "topology, nginx (80 8080 8081 8082) and rvs-decap on r1 r2 r3"
setup_topology 3
# Many short connections from one client: reuse TIME_WAIT ports.
sysctl_ns c net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
for r in r1 r2 r3; do
    start_nginx "$r" 80 8080 8081 8082
    start_decap "$r"
    # The UDP sink: counted by the interface, dropped before any socket (no ICMP back).
    in_ns "$r" nft -f - <<NFT
table inet rvsbench {
  chain pre { type filter hook prerouting priority -300; udp dport $UDP_PORT drop; }
}
NFT
done
for r in r1 r2 r3; do wait_port "$r" tcp 8080; done
CLIENTS="${BENCH_CLIENTS:-1}"
if [ "$CLIENTS" -gt 1 ]; then
    [ "$CLIENTS" -le 200 ] || die "BENCH_CLIENTS: at most 200 client addresses"
    map=""
    for i in $(seq 0 $((CLIENTS - 1))); do
        ip -n "$(ns c)" addr add "198.51.100.$((10 + i))/24" dev eth0
        map="$map${map:+, }$i : 198.51.100.$((10 + i))"
    done
    in_ns c nft -f - <<NFT
table ip rvsbenchclients {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth0" ip saddr $CLIENT_IP meta l4proto tcp snat to numgen inc mod $CLIENTS map { $map }
  }
}
NFT
fi
DIR_EXT_MAC="$(mac_of d ext)"
CLIENT_MAC="$(mac_of c eth0)"
CLK_TCK="$(getconf CLK_TCK)"
RESULTS="$RVS_WORK/results.tsv"
: >"$RESULTS"
info "rvs $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, backends: $BENCH_BACKENDS, $RUNS runs of ${DURATION}s, $CLIENTS client address(es)"

# to_ms "1.23ms" / "456.78us" / "1.02s" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
                           else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# record RUN PATH MODE METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# io_sums: rvsd's per-worker frames, batches, transmit wake-ups and poll() sleeps, summed
# (empty when no rvsd runs).
io_sums() {
    [ -n "${RVSD_PID:-}" ] && kill -0 "$RVSD_PID" 2>/dev/null || return 0
    curl -s --unix-socket "$(sock_of d)" http://rvsd/v1/stats 2>/dev/null | "$PY" -c '
import json, sys
w = json.load(sys.stdin)["per_worker"]
print(*(sum(x.get(k, 0) for x in w) for k in ("rx", "batches", "tx_kicks", "polls")))' 2>/dev/null || true
}

# io_record RUN PATH MODE "BEFORE" "AFTER": frames per batch, per kick, per poll over a measurement.
io_record() {
    [ -n "$4" ] && [ -n "$5" ] || return 0
    local per
    per="$("$PY" -c '
import sys
a = [int(x) for x in sys.argv[1].split()]; b = [int(x) for x in sys.argv[2].split()]
d = [y - x for x, y in zip(a, b)]
print(" ".join(f"{d[0] / n:.2f}" if n else "0" for n in d[1:]))' "$4" "$5")"
    read -r fpb fpk fpp <<<"$per"
    record "$1" "$2" "$3" frames_per_batch "$fpb"
    record "$1" "$2" "$3" frames_per_kick "$fpk"
    record "$1" "$2" "$3" frames_per_poll "$fpp"
    info "run $1 $2 $3: rvsd $fpb frames per batch, $fpk per transmit wake-up, $fpp per poll() sleep"
}

wrk_run() { # wrk_run RUN PATH URL MODE
    local run="$1" name="$2" url="$3" mode="$4" hdr=() out rps p50 p99 errs io0="" io1=""
    local t="$THREADS" c="$CONNS"
    [ "$mode" = close ] && hdr=(-H "Connection: close")
    # single: one keep-alive connection, one request at a time: no queueing, so p50 is the
    # round trip through the path itself.
    if [ "$mode" = single ]; then t=1; c=1; fi
    [[ "$name" == rvs-* || "$name" == after-proxy-* ]] && io0="$(io_sums)"
    local perf_pid=""
    if [ -n "${BENCH_PERF:-}" ] && [[ "$name" =~ ${BENCH_PERF_PATHS:-rvs-NAT|nftables} ]]; then
        mkdir -p "$BENCH_PERF"
        perf record -a -g -F 499 -o "$BENCH_PERF/$name-$mode-$run.data" -- sleep "$DURATION" \
            >>"$RVS_WORK/perf.log" 2>&1 &
        perf_pid=$!
    fi
    out="$(in_ns c wrk -t"$t" -c"$c" -d"${DURATION}s" --latency "${hdr[@]}" "$url" 2>&1)" || true
    [ -z "$io0" ] || io1="$(io_sums)"
    echo "$out" >>"$RVS_WORK/wrk-$name-$mode.log"
    if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    errs="$(awk '/Socket errors/ {print $3 $4 " " $5 $6 " " $7 $8 " " $9 $10}' <<<"$out")"
    info "run $run $name $mode: ${rps:-?} req/s, p50 $p50 ms, p99 $p99 ms${errs:+, socket errors: $errs}"
    record "$run" "$name" "$mode" rps "${rps:-0}"
    record "$run" "$name" "$mode" p50 "$p50"
    record "$run" "$name" "$mode" p99 "$p99"
    io_record "$run" "$name" "$mode" "$io0" "$io1"
}

http_paths() { # http_paths RUN [NAME URL]...
    local run="$1" mode
    shift
    for mode in $MODES; do
        local args=("$@")
        while [ "${#args[@]}" -ge 2 ]; do
            wrk_run "$run" "${args[0]}" "${args[1]}" "$mode"
            args=("${args[@]:2}")
        done
    done
}

rs_rx() { # packets received by the real servers' eth0, summed
    local r n=0
    for r in r1 r2 r3; do n=$((n + $(in_ns "$r" cat /sys/class/net/eth0/statistics/rx_packets))); done
    echo "$n"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

udp_run() { # udp_run RUN NAME [PID]: trafgen for DURATION s; pps at the real servers
    local run="$1" name="$2" pid="${3:-}" cfg="$RVS_WORK/trafgen.cfg" rx0 rx1 tx0 tx1 t0 t1 c0 c1 pps
    cat >"$cfg" <<CFG
{
  eth(da=$DIR_EXT_MAC, sa=$CLIENT_MAC, type=0x0800),
  ipv4(saddr=$CLIENT_IP, daddr=$VIP, ttl=64),
  udp(sp=dinc(1024, 65000), dp=$UDP_PORT),
  fill(0x41, 18)
}
CFG
    rx0="$(rs_rx)"
    local io0="" io1=""
    if [ -n "$pid" ]; then c0="$(cpu_ticks "$pid")"; io0="$(io_sums)"; fi
    t0="$(date +%s%N)"
    tx0="$(in_ns c cat /sys/class/net/eth0/statistics/tx_packets)"
    in_ns c timeout -s INT "$DURATION" trafgen -o eth0 -i "$cfg" -P 1 --no-sock-mem >>"$RVS_WORK/trafgen.log" 2>&1 || true
    t1="$(date +%s%N)"
    sleep 0.3 # what is still in flight
    rx1="$(rs_rx)"
    tx1="$(in_ns c cat /sys/class/net/eth0/statistics/tx_packets)"
    pps=$(( (rx1 - rx0) * 1000000000 / (t1 - t0) ))
    record "$run" "$name" udp pps "$pps"
    local offered=$(( (tx1 - tx0) * 1000000000 / (t1 - t0) ))
    record "$run" "$name" udp offered "$offered"
    if [ -n "$pid" ]; then
        io1="$(io_sums)"
        io_record "$run" "$name" udp "$io0" "$io1"
        c1="$(cpu_ticks "$pid")"
        local cpu_ms_per_m=0
        if [ $((rx1 - rx0)) -gt 0 ]; then cpu_ms_per_m=$(( (c1 - c0) * 1000 * 1000000 / CLK_TCK / (rx1 - rx0) )); fi
        record "$run" "$name" udp cpu_ms_per_Mpkt "$cpu_ms_per_m"
        info "run $run $name udp: $pps pkt/s at the real servers (of $offered sent), rvsd CPU $cpu_ms_per_m ms per million packets"
    else
        info "run $run $name udp: $pps pkt/s at the real servers (of $offered sent)"
    fi
}

rvs_up() { # rvs_up BACKEND[+busy][@CPUS][:WORKERS][,NAME=VALUE...]: rvsd with the NAT, DR, TUN and UDP services
    local b="$1" r io envs=() e
    RVSD_ARGS=""
    if [[ "$b" == *,* ]]; then IFS=',' read -ra envs <<<"${b#*,}"; fi
    io="${b%%,*}"
    io="${io%%:*}"
    if [[ "$io" == *@* ]]; then
        RVSD_ARGS="--worker-cpus ${io#*@}"
        io="${io%%@*}"
    fi
    if [[ "$io" == *+busy ]]; then
        io="${io%+busy}"
        RVSD_ARGS="$RVSD_ARGS --busy-poll"
    fi
    if [ "$HAS_IO" = 1 ]; then RVSD_ARGS="$RVSD_ARGS --io $io"; fi
    local w="${b%%,*}"
    if [[ "$w" == *:* ]]; then RVSD_ARGS="$RVSD_ARGS --workers ${w#*:}"; fi
    for e in "${envs[@]}"; do export "${e?}"; done
    RVSD_ARGS="$RVSD_ARGS" start_rvsd d
    for e in "${envs[@]}"; do unset "${e%%=*}"; done
    adm -A -t "$VIP:80" -s rr
    adm -A -t "$VIP:8081" -s rr
    adm -A -t "$VIP:8082" -s rr
    adm -A -u "$VIP:$UDP_PORT" -s rr
    for r in r1 r2 r3; do
        adm -a -t "$VIP:80" -r "$(rs_ip $r):8080" -m
        adm -a -t "$VIP:8081" -r "$(rs_ip $r)" -g
        adm -a -t "$VIP:8082" -r "$(rs_ip $r)" -i
        adm -a -u "$VIP:$UDP_PORT" -r "$(rs_ip $r):$UDP_PORT" -m
    done
    # No ping first: the first packet to each real server waits in the neighbour queue.
    for port in 80 8081 8082; do
        in_ns c curl -fsS --max-time 3 "http://$VIP:$port/" >/dev/null || die "rvsd ($b): no answer on $VIP:$port"
    done
}

rvs_down() {
    # Where packets went: rvsd's counters (drops by reason, I/O, XDP program) into the log.
    if [ -n "${BENCH_STATS:-}" ]; then
        curl -s --unix-socket "$(sock_of d)" http://rvsd/v1/stats >>"$BENCH_STATS" 2>/dev/null || true
        echo >>"$BENCH_STATS"
    fi
    kill -TERM "$RVSD_PID" 2>/dev/null || true
    wait "$RVSD_PID" 2>/dev/null || true
}

nft_up() {
    sysctl_ns d net.ipv4.ip_forward=1
    in_ns d nft -f - <<NFT
table ip rvsbench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $VIP tcp dport 80 dnat to numgen inc mod 3 map { 0 : $(rs_ip r1), 1 : $(rs_ip r2), 2 : $(rs_ip r3) }
    ip daddr $VIP udp dport $UDP_PORT dnat to numgen inc mod 3 map { 0 : $(rs_ip r1), 1 : $(rs_ip r2), 2 : $(rs_ip r3) }
  }
}
NFT
    in_ns c curl -fsS --max-time 3 "http://$VIP:80/" >/dev/null || die "nftables DNAT: no answer"
}

nft_down() {
    in_ns d nft delete table ip rvsbench
    sysctl_ns d net.ipv4.ip_forward=0
}

HAPROXY_PID=""
proxy_up() {
    local cfg="$RVS_WORK/haproxy.cfg"
    cat >"$cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vip
    bind $VIP:80
    default_backend rs
backend rs
    balance roundrobin
    server r1 $(rs_ip r1):8080
    server r2 $(rs_ip r2):8080
    server r3 $(rs_ip r3):8080
CFG
    ip -n "$(ns d)" addr add "$VIP/32" dev lo
    start_bg d haproxy haproxy -db -f "$cfg"
    HAPROXY_PID=$BG_PID
    wait_port d tcp 80
    in_ns c curl -fsS --max-time 3 "http://$VIP:80/" >/dev/null || die "haproxy: no answer"
}

proxy_down() {
    kill -TERM "$HAPROXY_PID" 2>/dev/null || true
    wait "$HAPROXY_PID" 2>/dev/null || true
    ip -n "$(ns d)" addr del "$VIP/32" dev lo
}

for run in $(seq 1 "$RUNS"); do
    say "run $run of $RUNS"
    http_paths "$run" direct "http://$(rs_ip r1):8080/"
    for b in $BENCH_BACKENDS; do
        rvs_up "$b"
        http_paths "$run" "rvs-NAT-$b" "http://$VIP:80/" "rvs-DR-$b" "http://$VIP:8081/" "rvs-TUN-$b" "http://$VIP:8082/"
        if [ "$UDP" = 1 ]; then udp_run "$run" "rvs-NAT-$b" "$RVSD_PID"; fi
        if [ "$run" = 1 ] && [ "$b" = "${BENCH_BACKENDS%% *}" ]; then
            say "rvsadm -L -n --stats ($b)"
            adm -L -n --stats | sed 's/^/    /'
            stats="$(stats_json)"
            info "rvsd drops: $(jget "$stats" '" ".join(f"{k}={v}" for k, v in d["drops"].items() if v) or "none"')"
        fi
        rvs_down
    done
    nft_up
    http_paths "$run" nftables "http://$VIP:80/"
    if [ "$UDP" = 1 ]; then udp_run "$run" nftables; fi
    nft_down
    for b in $BENCH_BACKENDS; do
        [ "${BENCH_AFTER_PROXY:-1}" = 1 ] || break
        proxy_up
        if [ "$b" = "${BENCH_BACKENDS%% *}" ]; then
            http_paths "$run" haproxy "http://$VIP:80/"
        else
            # Only to leave the proxy's TIME_WAIT sockets behind again.
            in_ns c wrk -t1 -c8 -d2s -H "Connection: close" "http://$VIP:80/" >/dev/null 2>&1 || true
        fi
        proxy_down
        rvs_up "$b"
        http_paths "$run" "after-proxy-NAT-$b" "http://$VIP:80/" "after-proxy-DR-$b" "http://$VIP:8081/"
        rvs_down
    done
done

say "results: medians of $RUNS runs (wrk -t$THREADS -c$CONNS -d${DURATION}s; $(nproc) CPUs shared by client, director and servers)"
"$PY" - "$RESULTS" "$BENCH_BACKENDS" <<'PY'
import sys, statistics
from collections import defaultdict
vals = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    run, path, mode, metric, v = line.rstrip("\n").split("\t")
    vals[(path, mode, metric)].append(float(v))
    if (path, mode) not in order:
        order.append((path, mode))
med = {k: statistics.median(v) for k, v in vals.items()}
def m(path, mode, metric):
    return med.get((path, mode, metric))
def io(path, mode):
    v = [m(path, mode, k) for k in ("frames_per_batch", "frames_per_kick", "frames_per_poll")]
    return "" if None in v else " / ".join(f"{x:.1f}" for x in v)
print("| path | connection | req/s or pkt/s | p50 ms | p99 ms | rvsd CPU ms / M pkt | runs | rvsd frames per batch / kick / poll |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
for path, mode in order:
    if mode == "udp":
        cpu = m(path, mode, "cpu_ms_per_Mpkt")
        runs = " ".join(f"{x:.0f}" for x in vals[(path, mode, "pps")])
        offered = m(path, mode, "offered")
        runs += f" (sent {offered:.0f}/s)" if offered is not None else ""
        print(f"| {path} | small UDP | {m(path, mode, 'pps'):.0f} | | | {'' if cpu is None else f'{cpu:.0f}'} | {runs} | {io(path, mode)} |")
    else:
        runs = " ".join(f"{x:.0f}" for x in vals[(path, mode, "rps")])
        print(f"| {path} | {mode} | {m(path, mode, 'rps'):.0f} | {m(path, mode, 'p50'):.2f} | {m(path, mode, 'p99'):.2f} | | {runs} | {io(path, mode)} |")
print()
print("| ratio (medians) | keepalive | close | p50 keepalive | p50 single | small UDP |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
def ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.2f}"
for b in sys.argv[2].split():
    rows = [
        (f"rvs NAT ({b}) / nftables DNAT", f"rvs-NAT-{b}", "nftables", True),
        (f"rvs DR ({b}) / direct", f"rvs-DR-{b}", "direct", False),
        (f"rvs TUN ({b}) / direct", f"rvs-TUN-{b}", "direct", False),
        (f"rvs NAT ({b}) / HAProxy", f"rvs-NAT-{b}", "haproxy", False),
        (f"after proxy NAT ({b}) / clean", f"after-proxy-NAT-{b}", f"rvs-NAT-{b}", False),
        (f"after proxy DR ({b}) / clean", f"after-proxy-DR-{b}", f"rvs-DR-{b}", False),
    ]
    for label, a, c, udp in rows:
        ka = ratio(m(a, "keepalive", "rps"), m(c, "keepalive", "rps"))
        cl = ratio(m(a, "close", "rps"), m(c, "close", "rps"))
        p50 = ratio(m(a, "keepalive", "p50"), m(c, "keepalive", "p50"))
        p50s = ratio(m(a, "single", "p50"), m(c, "single", "p50"))
        u = ratio(m(a, "udp", "pps"), m(c, "udp", "pps")) if udp else ""
        print(f"| {label} | {ka} | {cl} | {p50} | {p50s} | {u} |")
PY
