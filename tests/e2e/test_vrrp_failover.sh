#!/usr/bin/env bash
# VIP ownership follows keepalived's VRRP (rvsd --vip-follow auto, vipfollow.rs): two
# directors on one segment, each running Debian's keepalived (--vrrp, VRRP part only) and
# rvsd (--keepalived, same file, virtual_server part), DR to one real server.
#   1. d1 is MASTER: only d1 answers ARP for the VIP and forwards; d2 answers nothing.
#   2. SIGKILL d1's keepalived: d2 takes the VIP, rvsd on d2 announces it (a gratuitous ARP
#      *reply* from d2's MAC, as keepalived sends requests), the client's neighbour entry
#      moves to d2 and new connections go through d2, within the VRRP failover time.
#   3. keepalived on d1 again (higher priority, preempts): d2 becomes BACKUP, removes the VIP,
#      and its rvsd stops answering ARP at once; connections go through d1 again.
# Topology (one bridge in sw): c 10.77.0.2, d1 .11, d2 .12, r1 .21 (VIP on lo), VIP .100.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages keepalived:keepalived nft:nftables tcpdump:tcpdump
build_rvs

source "$(dirname "$0")/ha.sh"

say "topology: client, two directors, one real server on one bridge"
ha_topology 1

say "keepalived --vrrp and rvsd --keepalived on both directors"
start_keepalived d1
start_keepalived d2
for d in d1 d2; do
    RVSD_ARGS="--keepalived $RVS_WORK/$d.conf --workers 1" start_rvsd "$d" eth0
done
grep -q "VIP follow-up" "$RVS_WORK/rvsd-d1.log" && ok "rvsd follows the VIPs (vrrp_instance in the file)" ||
    fail "rvsd did not turn VIP follow-up on"
wait_vip d1 10 && ok "d1 is MASTER: VIP on its eth0" || fail "d1 never took the VIP"
has_vip d2 && fail "d2 holds the VIP too" || ok "d2 is BACKUP: no VIP"
sleep 0.5

# Every ARP frame the client sees, with MACs: who answers for the VIP.
in_ns c tcpdump --immediate-mode -i eth0 -nn -e -l -U arp >"$RVS_WORK/arp.txt" 2>"$RVS_WORK/tcpdump.log" &
TCPDUMP=$!
RVS_PIDS+=("$TCPDUMP")
mac_d1=$(mac_of d1 eth0)
mac_d2=$(mac_of d2 eth0)
# vip_replies MAC: ARP replies "VIP is-at MAC" (answers and rvsd's gratuitous replies).
vip_replies() { grep -c "Reply $VIP is-at $1" "$RVS_WORK/arp.txt" || true; }
sleep 1

say "1. d1 owns the VIP: it alone answers ARP and forwards"
ip -n "$(ns c)" neigh flush dev eth0
check_conns 10 && ok "10 connections through d1" || fail "connections through d1"
assert_eq "client's neighbour entry for the VIP" "$(mac_of d1 eth0)" "$(mac_vip_at_client)"
assert_eq "connections on d1" 10 "$(conns_of d1)"
assert_eq "connections on d2 (backup)" 0 "$(conns_of d2)"
assert_gt "ARP replies for the VIP from d1" 0 "$(vip_replies "$mac_d1")"
assert_eq "ARP replies for the VIP from d2 (backup)" 0 "$(vip_replies "$mac_d2")"

say "2. SIGKILL keepalived on d1: d2 takes the VIP and announces it"
t0=$(date +%s.%N)
# Every keepalived process of d1: a crash, so the VIP stays on d1's interface (nobody
# removes it) and d1 goes on answering whoever still asks it.
crash_keepalived d1
wait_vip d2 8 && ok "d2 took the VIP" || fail "d2 never took the VIP"
moved=""
for _ in $(seq 1 50); do
    [ "$(mac_vip_at_client)" = "$mac_d2" ] && moved=1 && break
    sleep 0.1
done
t1=$(date +%s.%N)
[ -n "$moved" ] && ok "client's neighbour entry moved to d2 after $("$PY" -c "print(round($t1 - $t0, 1))") s" ||
    fail "client's neighbour entry still $(mac_vip_at_client), not d2's $mac_d2"
check_conns 5 && ok "5 new connections right after the failover" || fail "connections after the failover"
t2=$(date +%s.%N)
elapsed=$("$PY" -c "print(round($t2 - $t0, 1))")
"$PY" -c "import sys; sys.exit(0 if $t2 - $t0 < 8 else 1)" && ok "failover to working connections in $elapsed s (< 8)" ||
    fail "failover took $elapsed s"
assert_eq "connections on d2" 5 "$(conns_of d2)"
# rvsd's announcement is a broadcast gratuitous ARP reply (keepalived's own are requests).
garp=$(grep -c "$mac_d2 > ff:ff:ff:ff:ff:ff.*Reply $VIP is-at $mac_d2" "$RVS_WORK/arp.txt" || true)
assert_ge "gratuitous ARP replies for the VIP from rvsd on d2 (tcpdump on the client)" 1 "$garp"
grep -q "VIP $VIP: active" "$RVS_WORK/rvsd-d2.log" && ok "rvsd on d2 logged the takeover" || fail "no takeover in d2's log"

say "3. keepalived on d1 again: it preempts, d2 goes BACKUP and stops answering"
start_keepalived d1
for _ in $(seq 1 80); do
    has_vip d2 || break
    sleep 0.1
done
has_vip d2 && fail "d2 still holds the VIP" || ok "d2 gave the VIP back"
wait_vip d1 5 && ok "d1 holds the VIP again" || fail "d1 did not take the VIP back"
sleep 0.3
grep -q "VIP $VIP: standby" "$RVS_WORK/rvsd-d2.log" && ok "rvsd on d2 went standby" || fail "no standby in d2's log"
before=$(vip_replies "$mac_d2")
d1_before=$(conns_of d1)
ip -n "$(ns c)" neigh flush dev eth0
check_conns 5 && ok "5 connections after the failback" || fail "connections after the failback"
sleep 0.3
assert_eq "ARP replies for the VIP from d2 since it went standby" "$before" "$(vip_replies "$mac_d2")"
assert_eq "client's neighbour entry for the VIP" "$(mac_of d1 eth0)" "$(mac_vip_at_client)"
assert_eq "new connections on d1" 5 "$(($(conns_of d1) - d1_before))"
assert_eq "connections on d2 (unchanged)" 5 "$(conns_of d2)"
finish
