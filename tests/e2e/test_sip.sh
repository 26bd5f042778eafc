#!/usr/bin/env bash
# --pe sip end to end: a persistent UDP service with the SIP persistence engine; every flow
# of one call (new client port each time) reaches one real server, calls spread by rr, a
# first datagram without a Call-ID is dropped and counted, and the listings show the engine.
source "$(dirname "$0")/lib.sh"

install_cleanup
need_base_packages
build_rvs
setup_topology 3
for r in r1 r2 r3; do start_rs_servers "$r" --tcp 8080 --udp 5060; done
for r in r1 r2 r3; do wait_port "$r" tcp 8080; done
for r in r1 r2 r3; do in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true; done
start_rvsd d

adm -A -u "$VIP:5060" -s rr -p 120 --pe sip
for r in r1 r2 r3; do adm -a -u "$VIP:5060" -r "$(rs_ip $r):5060" -m; done
if adm -L -n | grep -q "^UDP  $VIP:5060 rr persistent 120 pe sip\$"; then ok "-L -n shows 'persistent 120 pe sip'"; else fail "-L -n: $(adm -L -n)"; fi

# Three calls, four flows each (a new socket, so a new client port, per datagram).
out="$(in_ns c "$PY" - "$VIP" <<'PYEOF'
import json, socket, sys
vip = sys.argv[1]
def invite(call_id):
    return (f"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33.example.com\r\n"
            f"To: <sip:bob@biloxi.example.com>\r\nFrom: <sip:alice@atlanta.example.com>;tag=1\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
def ask(payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.5)
    s.sendto(payload, (vip, 5060))
    try:
        data, _ = s.recvfrom(4096)
        return data.partition(b"\n")[0].decode()
    except socket.timeout:
        return None
    finally:
        s.close()
calls = {c: [ask(invite(c)) for _ in range(4)] for c in ("call-a@pc33", "call-b@pc33", "call-c@pc33")}
print(json.dumps({"calls": calls, "no_call_id": ask(b"OPTIONS sip:x SIP/2.0\r\nTo: <sip:x>\r\n\r\n")}))
PYEOF
)" || true
[ -n "$out" ] || out='{"calls":{},"no_call_id":"?"}'
info "$out"
for c in call-a@pc33 call-b@pc33 call-c@pc33; do
    assert_eq "$c: its 4 flows on one real server" 1 "$(jget "$out" "len(set(d['calls'].get('$c', [None, 'x'])))")"
    assert_eq "$c: answered" True "$(jget "$out" "None not in d['calls'].get('$c', [None])")"
done
assert_eq "three calls, three servers (rr per new template)" 3 "$(jget "$out" 'len({v[0] for v in d["calls"].values()})')"
assert_eq "a first datagram without Call-ID: no answer" None "$(jget "$out" 'd["no_call_id"]')"
assert_eq "dropped and counted as pe_no_data" 1 "$(jget "$(stats_json)" 'd["drops"]["pe_no_data"]')"
tpl="$(adm -L -n -c --persistent-conn | grep -c " 198\.51\.100\.2:0 .* sip ")"
assert_eq "templates listed with client port 0, the engine and the Call-ID (-c --persistent-conn)" 3 "$tpl"
adm -L -n -c --persistent-conn | grep " sip " | sed 's/^/      /'
finish
