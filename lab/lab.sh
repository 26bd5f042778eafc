#!/usr/bin/env bash
# The rvs lab: a whole LVS cluster in network namespaces on this machine, in one command.
#
#   sudo lab/lab.sh            # installs what is missing, builds rvs (release), runs, cleans up
#
# A client, a director running rvsd (no VIP on its kernel, ip_forward=0), a switch/router and
# three real servers, each running nginx (answering its own name) and a UDP echo. rvsadm
# configures four rr services on the VIP 10.200.0.100, one per forwarding method:
#
#   TCP  VIP:80    NAT (Masq)    -> rN:8080
#   TCP  VIP:8081  DR  (Route)   -> rN:8081   (VIP on the real servers' lo, ARP silenced)
#   TCP  VIP:8082  TUN (Tunnel)  -> rN:8082   (IPIP, decapsulated by rvs-decap on each RS)
#   UDP  VIP:53    NAT (Masq)    -> rN:5353
#
# then sends real traffic from the client (curl, UDP datagrams) and prints the counters and the
# per-real-server distribution. Environment: REQUESTS (per service, default 30), RVS_PROFILE,
# RVS_BIN, RVS_NO_BUILD=1, RVS_KEEP_WORK=1 (see tests/e2e/lib.sh).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "lab.sh: run as root (it creates network namespaces)" >&2; exit 1; }
RVS_ID="${RVS_ID:-lab$$}"
source "$(cd "$(dirname "$0")" && pwd)/../tests/e2e/lib.sh"
install_cleanup
REQUESTS="${REQUESTS:-30}"
T0=$(date +%s)

say "checking packages (iproute2, python3, curl, ping, nginx)"
need_base_packages nginx:nginx-light
build_rvs

say "creating the topology (namespaces $NS_PREFIX-{c,d,sw,r1,r2,r3})"
setup_topology 3
info "client     c   eth0 $CLIENT_IP -> VIP via director $DIR_EXT_IP; eth1 $CLIENT_IP2 (DR/TUN return path)"
info "director   d   ext $DIR_EXT_IP, int $DIR_INT_IP, ip_forward=$(in_ns d sysctl -n net.ipv4.ip_forward), VIP not configured"
info "switch     sw  bridge br0 $SW_IP (routes DR/TUN replies to the client)"
for r in r1 r2 r3; do info "real server $r  $(rs_ip $r)/24, VIP $VIP on lo, arp_ignore=1 arp_announce=2"; done

say "starting nginx (8080 8081 8082), a UDP echo (5353) and rvs-decap on each real server"
for r in r1 r2 r3; do
    start_nginx "$r" 8080 8081 8082
    start_rs_servers "$r" --udp 5353
    start_decap "$r"
done
for r in r1 r2 r3; do
    wait_port "$r" tcp 8080
    wait_port "$r" udp 5353
    in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true
done

say "starting rvsd on the director: rvsd -i ext -i int --socket $(sock_of d)"
start_rvsd d
info "rvsd pid $RVSD_PID, log $RVS_WORK/rvsd-d.log"

say "configuring the services with rvsadm"
run_adm() {
    info "rvsadm $*"
    adm "$@"
}
run_adm -A -t "$VIP:80" -s rr
run_adm -A -t "$VIP:8081" -s rr
run_adm -A -t "$VIP:8082" -s rr
run_adm -A -u "$VIP:53" -s rr
for r in r1 r2 r3; do run_adm -a -t "$VIP:80" -r "$(rs_ip $r):8080" -m; done
for r in r1 r2 r3; do run_adm -a -t "$VIP:8081" -r "$(rs_ip $r)" -g; done
for r in r1 r2 r3; do run_adm -a -t "$VIP:8082" -r "$(rs_ip $r)" -i; done
for r in r1 r2 r3; do run_adm -a -u "$VIP:53" -r "$(rs_ip $r):5353" -m; done
echo
adm -L -n | sed 's/^/    /'

declare -A DIST
# curl_service LABEL PORT: REQUESTS requests from the client, the answer names the server.
curl_service() {
    local label="$1" port="$2" name ok=0 line=""
    for _ in $(seq 1 "$REQUESTS"); do
        if name="$(in_ns c curl -fsS --max-time 3 "http://$VIP:$port/" 2>/dev/null)"; then
            ok=$((ok + 1))
            line+="$name "
        else
            line+="ERR "
        fi
    done
    DIST[$label]="$(tr ' ' '\n' <<<"$line" | grep . | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
    info "$label: $ok/$REQUESTS answered"
    [ "$ok" -eq "$REQUESTS" ]
}

say "sending traffic from the client: $REQUESTS curl requests per TCP service, $REQUESTS UDP datagrams"
status=0
curl_service "TCP $VIP:80 (NAT)" 80 || status=1
curl_service "TCP $VIP:8081 (DR)" 8081 || status=1
curl_service "TCP $VIP:8082 (TUN)" 8082 || status=1
udp="$(in_ns c "$PY" "$RVSNET" udp-check "$VIP" 53 --count "$REQUESTS" --bytes 64 --tries 2)" || status=1
DIST["UDP $VIP:53 (NAT)"]="$(jget "$udp" '" ".join(f"{k}={v}" for k, v in sorted(d["names"].items()))')"
info "UDP $VIP:53 (NAT): $(jget "$udp" 'd["ok"]')/$REQUESTS echoed, every reply from $VIP:53"

say "rvsadm -L -n --stats"
adm -L -n --stats | sed 's/^/    /'

say "distribution over the real servers (rr: equal shares)"
for k in "TCP $VIP:80 (NAT)" "TCP $VIP:8081 (DR)" "TCP $VIP:8082 (TUN)" "UDP $VIP:53 (NAT)"; do
    printf '    %-28s %s\n' "$k" "${DIST[$k]}"
done

say "rvsd node counters (GET /v1/stats)"
stats="$(stats_json)"
info "$(jget "$stats" '"rx %d  tx %d (by the established-flow shortcut %d)  arp_replies %d  connections %d" % (d["rx"], d["tx"], d.get("shortcut", 0), d["arp_replies"], d["conns_total"])')"
info "drops: $(jget "$stats" '" ".join(f"{k}={v}" for k, v in d["drops"].items() if v) or "none"')"

echo
if [ "$status" -eq 0 ]; then
    say "lab OK in $(($(date +%s) - T0)) s; cleaning up"
else
    say "lab FAILED (some requests were not answered); cleaning up"
fi
exit "$status"
