#!/usr/bin/env bash
# A storm of malformed frames (truncated headers, bad total length, bad IP header checksum,
# bad TCP checksum, IP options, fragments, garbage ethertypes, runts) sent from the client to
# the director's ext MAC on a raw AF_PACKET socket leaves rvsd up and serving, and
# GET /v1/stats counts the drops by reason and the I/O loop's stages.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
setup_topology 3
for r in r1 r2 r3; do start_rs_servers "$r" --tcp 8080; done
for r in r1 r2 r3; do wait_port "$r" tcp 8080; in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true; done
start_rvsd d
adm -A -t "$VIP:80" -s rr
for r in r1 r2 r3; do adm -a -t "$VIP:80" -r "$(rs_ip $r):8080" -m; done

# By default worker 0 runs on the highest CPU the daemon may use (off CPU 0).
last_cpu="$("$PY" -c 'import os; print(max(os.sched_getaffinity(0)))')"
w0="$(grep -lE '^Name:.rvsd-(xdp|w)0$' /proc/"$RVSD_PID"/task/*/status | head -n1)"
assert_eq "worker 0 pinned to the last CPU by default" "$last_cpu" "$(awk '/^Cpus_allowed_list/ {print $2}' "$w0")"
out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 3 --bytes 1000 --deadline 20)" || true
assert_eq "requests before the storm" 3 "$(jget "${out:-{\}}" 'd.get("ok", 0)')"
# The client knows the director's MAC now (it routed the VIP through it).
before="$(stats_json)"

ROUNDS=400
storm="$(in_ns c "$PY" "$RVSNET" storm --iface eth0 --src-mac "$(mac_of c eth0)" --dst-mac "$(mac_of d ext)" \
    --src "$CLIENT_IP" --dst "$VIP" --dport 80 --rounds $ROUNDS)"
total="$(jget "$storm" 'd["total"]')"
echo "      storm: $storm"
assert_ge "malformed frames sent" $((ROUNDS * 12)) "$total"
sleep 1

assert_alive "$RVSD_PID" "rvsd after $total malformed frames"
out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 3 --bytes 1000 --deadline 20)" || true
assert_eq "requests after the storm" 3 "$(jget "${out:-{\}}" 'd.get("ok", 0)')"
after="$(stats_json)"
echo "      drops after the storm: $(jget "$after" '{k: v for k, v in d["drops"].items() if v}')"

delta() { jget "$after" "d['drops'].get('$1', 0) - $(jget "$before" "d['drops'].get('$1', 0)")"; }
# Each reason receives at least the frames of its kind that only it can explain
# (a frame is counted once, under the first check it fails).
assert_ge "drops.truncated (short IPv4 header, short TCP header, runts)" "$ROUNDS" "$(delta truncated)"
assert_ge "drops.bad_ip_header (bad total length, IHL, version)" "$ROUNDS" "$(delta bad_ip_header)"
assert_ge "drops.bad_ip_checksum" "$ROUNDS" "$(delta bad_ip_checksum)"
# IPVS, like the kernel's, verifies the checksum of ICMP errors, not of TCP segments it
# forwards (the real server drops those); the bad-TCP-checksum SYNs only must not hurt.
assert_ge "drops.bad_checksum (ICMP errors)" "$ROUNDS" "$(delta bad_checksum)"
assert_ge "drops.bad_l4_header (short TCP header)" "$ROUNDS" "$(delta bad_l4_header)"
if [ "$(jget "$after" 'd.get("xdp") is not None')" = True ]; then
    # XDP steering passes frames rvs does not own to the director's kernel.
    assert_ge "garbage ethertypes passed to the kernel by the XDP program" "$ROUNDS" \
        "$(jget "$after" "d['xdp']['passed'] - $(jget "$before" "d['xdp']['passed']")")"
else
    assert_ge "drops.not_for_us (garbage ethertypes)" "$ROUNDS" "$(delta not_for_us)"
fi
assert_ge "drops.ip_options" "$ROUNDS" "$(delta ip_options)"
assert_ge "drops.fragment" "$ROUNDS" "$(delta fragment)"

# The I/O loop's stage counters (per_worker polls, batches, tx_kicks) moved with the storm:
# it slept and woke, ran the frames in batches (no more batches than frames), and woke the
# transmit side for the requests after it.
wsum() { jget "$1" "sum(w['$2'] for w in d['per_worker'])"; }
wdelta() { echo $(( $(wsum "$after" "$1") - $(wsum "$before" "$1") )); }
rx_d="$(wdelta rx)"; batches_d="$(wdelta batches)"
echo "      per worker: rx +$rx_d, batches +$batches_d, polls +$(wdelta polls), tx_kicks +$(wdelta tx_kicks)"
assert_ge "batches run during the storm" 1 "$batches_d"
assert_ge "frames run during the storm >= batches" "$batches_d" "$rx_d"
assert_ge "polls during the storm" 1 "$(wdelta polls)"
assert_ge "transmit wake-ups for the requests after the storm" 1 "$(wdelta tx_kicks)"
finish
