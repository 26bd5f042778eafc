#!/usr/bin/env bash
# The test bed itself, without rvs: every real server answers the client directly (TCP echo
# intact, UDP echo from the address asked), the director's addresses answer, and the VIP is
# dead while no rvsd runs (the director's kernel drops it: no VIP, ip_forward=0).
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages

setup_topology 3
for r in r1 r2 r3; do start_rs_servers "$r" --tcp 8080 --udp 5353; done
for r in r1 r2 r3; do wait_port "$r" tcp 8080; done

for r in r1 r2 r3; do
    out="$(in_ns c "$PY" "$RVSNET" tcp-check "$(rs_ip $r)" 8080 --conns 2 --bytes 65536 || true)"
    assert_eq "direct TCP echo to $r" "{\"$r\":2}" "$(jget "$out" 'd["names"]')"
    out="$(in_ns c "$PY" "$RVSNET" udp-check "$(rs_ip $r)" 5353 --count 3 || true)"
    assert_eq "direct UDP echo ok from $r" 3 "$(jget "$out" 'd["ok"]')"
done
if in_ns c ping -c1 -W1 "$DIR_EXT_IP" >/dev/null; then ok "director ext answers ping"; else fail "director ext unreachable"; fi
if in_ns r1 ping -c1 -W1 "$DIR_INT_IP" >/dev/null; then ok "director int answers ping"; else fail "director int unreachable"; fi
assert_eq "director ip_forward" 0 "$(in_ns d sysctl -n net.ipv4.ip_forward)"
if in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 8080 --conns 1 --timeout 1 >/dev/null 2>&1; then
    fail "VIP answered without rvsd"
else
    ok "VIP silent without rvsd"
fi
finish
