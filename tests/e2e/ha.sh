# shellcheck shell=bash
# A pair of directors with keepalived's VRRP, shared by tests/e2e/test_vrrp_failover.sh and
# lab/ha.sh (source after lib.sh). One bridge in sw: client c 10.77.0.2, directors d1 .11 and
# d2 .12 (eth0 each), real servers r1 .21, r2 .22 ... (ha_topology N), VIP .100, DR on port
# 8080 to rvsnet.py "name then echo" servers. Each director runs keepalived --vrrp and
# rvsd --keepalived on its own keepalived.conf (VRRP priority d1 150, d2 100).
# HA_UDP=1: the real servers also answer UDP on $PORT ("name line" + the datagram) and the
# VIP has a UDP service on $PORT to the same real servers.

NET=10.77.0
VIP=$NET.100
PORT=8080
KEEPALIVED=$(command -v keepalived || echo /usr/sbin/keepalived)
declare -A KA_PID

# ha_topology N: the namespaces, N real servers with their servers, the directors' ingress
# drop and keepalived.conf files.
ha_topology() {
    local nrs="${1:-1}" h n d i
    add_ns sw
    ip -n "$(ns sw)" link add br0 type bridge mcast_snooping 0
    ip -n "$(ns sw)" link set dev br0 up
    local hosts=(c:2 d1:11 d2:12)
    for i in $(seq 1 "$nrs"); do hosts+=("r$i:2$i"); done
    for h in "${hosts[@]}"; do
        n=${h%%:*}
        add_ns "$n"
        add_link "$n" eth0 sw "$n"
        ip -n "$(ns sw)" link set dev "$n" master br0
        ip -n "$(ns "$n")" addr add "$NET.${h##*:}/24" dev eth0
    done
    # Real servers: VIP on lo, never answering ARP for it (DR); replies go straight to c.
    for i in $(seq 1 "$nrs"); do
        ip -n "$(ns "r$i")" addr add "$VIP/32" dev lo
        sysctl_ns "r$i" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1 \
            net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2
        if [ "${HA_UDP:-0}" = 1 ]; then
            start_rs_servers "r$i" --tcp "$PORT" --udp "$PORT"
        else
            start_rs_servers "r$i" --tcp "$PORT"
        fi
    done
    for i in $(seq 1 "$nrs"); do wait_port "r$i" tcp "$PORT"; done
    # The kernel of the director that holds the VIP would answer its TCP with RSTs (nothing
    # listens): rvsd installs an nftables netdev ingress drop for its VIPs' ports itself
    # (crates/rvsd/src/isolate.rs), after the AF_PACKET tap and before IP.
    for d in d1 d2; do sysctl_ns "$d" net.ipv4.ip_forward=0; done
    ha_write_conf d1 150 "$NET.11" "$NET.12" "$nrs"
    ha_write_conf d2 100 "$NET.12" "$NET.11" "$nrs"
}

# One keepalived.conf per director, as a user would write it: VRRP instance and LVS part.
ha_write_conf() { # ha_write_conf NAME PRIORITY SELF PEER NRS
    local i rs="" udp=""
    for i in $(seq 1 "$5"); do rs+="    real_server $NET.2$i $PORT {"$'\n'"        weight 1"$'\n'"    }"$'\n'; done
    [ "${HA_UDP:-0}" = 1 ] && udp="virtual_server $VIP $PORT {
    lb_algo rr
    lb_kind DR
    protocol UDP
$rs}"
    cat >"$RVS_WORK/$1.conf" <<EOF
global_defs {
    router_id $1
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 77
    priority $2
    advert_int 1
    unicast_src_ip $3
    unicast_peer {
        $4
    }
    virtual_ipaddress {
        $VIP/32 dev eth0
    }
}
virtual_server $VIP $PORT {
    lb_algo rr
    lb_kind DR
    protocol TCP
$rs}
$udp
EOF
}

start_keepalived() { # start_keepalived d1
    start_bg "$1" "keepalived-$1" "$KEEPALIVED" --vrrp --dont-fork --log-console --log-detail \
        -f "$RVS_WORK/$1.conf" -p "$RVS_WORK/ka-$1.pid" -r "$RVS_WORK/ka-$1-vrrp.pid" \
        -c "$RVS_WORK/ka-$1-chk.pid"
    KA_PID[$1]=$BG_PID
}

# SIGKILL every keepalived process of $1: a crash. All are stopped first, so that neither the
# parent (which restarts a dead VRRP child, whose clean start removes the VIPs) nor the child
# (told of its parent's death by PDEATHSIG, it says goodbye with priority 0) can react; the
# VIP stays on the interface, as after a real crash of the process.
crash_keepalived() {
    local pids=() pid
    for pid in $(ip netns pids "$(ns "$1")"); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = keepalived ]; then pids+=("$pid"); fi
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill -STOP "${pids[@]}"
    kill -KILL "${pids[@]}"
}

has_vip() { ip -n "$(ns "$1")" -o addr show dev eth0 | grep -q " $VIP/"; }
wait_vip() { # wait_vip d1 SECONDS: until d1 holds the VIP
    local i
    for i in $(seq 1 $(($2 * 10))); do
        has_vip "$1" && return 0
        sleep 0.1
    done
    return 1
}
mac_vip_at_client() { ip -n "$(ns c)" neigh show "$VIP" dev eth0 | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p'; }
conns_of() { RVSADM_NS=$1 stat_of "TCP  $VIP:$PORT" "" 1; }
check_conns() { # check_conns N: N DR connections from the client, 4 KiB echoed each
    in_ns c "$PY" "$RVSNET" tcp-check "$VIP" "$PORT" --conns "$1" --bytes 4096 --timeout 3 --deadline 20 \
        >"$RVS_WORK/check.json" && return 0
    cat "$RVS_WORK/check.json"
    return 1
}
