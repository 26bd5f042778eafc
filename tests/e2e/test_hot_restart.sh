#!/usr/bin/env bash
# Restarts of rvsd under load (handover.rs, docs/design.md "Hot restart").
#   0. A taker that asks and goes away before acknowledging: the daemon re-opens its VIPs.
#   1. Hot restart, three times: a new rvsd started on the running one's control socket takes
#      its connection table over and the old one exits, while wrk runs through the NAT VIP
#      with keep-alive (connections held across every restart) and with a new connection per
#      request: 0 failed requests, 0 socket errors (resets, timeouts), and the number of
#      entries handed over is logged.
#      Both backends (RVS_IO=afpacket, xdp, or auto: the default, XDP where it attaches): on
#      XDP the old daemon lets its sockets and link go after the table crossed and the new one
#      binds and attaches then; the gap is logged and reported.
#   2. Crash restart: kill -9, started again at once (what systemd's Restart=always does):
#      the service from the configuration file answers within 2 s.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages wrk:wrk nginx:nginx-light
build_rvs

setup_topology 2
for r in r1 r2; do
    start_nginx "$r" 8080
    start_rs_servers "$r" --tcp 9000
done
for r in r1 r2; do
    wait_port "$r" tcp 8080
    wait_port "$r" tcp 9000
done

# The configuration the daemon comes back with: a keepalived.conf, virtual_server part. The
# health checks (from the director's kernel) keep the real servers' MACs in its neighbour
# table, which a restarted rvsd reads at start.
cat >"$RVS_WORK/rvs.conf" <<EOF
virtual_server $VIP 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $(rs_ip r1) 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server $(rs_ip r2) 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
virtual_server $VIP 9000 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $(rs_ip r1) 9000 {
        weight 1
    }
    real_server $(rs_ip r2) 9000 {
        weight 1
    }
}
EOF
export RVSD_ARGS="--keepalived $RVS_WORK/rvs.conf --workers 2"
start_rvsd d
in_ns c curl -fsS --max-time 3 "http://$VIP/" >/dev/null && ok "service from the file answers" ||
    fail "no answer through the VIP"
# The backend the first daemon came up on; every restart keeps it (--io auto follows the old one).
if grep -q "XDP steering attached" "$RVS_WORK/rvsd-d.log"; then BACKEND=xdp; else BACKEND=afpacket; fi
info "backend: $BACKEND (RVS_IO=${RVS_IO:-auto})"

# Starts a new rvsd on the same socket and waits until the old one ($1) has exited and the
# new one answers; sets RVSD_PID.
restart_hot() {
    local old="$1" i
    start_bg d "rvsd-d-$2" "$RVSD" -i ext -i int ${RVS_IO:+--io "$RVS_IO"} --socket "$(sock_of d)" $RVSD_ARGS
    RVSD_PID=$BG_PID
    for i in $(seq 1 100); do
        kill -0 "$old" 2>/dev/null || break
        kill -0 "$RVSD_PID" 2>/dev/null || die "new rvsd exited: $(tail -n 5 "$RVS_WORK/rvsd-d-$2.log")"
        sleep 0.1
    done
    kill -0 "$old" 2>/dev/null && die "old rvsd $old still running after the hand-over"
    adm -L -n >/dev/null || die "new rvsd does not answer"
}

say "0. a taker that goes away before acknowledging: the running daemon carries on"
in_ns d "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"RVSHO1\n")
assert s.recv(7) == b"RVSTB1\n"
s.close()' "$(sock_of d).handover" && ok "asked and got the answer's start" || fail "no hand-over answer"
for _ in $(seq 1 30); do grep -q "hot restart failed" "$RVS_WORK/rvsd-d.log" && break; sleep 0.1; done
grep -q "hot restart failed" "$RVS_WORK/rvsd-d.log" && ok "the daemon noticed and re-opened its VIPs" ||
    fail "no failed hand-over in the log"
in_ns c curl -fsS --max-time 3 "http://$VIP/" >/dev/null && ok "and still answers" || fail "VIP dead after an aborted hand-over"

say "1. hot restart x3 under wrk (keep-alive and a connection per request)"
in_ns c wrk -t1 -c8 -d9s --timeout 3s "http://$VIP/" >"$RVS_WORK/wrk-ka.txt" 2>&1 &
WRK1=$!
in_ns c wrk -t1 -c4 -d9s --timeout 3s -H "Connection: close" "http://$VIP/" >"$RVS_WORK/wrk-close.txt" 2>&1 &
WRK2=$!
# Held sessions: 6 TCP streams echoing 1 KiB every 50 ms through every restart, checked byte
# for byte (rvsnet.py streams).
in_ns c "$PY" "$RVSNET" streams "$VIP" 9000 --streams 6 --victim none --duration 10 --chunk 1024 \
    --pace 0.05 --timeout 3 >"$RVS_WORK/streams.json" 2>&1 &
STREAMS=$!
sleep 2
for n in 1 2 3; do
    old=$RVSD_PID
    restart_hot "$old" "hot$n"
    taken=$(sed -n 's/.*hot restart: \([0-9]*\) connection entries taken over in \([0-9]*\) ms.*/\1 entries in \2 ms/p' "$RVS_WORK/rvsd-d-hot$n.log")
    [ -n "$taken" ] && ok "restart $n: $taken" || fail "restart $n: no hand-over in the new log"
    if [ "$BACKEND" = xdp ]; then
        gap=$(sed -n 's/.*hot restart: data path gap \([0-9]*\) ms.*/\1/p' "$RVS_WORK/rvsd-d-hot$n.log")
        [ -n "$gap" ] && grep -q "XDP steering attached" "$RVS_WORK/rvsd-d-hot$n.log" &&
            ok "restart $n on XDP: released and re-attached, data path gap $gap ms" ||
            fail "restart $n: the new daemon is not on XDP: $(grep -m2 'I/O' "$RVS_WORK/rvsd-d-hot$n.log")"
    else
        grep -q "XDP steering attached" "$RVS_WORK/rvsd-d-hot$n.log" &&
            fail "restart $n: the new daemon switched to XDP" || ok "restart $n stays on AF_PACKET"
    fi
    sleep 2
done
wait "$WRK1" || true
wait "$WRK2" || true
if wait "$STREAMS"; then
    ok "6 held TCP sessions intact across the restarts: $(jget "$(cat "$RVS_WORK/streams.json")" 'd["intact"]') of 6"
else
    fail "held sessions broken: $(head -c 600 "$RVS_WORK/streams.json")"
fi
for f in ka close; do
    out="$RVS_WORK/wrk-$f.txt"
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out")
    assert_gt "wrk ($f) requests" 100 "${reqs:-0}"
    errs=$(grep -E "Socket errors|Non-2xx" "$out" || true)
    assert_eq "wrk ($f) socket errors and non-2xx responses" "" "$errs"
done
grep -q "entries taken over" "$RVS_WORK/rvsd-d-hot1.log" && [ "$(sed -n 's/.*hot restart: \([0-9]*\) connection.*/\1/p' "$RVS_WORK/rvsd-d-hot1.log")" -gt 0 ] &&
    ok "the table crossed (non-empty)" || fail "no entries crossed"

say "2. crash restart: kill -9, started again at once"
kill -KILL "$RVSD_PID"
t0=$(date +%s.%N)
start_rvsd d ext int
ok=""
for _ in $(seq 1 40); do
    if in_ns c curl -fsS --max-time 0.5 "http://$VIP/" >/dev/null 2>&1; then ok=1 && break; fi
    sleep 0.05
done
t1=$(date +%s.%N)
took=$("$PY" -c "print(round($t1 - $t0, 2))")
[ -n "$ok" ] && "$PY" -c "import sys; sys.exit(0 if $t1 - $t0 < 2 else 1)" &&
    ok "back with the configuration from its file, answering in $took s (< 2)" ||
    fail "not answering within 2 s after kill -9 (took $took s, answered: ${ok:-no})"
finish
