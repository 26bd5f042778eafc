#!/usr/bin/env bash
# The sync daemons follow the VRRP instance, as keepalived's `lvs_sync_daemon eth0 VI_1 id 9`
# has the kernel's follow it (issue 14 item 3; crates/rvsd/src/sync/follow.rs): two directors
# with Debian's keepalived (--vrrp) and rvsd (--keepalived), DR to two real servers (ha.sh).
# rvsd reads a second copy of each director's keepalived.conf with the lvs_sync_daemon line
# added: keepalived's VRRP process acts on that line itself and crashes without the kernel's
# ip_vs, so its own copy has none.
#   1. d1 is MASTER: its rvsd runs only a master daemon (switched from backup when keepalived
#      put VI_1's address on eth0), d2's only a backup one; SYNC_STREAMS (default 50)
#      long-lived TCP streams through d1 have their entries on d2.
#   2. SIGKILL d1's keepalived and rvsd: d2 becomes MASTER, its daemon switches to master
#      (`-L --daemon`), and every stream carries on through d2.
#   3. keepalived on d2 stops cleanly and removes the VIP: d2's daemon switches back to backup.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages keepalived:keepalived nft:nftables
build_rvs

source "$(dirname "$0")/ha.sh"

STREAMS="${SYNC_STREAMS:-50}"
say "topology: client, two directors, two real servers on one bridge"
ha_topology 2
for d in d1 d2; do
    sed 's/^global_defs {$/global_defs {\n    lvs_sync_daemon eth0 VI_1 id 9/' "$RVS_WORK/$d.conf" >"$RVS_WORK/$d-rvs.conf"
    grep -q "lvs_sync_daemon eth0 VI_1 id 9" "$RVS_WORK/$d-rvs.conf" || die "no lvs_sync_daemon in $d-rvs.conf"
done
grep -q lvs_sync_daemon "$RVS_WORK/d1.conf" && die "keepalived's own file must not have lvs_sync_daemon"

DAEMON_OPTS="mcast=eth0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1"
# wait_daemons d1 ROLE: until `-L --daemon` on d1 lists exactly one daemon, of ROLE (5 s).
wait_daemons() {
    local i
    for i in $(seq 1 50); do
        [ "$(RVSADM_NS=$1 adm -L --daemon)" = "$2 sync daemon ($DAEMON_OPTS)" ] && return 0
        sleep 0.1
    done
    return 1
}

say "rvsd then keepalived on d1, then on d2"
RVSD_ARGS="--keepalived $RVS_WORK/d1-rvs.conf --workers 2" start_rvsd d1 eth0
D1_RVSD=$RVSD_PID
# Before keepalived runs, VI_1 is not MASTER here: a backup daemon.
assert_eq "d1 -L --daemon before keepalived" "backup sync daemon ($DAEMON_OPTS)" "$(RVSADM_NS=d1 adm -L --daemon)"
start_keepalived d1
wait_vip d1 10 && ok "d1 is MASTER" || fail "d1 never took the VIP"
RVSD_ARGS="--keepalived $RVS_WORK/d2-rvs.conf --workers 2" start_rvsd d2 eth0
start_keepalived d2
sleep 2
has_vip d2 && fail "d2 holds the VIP too" || ok "d2 is BACKUP: no VIP"

say "1. the daemons follow VI_1: master on d1, backup on d2"
wait_daemons d1 master && ok "d1 (MASTER) lists only a master daemon" ||
    fail "d1 -L --daemon: $(RVSADM_NS=d1 adm -L --daemon)"
wait_daemons d2 backup && ok "d2 (BACKUP) lists only a backup daemon" ||
    fail "d2 -L --daemon: $(RVSADM_NS=d2 adm -L --daemon)"
grep -q "vrrp_instance VI_1 MASTER .*sync daemon switched from Backup to Master" "$RVS_WORK/rvsd-d1.log" &&
    ok "d1's rvsd logged the switch to master" || fail "no switch in d1's log: $(grep -i 'sync daemon' "$RVS_WORK/rvsd-d1.log")"
grep -q "started as\|switched" "$RVS_WORK/rvsd-d2.log" &&
    fail "d2 switched its daemon while BACKUP: $(grep 'vrrp_instance' "$RVS_WORK/rvsd-d2.log")" ||
    ok "d2's daemon stayed backup"

start_bg c streams "$PY" -u "$RVSNET" streams "$VIP" "$PORT" --streams "$STREAMS" --victim none \
    --duration 16 --chunk 64 --pace 0.1 --timeout 15 --ready "$RVS_WORK/ready"
STREAMS_PID=$BG_PID
for _ in $(seq 1 200); do [ -f "$RVS_WORK/ready" ] && break; sleep 0.1; done
[ -f "$RVS_WORK/ready" ] || die "streams not up: $(cat "$RVS_WORK/streams.log")"
sleep 3 # every entry synced (third packet, messages wait at most 2 s)
est() { RVSADM_NS=$1 adm -L -n -c | awk '$3 == "ESTABLISHED"' | grep -c . || true; }
assert_eq "established on d1" "$STREAMS" "$(est d1)"
assert_eq "established on d2 (synced by d1's master to d2's backup)" "$STREAMS" "$(est d2)"

say "2. SIGKILL keepalived and rvsd on d1: d2 becomes MASTER, its daemon master"
t0=$(date +%s.%N)
crash_keepalived d1
kill -KILL "$D1_RVSD"
wait_vip d2 8 && ok "d2 took the VIP after $("$PY" -c "print(round($(date +%s.%N) - $t0, 1))") s" ||
    fail "d2 never took the VIP"
wait_daemons d2 master && ok "d2 (MASTER now) lists only a master daemon" ||
    fail "d2 -L --daemon: $(RVSADM_NS=d2 adm -L --daemon)"
grep -q "vrrp_instance VI_1 MASTER .*sync daemon switched from Backup to Master" "$RVS_WORK/rvsd-d2.log" &&
    ok "d2's rvsd logged the switch to master" || fail "no switch in d2's log"
sleep 3
assert_eq "streams still established on d2" "$STREAMS" "$(est d2)"

wait "$STREAMS_PID" || true
report="$(cat "$RVS_WORK/streams.log")"
intact="$(jget "$report" 'd["intact"]')"
info "streams intact across the failover: $intact of $STREAMS"
assert_eq "streams intact (every byte echoed, no reset)" "$STREAMS" "$intact"

say "3. keepalived on d2 stops cleanly (it removes the VIP): d2's daemon back to backup"
for pid in $(ip netns pids "$(ns d2)"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = keepalived ] && kill -TERM "$pid"
done
for _ in $(seq 1 50); do has_vip d2 || break; sleep 0.1; done
has_vip d2 && fail "keepalived on d2 left the VIP" || ok "VIP removed from d2"
wait_daemons d2 backup && ok "d2 (no longer MASTER) lists only a backup daemon" ||
    fail "d2 -L --daemon: $(RVSADM_NS=d2 adm -L --daemon)"
grep -q "vrrp_instance VI_1 no longer MASTER .*sync daemon switched from Master to Backup" "$RVS_WORK/rvsd-d2.log" &&
    ok "d2's rvsd logged the switch to backup" || fail "no switch back in d2's log"
finish
