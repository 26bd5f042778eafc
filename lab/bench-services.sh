#!/usr/bin/env bash
# Control-plane scale: how fast services and real servers are added, restored and listed, and
# what each costs in rvsd's memory. Numbers for BENCHMARKS.md ("Services at scale").
#
#   sudo lab/bench-services.sh                 # up to 100 000 services
#   BENCH_MAX=20000 sudo lab/bench-services.sh
#
# rvsd serves one veth in a namespace this script creates (removed on exit). Every service has
# its own VIP (the worst case for steering: one VIP per service), 10.x.y.z:80, NAT real
# servers 172.16-31.x.y:8080. Prints:
#   - memory (first, on the fresh daemon: freed memory is not given back): rvsd's VmRSS
#     (/proc/PID/status) after N services, after N real servers more, as bytes per service and
#     per real server;
#   - adds/s: `rvsadm -R` of N services (then of N real servers, one each) on an empty table,
#     for N = 1 000, 10 000, 100 000 (commands per second of wall time, client included);
#   - one `rvsadm -A` and one `rvsadm -D` (a process per command) at 0 and at N services:
#     per-command latency (a lone command: no batch);
#   - the full restore of N services x 2 real servers (target: < 10 s at 100 000) and
#     `rvsadm -L -n` of it (target: < 2 s), with the line count checked, and rvsd's CPU time
#     over 10 s idle with that table.
# RVS_IO=xdp|afpacket picks the backend (default: auto, XDP where it attaches).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "bench-services.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-bsvc$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
MAX="${BENCH_MAX:-100000}"
need_base_packages
build_rvs

add_ns d
add_ns peer
add_link d ext peer e1
ip -n "$(ns d)" addr add 198.51.100.1/24 dev ext
sysctl_ns d net.ipv4.ip_forward=0
start_rvsd d ext
PID=$RVSD_PID

vip() { echo "10.$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }
# Restore files: services, first real servers, second real servers (awk: fast to generate).
gen() { # gen N KIND FILE   KIND: svc | rs1 | rs2
    awk -v n="$1" -v kind="$2" 'BEGIN {
        for (i = 1; i <= n; i++) {
            v = sprintf("10.%d.%d.%d", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
            if (kind == "svc") printf "-A -t %s:80 -s wlc\n", v
            else if (kind == "rs1") printf "-a -t %s:80 -r 172.%d.%d.%d:8080 -m -w 1\n", v, 16 + int(i / 65536) % 16, int(i / 256) % 256, i % 256
            else printf "-a -t %s:80 -r 172.%d.%d.%d:8080 -m -w 2\n", v, 32 + int(i / 65536) % 16, int(i / 256) % 256, i % 256
        }
    }' >"$3"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
restore_timed() { # restore_timed FILE → seconds
    local t0 t1
    t0=$(now)
    adm -R <"$1" || die "rvsadm -R $1 failed"
    t1=$(now)
    secs "$t0" "$t1"
}
single_adds() { # single_adds FROM COUNT → ms per `rvsadm -A` process
    local t0 t1 i
    t0=$(now)
    for i in $(seq "$1" $(($1 + $2 - 1))); do adm -A -t "$(vip "$i"):81" -s rr; done
    t1=$(now)
    awk -v a="$t0" -v b="$t1" -v n="$2" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }'
}
single_dels() { # single_dels FROM COUNT → ms per `rvsadm -D` process (the services single_adds made)
    local t0 t1 i
    t0=$(now)
    for i in $(seq "$1" $(($1 + $2 - 1))); do adm -D -t "$(vip "$i"):81"; done
    t1=$(now)
    awk -v a="$t0" -v b="$t1" -v n="$2" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }'
}

say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo), kernel $(uname -r)"
info "load: $(cut -d' ' -f1-3 /proc/loadavg) (shared with other builds)"
info "steering: $(grep -m1 -o 'XDP steering attached ([a-z]* mode)\|steering: eBPF program attached\|eBPF fanout unavailable' "$RVS_WORK/rvsd-d.log" || echo classic)"

say "memory per service and per real server ($MAX services, rvsd VmRSS)"
gen "$MAX" svc "$RVS_WORK/svc"
gen "$MAX" rs1 "$RVS_WORK/rs1"
gen "$MAX" rs2 "$RVS_WORK/rs2"
sleep 1
r0=$(rss_kb)
restore_timed "$RVS_WORK/svc" >/dev/null
sleep 1
r1=$(rss_kb)
restore_timed "$RVS_WORK/rs1" >/dev/null
sleep 1
r2=$(rss_kb)
info "VmRSS: empty ${r0} kB, +$MAX services ${r1} kB, +$MAX real servers ${r2} kB"
info "$(awk -v a="$r0" -v b="$r1" -v c="$r2" -v n="$MAX" 'BEGIN {
    printf "per service: %.0f bytes; per real server: %.0f bytes", (b - a) * 1024 / n, (c - b) * 1024 / n }')"

say "restore of $MAX services x 2 real servers, then list it"
cat "$RVS_WORK/svc" "$RVS_WORK/rs1" "$RVS_WORK/rs2" >"$RVS_WORK/all"
adm -C
tall=$(restore_timed "$RVS_WORK/all")
info "rvsadm -R of $((3 * MAX)) lines: $tall s (target < 10 s at 100 000 services)"
t0=$(now)
lines=$(adm -L -n | wc -l)
t1=$(now)
info "rvsadm -L -n: $(secs "$t0" "$t1") s, $lines lines (target < 2 s)"
[ "$lines" -eq $((3 + 3 * MAX)) ] || fail "expected $((3 + 3 * MAX)) lines, got $lines"
t0=$(now)
saved=$(adm -S -n | wc -l)
t1=$(now)
info "rvsadm -S -n: $(secs "$t0" "$t1") s, $saved lines"
info "VmRSS now: $(rss_kb) kB; rvsd CPU time: $(awk '{ printf "%.1f s", ($14 + $15) / 100 }' "/proc/$PID/stat")"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
c0=$(cpu_ticks)
sleep 10
info "rvsd CPU time while idle with the table: $(awk -v a="$c0" -v b="$(cpu_ticks)" 'BEGIN { printf "%.2f", (b - a) / 100 }') s in 10 s (the rate estimator; on XDP before issue 12 item 4 also the maps' tick)"
say "adds per second by table size (one VIP per service)"
for n in 1000 10000 100000; do
    [ "$n" -le "$MAX" ] || continue
    gen "$n" svc "$RVS_WORK/svc.$n"
    gen "$n" rs1 "$RVS_WORK/rs1.$n"
    adm -C
    ts=$(restore_timed "$RVS_WORK/svc.$n")
    tr=$(restore_timed "$RVS_WORK/rs1.$n")
    info "$(printf '%6d services: -R %7s s (%6s services/s); %6d real servers: -R %7s s (%6s /s)' \
        "$n" "$ts" "$(rate "$n" "$ts")" "$n" "$tr" "$(rate "$n" "$tr")")"
    info "$(printf '        one rvsadm -A process at %6d services: %s ms' "$n" "$(single_adds 1 50)")"
    info "$(printf '        one rvsadm -D process at %6d services: %s ms' "$n" "$(single_dels 1 50)")"
done
adm -C
info "$(printf '        one rvsadm -A process at %6d services: %s ms' 0 "$(single_adds 1 50)")"
info "$(printf '        one rvsadm -D process at %6d services: %s ms' 50 "$(single_dels 1 50)")"

assert_alive "$PID" rvsd
finish
