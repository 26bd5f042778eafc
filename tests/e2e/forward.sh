# shellcheck shell=bash
# One forwarding test: forward_test masq|route|tunnel tcp|udp (sourced by test_{nat,dr,tun}_*.sh).
# A service over r1 r2 r3 (rr), 30 new connections from the client; asserts intact bytes,
# replies from the VIP, rr's 10/10/10 and the exact -L -n --stats counters.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=30
TCP_BYTES=262144
UDP_BYTES=512

forward_test() {
    local method="$1" proto="$2" flag fwd vport rport svc label
    case "$method" in
    masq) flag=-m fwd=Masq ;;
    route) flag=-g fwd=Route ;;
    tunnel) flag=-i fwd=Tunnel ;;
    *) die "unknown method $method" ;;
    esac
    # NAT also translates the port; DR and TUN cannot (the real server sees the VIP's port).
    if [ "$proto" = tcp ]; then
        rport=8080
        [ "$method" = masq ] && vport=80 || vport=8080
        svc=(-t "$VIP:$vport") label="TCP  $VIP:$vport"
    else
        rport=5353
        [ "$method" = masq ] && vport=53 || vport=5353
        svc=(-u "$VIP:$vport") label="UDP  $VIP:$vport"
    fi

    install_cleanup
    need_base_packages
    build_rvs
    setup_topology 3
    local r
    for r in r1 r2 r3; do
        start_rs_servers "$r" --tcp 8080 --udp 5353
        [ "$method" = tunnel ] && start_decap "$r"
    done
    for r in r1 r2 r3; do wait_port "$r" tcp 8080; done
    # No ping first: nobody has resolved the real servers; the first packet to each waits in
    # rvsd's neighbour queue (node/src/neighq.rs), and UDP below asserts no retry was needed.
    start_rvsd d
    if [ -n "${RVS_IO:-}" ] && [ "$RVS_IO" != auto ]; then
        assert_eq "rvsadm status: backend of ext" "$RVS_IO" "$(adm status | awk '$1 == "ext" { print $2 }')"
    fi

    adm -A "${svc[@]}" -s rr
    for r in r1 r2 r3; do adm -a "${svc[@]}" -r "$(rs_ip $r):$rport" "$flag"; done
    local listing
    listing="$(adm -L -n)"
    for r in r1 r2 r3; do
        if grep -Eq "^  -> $(rs_ip $r):$rport +$fwd +1 " <<<"$listing"; then ok "-L -n lists $r as $fwd"; else fail "-L -n lacks $r as $fwd:
$listing"; fi
    done

    local out names
    if [ "$proto" = tcp ]; then
        out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" "$vport" --conns "$CONNS" --bytes "$TCP_BYTES")" || true
        [ -n "$out" ] || out='{"ok":0,"names":{},"errors":["no report"]}'
        assert_eq "TCP connections to the VIP with $TCP_BYTES bytes echoed intact" "$CONNS" "$(jget "$out" 'd["ok"]')"
        assert_eq "errors" "[]" "$(jget "$out" 'd["errors"][:5]')"
    else
        out="$(in_ns c "$PY" "$RVSNET" udp-check "$VIP" "$vport" --count "$CONNS" --bytes "$UDP_BYTES" --tries 2)" || true
        [ -n "$out" ] || out='{"ok":0,"sent":0,"names":{},"errors":["no report"]}'
        assert_eq "UDP datagrams echoed intact, answered from $VIP:$vport" "$CONNS" "$(jget "$out" 'd["ok"]')"
        assert_eq "errors" "[]" "$(jget "$out" 'd["errors"][:5]')"
        assert_eq "datagrams sent (no retry needed)" "$CONNS" "$(jget "$out" 'd["sent"]')"
    fi
    names="$(jget "$out" 'd["names"]')"
    local each=$((CONNS / 3))
    assert_eq "rr distribution" "{\"r1\":$each,\"r2\":$each,\"r3\":$each}" "$names"

    # Counters (-X: exact numbers).
    adm -L -n --stats --exact | sed 's/^/      /'
    assert_eq "service Conns" "$CONNS" "$(stat_of "$label" "" 1)"
    for r in r1 r2 r3; do
        assert_eq "$r Conns" "$each" "$(stat_of "$label" "$(rs_ip $r):$rport" 1)"
    done
    if [ "$proto" = tcp ]; then
        # At least SYN, ACK, one data segment and FIN per connection, and every byte sent.
        assert_ge "service InPkts" $((CONNS * 4)) "$(stat_of "$label" "" 2)"
        assert_ge "service InBytes" $((CONNS * TCP_BYTES)) "$(stat_of "$label" "" 4)"
        if [ "$method" = masq ]; then
            assert_ge "service OutPkts" $((CONNS * 3)) "$(stat_of "$label" "" 3)"
            assert_ge "service OutBytes" $((CONNS * TCP_BYTES)) "$(stat_of "$label" "" 5)"
        else
            assert_eq "service OutPkts (replies bypass the director)" 0 "$(stat_of "$label" "" 3)"
        fi
    else
        local sent
        sent="$(jget "$out" 'd["sent"]')"
        assert_eq "service InPkts (one per datagram sent)" "$sent" "$(stat_of "$label" "" 2)"
        assert_eq "service InBytes (IP length)" $((sent * (20 + 8 + UDP_BYTES))) "$(stat_of "$label" "" 4)"
        if [ "$method" = masq ]; then
            assert_eq "service OutPkts (one reply each)" "$CONNS" "$(stat_of "$label" "" 3)"
            # Each reply is "rN\n" + the payload.
            assert_eq "service OutBytes" $((CONNS * (20 + 8 + 3 + UDP_BYTES))) "$(stat_of "$label" "" 5)"
        else
            assert_eq "service OutPkts (replies bypass the director)" 0 "$(stat_of "$label" "" 3)"
        fi
    fi
    assert_alive "$RVSD_PID" rvsd
    finish
}
