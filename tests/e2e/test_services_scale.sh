#!/usr/bin/env bash
# 5 000 services (70 000 on XDP) with their own VIPs (beyond the 2 000 a classic steering program held), each
# with a NAT real server, restored with `rvsadm -R` and saved back identically (`-S -n`); then
# one more NAT service on a VIP added last carries a real TCP connection: with two workers,
# the client (198.51.100.2) and the VIP (10.200.0.100) hash to different workers, so the
# connection works only if the VIP is steered by client (its NAT replies come back hashed by
# client). On XDP (the default backend) N is 70 000, past the 65 536 entries the program's
# VIP maps held before they grew (the VIP added last was not steered: its SYN went to the
# kernel). The numbers at 100 000 services are in lab/bench-services.sh, not here.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
N=5000
[ "${RVS_IO:-auto}" = afpacket ] || N=70000

setup_topology 1
start_rs_servers r1 --tcp 8080
wait_port r1 tcp 8080
in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
RVSD_ARGS="--workers 2" start_rvsd d

awk -v n="$N" 'BEGIN {
    for (i = 1; i <= n; i++) printf "-A -t 10.%d.%d.%d:80 -s wlc\n", 1 + int(i / 65536), int(i / 256) % 256, i % 256
    for (i = 1; i <= n; i++) printf "-a -t 10.%d.%d.%d:80 -r 172.%d.%d.%d:8080 -m -w 1\n", 1 + int(i / 65536), int(i / 256) % 256, i % 256, 16 + int(i / 65536), int(i / 256) % 256, i % 256
}' >"$RVS_WORK/rules"
t0=$(date +%s%N)
if adm -R <"$RVS_WORK/rules"; then ok "rvsadm -R of $N services and $N real servers: exit 0"; else fail "rvsadm -R failed"; fi
info "restored in $((($(date +%s%N) - t0) / 1000000)) ms"
saved="$(adm -S -n)"
assert_eq "-S -n lines" $((2 * N)) "$(grep -c . <<<"$saved")"
# -S -n lists services in creation order with their real servers: the same rules, regrouped.
expected="$(awk -v n="$N" 'BEGIN {
    for (i = 1; i <= n; i++) {
        printf "-A -t 10.%d.%d.%d:80 -s wlc\n", 1 + int(i / 65536), int(i / 256) % 256, i % 256
        printf "-a -t 10.%d.%d.%d:80 -r 172.%d.%d.%d:8080 -m -w 1\n", 1 + int(i / 65536), int(i / 256) % 256, i % 256, 16 + int(i / 65536), int(i / 256) % 256, i % 256
    }
}')"
assert_eq "-S -n gives back what was restored" "$expected" "$saved"
assert_eq "-L -n lines" $((3 + 2 * N)) "$(adm -L -n | wc -l)"
# A restore whose lines fail keeps going and reports each failure, as ipvsadm -R does.
errs="$(printf -- '-A -t 10.1.0.1:80 -s rr\n-A -t 10.8.0.2:80 -s nosuch\n-A -t 10.9.9.9:80 -s rr\n' | adm -R 2>&1 >/dev/null)" || true
assert_eq "failures of a restore, in order" "Service already exists
Scheduler or persistence engine not found" "$errs"
adm -D -t 10.9.9.9:80

# The VIP added last, after the N.
adm -A -t "$VIP:80" -s rr
adm -a -t "$VIP:80" -r "$(rs_ip r1):8080" -m
out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 3 --bytes 65536 --deadline 20)" || true
[ -n "$out" ] || out='{"ok":0,"names":{},"errors":["no report"]}'
assert_eq "TCP connections through the VIP added last" 3 "$(jget "$out" 'd["ok"]')"
assert_eq "errors" "[]" "$(jget "$out" 'd["errors"][:5]')"
if grep -q "steering: eBPF program attached" "$RVS_WORK/rvsd-d.log"; then
    ok "steered by the eBPF VIP map"
else
    info "classic BPF steering (eBPF refused here): $(grep -m1 'eBPF fanout unavailable' "$RVS_WORK/rvsd-d.log")"
fi
if grep -q "NAT replies for the others may reach the wrong worker" "$RVS_WORK/rvsd-d.log"; then
    fail "rvsd logged a steering limit"
else
    ok "no steering limit logged"
fi
finish
