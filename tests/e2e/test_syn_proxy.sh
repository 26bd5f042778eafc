#!/usr/bin/env bash
# syn_proxy under a spoofed SYN flood (trafgen, random sources in 10.66.0.0/16) at a NAT
# service: the director answers every SYN with a cookie and creates nothing, so the table stays
# flat; legitimate clients (curl to nginx on the real server) complete the cookie handshake,
# the director opens their connection to the real server and shifts sequence numbers. Prints
# the figures. FLOOD_PPS (default 5000; "max": as fast as trafgen sends, for the benchmark),
# TABLE (default 4000), LEGIT (default 20).
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages trafgen:netsniff-ng nginx:nginx-light
build_rvs
setup_topology 1
FLOOD_PPS="${FLOOD_PPS:-5000}"
TABLE="${TABLE:-4000}"
LEGIT="${LEGIT:-20}"
start_nginx r1 8080
wait_port r1 tcp 8080
in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
# Answers to the spoofed sources leave towards the client's side, as they would on the Internet.
ip -n "$(ns d)" route add 10.66.0.0/16 via "$CLIENT_IP"
RVSD_ARGS="--workers 1 --max-conns $TABLE" start_rvsd d
adm -A -t "$VIP:80" -s rr
adm -a -t "$VIP:80" -r "$(rs_ip r1):8080" -m
adm --sysctl syn_proxy=1 >/dev/null

conns() { jget "$(stats_json)" 'd["conns_total"]'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$RVSD_PID/status"; }
drop() { jget "$(stats_json)" "d['drops'].get('$1', 0)"; }
curls() { # curls N: successes of N sequential curl requests answered "r1"
    local n=0 i
    for i in $(seq 1 "$1"); do
        [ "$(in_ns c curl -s --max-time 5 "http://$VIP/" 2>/dev/null)" = r1 ] && n=$((n + 1))
        sleep 0.05
    done
    echo "$n"
}

say "syn_proxy without a flood"
assert_eq "curl through the SYN proxy" 5 "$(curls 5)"
# (A reply that waits for the client's address to resolve is counted when it leaves the
# neighbour queue as a plain transmission, so the first one may not count here.)
assert_ge "SYNs answered with a cookie" 4 "$(drop syn_cookie)"
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
c0="$(drop syn_cookie)"
t0=$(date +%s%N)
rate=(-b "${FLOOD_PPS}pps")
[ "$FLOOD_PPS" = max ] && rate=() # as fast as trafgen can (benchmark)
start_bg c trafgen trafgen -o eth0 -i "$RVS_WORK/syn.trafgen" "${rate[@]}" --cpus 1 -q
sleep 2
maxn=0
ok_n=0
for i in $(seq 1 "$LEGIT"); do
    [ "$(in_ns c curl -s --max-time 5 "http://$VIP/" 2>/dev/null)" = r1 ] && ok_n=$((ok_n + 1))
    n="$(conns)"
    [ "$n" -gt "$maxn" ] && maxn=$n
done
rx1="$(jget "$(stats_json)" 'd["rx"]')"
secs=$((($(date +%s%N) - t0) / 1000000))
cookies=$(($(drop syn_cookie) - c0))
echo "      legitimate: $ok_n/$LEGIT; table at most $maxn entries; $cookies cookies sent"
assert_ge "legitimate curl requests during the flood" $((LEGIT * 9 / 10)) "$ok_n"
[ "$FLOOD_PPS" = max ] || assert_ge "flood SYNs answered with cookies" $((FLOOD_PPS * 2)) "$cookies"
# The legitimate connections' own entries linger (TIME_WAIT); the flood adds none.
if [ "$maxn" -le $((LEGIT + 10)) ]; then ok "table flat under the flood (at most $maxn entries)"; else
    fail "table grew to $maxn"; fi
rss1="$(rss_kb)"
if [ "$rss1" -le $((rss0 + 16384)) ]; then ok "rvsd RSS flat: $rss0 -> $rss1 KiB"; else fail "rvsd RSS grew: $rss0 -> $rss1 KiB"; fi
assert_alive "$RVSD_PID" "rvsd"
echo "      figures: rvsd received $(((rx1 - rx0) * 1000 / secs)) frames/s; legitimate $ok_n/$LEGIT;" \
    "table <= $maxn; RSS $rss0 -> $rss1 KiB"
echo "      drops: $(jget "$(stats_json)" '{k: v for k, v in d["drops"].items() if v}')"
finish
