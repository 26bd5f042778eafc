#!/usr/bin/env bash
# `rvsadm -S -n` of a configured director, piped into `rvsadm -R` on an empty second director,
# reproduces the table: identical -S -n (and -L -n) output.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs

# Two directors, each in its own namespace with its own socket; the second one only needs an
# interface to serve.
add_ns d
add_ns d2
add_ns peer
add_link d ext peer e1
add_link d int peer i1
add_link d2 ext peer e2
ip -n "$(ns d)" addr add 198.51.100.1/24 dev ext
ip -n "$(ns d)" addr add 192.168.77.1/24 dev int
ip -n "$(ns d2)" addr add 198.51.100.9/24 dev ext
sysctl_ns d net.ipv4.ip_forward=0
sysctl_ns d2 net.ipv4.ip_forward=0
start_rvsd d ext int
start_rvsd d2 ext

V=10.200.0.100
adm -A -t $V:80 -s rr
adm -a -t $V:80 -r 192.168.77.11:8080 -m
adm -a -t $V:80 -r 192.168.77.12:8080 -m -w 3
adm -a -t $V:80 -r 192.168.77.13:8081 -m -w 0
adm -A -t $V:443 -s wlc -p 600
adm -a -t $V:443 -r 192.168.77.11 -g -w 2
adm -a -t $V:443 -r 192.168.77.12 -g
adm -A -t 10.200.0.101:8080 -s sh -b sh-port
adm -a -t 10.200.0.101:8080 -r 192.168.77.13 -i
adm -a -t 10.200.0.101:8080 -r 192.168.77.14 -i --tun-type gue --tun-port 6080 --tun-csum
adm -A -u $V:53 -s wrr -o
adm -a -u $V:53 -r 192.168.77.11:5353 -m -w 5
adm -a -u $V:53 -r 192.168.77.12:5353 -m -w 1
adm -A -t $V:25 -s lc -p 300 -M 255.255.255.0
adm -a -t $V:25 -r 192.168.77.13 -g
adm -A -f 7 -s mh -b mh-fallback
adm -a -f 7 -r 192.168.77.14:80 -m

saved="$(adm -S -n)"
echo "$saved" | sed 's/^/      /'
assert_eq "saved rules" 17 "$(grep -c . <<<"$saved")"
assert_eq "second director starts empty" "" "$(RVSADM_NS=d2 adm -S -n)"
if echo "$saved" | RVSADM_NS=d2 adm -R; then ok "rvsadm -R exit 0"; else fail "rvsadm -R failed"; fi
assert_eq "-S -n of the restored director" "$saved" "$(RVSADM_NS=d2 adm -S -n)"
assert_eq "-L -n of the restored director" "$(adm -L -n)" "$(RVSADM_NS=d2 adm -L -n)"
# And back: clearing and restoring the first director from its own save is idempotent.
adm -C
assert_eq "cleared" "" "$(adm -S -n)"
echo "$saved" | adm -R
assert_eq "-S -n after -C and -R" "$saved" "$(adm -S -n)"
finish
