#!/usr/bin/env bash
# Connections survive a director's death (lvs-semantics.md §18, issue 14): two directors with
# Debian's keepalived (--vrrp) and rvsd (--keepalived, same file; sync daemons started with
# `rvsadm --start-daemon`: keepalived's VRRP process itself acts on `lvs_sync_daemon` and
# crashes without the kernel's ip_vs),
# DR to two real servers, SYNC_STREAMS (default 200) long-lived TCP streams exchanging a chunk
# every 100 ms through d1, and one UDP flow (one client socket, a datagram every 75 ms, each
# answer naming its real server) to the VIP's UDP service on the same port.
#   1. SIGKILL d1's rvsd and keepalived: d2 takes the VIP and carries every stream on with the
#      entries d1's sync daemon sent it (no reset, every byte echoed); the UDP flow keeps its
#      real server (its entry was synced: the kernel syncs UDP entries too, at the threshold
#      packet and every sync_period after, lvs-semantics.md §18) and loses only the datagrams
#      of the VRRP failover window.
#   2. d1 comes back: rvsd pulls d2's table (bulk resync) and writes 0 into its ready file,
#      which keepalived tracks (track_file, weight 0); only then does d1 preempt, and the
#      streams and the UDP flow carry on through d1 again. The kernel pair fails this step: a restarted
#      director takes the VIP back with an empty table.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages keepalived:keepalived nft:nftables
build_rvs

source "$(dirname "$0")/ha.sh"
HA_UDP=1

STREAMS="${SYNC_STREAMS:-200}"
say "topology: client, two directors, two real servers on one bridge"
ha_topology 2
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RVS_WORK/resync.key"
for d in d1 d2; do
    # The readiness file, as a user adds it to keepalived.conf.
    "$PY" - "$RVS_WORK/$d.conf" "$RVS_WORK/$d.ready" <<'EOF'
import sys
path, ready = sys.argv[1], sys.argv[2]
conf = open(path).read()
conf = conf.replace("vrrp_instance VI_1 {\n", f'track_file rvs_ready {{\n    file "{ready}"\n    weight 0\n    init_file 1\n}}\nvrrp_instance VI_1 {{\n    track_file {{\n        rvs_ready weight 0\n    }}\n', 1)
open(path, "w").write(conf)
EOF
done
rvsd_args() { # rvsd_args d1 PEER: keepalived file, resync with the peer, ready file
    echo "--keepalived $RVS_WORK/$1.conf --workers 2 --resync-listen $2:8849 --resync-from $3:8849" \
        "--resync-key $RVS_WORK/resync.key --ready-file $RVS_WORK/$1.ready"
}
start_syncd() { for role in master backup; do RVSADM_NS=$1 adm --start-daemon $role --mcast-interface eth0 --syncid 9; done; }
RVSD_ARGS="$(rvsd_args d1 "$NET.11" "$NET.12")" start_rvsd d1 eth0
D1_RVSD=$RVSD_PID
start_syncd d1
start_keepalived d1
wait_vip d1 10 && ok "d1 is MASTER" || fail "d1 never took the VIP"
RVSD_ARGS="$(rvsd_args d2 "$NET.12" "$NET.11")" start_rvsd d2 eth0
start_syncd d2
start_keepalived d2
for _ in $(seq 1 60); do [ "$(cat "$RVS_WORK/d2.ready" 2>/dev/null)" = 0 ] && break; sleep 0.1; done
assert_eq "d2's ready file after its pull from d1" 0 "$(cat "$RVS_WORK/d2.ready")"
assert_eq "d1 -L --daemon" \
    "$(printf 'master sync daemon (mcast=eth0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\nbackup sync daemon (mcast=eth0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)')" \
    "$(RVSADM_NS=d1 adm -L --daemon)"
sleep 1

say "$STREAMS streams through d1"
start_bg c streams "$PY" -u "$RVSNET" streams "$VIP" "$PORT" --streams "$STREAMS" --victim none \
    --duration 24 --chunk 64 --pace 0.1 --timeout 15 --ready "$RVS_WORK/ready"
STREAMS_PID=$BG_PID
for _ in $(seq 1 200); do [ -f "$RVS_WORK/ready" ] && break; sleep 0.1; done
[ -f "$RVS_WORK/ready" ] || die "streams not up: $(cat "$RVS_WORK/streams.log")"
PACE=0.075
start_bg c udpflow "$PY" -u "$RVSNET" udp-flow "$VIP" "$PORT" --duration 60 --pace "$PACE" \
    --ready "$RVS_WORK/udp.ready" --stop "$RVS_WORK/udp.stop"
UDP_PID=$BG_PID
UDP_T0=$(date +%s.%N)
at() { "$PY" -c "print(round($(date +%s.%N) - $UDP_T0, 1))"; } # seconds into the UDP flow
for _ in $(seq 1 50); do [ -f "$RVS_WORK/udp.ready" ] && break; sleep 0.1; done
[ -f "$RVS_WORK/udp.ready" ] || die "UDP flow not answered: $(cat "$RVS_WORK/udpflow.log")"
read -r UDP_RS UDP_CPORT <"$RVS_WORK/udp.ready"
info "UDP flow from port $UDP_CPORT answered by $UDP_RS"
# The real server of the UDP flow's entry on director $1 ("" when it has none).
udp_rs() { RVSADM_NS=$1 adm -L -n -c | awk -v c="$NET.2:$UDP_CPORT" '$1 == "UDP" && $4 == c { print $6 }'; }
sleep 3 # every entry synced (third packet, messages wait at most 2 s)
est() { RVSADM_NS=$1 adm -L -n -c | awk '$3 == "ESTABLISHED"' | grep -c . || true; }
assert_eq "established on d1" "$STREAMS" "$(est d1)"
assert_eq "established on d2 (synced)" "$STREAMS" "$(est d2)"
UDP_DEST="$(udp_rs d1)"
case "$UDP_DEST" in "$NET.2${UDP_RS#r}:$PORT") ok "d1's UDP entry goes to $UDP_RS ($UDP_DEST)" ;;
    *) fail "d1's UDP entry: '$UDP_DEST', answers from $UDP_RS" ;; esac
assert_eq "the UDP entry synced to d2, same real server" "$UDP_DEST" "$(udp_rs d2)"

say "1. SIGKILL rvsd and keepalived on d1 ($(at) s into the UDP flow)"
t0=$(date +%s.%N)
crash_keepalived d1
kill -KILL "$D1_RVSD"
wait_vip d2 8 && FAILOVER_S="$("$PY" -c "print(round($(date +%s.%N) - $t0, 1))")" &&
    ok "d2 took the VIP after $FAILOVER_S s" || fail "d2 never took the VIP"
sleep 4
assert_eq "streams still established on d2" "$STREAMS" "$(est d2)"

say "2. d1 comes back: pulls d2's table, then preempts ($(at) s into the UDP flow)"
# keepalived first: it removes the VIP the crash left and stays in FAULT (ready file 1).
echo 1 >"$RVS_WORK/d1.ready"
start_keepalived d1
for _ in $(seq 1 50); do has_vip d1 || break; sleep 0.1; done
RVSD_ARGS="$(rvsd_args d1 "$NET.11" "$NET.12")" start_rvsd d1 eth0
start_syncd d1
for _ in $(seq 1 60); do [ "$(cat "$RVS_WORK/d1.ready" 2>/dev/null)" = 0 ] && break; sleep 0.1; done
assert_eq "d1's ready file after its pull from d2" 0 "$(cat "$RVS_WORK/d1.ready")"
pulled="$(sed -n 's/.*resync: \([0-9]*\) entries from.*/\1/p' "$RVS_WORK/rvsd-d1.log")"
assert_ge "entries d1 pulled from d2" "$STREAMS" "$pulled"
wait_vip d1 10 && ok "d1 preempted (MASTER again, $(at) s into the UDP flow)" || fail "d1 did not take the VIP back"
sleep 4
assert_eq "streams established on d1 after the failback" "$STREAMS" "$(est d1)"
assert_eq "d1's UDP entry after the failback (pulled from d2), same real server" "$UDP_DEST" "$(udp_rs d1)"

wait "$STREAMS_PID" || true
report="$(cat "$RVS_WORK/streams.log")"
intact="$(jget "$report" 'd["intact"]')"
info "streams intact across the failover and the failback: $intact of $STREAMS"
assert_eq "streams intact (every byte echoed, no reset)" "$STREAMS" "$intact"

touch "$RVS_WORK/udp.stop"
wait "$UDP_PID" || true
udp="$(tail -n 1 "$RVS_WORK/udpflow.log")"
sent="$(jget "$udp" 'd["sent"]')" lost="$(jget "$udp" 'd["lost"]')"
info "UDP flow: $sent datagrams, $lost unanswered, longest gap $(jget "$udp" 'd["longest_loss"]') datagrams ($(jget "$udp" 'd["longest_loss_s"]') s); failover took ${FAILOVER_S:-?} s; runs of losses [s into the flow, datagrams]: $(jget "$udp" 'd["loss_runs"]')"
assert_eq "UDP flow: one real server from start to end (servers, changes, errors)" \
    "{\"$UDP_RS\":$(jget "$udp" 'd["answered"]')} 0 []" \
    "$(jget "$udp" 'd["names"]') $(jget "$udp" 'd["changes"]') $(jget "$udp" 'd["errors"]')"
# The failover window (kill to the VIP on d2, as this script saw it) plus 1 s for the client to
# learn the new MAC and the fail-back's switch; anything above means the flow lost its entry
# or stalled elsewhere.
bound="$("$PY" -c "import math; print(math.ceil((${FAILOVER_S:-0} + 1.0) / $PACE))")"
"$PY" -c "import sys; sys.exit(0 if $lost <= $bound else 1)" &&
    ok "UDP datagrams lost ($lost) within the failover window's ($bound)" ||
    fail "UDP flow lost $lost datagrams, more than the failover window's $bound"
finish
