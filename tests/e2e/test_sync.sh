#!/usr/bin/env bash
# Connection sync between two directors (lvs-semantics.md §18): d runs the master, d2 (on the
# real servers' switch, the sync link) the backup, both with the same DR service. Long-lived
# TCP connections through d appear in d2's `-L -n -c` with the same state and real server;
# Wireshark's IPVS dissector reads the captured sync datagrams as the same connections.
# SYNC_LOSS=10 drops that share of sync datagrams at the backup and reports what survived (a measurement,
# docs/semantics.md §18); SYNC_STREAMS sets the number of connections (default 20).
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages tshark:tshark tcpdump:tcpdump
build_rvs

STREAMS="${SYNC_STREAMS:-20}"
LOSS="${SYNC_LOSS:-0}"
# With loss, the streams live long enough for a second sync of each entry (packet 53).
DURATION=6
[ "$LOSS" = 0 ] || DURATION=10
SYNCID=7

say "topology: director d (master) and d2 (backup) on the real servers' switch"
setup_topology 3
add_ns d2
add_link d2 int sw dir2
ip -n "$(ns sw)" link set dev dir2 master br0
ip -n "$(ns d2)" addr add 192.168.77.2/24 dev int
sysctl_ns d2 net.ipv4.ip_forward=0
if [ "$LOSS" != 0 ]; then
    # Loss of sync datagrams on the backup's side only. (This kernel has no sch_netem; an
    # nftables random drop in the backup's input does what `tc netem loss` would.)
    need_cmds nft:nftables
    in_ns d2 nft -f - <<NFT
table inet rvs_sync_loss {
    chain input {
        type filter hook input priority -300;
        udp dport 8848 numgen random mod 1000 < $((LOSS * 10)) counter drop
    }
}
NFT
    info "${LOSS}% of the sync datagrams dropped at the backup (nftables numgen)"
fi
for r in r1 r2 r3; do start_rs_servers "$r" --tcp 80; done
for r in r1 r2 r3; do wait_port "$r" tcp 80; done
# The master also serves its table for the bulk resync (an rvs addition).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RVS_WORK/resync.key"
RESYNC="--resync-key $RVS_WORK/resync.key"
RVSD_ARGS="--resync-listen $DIR_INT_IP:8849 $RESYNC" start_rvsd d ext int
RVSD_ARGS="--procfs-dir $RVS_WORK/proc-d2" start_rvsd d2 int
D2_PID=$RVSD_PID
for n in d d2; do
    RVSADM_NS=$n adm -A -t "$VIP:80" -s rr
    for r in r1 r2 r3; do RVSADM_NS=$n adm -a -t "$VIP:80" -r "$(rs_ip "$r"):80" -g; done
done
start_bg sw tcpdump tcpdump --immediate-mode -i dir2 -n -U -w "$RVS_WORK/sync.pcap" udp port 8848
TCPDUMP_PID=$BG_PID
sleep 0.5

say "sync daemons"
RVSADM_NS=d2 adm --start-daemon backup --mcast-interface int --syncid "$SYNCID"
RVSADM_NS=d adm --start-daemon master --mcast-interface int --syncid "$SYNCID"
assert_eq "master -L --daemon" \
    "master sync daemon (mcast=int, syncid=$SYNCID, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" \
    "$(RVSADM_NS=d adm -L --daemon)"
assert_eq "backup -L --daemon" \
    "backup sync daemon (mcast=int, syncid=$SYNCID, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" \
    "$(RVSADM_NS=d2 adm -L --daemon)"
out="$(RVSADM_NS=d adm --start-daemon master --mcast-interface int 2>&1 || true)"
assert_eq "a second master" "Daemon has already run" "$out"

say "$STREAMS long-lived connections through the master"
start_bg c streams "$PY" -u "$RVSNET" streams "$VIP" 80 --streams "$STREAMS" --victim none \
    --duration "$DURATION" --chunk 64 --pace 0.1 --ready "$RVS_WORK/ready"
STREAMS_PID=$BG_PID
for _ in $(seq 1 100); do [ -f "$RVS_WORK/ready" ] && break; sleep 0.1; done
[ -f "$RVS_WORK/ready" ] || die "streams not up: $(cat "$RVS_WORK/streams.log")"
# Entries are sent from their third packet; a message waits at most 2 s.
sleep 3

# pro state source virtual destination of the ESTABLISHED entries (the expiry column differs).
established() { RVSADM_NS=$1 adm -L -n -c | awk '$3 == "ESTABLISHED" { print $1, $3, $4, $5, $6 }' | sort; }
every() { RVSADM_NS=$1 adm -L -n -c | awk 'NR > 2 { print $1, $3, $4, $5, $6 }' | sort; }
master="$(established d)"
backup="$(established d2)"
assert_eq "master's established connections" "$STREAMS" "$(grep -c . <<<"$master")"
if [ "$LOSS" = 0 ]; then
    assert_eq "backup's table = master's (state, client, VIP, real server)" "$master" "$backup"
    stats="$(stats_json d2)"
    assert_eq "backup entries bound to its own real servers" "$STREAMS" "$(jget "$stats" 'd["sync"]["bound"]')"
    assert_eq "backup entries it could not bind" 0 "$(jget "$stats" 'd["sync"]["unbound"]')"
    assert_eq "sync entries dropped in the master's workers" 0 "$(jget "$(stats_json d)" 'd["sync"]["worker_dropped"]')"
    sleep 1.1 # the procfs views are refreshed every second
    assert_eq "backup's ip_vs_conn_sync entries of Origin SYNC" "$STREAMS" \
        "$(awk '$9 == "SYNC"' "$RVS_WORK/proc-d2/net/ip_vs_conn_sync" | grep -c . || true)"

    say "bulk resync: the backup restarts and pulls the master's table before it says ready"
    kill -TERM "$D2_PID"
    wait "$D2_PID" 2>/dev/null || true
    # Its configuration file holds the services and the backup daemon (as keepalived's would).
    {
        printf '[[sync_daemons]]\nrole = "backup"\ninterface = "int"\nsyncid = %s\n\n' "$SYNCID"
        printf '[[services]]\nprotocol = "tcp"\naddress = "%s:80"\nscheduler = "rr"\n' "$VIP"
        for r in r1 r2 r3; do printf '[[services.real_servers]]\naddress = "%s:80"\nmethod = "dr"\n' "$(rs_ip "$r")"; done
    } >"$RVS_WORK/d2.toml"
    READY="$RVS_WORK/d2.ready"
    RVSD_ARGS="--config $RVS_WORK/d2.toml --resync-from $DIR_INT_IP:8849 $RESYNC --ready-file $READY" start_rvsd d2 int
    for _ in $(seq 1 50); do [ "$(cat "$READY" 2>/dev/null)" = 0 ] && break; sleep 0.1; done
    assert_eq "ready file of the restarted backup" 0 "$(cat "$READY" 2>/dev/null)"
    sleep 0.1 # the workers take the pulled entries at their next turn
    assert_eq "restarted backup's table = master's" "$(established d)" "$(established d2)"
    # ... from the pull (the next regular sync of these entries is due at their 53rd packet).
    pulled="$(sed -n 's/.*resync: \([0-9]*\) entries from.*/\1/p' "$RVS_WORK/rvsd-d2.log")"
    assert_eq "entries the restarted backup pulled" "$STREAMS" "$pulled"
    assert_eq "-L --daemon of the restarted backup (from its configuration)" \
        "backup sync daemon (mcast=int, syncid=$SYNCID, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" \
        "$(RVSADM_NS=d2 adm -L --daemon)"
else
    first="$(comm -12 <(echo "$master") <(echo "$backup") | grep -c . || true)"
    info "loss ${LOSS}%: the backup holds $first of $STREAMS connections after their first sync (packet 3)"
    sleep 5
    second="$(comm -12 <(echo "$master") <(established d2) | grep -c . || true)"
    info "loss ${LOSS}%: $second of $STREAMS after their second (packet 53)"
fi

wait "$STREAMS_PID" || fail "streams through the master: $(tail -c 300 "$RVS_WORK/streams.log")"
if [ "$LOSS" = 0 ]; then
    # The closes are state changes, sent at once (within the 2 s a message may wait).
    sleep 2.5
    closing="$(every d)"
    assert_eq "master's entries after the closes (none ESTABLISHED)" 0 "$(grep -c ESTABLISHED <<<"$closing" || true)"
    assert_eq "backup's table follows the closes" "$closing" "$(every d2)"
else
    sleep 2.5
    closed="$(comm -12 <(every d) <(every d2) | grep -c . || true)"
    sent="$(jget "$(stats_json d)" 'd["sync"]["sent_msgs"]')"
    recv="$(jget "$(stats_json d2)" 'd["sync"]["recv_msgs"]')"
    info "loss ${LOSS}%: $closed of $STREAMS closing states match; datagrams sent $sent, received $recv"
    echo "loss=${LOSS}% streams=$STREAMS first_sync=$first second_sync=$second closing_states=$closed msgs_sent=$sent msgs_received=$recv" \
        >>"${SYNC_LOSS_REPORT:-/dev/null}"
fi

say "the capture, decoded by Wireshark's IPVS dissector"
kill -INT "$TCPDUMP_PID" 2>/dev/null || true
wait "$TCPDUMP_PID" 2>/dev/null || true
# One line per record: syncid version proto state caddr:cport vaddr:vport daddr:dport timeout.
decoded="$(tshark -r "$RVS_WORK/sync.pcap" -d udp.port==8848,ipvs -T fields -E occurrence=a -E aggregator=';' \
    -e ipvs.syncid -e ipvs.version -e ipvs.proto -e ipvs.state -e ipvs.caddr -e ipvs.cport \
    -e ipvs.vaddr -e ipvs.vport -e ipvs.daddr -e ipvs.dport -e ipvs.timeout 2>/dev/null |
    "$PY" -c 'import sys
for line in sys.stdin:
    f = [c.split(";") for c in line.rstrip("\n").split("\t")]
    sid, ver = f[0][0], f[1][0]
    for p, st, ca, cp, va, vp, da, dp, to in zip(*f[2:]):
        print(sid, ver, int(p, 0), int(st, 0), f"{ca}:{cp}", f"{va}:{vp}", f"{da}:{dp}", to)' | sort -u)"
info "$(grep -c . <<<"$decoded" || true) distinct records decoded"
# The master's established connections, as the dissector should show them (state 1 =
# ESTABLISHED, protocol 6, timeout 900 s).
want="$(awk -v s="$SYNCID" '{ print s, 1, 6, 1, $3, $4, $5, 900 }' <<<"$master" | sort)"
got="$(awk '$4 == 1' <<<"$decoded" | sort)"
if [ "$LOSS" = 0 ]; then
    assert_eq "dissected ESTABLISHED records = the master's connections" "$want" "$got"
fi
finish
