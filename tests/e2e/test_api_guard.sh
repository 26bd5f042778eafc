#!/usr/bin/env bash
# The control API under a local attacker (an unprivileged user, nobody): the TCP listener's
# token is nowhere it can read (not on rvsd's command line, not in its environment), it cannot
# change the table (socket 0600, TCP without the token: 401), and 200 or 1000 connections it
# holds open with half a request head stop neither root's `rvsadm -L -n` on the socket nor
# `rvsadm --api-addr` with the token (each answers in under a second). Also: rvsd refuses
# --api-token on its command line and a token file others can read.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) is needed"

add_ns d
add_ns peer
add_link d ext peer e1
ip -n "$(ns d)" addr add 198.51.100.1/24 dev ext
ip -n "$(ns d)" link set lo up
sysctl_ns d net.ipv4.ip_forward=0
PORT=7001
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077 && printf '%s\n' "$TOKEN" >"$RVS_WORK/token")

say "rvsd refuses a token on its command line, and a token file open to others"
rc=0
out="$("$RVSD" -i ext --api-listen 127.0.0.1:$PORT --api-token "$TOKEN" 2>&1)" || rc=$?
assert_eq "rvsd --api-token exit status" 2 "$rc"
case "$out" in *--api-token-file*RVS_API_TOKEN*) ok "the message names both ways" ;; *) fail "message: $out" ;; esac
cp "$RVS_WORK/token" "$RVS_WORK/open-token" && chmod 644 "$RVS_WORK/open-token"
rc=0
out="$("$RVSD" -i ext --api-listen 127.0.0.1:$PORT --api-token-file "$RVS_WORK/open-token" 2>&1)" || rc=$?
assert_eq "rvsd with a 0644 token file: exit status" 1 "$rc"
case "$out" in *"group or others"*) ok "refused: $out" ;; *) fail "message: $out" ;; esac
rc=0
out="$(env -u RVS_API_TOKEN "$RVSD" -i ext --api-listen 127.0.0.1:$PORT 2>&1)" || rc=$?
assert_eq "rvsd --api-listen without a token: exit status" 1 "$rc"
case "$out" in *"needs a bearer token"*) ok "refused: $out" ;; *) fail "message: $out" ;; esac

RVSD_ARGS="--api-listen 127.0.0.1:$PORT --api-token-file $RVS_WORK/token" start_rvsd d ext
wait_port d tcp $PORT
adm -A -t 10.200.0.100:80 -s rr
adm -a -t 10.200.0.100:80 -r 192.168.77.11:8080 -m
table="$(adm -S -n)"

# The system's python (nobody cannot run one under root's home).
NOBODY_PY=/usr/bin/python3
[ -x "$NOBODY_PY" ] || NOBODY_PY="$(command -v python3)"
# Runs a command as nobody inside the director's namespace.
as_nobody() { ip netns exec "$(ns d)" setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
tcp_adm() { ip netns exec "$(ns d)" env RVS_API_TOKEN="$TOKEN" "$RVSADM" --api-addr 127.0.0.1:$PORT "$@"; }

say "nobody cannot learn the token"
if tr '\0' ' ' </proc/"$RVSD_PID"/cmdline | grep -q "$TOKEN"; then fail "the token is on rvsd's command line"; else ok "not on the command line"; fi
if as_nobody cat /proc/"$RVSD_PID"/cmdline >/dev/null 2>&1; then ok "nobody reads rvsd's command line (and the token is not there)"; fi
if as_nobody cat /proc/"$RVSD_PID"/environ >/dev/null 2>&1; then fail "nobody reads rvsd's environment"; else ok "nobody cannot read rvsd's environment"; fi
if as_nobody cat "$RVS_WORK/token" >/dev/null 2>&1; then fail "nobody reads the token file"; else ok "nobody cannot read the token file"; fi

say "nobody cannot change the table"
if as_nobody "$RVSADM" --socket "$(sock_of d)" -C >/dev/null 2>&1; then
    fail "nobody cleared the table over the socket"
else
    ok "nobody cannot use the socket"
fi
out="$(as_nobody env RVS_API_TOKEN=guess "$RVSADM" --api-addr 127.0.0.1:$PORT -C 2>&1)" || true
case "$out" in *"server refused the request: 401 Unauthorized"*) ok "a wrong token: $out" ;; *) fail "wrong token: $out" ;; esac
st="$(as_nobody curl -s -o /dev/null -w '%{http_code}' -X POST --data '"Clear"' http://127.0.0.1:$PORT/v1/command)"
assert_eq "POST Clear without a token" 401 "$st"
assert_eq "the table" "$table" "$(adm -S -n)"

# Milliseconds a command takes; its output in $RVS_WORK/ran.
timed() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$RVS_WORK/ran" 2>&1 || true
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

for n in 200 1000; do
    say "$n connections held by nobody with half a request head"
    as_nobody "$NOBODY_PY" -c "
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
held = []
for i in range($n):
    s = socket.create_connection(('127.0.0.1', $PORT))
    try:
        s.send(b'GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n')
    except OSError:
        pass
    held.append(s)
print('held', flush=True)
time.sleep(60)
" >"$RVS_WORK/holder-$n.log" 2>&1 &
    holder=$!
    RVS_PIDS+=("$holder")
    for _ in $(seq 1 100); do grep -q held "$RVS_WORK/holder-$n.log" && break; sleep 0.1; done
    grep -q held "$RVS_WORK/holder-$n.log" || fail "the holder did not open its $n connections"
    for k in 1 2 3; do
        ms="$(timed adm -L -n)"
        if [ "$ms" -lt 1000 ] && grep -q "10.200.0.100:80" "$RVS_WORK/ran"; then
            ok "root's rvsadm -L -n on the socket: ${ms} ms"
        else
            fail "root's rvsadm -L -n on the socket: ${ms} ms: $(cat "$RVS_WORK/ran")"
        fi
        ms="$(timed tcp_adm -L -n)"
        if [ "$ms" -lt 1000 ] && grep -q "10.200.0.100:80" "$RVS_WORK/ran"; then
            ok "rvsadm --api-addr with the token: ${ms} ms"
        else
            fail "rvsadm --api-addr with the token: ${ms} ms: $(cat "$RVS_WORK/ran")"
        fi
    done
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
done
assert_alive "$RVSD_PID" rvsd
assert_eq "the table at the end" "$table" "$(adm -S -n)"
finish
