#!/usr/bin/env bash
# HTTP load through rvs, measured with wrk (requests/s and latency percentiles), beside the same
# load sent straight to one real server in the same run (the baseline: the client routed to the
# real server through the sw router, no director). Numbers for BENCHMARKS.md.
#
#   sudo lab/bench.sh                    # 10 s per run
#   BENCH_DURATION=30 BENCH_CONNS=128 sudo lab/bench.sh
#
# Runs (each wrk -t$BENCH_THREADS -c$BENCH_CONNS -d$BENCH_DURATION --latency):
#   direct   http://192.168.77.11:8080/   one nginx, no director
#   NAT      http://VIP:80/               rvsd Masq, rr over 3 nginx (replies through rvsd)
#   DR       http://VIP:8081/             rvsd Route, rr over 3 nginx (replies bypass rvsd)
# each with keep-alive connections (packet forwarding) and with "Connection: close" (a new TCP
# connection per request: connection setup, scheduling and the connection table).
# Peers keep their default offloads. Everything shares this machine's CPUs: the numbers compare
# paths within one run, they are not absolute capacities.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-bench$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-64}"
THREADS="${BENCH_THREADS:-2}"
MODES="${BENCH_MODES:-keepalive close}"

say "checking packages (iproute2, python3, curl, ping, nginx, wrk)"
need_base_packages nginx:nginx-light wrk:wrk
build_rvs

say "topology, nginx on r1 r2 r3, rvsd"
setup_topology 3
# Many short connections from one client: reuse TIME_WAIT ports.
sysctl_ns c net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
for r in r1 r2 r3; do start_nginx "$r" 8080 8081; done
for r in r1 r2 r3; do
    wait_port "$r" tcp 8080
    in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
done
start_rvsd d
adm -A -t "$VIP:80" -s rr
adm -A -t "$VIP:8081" -s rr
for r in r1 r2 r3; do
    adm -a -t "$VIP:80" -r "$(rs_ip $r):8080" -m
    adm -a -t "$VIP:8081" -r "$(rs_ip $r)" -g
done
for url in "http://$(rs_ip r1):8080/" "http://$VIP:80/" "http://$VIP:8081/"; do
    in_ns c curl -fsS --max-time 3 "$url" >/dev/null || die "no answer from $url"
done
info "rvsd $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, wrk -t$THREADS -c$CONNS -d${DURATION}s --latency"

# to_ms "1.23ms" / "456.78us" / "1.02s" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
                           else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

ROWS=()
bench() { # bench NAME URL MODE
    local name="$1" url="$2" mode="$3" hdr=() out rps p50 p99 errs non2xx
    [ "$mode" = close ] && hdr=(-H "Connection: close")
    say "wrk: $name ($mode) $url"
    out="$(in_ns c wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url" 2>&1)" || true
    echo "$out" >"$RVS_WORK/wrk-$name-$mode.log"
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    errs="$(awk '/Socket errors/ {print $3 $4 " " $5 $6 " " $7 $8 " " $9 $10}' <<<"$out")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
    info "requests/s ${rps:-?}, p50 ${p50} ms, p99 ${p99} ms${errs:+, socket errors: $errs}${non2xx:+, non-2xx: $non2xx}"
    ROWS+=("$(printf '| %-7s | %-10s | %10s | %8s | %8s |' "$name" "$mode" "${rps:-?}" "$p50" "$p99")")
}

for mode in $MODES; do
    bench direct "http://$(rs_ip r1):8080/" "$mode"
    bench NAT "http://$VIP:80/" "$mode"
    bench DR "http://$VIP:8081/" "$mode"
done

say "rvsadm -L -n --stats"
adm -L -n --stats | sed 's/^/    /'
stats="$(stats_json)"
info "rvsd drops: $(jget "$stats" '" ".join(f"{k}={v}" for k, v in d["drops"].items() if v) or "none"')"

say "results (wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $(nproc) CPUs shared by client, director and servers)"
printf '| %-7s | %-10s | %10s | %8s | %8s |\n' path connection "requests/s" "p50 ms" "p99 ms"
echo "|---------|------------|------------|----------|----------|"
printf '%s\n' "${ROWS[@]}"
