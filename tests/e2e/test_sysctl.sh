#!/usr/bin/env bash
# rvsadm --sysctl against a live rvsd: the listing as sysctl prints it (sorted), NAME=VALUE
# round trip (with and without the net.ipv4.vs. prefix, several at once), refusals (unknown
# name, out of range, not a number: clear message naming it, non-zero exit, nothing changed),
# the native configuration's [sysctl] table and a reload that keeps what the file does not name.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
add_ns d
ip -n "$(ns d)" link add ext type veth peer name ext-peer
ip -n "$(ns d)" link set dev ext up
ip -n "$(ns d)" link set dev ext-peer up
cfg="$RVS_WORK/rvs.toml"
printf '[sysctl]\ndrop_entry = 1\n"net.ipv4.vs.amemthresh" = 300\n' >"$cfg"
RVSD_ARGS="--config $cfg --workers 1" start_rvsd d ext

say "listing"
list="$(adm --sysctl)"
echo "$list" | sed 's/^/      /'
assert_eq "listed like sysctl, sorted by name" "$(echo "$list" | LC_ALL=C sort)" "$list"
assert_eq "every line is net.ipv4.vs.NAME = VALUE" 0 "$(echo "$list" | grep -cvE '^net\.ipv4\.vs\.[a-z_]+ = [0-9]+([[:space:]][0-9]+)?$' || true)"
for name in am_droprate amemthresh conn_reuse_mode drop_entry drop_packet expire_nodest_conn \
    expire_quiescent_template secure_tcp sloppy_tcp stray_rst; do
    echo "$list" | grep -q "^net.ipv4.vs.$name = " || fail "net.ipv4.vs.$name is not listed"
done
get() { adm --sysctl | sed -n "s/^net\.ipv4\.vs\.$1 = //p"; }
assert_eq "drop_entry from the configuration file" 1 "$(get drop_entry)"
assert_eq "amemthresh from the configuration file" 300 "$(get amemthresh)"
assert_eq "conn_reuse_mode default" 1 "$(get conn_reuse_mode)"

say "setting"
out="$(adm --sysctl net.ipv4.vs.secure_tcp=3 drop_packet=1 sloppy_tcp=1)"
assert_eq "set echoes what it set" "net.ipv4.vs.secure_tcp = 3
net.ipv4.vs.drop_packet = 1
net.ipv4.vs.sloppy_tcp = 1" "$out"
assert_eq "secure_tcp after set" 3 "$(get secure_tcp)"
before="$(adm --sysctl)"
refuse() { # refuse WHAT EXPECTED_IN_MESSAGE ARGS...
    local what="$1" want="$2" rc=0 msg
    shift 2
    msg="$(adm --sysctl "$@" 2>&1 >/dev/null)" || rc=$?
    if [ "$rc" -ne 0 ] && [[ "$msg" == *"$want"* ]]; then ok "$what refused: $msg"; else fail "$what: rc=$rc msg=$msg"; fi
}
refuse "an unknown name" '"no_such_setting"' drop_entry=0 no_such_setting=1
refuse "a value out of range" "net.ipv4.vs.drop_packet: 4 is out of range 0..3" drop_entry=0 drop_packet=4
refuse "a negative value" "out of range" drop_entry=0 amemthresh=-5
refuse "not a number" "not a number" drop_entry=0 am_droprate=ten
refuse "no value" "NAME=VALUE" drop_entry
assert_eq "nothing changed by the refused sets" "$before" "$(adm --sysctl)"
# The API: PUT is all or nothing too, and the answer is the listing.
code="$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$(sock_of d)" -X PUT \
    -d '[{"name":"drop_entry","value":"0"},{"name":"bogus","value":"1"}]' http://rvsd/v1/sysctl)"
assert_eq "API PUT with an unknown name (422: understood, refused)" 422 "$code"
assert_eq "nothing changed by the refused PUT" "$before" "$(adm --sysctl)"

say "reload keeps what the file does not name"
printf '[sysctl]\nexpire_nodest_conn = 1\n' >"$cfg"
curl -fsS --unix-socket "$(sock_of d)" -X POST http://rvsd/v1/reload >/dev/null
assert_eq "expire_nodest_conn from the new file" 1 "$(get expire_nodest_conn)"
assert_eq "drop_entry kept (file no longer names it)" 1 "$(get drop_entry)"
assert_eq "secure_tcp kept (set at run time)" 3 "$(get secure_tcp)"
printf '[sysctl]\nexpire_nodest_conn = 0\nsecure_tcp = 9\n' >"$cfg"
if curl -fsS --unix-socket "$(sock_of d)" -X POST http://rvsd/v1/reload >/dev/null 2>&1; then
    fail "a file with secure_tcp = 9 was accepted"
else
    ok "a file with secure_tcp = 9 is refused"
fi
assert_eq "expire_nodest_conn unchanged by the refused file" 1 "$(get expire_nodest_conn)"
finish
