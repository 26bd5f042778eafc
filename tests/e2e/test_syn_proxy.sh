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

say "bulk transfer through the SYN proxy: window scaling, SACK and timestamps end to end"
# 3 MiB from nginx with 2 % of the data segments to the client dropped (nft), so the client
# sends SACK blocks that the director must shift into the real server's sequence space.
files="$RVS_WORK/nginx-r1/files"
head -c 3145728 /dev/urandom >"$files/bulk.bin"
chmod o+x "$RVS_WORK" "$RVS_WORK/nginx-r1" "$files"
chmod o+r "$files/bulk.bin"
in_ns c nft -f - <<NFT
table ip rvs_synproxy_loss {
    chain in {
        type filter hook input priority 0;
        ip saddr $VIP tcp sport 80 meta length > 1000 numgen random mod 100 < 2 counter drop
    }
}
NFT
start_bg c tcpdump-c tcpdump --immediate-mode -i eth0 -U -s 128 -w "$RVS_WORK/c.pcap" "tcp port 80"
cap_c=$BG_PID
start_bg r1 tcpdump-r1 tcpdump --immediate-mode -i eth0 -U -s 128 -w "$RVS_WORK/r1.pcap"
cap_r=$BG_PID
sleep 1
got="$(in_ns c curl -s --max-time 30 "http://$VIP/files/bulk.bin" | sha256sum | cut -d' ' -f1)"
assert_eq "3 MiB through the SYN proxy, intact" "$(sha256sum <"$files/bulk.bin" | cut -d' ' -f1)" "$got"
sleep 0.5
kill "$cap_c" "$cap_r" 2>/dev/null
wait "$cap_c" "$cap_r" 2>/dev/null || true
in_ns c nft delete table ip rvs_synproxy_loss
fields=(-T fields -e ip.src -e tcp.flags.syn -e tcp.flags.ack -e tcp.options.wscale.shift -e tcp.options.sack_perm
    -e tcp.options.timestamp.tsval -e tcp.options.timestamp.tsecr -e tcp.options.sack_le -e tcp.options.sack_re
    -e tcp.window_size)
tshark -r "$RVS_WORK/c.pcap" -Y tcp "${fields[@]}" >"$RVS_WORK/c.txt" 2>/dev/null
tshark -r "$RVS_WORK/r1.pcap" -Y "tcp.port == 8080" "${fields[@]}" >"$RVS_WORK/r1.txt" 2>/dev/null
check="$("$PY" - "$RVS_WORK/c.txt" "$RVS_WORK/r1.txt" "$CLIENT_IP" "$(rs_ip r1)" 3145728 <<'PYEOF'
import sys
def rows(path):
    return [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
c, r, client, rs, size = rows(sys.argv[1]), rows(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def syn(rs_, src, ack):
    return next(x for x in rs_ if x[0] == src and x[1] == "1" and x[2] == ack)
out = []
# Client leg: the client's SYN and the director's cookie SYN-ACK.
cs, ds = syn(c, client, "0"), syn(c, next(x[0] for x in c if x[0] != client), "1")
out.append("client_syn ws=%s sack=%s ts=%s" % (cs[3], cs[4] != "", cs[5] != ""))
out.append("director_synack ws=%s sack=%s ts=%s" % (ds[3], ds[4] != "", ds[5] != ""))
# Real server leg: the SYN the director sent and the real server's SYN-ACK.
ps, rsa = syn(r, client, "0"), syn(r, rs, "1")
out.append("rs_syn ws=%s sack=%s ts=%s" % (ps[3], ps[4] != "", ps[5] != ""))
out.append("rs_synack ws=%s sack=%s ts=%s" % (rsa[3], rsa[4] != "", rsa[5] != ""))
# SACK blocks the real server received lie inside what it sent (relative sequence numbers).
blocks = [(int(le), int(re)) for x in r if x[0] == client and x[7]
          for le, re in zip(x[7].split(","), x[8].split(","))]
inside = all(0 < le < re <= size + 1000 for le, re in blocks)
out.append("sack_blocks=%d inside=%s" % (len(blocks), inside))
# Every TSecr the real server received echoes a TSval it sent (timestamps translated back).
sent = {x[5] for x in r if x[0] == rs and x[5]}
echoed = [x[6] for x in r if x[0] == client and x[6] and x[6] != "0" and x[1] == "0"]
out.append("tsecr=%d echo_rs=%s" % (len(echoed), all(e in sent for e in echoed)))
# The client's windows, as the real server reads them (scaled), exceed 64 KiB.
out.append("max_client_window=%d" % max(int(x[9]) for x in r if x[0] == client and x[9]))
print("\n".join(out))
PYEOF
)"
echo "$check" | sed 's/^/      /'
has() { if echo "$check" | grep -qx "$2"; then ok "$1"; else fail "$1: expected '$2'"; fi; }
cws="$(echo "$check" | sed -n 's/^client_syn ws=\([0-9]*\) sack=True ts=True$/\1/p')"
if [ -n "$cws" ]; then ok "the client offers scaling ($cws), SACK, timestamps"; else fail "client SYN options"; fi
has "the director's cookie SYN-ACK offers them (scale 7)" "director_synack ws=7 sack=True ts=True"
has "the SYN to the real server carries the client's (from the cookie)" "rs_syn ws=$cws sack=True ts=True"
if echo "$check" | grep -qE "^rs_synack ws=[0-9]+ sack=True ts=True$"; then ok "the real server agrees to all three"; else
    fail "real server SYN-ACK options"; fi
if echo "$check" | grep -qE "^sack_blocks=[1-9][0-9]* inside=True$"; then
    ok "the client's SACK blocks reach the real server shifted into its sequence space"
else fail "SACK blocks at the real server"; fi
if echo "$check" | grep -qE "^tsecr=[1-9][0-9]* echo_rs=True$"; then ok "TSecr translated into the real server's clock"; else
    fail "TSecr at the real server"; fi
mw="$(echo "$check" | sed -n 's/^max_client_window=//p')"
assert_gt "window scaling in use (largest client window the real server saw, bytes)" 65535 "$mw"

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
