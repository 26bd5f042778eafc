#!/usr/bin/env bash
# The rvs HA lab: a pair of directors with keepalived's VRRP, a failover shown live.
#
#   sudo lab/ha.sh
#
# Client c, directors d1 (MASTER, priority 150) and d2 (BACKUP, 100), two real servers, one
# bridge (tests/e2e/ha.sh). On each director Debian's keepalived runs the vrrp_instance part
# of its keepalived.conf (keepalived --vrrp) and rvsd the virtual_server part (rvsd
# --keepalived, same file): rvsd answers for the VIP only while keepalived has put it on the
# interface. Both run LVS connection sync (`rvsadm --start-daemon master|backup`, the
# kernel's wire format). The lab opens long-lived TCP sessions through d1, prints both
# directors' connection counts (d2's synced entries included), crashes d1 (SIGKILL of its
# keepalived and rvsd), shows the takeover (time, the client's neighbour entry, rvsd's
# announcement), prints the counts again and how many sessions carried on, then hot-restarts
# rvsd on d2 and prints its table size before and after. Environment: SESSIONS (default 20),
# RVS_PROFILE, RVS_BIN, RVS_NO_BUILD=1, RVS_KEEP_WORK=1 (tests/e2e/lib.sh).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "ha.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-ha$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
SESSIONS="${SESSIONS:-20}"
need_base_packages keepalived:keepalived nft:nftables
build_rvs
source "$E2E_DIR/ha.sh"

say "topology: client c $NET.2, directors d1 $NET.11 and d2 $NET.12, real servers r1 r2, VIP $VIP (DR)"
ha_topology 2
start_keepalived d1
start_keepalived d2
for d in d1 d2; do
    RVSD_ARGS="--keepalived $RVS_WORK/$d.conf --workers 1" start_rvsd "$d" eth0
    [ "$d" = d1 ] && D1_PID=$RVSD_PID
done
for d in d1 d2; do
    for role in master backup; do RVSADM_NS=$d adm --start-daemon $role --mcast-interface eth0 --syncid 9; done
done
wait_vip d1 10 || die "d1 did not become MASTER"
info "keepalived: d1 MASTER (VIP on d1's eth0), d2 BACKUP; sync daemons (master + backup) on both"

counts() {
    local d
    for d in d1 d2; do
        local est
        if ! RVSADM_NS=$d adm -L -n >/dev/null 2>&1; then
            printf '    %-3s rvsd down\n' "$d"
            continue
        fi
        est=$(RVSADM_NS=$d adm -L -n -c 2>/dev/null | grep -c ESTABLISHED || true)
        printf '    %-3s VIP %-8s  connections scheduled %-4s  entries ESTABLISHED now %s\n' \
            "$d" "$(has_vip "$d" && echo held || echo -)" "$(conns_of "$d")" "$est"
    done
}

say "$SESSIONS long-lived TCP sessions through the VIP (a line every 100 ms each)"
in_ns c "$PY" "$RVSNET" streams "$VIP" "$PORT" --streams "$SESSIONS" --victim none --duration 16 \
    --chunk 256 --pace 0.1 --timeout 12 --ready "$RVS_WORK/ready" >"$RVS_WORK/streams.json" 2>&1 &
STREAMS=$!
for _ in $(seq 1 50); do [ -f "$RVS_WORK/ready" ] && break; sleep 0.1; done
sleep 3 # entries are synced from their third packet; a sync message waits at most 2 s
counts

say "crash: SIGKILL keepalived and rvsd on d1"
t0=$(date +%s.%N)
crash_keepalived d1
kill -KILL "$D1_PID"
wait_vip d2 10 || die "d2 did not take the VIP"
t1=$(date +%s.%N)
info "d2 took the VIP after $("$PY" -c "print(round($t1 - $t0, 1))") s (VRRP: 3 x advert_int 1 s + skew)"
for _ in $(seq 1 30); do [ "$(mac_vip_at_client)" = "$(mac_of d2 eth0)" ] && break; sleep 0.1; done
info "client's neighbour entry for $VIP: $(mac_vip_at_client) (d1 $(mac_of d1 eth0), d2 $(mac_of d2 eth0))"
grep "VIP $VIP" "$RVS_WORK/rvsd-d2.log" | tail -1 | sed 's/^.*INFO /    rvsd d2: /'
check_conns 10 && info "10 new connections through d2: all answered"
counts

wait "$STREAMS" || true
info "sessions opened before the crash: $(jget "$(tail -1 "$RVS_WORK/streams.json")" 'd["intact"]') of $SESSIONS carried on" \
    "through d2 without a reset (its synced entries)"

say "hot restart of rvsd on d2 (a new rvsd on the same socket takes the table over)"
check_conns 5 >/dev/null
before=$(RVSADM_NS=d2 adm -L -n -c | tail -n +3 | wc -l)
old=$RVSD_PID
start_bg d2 rvsd-d2-new "$RVSD" -i eth0 --socket "$(sock_of d2)" --keepalived "$RVS_WORK/d2.conf" --workers 1
for _ in $(seq 1 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
after=$(RVSADM_NS=d2 adm -L -n -c | tail -n +3 | wc -l)
sed -n 's/.*INFO \(hot restart: .*\)/    \1/p' "$RVS_WORK/rvsd-d2-new.log"
info "d2 entries before $before, after $after"
say "HA lab done; cleaning up"
