#!/usr/bin/env bash
# A spoofed SYN flood (trafgen, random sources in 10.66.0.0/16) at a NAT service whose
# connection table holds TABLE entries: without a defence the table fills with half-open
# entries and legitimate clients are locked out; with drop_entry on (automatic mode, as an
# operator would set it) they get in again, the table stays at its maximum and rvsd's memory
# stays flat. Prints the figures (flood rate seen by rvsd, legitimate successes).
#   FLOOD_PPS (default 5000: within what a debug rvsd on a shared 2-core machine processes, so
#   the table, not the receive ring, is what the flood exhausts), TABLE (default 4000),
#   LEGIT (default 20). FLOOD_PPS=max sends as fast as trafgen can (the benchmark in
#   BENCHMARKS.md).
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages trafgen:netsniff-ng
build_rvs
setup_topology 1
FLOOD="$E2E_DIR/flood.py"
FLOOD_PPS="${FLOOD_PPS:-5000}"
TABLE="${TABLE:-4000}"
LEGIT="${LEGIT:-20}"
start_rs_servers r1 --tcp 8080
wait_port r1 tcp 8080
in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
# Answers to the spoofed sources leave towards the client's side, as they would on the Internet.
ip -n "$(ns d)" route add 10.66.0.0/16 via "$CLIENT_IP"
RVSD_ARGS="--workers 1 --max-conns $TABLE" start_rvsd d
adm -A -t "$VIP:80" -s rr
adm -a -t "$VIP:80" -r "$(rs_ip r1):8080" -m

legit() { in_ns c "$PY" "$FLOOD" legit "$VIP" 80 --n "$1" --timeout 1.5 --gap 0.05; }
conns() { jget "$(stats_json)" 'd["conns_total"]'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$RVSD_PID/status"; }

say "before the flood"
out="$(legit 5)"
echo "      $out"
assert_eq "legitimate connections without a flood" 5 "$(jget "$out" 'd["ok"]')"
rss0="$(rss_kb)"

say "flood: $FLOOD_PPS SYN/s from spoofed sources, table $TABLE"
cat >"$RVS_WORK/syn.trafgen" <<TG
{
  eth(da=$(mac_of d ext), sa=$(mac_of c eth0)),
  ipv4(sa=10.66.0.1, sa[2]=drnd(), sa[3]=drnd(), da=$VIP, ttl=64, df, id=drnd()),
  tcp(sp=drnd(1024, 65535), dp=80, seq=drnd(), syn, win=64240),
}
TG
rx0="$(jget "$(stats_json)" 'd["rx"]')"
t0=$(date +%s%N)
rate=(-b "${FLOOD_PPS}pps")
[ "$FLOOD_PPS" = max ] && rate=() # as fast as trafgen can (benchmark)
start_bg c trafgen trafgen -o eth0 -i "$RVS_WORK/syn.trafgen" "${rate[@]}" --cpus 1 -q
for _ in $(seq 1 50); do [ "$(conns)" -ge $((TABLE * 95 / 100)) ] && break; sleep 0.1; done
assert_ge "table entries under the flood" $((TABLE * 95 / 100)) "$(conns)"
off="$(legit $((LEGIT / 2)))"
echo "      no defence: $off"
ok_off="$(jget "$off" 'd["ok"]')"
if [ "$ok_off" -le $((LEGIT / 4)) ]; then ok "the flood locks clients out without a defence ($ok_off/$((LEGIT / 2)))"; else
    fail "the flood did not lock clients out ($ok_off/$((LEGIT / 2)) succeeded): the test proves nothing"; fi

say "drop_entry = 1 (automatic: engages while the table is short)"
adm --sysctl drop_entry=1 >/dev/null
sleep 1.2 # the defence is evaluated once a second
on="$(legit "$LEGIT")"
echo "      drop_entry: $on"
ok_on="$(jget "$on" 'd["ok"]')"
assert_ge "legitimate connections with drop_entry" $((LEGIT * 9 / 10)) "$ok_on"
n="$(conns)"
if [ "$n" -le "$TABLE" ]; then ok "table at most its maximum ($n <= $TABLE)"; else fail "table grew to $n"; fi
rx1="$(jget "$(stats_json)" 'd["rx"]')"
secs=$((($(date +%s%N) - t0) / 1000000))
rss1="$(rss_kb)"
if [ "$rss1" -le $((rss0 + 16384)) ]; then ok "rvsd RSS flat: $rss0 -> $rss1 KiB"; else fail "rvsd RSS grew: $rss0 -> $rss1 KiB"; fi
assert_alive "$RVSD_PID" "rvsd"
echo "      figures: rvsd received $(((rx1 - rx0) * 1000 / secs)) frames/s during the flood;" \
    "legitimate connections: $ok_off/$((LEGIT / 2)) without a defence, $ok_on/$LEGIT with drop_entry=1;" \
    "RSS $rss0 -> $rss1 KiB"
echo "      drops: $(jget "$(stats_json)" '{k: v for k, v in d["drops"].items() if v}')"
finish
