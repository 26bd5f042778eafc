# shellcheck shell=bash
# Shared bash library of the rvs lab (lab/*.sh) and the end-to-end tests (tests/e2e/*.sh):
# the namespace topology of "a running director", daemons, rvsadm calls and assertions.
#
# Topology (every name carries the prefix rvs-$RVS_ID-, so parallel runs never collide):
#
#   c (client)                      d (director, runs rvsd)           sw (switch + router)
#   eth0 198.51.100.2/24  ───────── ext 198.51.100.1/24
#                                   int 192.168.77.1/24 ──────────── br0 192.168.77.254/24 ── r1 .11
#   eth1 203.0.113.2/24   ──────────────────────────────────────── cl  203.0.113.1/24     ├─ r2 .12
#                                                                                         └─ r3 .13 (r4 .14)
#
# - The VIP is NOT on the director's kernel (rvsd answers ARP for it) and d keeps
#   ip_forward=0 (DESIGN.md, "How a packet travels").
# - The client routes the VIP via the director's ext address.
# - Real servers: default route via the director (192.168.77.1): NAT replies must come back
#   through rvsd. rvsd is not a router (node/src/path.rs: it forwards only what IPVS claimed),
#   so DR and TUN replies, whose source is the VIP, take a second path: a policy rule
#   "from VIP" on each real server sends them to sw (192.168.77.254), which routes them to the
#   client's second leg eth1 (client rp_filter off). That is the classic LVS-DR picture: the
#   real servers answer through a router that is not the director.
# - The client reaches a real server directly (benchmark baseline) over eth1 from source
#   203.0.113.2, so those replies never meet the director.
# - No ethtool -K anywhere: peers keep their default offloads (partial checksums included),
#   as a real client would.

set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$E2E_DIR/../.." && pwd)"
PY="${PYTHON:-python3}"
RVSNET="$E2E_DIR/rvsnet.py"

RVS_ID="${RVS_ID:-$$}"
NS_PREFIX="rvs-$RVS_ID"
VIP="${VIP:-10.200.0.100}"
CLIENT_IP=198.51.100.2
CLIENT_IP2=203.0.113.2
DIR_EXT_IP=198.51.100.1
DIR_INT_IP=192.168.77.1
SW_IP=192.168.77.254
SW_CL_IP=203.0.113.1
RS_NET=192.168.77

# Working directory of this run: logs, sockets, pid files, nginx configs.
RVS_WORK="${RVS_WORK:-$(mktemp -d "/tmp/rvs-$RVS_ID.XXXXXX")}"
RVS_PIDS=()
RVS_NAMESPACES=()
RVS_VERBOSE="${RVS_VERBOSE:-0}"

ns() { echo "$NS_PREFIX-$1"; }
# Run a command inside one of this run's namespaces: in_ns c curl ...
in_ns() {
    local n="$1"
    shift
    ip netns exec "$(ns "$n")" "$@"
}
rs_ip() { echo "$RS_NET.1${1#r}"; }

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf 'FATAL: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Packages and binaries

# Installs the Debian packages providing the given commands when missing (apt-get update first).
# Pairs "command:package".
need_cmds() {
    local missing=() pair cmd pkg
    for pair in "$@"; do
        cmd="${pair%%:*}"
        pkg="${pair#*:}"
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    info "installing: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The packages every test and the lab need.
need_base_packages() {
    need_cmds ip:iproute2 sysctl:procps python3:python3 curl:curl ping:iputils-ping "$@"
}

# Builds rvsd, rvsadm and rvs-decap (RVS_PROFILE=release|debug, default release) unless
# RVS_BIN points at prebuilt binaries, and sets RVSD, RVSADM, RVS_DECAP.
build_rvs() {
    local profile="${RVS_PROFILE:-release}"
    if [ -z "${RVS_BIN:-}" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust, or set RVS_BIN)"
        # The XDP steering program is compiled by crates/xdp/build.rs (clang -target bpf, headers
        # from libbpf-dev and linux-libc-dev): on a fresh machine the lab installs them.
        need_cmds clang:clang
        [ -f /usr/include/bpf/bpf_helpers.h ] || need_cmds rvs-no-such-cmd:libbpf-dev
        [ -f /usr/include/linux/bpf.h ] || need_cmds rvs-no-such-cmd:linux-libc-dev
        local flag=()
        [ "$profile" = release ] && flag=(--release)
        if [ "${RVS_NO_BUILD:-0}" != 1 ]; then
            say "building rvs ($profile): cargo build ${flag[*]} -p rvsd -p rvsadm -p rvs-decap"
            (cd "$REPO_ROOT" && cargo build "${flag[@]}" -q -p rvsd -p rvsadm -p rvs-decap) ||
                die "cargo build failed"
        fi
        RVS_BIN="$REPO_ROOT/target/$profile"
    fi
    RVSD="$RVS_BIN/rvsd"
    RVSADM="$RVS_BIN/rvsadm"
    RVS_DECAP="$RVS_BIN/rvs-decap"
    local b
    for b in "$RVSD" "$RVSADM" "$RVS_DECAP"; do
        [ -x "$b" ] || die "missing binary $b"
    done
}

# ---------------------------------------------------------------------------------------------
# Cleanup

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid n
    # Daemons we started (TERM, then KILL what is left).
    for pid in "${RVS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${RVS_PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
    done
    # Anything else still running inside our namespaces was started by this run.
    for n in "${RVS_NAMESPACES[@]}"; do
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for n in "${RVS_NAMESPACES[@]}"; do ip netns del "$n" 2>/dev/null; done
    if [ "$rc" -ne 0 ] && [ -d "$RVS_WORK" ]; then
        echo "--- logs of the failed run ($RVS_WORK) ---" >&2
        local f
        for f in "$RVS_WORK"/*.log; do
            [ -s "$f" ] || continue
            echo "--- $(basename "$f") (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
    [ "${RVS_KEEP_WORK:-0}" = 1 ] || rm -rf "$RVS_WORK"
    exit "$rc"
}

# Call once, right at the start: every exit path (success, failure, Ctrl-C) cleans up.
install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------------------------------------
# Topology

add_ns() {
    local n
    n="$(ns "$1")"
    ip netns add "$n"
    RVS_NAMESPACES+=("$n")
    ip -n "$n" link set dev lo up
    # No IPv6: no DAD, router solicitations or MLD noise in counters and captures.
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# veth A:IFA <-> B:IFB, created directly inside the namespaces (no name clash in the root ns).
# RVS_QUEUES=N (N > 1): every veth pair gets N TX and N RX queues on both ends, so the
# director's interfaces have N receive queues (AF_XDP multi-queue; a sender spreads its flows
# over its TX queues by flow hash, and veth delivers TX queue q to the peer's RX queue q).
# Unset or 1: the kernel's default (one queue).
add_link() {
    local q=()
    if [ "${RVS_QUEUES:-1}" -gt 1 ]; then q=(numtxqueues "$RVS_QUEUES" numrxqueues "$RVS_QUEUES"); fi
    ip -n "$(ns "$1")" link add "$2" "${q[@]}" type veth peer name "$4" "${q[@]}" netns "$(ns "$3")"
    ip -n "$(ns "$1")" link set dev "$2" up
    ip -n "$(ns "$3")" link set dev "$4" up
}

sysctl_ns() {
    local n="$1"
    shift
    in_ns "$n" sysctl -qw "$@"
}

# Real server $1 (r1..r4): joins the switch, default route via the director, VIP on lo with
# the DR/TUN ARP settings, replies from the VIP routed via sw.
add_real_server() {
    local r="$1" ip
    ip="$(rs_ip "$r")"
    add_ns "$r"
    add_link "$r" eth0 sw "$r"
    ip -n "$(ns sw)" link set dev "$r" master br0
    ip -n "$(ns "$r")" addr add "$ip/24" dev eth0
    ip -n "$(ns "$r")" route add default via "$DIR_INT_IP"
    ip -n "$(ns "$r")" addr add "$VIP/32" dev lo
    sysctl_ns "$r" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1 \
        net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.lo.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0
    ip -n "$(ns "$r")" rule add from "$VIP" lookup 100 pref 100
    ip -n "$(ns "$r")" route add default via "$SW_IP" table 100
}

# Builds the whole topology with real servers r1..r$1 (default 3).
setup_topology() {
    local nrs="${1:-3}" i
    add_ns c
    add_ns d
    add_ns sw
    # switch / router
    ip -n "$(ns sw)" link add br0 type bridge
    ip -n "$(ns sw)" link set dev br0 up
    ip -n "$(ns sw)" addr add "$SW_IP/24" dev br0
    sysctl_ns sw net.ipv4.ip_forward=1
    # director
    add_link c eth0 d ext
    add_link d int sw dir
    ip -n "$(ns sw)" link set dev dir master br0
    ip -n "$(ns d)" addr add "$DIR_EXT_IP/24" dev ext
    ip -n "$(ns d)" addr add "$DIR_INT_IP/24" dev int
    sysctl_ns d net.ipv4.ip_forward=0
    # client
    ip -n "$(ns c)" addr add "$CLIENT_IP/24" dev eth0
    ip -n "$(ns c)" route add "$VIP/32" via "$DIR_EXT_IP"
    add_link c eth1 sw cl
    ip -n "$(ns c)" addr add "$CLIENT_IP2/24" dev eth1
    ip -n "$(ns sw)" addr add "$SW_CL_IP/24" dev cl
    ip -n "$(ns c)" route add "$RS_NET.0/24" via "$SW_CL_IP" src "$CLIENT_IP2"
    ip -n "$(ns sw)" route add "${CLIENT_IP%.*}.0/24" via "$CLIENT_IP2"
    sysctl_ns c net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
        net.ipv4.conf.eth1.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    for i in $(seq 1 "$nrs"); do add_real_server "r$i"; done
    # Real servers answer the direct (baseline) client through sw as well.
    for i in $(seq 1 "$nrs"); do
        ip -n "$(ns "r$i")" route add "${CLIENT_IP2%.*}.0/24" via "$SW_IP"
    done
}

mac_of() { ip -n "$(ns "$1")" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

# ---------------------------------------------------------------------------------------------
# Daemons

# Starts a background command inside namespace $1, logging to $RVS_WORK/$2.log; sets BG_PID.
start_bg() {
    local n="$1" name="$2"
    shift 2
    ip netns exec "$(ns "$n")" "$@" >"$RVS_WORK/$name.log" 2>&1 &
    BG_PID=$!
    RVS_PIDS+=("$BG_PID")
}

# Python servers on a real server: TCP "name then echo" and UDP echo (rvsnet.py serve).
# start_rs_servers r1 --tcp 8080 --udp 5353 ...
start_rs_servers() {
    local r="$1"
    shift
    start_bg "$r" "serve-$r" "$PY" -u "$RVSNET" serve --name "$r" "$@"
}

# nginx on a real server answering "rN\n" on the given ports (per-namespace config, pid and
# logs in $RVS_WORK); files put in $RVS_WORK/nginx-rN/files/ are served under /files/.
# start_nginx r1 8080 8081 ...
start_nginx() {
    local r="$1" conf="$RVS_WORK/nginx-$1.conf" p listens=""
    shift
    for p in "$@"; do listens+="        listen $p reuseport backlog=4096;"$'\n'; done
    mkdir -p "$RVS_WORK/nginx-$r/files"
    cat >"$conf" <<NGINX
worker_processes 1;
daemon off;
pid $RVS_WORK/nginx-$r/nginx.pid;
error_log $RVS_WORK/nginx-$r/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RVS_WORK/nginx-$r;
    keepalive_requests 1000000;
    server {
$listens
        location / { default_type text/plain; return 200 "$r\n"; }
        location /files/ { alias $RVS_WORK/nginx-$r/files/; }
    }
}
NGINX
    local nginx
    nginx="$(command -v nginx || echo /usr/sbin/nginx)"
    start_bg "$r" "nginx-$r" "$nginx" -e "$RVS_WORK/nginx-$r/error.log" -c "$conf"
}

# rvs-decap on a real server (TUN).
start_decap() {
    local r="$1"
    start_bg "$r" "decap-$r" "$RVS_DECAP" -i eth0
}

wait_port() { # wait_port NS tcp|udp PORT
    local i
    for i in $(seq 1 50); do
        if in_ns "$1" ss -Hln --"$2" "sport = :$3" | grep -q .; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on $2/$3 in $1"
}

# Starts rvsd in namespace $1 (default d) on the given interfaces (default ext int) with the
# control socket $RVS_WORK/$1.sock; waits until it answers. Sets RVSD_PID.
# RVS_IO=auto|xdp|afpacket passes --io (the suite can be run once per I/O backend).
start_rvsd() {
    local n="${1:-d}"
    shift || true
    local ifaces=("$@")
    [ "${#ifaces[@]}" -gt 0 ] || ifaces=(ext int)
    local args=() i
    for i in "${ifaces[@]}"; do args+=(-i "$i"); done
    [ -z "${RVS_IO:-}" ] || args+=(--io "$RVS_IO")
    local sock="$RVS_WORK/$n.sock"
    start_bg "$n" "rvsd-$n" "$RVSD" "${args[@]}" --socket "$sock" ${RVSD_ARGS:-}
    RVSD_PID=$BG_PID
    for i in $(seq 1 100); do
        if [ -S "$sock" ] && "$RVSADM" --socket "$sock" -L -n >/dev/null 2>&1; then return 0; fi
        kill -0 "$RVSD_PID" 2>/dev/null || die "rvsd in $n exited: $(tail -n 5 "$RVS_WORK/rvsd-$n.log")"
        sleep 0.1
    done
    die "rvsd in $n does not answer on $sock"
}

sock_of() { echo "$RVS_WORK/${1:-d}.sock"; }

# rvsadm against the director of namespace d (or $RVSADM_NS): adm -A -t ...
adm() {
    [ "$RVS_VERBOSE" = 1 ] && info "rvsadm $*"
    "$RVSADM" --socket "$(sock_of "${RVSADM_NS:-d}")" "$@"
}

# Evaluates a Python expression over the JSON document $1 (bound to d): jget "$out" 'd["ok"]'.
# Dicts print as sorted compact JSON, so they compare as strings.
jget() {
    "$PY" -c 'import json,sys
d = json.loads(sys.argv[1])
v = eval(sys.argv[2])
print(json.dumps(v, sort_keys=True, separators=(",", ":")) if isinstance(v, (dict, list)) else v)' "$1" "$2"
}

stats_json() { curl -fsS --max-time 5 --unix-socket "$(sock_of "${1:-d}")" http://rvsd/v1/stats; }

# ---------------------------------------------------------------------------------------------
# Assertions: each prints what it checked and exits the test on failure.

FAILS=0
fail() {
    printf '    \033[31mFAIL\033[0m %s\n' "$*"
    FAILS=$((FAILS + 1))
}
ok() { printf '    ok   %s\n' "$*"; }

assert_eq() { # assert_eq WHAT EXPECTED GOT (multi-line values: a diff on failure)
    if [[ "$2" == *$'\n'* || "$3" == *$'\n'* ]]; then
        if [ "$2" == "$3" ]; then
            ok "$1 ($(wc -l <<<"$3") identical lines)"
        else
            fail "$1 differs (- expected, + got):"
            diff -u <(echo "$2") <(echo "$3") | tail -n +3 | sed 's/^/         /' || true
        fi
    elif [ "$2" == "$3" ]; then ok "$1 = $3"; else fail "$1: expected '$2', got '$3'"; fi
}
assert_ge() { # assert_ge WHAT MIN GOT
    if [ "$3" -ge "$2" ] 2>/dev/null; then ok "$1 = $3 (>= $2)"; else fail "$1: expected >= $2, got '$3'"; fi
}
assert_gt() {
    if [ "$3" -gt "$2" ] 2>/dev/null; then ok "$1 = $3 (> $2)"; else fail "$1: expected > $2, got '$3'"; fi
}
assert_alive() { # assert_alive PID WHAT
    if kill -0 "$1" 2>/dev/null; then ok "$2 is running"; else fail "$2 died"; fi
}

# Ends a test: non-zero exit if any assertion failed.
finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "    $FAILS assertion(s) failed"
        exit 1
    fi
}

# Field N (1 = Conns .. 5 = OutBytes) of a service line or dest line of
# `rvsadm -L -n --stats --exact`. stat_of SVC_LABEL [DEST] FIELD, e.g.
# stat_of "TCP  10.200.0.100:80" "" 1 ; stat_of "TCP  10.200.0.100:80" 192.168.77.11:8080 2
stat_of() {
    local label="$1" dest="$2" field="$3"
    adm -L -n --stats --exact | awk -v svc="$label" -v dest="$dest" -v f="$field" '
        /^(TCP|UDP|SCTP|FWM) / { insvc = (substr($0, 1, length(svc)) == svc && substr($0, length(svc) + 1, 1) == " ");
                                 if (insvc && dest == "") { print $(2 + f); exit } next }
        insvc && $1 == "->" && $2 == dest { print $(2 + f); exit }'
}
