#!/usr/bin/env bash
# A stray gets a RST (issue 12 item 6): a client holds a NAT connection, rvsd is killed (-9)
# and restarted with the same service; the client's next send reaches a director that no
# longer knows the connection, and it gets a RST at once (as from kernel LVS's stack) instead
# of retransmitting into silence. With stray_rst = 0 the same send is met with silence.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
setup_topology 1
FLOOD="$E2E_DIR/flood.py"
start_rs_servers r1 --tcp 8080
wait_port r1 tcp 8080
in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
configure() {
    adm -A -t "$VIP:80" -s rr
    adm -a -t "$VIP:80" -r "$(rs_ip r1):8080" -m
}
RVSD_ARGS="--workers 1" start_rvsd d
configure

# restart_under CLIENT_LOG GO_FILE: waits for the client's "ready", kills rvsd hard, starts a
# new one with the same service (and $1 extra sysctl), then lets the client send.
restart_under() {
    local log="$1" go="$2" i
    for i in $(seq 1 100); do grep -q ready "$log" && break; sleep 0.1; done
    grep -q ready "$log" || die "client never connected: $(cat "$log")"
    kill -KILL "$RVSD_PID"
    wait "$RVSD_PID" 2>/dev/null || true
    RVSD_ARGS="--workers 1" start_rvsd d
    configure
    [ -n "${3:-}" ] && adm --sysctl "$3" >/dev/null
    touch "$go"
}

say "stray_rst on (default): the next send is reset"
log="$RVS_WORK/stray1.out"
in_ns c "$PY" "$FLOOD" stray "$VIP" 80 --go-file "$RVS_WORK/go1" --wait 5 >"$log" 2>&1 &
client=$!
restart_under "$log" "$RVS_WORK/go1"
wait "$client" || true
res="$(tail -n 1 "$log")"
echo "      client: $res"
assert_eq "the client's connection was reset" True "$(jget "$res" 'd["reset"]')"
ms="$(jget "$res" 'int(d["ms"] or 99999)')"
if [ "$ms" -lt 1000 ]; then ok "reset after $ms ms (< 1000)"; else fail "reset took $ms ms"; fi
assert_ge "drops.stray_rst counted" 1 "$(jget "$(stats_json)" 'd["drops"].get("stray_rst", 0)')"

say "stray_rst = 0: silence"
log="$RVS_WORK/stray2.out"
in_ns c "$PY" "$FLOOD" stray "$VIP" 80 --go-file "$RVS_WORK/go2" --wait 2 >"$log" 2>&1 &
client=$!
restart_under "$log" "$RVS_WORK/go2" stray_rst=0
wait "$client" || true
res="$(tail -n 1 "$log")"
echo "      client: $res"
assert_eq "no reset with stray_rst = 0" False "$(jget "$res" 'd["reset"]')"
assert_eq "drops.stray_rst with stray_rst = 0" 0 "$(jget "$(stats_json)" 'd["drops"].get("stray_rst", 0)')"
finish
