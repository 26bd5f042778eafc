#!/usr/bin/env bash
# AF_XDP with two workers on two-queue veths (rvsd --io xdp --workers 2, RVS_QUEUES=2):
# worker i serves receive queue i of ext and int; flows spread over the queues by the
# senders' TX hash, and each connection lives in the table of the worker its client address
# hashes to, so a frame that arrives on the other worker's queue (a request, or a NAT reply
# arriving on int) is handed over (crates/xdp/src/handoff.rs). NAT TCP, DR TCP and NAT UDP
# from nine client addresses; asserts every connection works, both workers received and
# owned connections, frames were handed over and none dropped for it, and the connection
# table holds exactly the flows. Then, with the client's and the switch's TX queues pinned
# (XPS), every reply arrives at the worker that does not own requests: NAT replies cross
# workers and every connection still works. The workers run where --worker-cpus puts them
# (1,0: worker 0 on CPU 1), and a CPU the daemon may not use is refused before anything starts.
source "$(dirname "$0")/lib.sh"

export RVS_QUEUES=2 RVS_IO=xdp
RVSD_ARGS="--workers 2 --worker-cpus 1,0 ${RVSD_ARGS:-}"
NAT_PER_SRC=15
DR_PER_SRC=10
UDP=40
SRCS=()
for i in $(seq 10 17); do SRCS+=("198.51.100.$i"); done

install_cleanup
need_base_packages ethtool:ethtool
build_rvs
setup_topology 2
for dev in ext int; do
    assert_eq "d $dev has 2 receive queues" 2 "$(in_ns d ls /sys/class/net/$dev/queues | grep -c '^rx-')"
done
for s in "${SRCS[@]}"; do ip -n "$(ns c)" addr add "$s/24" dev eth0; done
for r in r1 r2; do start_rs_servers "$r" --tcp 8080 --udp 5353; done
for r in r1 r2; do wait_port "$r" tcp 8080; done
bad="$(in_ns d "$RVSD" -i ext --io xdp --socket "$RVS_WORK/bad.sock" --worker-cpus 1000 2>&1)" && fail "rvsd started on CPU 1000"
assert_eq "a CPU it may not use is refused, named" 1 "$(grep -c -- '--worker-cpus: CPU 1000 is not one this process may run on' <<<"$bad")"
start_rvsd d
# Worker i's thread is pinned where --worker-cpus says (threads rvsd-xdp0, rvsd-xdp1).
cpus_of() { grep -l "^Name:.rvsd-xdp$1\$" /proc/"$RVSD_PID"/task/*/status | xargs grep '^Cpus_allowed_list' | awk '{print $2}'; }
assert_eq "worker 0 runs on CPU 1 (--worker-cpus 1,0)" 1 "$(cpus_of 0)"
assert_eq "worker 1 runs on CPU 0" 0 "$(cpus_of 1)"

st="$(adm status)"
echo "$st" | sed 's/^/      /'
assert_eq "rvsadm status: workers" "Workers: 2" "$(grep '^Workers:' <<<"$st")"
assert_eq "worker 0 serves queue 0 of each interface" "ext:0 int:0" "$(awk '$1 == "0" && NF >= 8 { print $8, $9 }' <<<"$st")"
assert_eq "worker 1 serves queue 1 of each interface" "ext:1 int:1" "$(awk '$1 == "1" && NF >= 8 { print $8, $9 }' <<<"$st")"

adm -A -t "$VIP:80" -s rr
adm -A -t "$VIP:8080" -s rr
adm -A -u "$VIP:53" -s rr
for r in r1 r2; do
    adm -a -t "$VIP:80" -r "$(rs_ip $r):8080" -m
    adm -a -t "$VIP:8080" -r "$(rs_ip $r):8080" -g
    adm -a -u "$VIP:53" -r "$(rs_ip $r):5353" -m
done
# The real servers' MACs, so that no first packet waits on a neighbour (not under test here).
for r in r1 r2; do in_ns "$r" ping -c1 -W1 "$DIR_INT_IP" >/dev/null || true; done

handed() { jget "$(stats_json)" "sum(w['$1'] for w in d['per_worker'])"; }

# tcp_from_all TAG PORT PER BYTES: PER connections from every client address in parallel (many
# source ports each), BYTES echoed on each; prints how many came back intact.
tcp_from_all() {
    local tag="$1" port="$2" per="$3" bytes="$4" s p n ok=0 pids=()
    for s in "${SRCS[@]}"; do
        in_ns c "$PY" "$RVSNET" tcp-check "$VIP" "$port" --src "$s" --conns "$per" --bytes "$bytes" \
            >"$RVS_WORK/$tag-$s.json" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    for s in "${SRCS[@]}"; do
        n="$(jget "$(cat "$RVS_WORK/$tag-$s.json")" 'd["ok"]' 2>/dev/null || echo 0)"
        [ "$n" = "$per" ] || info "$tag from $s: $(head -c 400 "$RVS_WORK/$tag-$s.json")" >&2
        ok=$((ok + n))
    done
    echo "$ok"
}

# NAT TCP.
nat_total=$((NAT_PER_SRC * ${#SRCS[@]}))
assert_eq "NAT TCP connections with 32 KiB echoed intact" "$nat_total" "$(tcp_from_all nat 80 "$NAT_PER_SRC" 32768)"
assert_gt "frames handed between workers during NAT (requests and replies)" 0 "$(handed handed_out)"

# DR TCP.
dr_total=$((DR_PER_SRC * ${#SRCS[@]}))
assert_eq "DR TCP connections echoed intact" "$dr_total" "$(tcp_from_all dr 8080 "$DR_PER_SRC" 8192)"

# NAT UDP: one socket (source port) per datagram, from the client's first address.
out="$(in_ns c "$PY" "$RVSNET" udp-check "$VIP" 53 --count "$UDP" --bytes 256 --tries 2)" || true
[ -n "$out" ] || out='{"ok":0,"errors":["no report"]}'
assert_eq "UDP datagrams echoed through NAT" "$UDP" "$(jget "$out" 'd["ok"]')"

# NAT replies crossing workers, made certain: the client sends on TX queue 0 only and the
# switch on TX queue 1 only (XPS: every CPU mapped to that one queue; veth delivers TX queue q
# to the peer's RX queue q), so every request reaches worker 0 (ext:0) and every reply worker
# 1 (int:1). The replies of the clients worker 0 owns must cross from worker 1 to worker 0,
# and the requests of the clients worker 1 owns the other way.
all_cpus="$(printf '%x' $(((1 << $(nproc)) - 1)))"
pin_tx() { # pin_tx NS DEV QUEUE
    local q m
    for q in 0 1; do
        if [ "$q" = "$3" ]; then m="$all_cpus"; else m=0; fi
        in_ns "$1" sh -c "echo $m > /sys/class/net/$2/queues/tx-$q/xps_cpus"
    done
}
pin_tx c eth0 0
pin_tx sw dir 1
redirected() { in_ns d ethtool -S "$1" | awk -v k="rx_queue_$2_xdp_redirect:" '$1 == k { print $2 }'; }
before="$(stats_json)"
ext1="$(redirected ext 1)" int0="$(redirected int 0)"
PINNED_PER_SRC=5
pids=()
for s in "${SRCS[@]}"; do
    in_ns c "$PY" "$RVSNET" tcp-check "$VIP" 80 --src "$s" --conns "$PINNED_PER_SRC" --bytes 8192 \
        >"$RVS_WORK/pinned-$s.json" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
pinned_ok=0
for s in "${SRCS[@]}"; do
    n="$(jget "$(cat "$RVS_WORK/pinned-$s.json")" 'd["ok"]' 2>/dev/null || echo 0)"
    [ "$n" = "$PINNED_PER_SRC" ] || info "pinned nat from $s: $(head -c 400 "$RVS_WORK/pinned-$s.json")"
    pinned_ok=$((pinned_ok + n))
done
pinned_total=$((PINNED_PER_SRC * ${#SRCS[@]}))
after="$(stats_json)"
delta() { echo $(($(jget "$after" "d['per_worker'][$1]['$2']") - $(jget "$before" "d['per_worker'][$1]['$2']"))); }
assert_eq "pinned: nothing steered to ext queue 1" 0 $(($(redirected ext 1) - ext1))
assert_eq "pinned: nothing steered to int queue 0" 0 $(($(redirected int 0) - int0))
assert_eq "pinned: NAT TCP connections echoed intact" "$pinned_total" "$pinned_ok"
assert_gt "pinned: NAT replies handed from worker 1 (int:1) to worker 0, and arrived" 0 "$(delta 1 handed_out)"
assert_gt "pinned: requests handed from worker 0 (ext:0) to worker 1" 0 "$(delta 0 handed_out)"
assert_eq "pinned: worker 0 took every frame worker 1 handed it" "$(delta 1 handed_out)" "$(delta 0 handed_in)"
nat_total=$((nat_total + pinned_total))

js="$(stats_json)"
jget "$js" 'd["per_worker"]' | sed 's/^/      /'
assert_eq "per-worker entries" 2 "$(jget "$js" 'len(d["per_worker"])')"
for w in 0 1; do
    assert_gt "worker $w ran frames" 0 "$(jget "$js" "d['per_worker'][$w]['rx']")"
    assert_gt "worker $w owns connections" 0 "$(jget "$js" "d['per_worker'][$w]['conns']")"
done
out_n="$(jget "$js" "sum(w['handed_out'] for w in d['per_worker'])")"
in_n="$(jget "$js" "sum(w['handed_in'] for w in d['per_worker'])")"
assert_gt "frames handed between workers" 0 "$out_n"
assert_eq "every frame handed over was taken by its owner" "$out_n" "$in_n"
assert_eq "handoff_full drops" 0 "$(jget "$js" 'd["drops"]["handoff_full"]')"
assert_eq "rx_ring_full drops" 0 "$(jget "$js" 'd["drops"]["rx_ring_full"]')"

# One connection entry per flow, each in exactly one worker's table.
flows=$((nat_total + dr_total + UDP))
assert_eq "connection entries (-L -n -c) = flows" "$flows" "$(adm -L -n -c | grep -c " $VIP:")"
assert_eq "connection-table entries summed over workers = flows" "$flows" "$(jget "$js" 'd["conns_total"]')"
assert_eq "NAT TCP service Conns" "$nat_total" "$(stat_of "TCP  $VIP:80" "" 1)"
assert_eq "DR TCP service Conns" "$dr_total" "$(stat_of "TCP  $VIP:8080" "" 1)"
assert_eq "UDP service Conns" "$UDP" "$(stat_of "UDP  $VIP:53" "" 1)"
assert_alive "$RVSD_PID" rvsd
finish
