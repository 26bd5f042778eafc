#!/usr/bin/env bash
# Failover of a NAT service (issue 14: "two directors, each rvsd with the same services, DR and
# NAT"; test_sync_failover.sh does DR). Two segments: the client's (front, 10.78.0.0/24) and
# the real servers' (back, 10.79.0.0/24), each director on both. keepalived's VI_1 holds the
# VIP on the front and the real servers' gateway 10.79.0.1 on the back (as LVS-NAT pairs run
# it), so replies follow the MASTER. Sync daemons on the back segment. SYNC_STREAMS (default
# 100) long-lived TCP streams through d1 (NAT to port 9090 of two real servers); SIGKILL of
# d1's keepalived and rvsd: d2 takes both addresses, and every stream carries on through d2
# from its synced NAT entries (the real servers' replies reach d2 by the moved gateway).
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages keepalived:keepalived nft:nftables
build_rvs
# start_keepalived and crash_keepalived (its own topology and addresses are set below).
source "$(dirname "$0")/ha.sh"

STREAMS="${SYNC_STREAMS:-100}"
FRONT=10.78.0
BACK=10.79.0
VIP=$FRONT.100
GW=$BACK.1
PORT=80
RS_PORT=9090

say "topology: client $FRONT.2; directors d1 d2 on both segments; real servers r1 r2 on $BACK.0/24"
for s in swf swb; do
    add_ns "$s"
    ip -n "$(ns "$s")" link add br0 type bridge mcast_snooping 0
    ip -n "$(ns "$s")" link set dev br0 up
done
attach() { # attach NS IF SWITCH ADDR/LEN PORTNAME
    add_link "$1" "$2" "$3" "$5"
    ip -n "$(ns "$3")" link set dev "$5" master br0
    ip -n "$(ns "$1")" addr add "$4" dev "$2"
}
add_ns c
attach c eth0 swf "$FRONT.2/24" c
for d in d1 d2; do
    add_ns "$d"
    attach "$d" eth0 swf "$FRONT.1${d#d}/24" "$d"f
    attach "$d" eth1 swb "$BACK.1${d#d}/24" "$d"b
    sysctl_ns "$d" net.ipv4.ip_forward=0
done
for i in 1 2; do
    add_ns "r$i"
    attach "r$i" eth0 swb "$BACK.2$i/24" "r$i"
    ip -n "$(ns "r$i")" route add default via "$GW"
    start_rs_servers "r$i" --tcp "$RS_PORT"
done
for i in 1 2; do wait_port "r$i" tcp "$RS_PORT"; done

conf() { # conf NAME PRIORITY SELF PEER
    cat >"$RVS_WORK/$1.conf" <<EOF
global_defs {
    router_id $1
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 78
    priority $2
    advert_int 1
    unicast_src_ip $3
    unicast_peer {
        $4
    }
    virtual_ipaddress {
        $VIP/32 dev eth0
        $GW/24 dev eth1
    }
}
virtual_server $VIP $PORT {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $BACK.21 $RS_PORT {
        weight 1
    }
    real_server $BACK.22 $RS_PORT {
        weight 1
    }
}
EOF
}
conf d1 150 "$FRONT.11" "$FRONT.12"
conf d2 100 "$FRONT.12" "$FRONT.11"
holds() { ip -n "$(ns "$1")" -o addr show | grep -q " $2/"; }
wait_holds() { # wait_holds d1 ADDR SECONDS
    local i
    for i in $(seq 1 $(($3 * 10))); do
        holds "$1" "$2" && return 0
        sleep 0.1
    done
    return 1
}
est() { RVSADM_NS=$1 adm -L -n -c | awk '$3 == "ESTABLISHED"' | grep -c . || true; }

for d in d1 d2; do
    RVSD_ARGS="--keepalived $RVS_WORK/$d.conf --workers 1" start_rvsd "$d" eth0 eth1
    [ "$d" = d1 ] && D1_RVSD=$RVSD_PID
    for role in master backup; do RVSADM_NS=$d adm --start-daemon $role --mcast-interface eth1 --syncid 78; done
done
start_keepalived d1
wait_holds d1 "$VIP" 10 && ok "d1 is MASTER (VIP on eth0)" || fail "d1 never took the VIP"
wait_holds d1 "$GW" 2 && ok "d1 holds the real servers' gateway $GW" || fail "d1 has no $GW"
start_keepalived d2
sleep 2
holds d2 "$VIP" && fail "d2 holds the VIP too" || ok "d2 is BACKUP"
assert_eq "the service on d2, NAT" "  -> $BACK.21:$RS_PORT" "$(RVSADM_NS=d2 adm -L -n | grep -o "  -> $BACK.21:$RS_PORT")"

say "$STREAMS streams through d1 (NAT)"
start_bg c streams "$PY" -u "$RVSNET" streams "$VIP" "$PORT" --streams "$STREAMS" --victim none \
    --duration 18 --chunk 64 --pace 0.1 --timeout 15 --ready "$RVS_WORK/ready"
STREAMS_PID=$BG_PID
for _ in $(seq 1 200); do [ -f "$RVS_WORK/ready" ] && break; sleep 0.1; done
[ -f "$RVS_WORK/ready" ] || die "streams not up: $(cat "$RVS_WORK/streams.log")"
sleep 3 # every entry synced (third packet; a sync message waits at most 2 s)
assert_eq "established on d1" "$STREAMS" "$(est d1)"
assert_eq "established on d2 (synced NAT entries)" "$STREAMS" "$(est d2)"
masq="$(RVSADM_NS=d2 adm -L -n -c | awk '$3 == "ESTABLISHED" && $6 ~ /:'"$RS_PORT"'$/' | grep -c . || true)"
assert_eq "d2's entries go to the real servers' port $RS_PORT" "$STREAMS" "$masq"

say "SIGKILL keepalived and rvsd on d1"
t0=$(date +%s.%N)
crash_keepalived d1
kill -KILL "$D1_RVSD"
wait_holds d2 "$VIP" 8 && ok "d2 took the VIP after $("$PY" -c "print(round($(date +%s.%N) - $t0, 1))") s" ||
    fail "d2 never took the VIP"
holds d2 "$GW" && ok "d2 holds the gateway $GW" || fail "d2 has no $GW"
wait "$STREAMS_PID" 2>/dev/null || true
res="$(cat "$RVS_WORK/streams.log")"
info "streams intact across the failover: $(jget "$res" 'd["intact"]') of $STREAMS"
assert_eq "streams that carried on through d2 without a reset" "$STREAMS" "$(jget "$res" 'd["intact"]')"
in_ns c "$PY" "$RVSNET" tcp-check "$VIP" "$PORT" --conns 10 --bytes 4096 --timeout 3 --deadline 20 \
    >"$RVS_WORK/check.json" && ok "10 new NAT connections through d2" || fail "new connections: $(cat "$RVS_WORK/check.json")"
assert_alive "$RVSD_PID" "rvsd on d2"
finish
