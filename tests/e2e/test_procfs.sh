#!/usr/bin/env bash
# rvsd --procfs-dir: the kernel's /proc/net/ip_vs* views, read by the real peer. Debian's
# prometheus-node-exporter (--path.procfs=DIR, ipvs collector only) must report the same
# node_ipvs_* figures as rvsd's own /metrics after real TCP and UDP traffic; the files and
# GET /v1/procfs carry the same text.
source "$(dirname "$0")/lib.sh"

install_cleanup
need_base_packages
need_cmds prometheus-node-exporter:prometheus-node-exporter
build_rvs
setup_topology 2
for r in r1 r2; do start_rs_servers "$r" --tcp 8080 --udp 5353; done
for r in r1 r2; do wait_port "$r" tcp 8080; done
for r in r1 r2; do in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true; done

PROC="$RVS_WORK/proc"
RVSD_ARGS="--procfs-dir $PROC --metrics 127.0.0.1:9661" start_rvsd d
adm -A -t "$VIP:80" -s wrr
adm -a -t "$VIP:80" -r "$(rs_ip r1):8080" -m -w 1
adm -a -t "$VIP:80" -r "$(rs_ip r2):8080" -m -w 3
adm -A -u "$VIP:53" -s rr -p 120
adm -a -u "$VIP:53" -r "$(rs_ip r1):5353" -m
adm -A -f 7 -s lc
adm -a -f 7 -r "$(rs_ip r2):0" -g -w 2

out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 8 --bytes 4096)" || true
[ -n "$out" ] || out='{"ok":0}'
assert_eq "TCP connections through the NAT service" 8 "$(jget "$out" 'd["ok"]')"
out="$(in_ns c "$PY" "$RVSNET" udp-check "$VIP" 53 --count 4 --bytes 100 --tries 2)" || true
[ -n "$out" ] || out='{"ok":0}'
assert_eq "UDP datagrams through the persistent service" 4 "$(jget "$out" 'd["ok"]')"
sleep 2.5 # one refresh after the last packet (the files are rewritten every second)

for f in ip_vs ip_vs_stats ip_vs_conn ip_vs_conn_sync; do
    if [ -s "$PROC/net/$f" ]; then ok "$PROC/net/$f written"; else fail "$PROC/net/$f missing"; fi
done
head -n 8 "$PROC/net/ip_vs" | sed 's/^/      /'
VIP_HEX="$(printf '%02X' ${VIP//./ })"
if grep -q "^TCP  $VIP_HEX:0050 wrr  \$" "$PROC/net/ip_vs"; then ok "ip_vs: TCP service line as the kernel prints it"; else fail "ip_vs: no 'TCP  $VIP_HEX:0050 wrr  ' line"; fi
if grep -q "^UDP  $VIP_HEX:0035 rr  persistent 30000 FFFFFFFF\$" "$PROC/net/ip_vs"; then ok "ip_vs: persistent UDP service"; else fail "ip_vs: no persistent UDP line"; fi
if grep -q "^FWM  00000007 lc \$" "$PROC/net/ip_vs"; then ok "ip_vs: fwmark service"; else fail "ip_vs: no FWM line"; fi
assert_eq "ip_vs_conn entries to the TCP service" 8 "$(grep -c "^TCP [0-9A-F]\{8\} [0-9A-F]\{4\} $VIP_HEX 0050 " "$PROC/net/ip_vs_conn")"
assert_ge "ip_vs_conn: the UDP persistence template" 1 "$(grep -c "^UDP [0-9A-F]\{8\} 0000 $VIP_HEX 0035 .* ASSURED " "$PROC/net/ip_vs_conn")"
api="$(curl -fsS --max-time 5 --unix-socket "$(sock_of d)" http://rvsd/v1/procfs)"
assert_eq "GET /v1/procfs ip_vs = the file" "$(cat "$PROC/net/ip_vs")" "$(jget "$api" 'd["ip_vs"].rstrip("\n")')"

# The real peer: node_exporter reading the files, against rvsd's own exposition.
start_bg d node-exporter prometheus-node-exporter --path.procfs="$PROC" --collector.disable-defaults \
    --collector.ipvs --web.listen-address=127.0.0.1:9662
for _ in $(seq 1 50); do in_ns d curl -fsS -o /dev/null http://127.0.0.1:9662/metrics 2>/dev/null && break; sleep 0.1; done
theirs="$(in_ns d curl -fsS --max-time 5 http://127.0.0.1:9662/metrics)" || fail "node_exporter does not answer"
ours="$(in_ns d curl -fsS --max-time 5 http://127.0.0.1:9661/metrics)" || fail "rvsd /metrics does not answer"
grep -q '^node_scrape_collector_success{collector="ipvs"} 1' <<<"$theirs" && ok "node_exporter's ipvs collector read the files" \
    || fail "node_exporter's ipvs collector failed: $(grep -i ipvs <<<"$theirs" | head -3)"
# node_ipvs_* samples as {name{sorted labels}: value}; Go prints large values as 1.2e+06.
figures() {
    "$PY" -c 'import re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"^(node_ipvs_\w+)(?:\{(.*)\})? (\S+)$", line.strip())
    if m:
        labels = ",".join(sorted(re.findall(r"\w+=\"[^\"]*\"", m.group(2) or "")))
        out[m.group(1) + "{" + labels + "}"] = float(m.group(3))
for k in sorted(out):
    print(k, int(out[k]))'
}
theirs_f="$(figures <<<"$theirs")"
ours_f="$(figures <<<"$ours")"
assert_ge "node_ipvs_* samples from node_exporter" 10 "$(wc -l <<<"$theirs_f")"
assert_eq "node_exporter over --procfs-dir = rvsd's /metrics" "$ours_f" "$theirs_f"
grep -E '^node_ipvs_(connections|incoming_packets)_total' <<<"$theirs_f" | sed 's/^/      /'

# A stopped director leaves no stale views behind.
kill -TERM "$RVSD_PID"
for _ in $(seq 1 100); do kill -0 "$RVSD_PID" 2>/dev/null || break; sleep 0.1; done
left="$(ls "$PROC/net" 2>/dev/null | tr '\n' ' ')"
assert_eq "views removed when rvsd stops" "" "$left"
finish
