#!/usr/bin/env bash
# The project's test command (README): formatting, lints, unit and namespace tests, and the
# end-to-end suite on a lab topology. Tests that need root skip themselves when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== fmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== unit, golden fixtures and namespace tests"
cargo test --workspace --locked
RVS_FUZZ_SECS=20 cargo test --locked -p rvs-fuzz-targets --test bounded -- --nocapture # fuzz/README.md: every target, seeds + 20 s of mutations
echo "== engine benchmark builds and runs (small table; numbers are in BENCHMARKS.md)"
RVS_BENCH_CONNS=20000 RVS_BENCH_RUNS=1 cargo bench --locked --bench engine
if [ "$(id -u)" = 0 ] && [ -x tests/e2e/run.sh ]; then
    echo "== end-to-end (namespaces, real traffic)"
    cargo build --release --locked -p rvsd -p rvsadm -p rvs-decap
    # The whole suite on rvsd's default I/O (--io auto: XDP steering + AF_XDP where it attaches,
    # as it does on CI's veth), then the forwarding, isolation and restart tests again on the
    # AF_PACKET fallback, so both backends are checked on every run.
    tests/e2e/run.sh
    echo "== end-to-end again on the AF_PACKET backend"
    RVS_IO=afpacket tests/e2e/run.sh nat_tcp nat_udp dr_tcp dr_udp tun_tcp tun_udp topology storm \
        stray_rst hot_restart sync vrrp_failover syn_proxy
    echo "== hot restart with two AF_XDP workers (2-queue veths, --workers 2)"
    RVS_QUEUES=2 tests/e2e/run.sh hot_restart
else
    echo "== end-to-end skipped (needs root and tests/e2e/run.sh)"
fi
