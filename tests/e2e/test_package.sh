#!/usr/bin/env bash
# The Debian package (scripts/build-deb.sh), made from the binaries under test:
# - dpkg installs it into a scratch root (maintainer scripts run chroot-free, DPKG_ROOT): the
#   ipvsadm alternative points to rvsadm; removal drops it and keeps the conffiles;
# - systemd-analyze verify accepts the unit without a warning;
# - every man page renders with `man --warnings -l` silently and names every option of --help;
# - bash completes every option of --help;
# - rvsd started by the unit's ExecStart line (in a namespace with the default config's eth0)
#   sends READY=1 to a notify socket this test owns (systemd's stand-in) only once its API
#   answers, then WATCHDOG=1 pings; the ExecReload signal gives RELOADING=1 and READY=1 again,
#   SIGTERM gives STOPPING=1 and exit 0.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages help2man:help2man man:man-db systemd-analyze:systemd dpkg-deb:dpkg
build_rvs

say "package"
deb="$("$REPO_ROOT/scripts/build-deb.sh" --bin-dir "$RVS_BIN" --out "$RVS_WORK/deb" | tail -n1)"
[ -f "$deb" ] || die "build-deb.sh made no package"
ok "built $(basename "$deb") ($(($(stat -c %s "$deb") / 1024)) KiB)"

R="$RVS_WORK/root"
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/alternatives" "$R/etc/alternatives"
touch "$R/var/lib/dpkg/status"
# --path-include: a minimised image's dpkg.cfg.d may exclude /usr/share/{man,doc}.
dpkg_r() { dpkg --root="$R" --log=/dev/null --force-script-chrootless --force-depends --path-include='/usr/share/*' "$@"; }
dpkg_r -i "$deb" >"$RVS_WORK/dpkg-install.log" 2>&1 || die "dpkg -i failed: $(tail -n 5 "$RVS_WORK/dpkg-install.log")"
for f in usr/sbin/rvsd usr/sbin/rvsadm usr/sbin/rvs-decap lib/systemd/system/rvsd.service etc/rvs/rvsd.toml \
    etc/default/rvsd usr/share/bash-completion/completions/rvsd; do
    [ -e "$R/$f" ] || fail "not installed: /$f"
done
assert_eq "ipvsadm alternative" /usr/sbin/rvsadm "$(readlink "$R/etc/alternatives/ipvsadm")"
assert_eq "/usr/sbin/ipvsadm" /etc/alternatives/ipvsadm "$(readlink "$R/usr/sbin/ipvsadm")"
assert_eq conffiles "/etc/rvs/rvsd.toml /etc/default/rvsd" "$(dpkg-deb -I "$deb" conffiles | xargs)"

say "unit"
unit="$R/lib/systemd/system/rvsd.service"
# Verified where it is installed: its paths point into the scratch root, man finds its pages.
sed "s#/usr/sbin/#$R/usr/sbin/#g; s#/etc/rvs/#$R/etc/rvs/#g; s#/etc/default/#$R/etc/default/#g" "$unit" \
    >"$RVS_WORK/rvsd.service"
if out="$(MANPATH="$R/usr/share/man" systemd-analyze verify "$RVS_WORK/rvsd.service" 2>&1)" && [ -z "$out" ]; then
    ok "systemd-analyze verify: no complaint"
else
    fail "systemd-analyze verify: $out"
fi
for k in Type=notify WatchdogSec= ExecReload= NoNewPrivileges=yes ProtectSystem=strict CapabilityBoundingSet=; do
    grep -q "^$k" "$unit" && ok "unit has $k" || fail "unit lacks $k"
done

say "man pages and completions"
for b in rvsd rvsadm rvs-decap; do
    page="$R/usr/share/man/man8/$b.8.gz"
    warn="$(MANWIDTH=100 man --warnings -l "$page" 2>&1 >"$RVS_WORK/$b.man")"
    [ -z "$warn" ] && ok "$b(8) renders without warnings" || fail "$b(8): $warn"
    # Long options as --help lists them (a different reading from the generator's).
    mapfile -t opts < <("$R/usr/sbin/$b" --help 2>&1 | grep -oP '(?<![\w-])--[a-z][a-z0-9-]+' | sort -u)
    [ "${#opts[@]}" -ge 5 ] || fail "$b --help: only ${#opts[@]} options found"
    missing_man=() missing_comp=()
    for o in "${opts[@]}"; do
        grep -q -- "$o" "$RVS_WORK/$b.man" || missing_man+=("$o")
        got="$(bash -c 'source "$1"; COMP_WORDS=("$2" "$3"); COMP_CWORD=1; "$(complete -p "$2" | awk "{print \$3}")";
            printf "%s\n" "${COMPREPLY[@]}"' _ "$R/usr/share/bash-completion/completions/$b" "$b" "$o")"
        grep -qx -- "$o" <<<"$got" || missing_comp+=("$o")
    done
    assert_eq "$b(8): options of --help missing" "" "${missing_man[*]}"
    assert_eq "$b completion: options of --help not completed" "" "${missing_comp[*]}"
done

say "rvsd by the unit's ExecStart, systemd's notify socket stood in for"
add_ns d
ip -n "$(ns d)" link add eth0 type veth peer name peer0
ip -n "$(ns d)" link set eth0 up
ip -n "$(ns d)" link set peer0 up
# The operator's edit of the shipped configuration: one service (the VIP is inside this test's
# namespace only; no traffic is sent).
cat >>"$R/etc/rvs/rvsd.toml" <<'TOML'

[[services]]
protocol = "tcp"
address = "10.0.0.100:80"
  [[services.real_servers]]
  address = "192.168.1.11:80"
  method = "nat"
TOML
# shellcheck disable=SC1090,SC1091
. "$R/etc/default/rvsd"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
exec_reload="$(sed -n 's/^ExecReload=//p' "$unit")"
exec_start="${exec_start//\$RVSD_OPTIONS/${RVSD_OPTIONS:-}}"
read -ra cmd <<<"$(sed "s#/usr/sbin/#$R/usr/sbin/#g; s#/etc/rvs/#$R/etc/rvs/#g" <<<"$exec_start")"
info "ExecStart: ${cmd[*]}"
notify="$RVS_WORK/notify.sock" api="$RVS_WORK/rvsd.sock" events="$RVS_WORK/notify.events"
# The stand-in: one line per message line; at each READY=1 it asks the API for the table and
# notes which VIP:ports it holds (the configuration must be active by then).
"$PY" -u - "$notify" "$api" >"$events" 2>"$RVS_WORK/notify.err" <<'PY' &
import json, socket, sys, time
def table():
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(3)
        c.connect(sys.argv[2])
        c.sendall(b"GET /v1/snapshot HTTP/1.0\r\nHost: rvsd\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        def port(o):  # the service key's port, wherever the key's encoding puts it
            if isinstance(o, dict):
                if "port" in o:
                    return o["port"]
                return next((p for v in o.values() if (p := port(v)) is not None), None)
            return None
        return ",".join(sorted(str(port(s["spec"])) for s in body["services"])) or "empty"
    except Exception as e:
        return "error:" + type(e).__name__
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.monotonic() + 60
while time.monotonic() < end:
    try:
        msg = s.recv(4096).decode()
    except socket.timeout:
        continue
    for line in msg.split("\n"):
        print(line + (" ports=" + table() if line == "READY=1" else ""))
PY
RVS_PIDS+=("$!")
for _ in $(seq 1 50); do [ -S "$notify" ] && break; sleep 0.1; done
start_bg d rvsd env NOTIFY_SOCKET="$notify" WATCHDOG_USEC=1000000 RVS_SOCKET="$api" "${cmd[@]}"
rvsd_pid=$BG_PID
wait_event() { # wait_event PATTERN COUNT: COUNT lines of $events match PATTERN (10 s)
    for _ in $(seq 1 100); do
        [ "$(grep -c -- "$1" "$events")" -ge "$2" ] && return 0
        kill -0 "$rvsd_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
wait_event '^READY=1' 1 && ok "READY=1 received" || fail "no READY=1: $(tail -n 3 "$RVS_WORK/rvsd.log")"
assert_eq "table served when READY=1 came" "READY=1 ports=80" "$(grep -m1 '^READY=1' "$events")"
"$R/usr/sbin/rvsadm" --socket "$api" -L -n >/dev/null && ok "rvsadm -L -n answers" || fail "rvsadm -L -n"
wait_event '^WATCHDOG=1' 3 && ok "WATCHDOG=1 pings follow ($(grep -c '^WATCHDOG=1' "$events"))" ||
    fail "WATCHDOG=1 pings: $(grep -c '^WATCHDOG=1' "$events")"
sed -i 's/^address = "10.0.0.100:80"/address = "10.0.0.100:8080"/' "$R/etc/rvs/rvsd.toml"
reload="${exec_reload//\$MAINPID/$rvsd_pid}"
info "ExecReload: $reload"
$reload
wait_event '^RELOADING=1' 1 && wait_event '^READY=1' 2 && ok "reload: RELOADING=1 then READY=1" ||
    fail "reload notifications: $(grep -v WATCHDOG "$events" | xargs)"
grep -q 'configuration reloaded' "$events" && ok "reload status: configuration reloaded" || fail "reload status"
assert_eq "table served at the second READY=1" "READY=1 ports=8080" "$(grep '^READY=1' "$events" | sed -n 2p)"
kill -TERM "$rvsd_pid"
rc=0
wait "$rvsd_pid" || rc=$?
assert_eq "rvsd exit status on SIGTERM" 0 "$rc"
grep -q '^STOPPING=1' "$events" && ok "STOPPING=1 received" || fail "no STOPPING=1"

say "removal"
dpkg_r -r rvs >"$RVS_WORK/dpkg-remove.log" 2>&1 || die "dpkg -r failed: $(tail -n 5 "$RVS_WORK/dpkg-remove.log")"
[ ! -e "$R/etc/alternatives/ipvsadm" ] && [ ! -e "$R/usr/sbin/ipvsadm" ] && ok "ipvsadm alternative removed" ||
    fail "ipvsadm alternative left behind"
[ ! -e "$R/usr/sbin/rvsd" ] && [ -f "$R/etc/rvs/rvsd.toml" ] && ok "binaries gone, conffiles kept" ||
    fail "remove: binaries or conffiles wrong"
dpkg_r --purge rvs >/dev/null 2>&1 || die "dpkg --purge failed"
[ ! -e "$R/etc/rvs/rvsd.toml" ] && ok "purge removes the conffiles" || fail "purge kept /etc/rvs/rvsd.toml"
finish
