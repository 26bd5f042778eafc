#!/usr/bin/env bash
# Adding and removing a real server while traffic flows drops no established connection:
# long-lived NAT streams through r1 and r2 keep streaming while r4 is added and r3 (which
# carries none of them) is deleted; every stream completes with all bytes, no reset.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
setup_topology 4
for r in r1 r2 r3 r4; do start_rs_servers "$r" --tcp 8080; done
for r in r1 r2 r3 r4; do wait_port "$r" tcp 8080; in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true; done
start_rvsd d

SVC=(-t "$VIP:80")
adm -A "${SVC[@]}" -s rr
for r in r1 r2 r3; do adm -a "${SVC[@]}" -r "$(rs_ip $r):8080" -m; done

# 6 connections, rr: two per server; the two on r3 finish at once, the 4 others stream for
# 8 s (16 KiB every 20 ms each).
ready="$RVS_WORK/streams.ready"
in_ns c "$PY" "$RVSNET" streams "$VIP" 80 --streams 6 --victim r3 --duration 8 --ready "$ready" \
    >"$RVS_WORK/streams.json" 2>"$RVS_WORK/streams.log" &
streams_pid=$!
for _ in $(seq 1 100); do [ -f "$ready" ] && break; sleep 0.1; done
assert_eq "servers carrying the long-lived streams" "r1 r2" "$(cat "$ready" 2>/dev/null)"

sleep 1
adm -a "${SVC[@]}" -r "$(rs_ip r4):8080" -m
ok "added r4 during traffic"
out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 4 --bytes 4096 --deadline 20)" || true
assert_eq "new connections while r3 and r4 both serve" 4 "$(jget "${out:-{\}}" 'd.get("ok", 0)')"
sleep 1
adm -d "${SVC[@]}" -r "$(rs_ip r3):8080"
ok "deleted r3 during traffic"
out="$(in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --conns 6 --bytes 4096 --deadline 20)" || true
assert_eq "new connections after the change: rr over r1 r2 r4" '{"r1":2,"r2":2,"r4":2}' "$(jget "${out:-{\}}" 'd.get("names")')"

if wait "$streams_pid"; then ok "streams helper exit 0"; else fail "streams helper failed"; fi
report="$(cat "$RVS_WORK/streams.json")"
[ -n "$report" ] || report='{"kept":0,"intact":0,"streams":{},"errors":["no report"]}'
"$PY" - "$report" <<'PYEOF'
import json, sys
d = json.loads(sys.argv[1])
for i, s in sorted(d["streams"].items()):
    print(f"      stream {i} via {s['server']}: sent {s['sent']} echoed {s['echoed']} "
          f"intact={s['intact']} {' '.join(s['errors'])}")
PYEOF
assert_eq "long-lived streams kept" 4 "$(jget "$report" 'd["kept"]')"
assert_eq "streams complete, every byte echoed, no reset" 4 "$(jget "$report" 'd["intact"]')"
assert_eq "stream errors" "[]" "$(jget "$report" 'd["errors"]')"
assert_gt "bytes streamed" 4000000 "$(jget "$report" 'sum(s["echoed"] for s in d["streams"].values())')"

listing="$(adm -L -n)"
assert_eq "real servers listed after the change" "$(rs_ip r1):8080 $(rs_ip r2):8080 $(rs_ip r4):8080" \
    "$(awk '$1 == "->" && $2 ~ /^[0-9]/ {print $2}' <<<"$listing" | sort | xargs)"
assert_alive "$RVSD_PID" rvsd
finish
