#!/usr/bin/env bash
# Runs the end-to-end tests of a running director (root; namespaces, veth, bridge) and prints
# PASS/FAIL per test; exits non-zero if any failed.
#
#   tests/e2e/run.sh              # all tests (builds rvsd, rvsadm, rvs-decap in release first)
#   tests/e2e/run.sh nat_tcp storm  # some tests (names without test_ and .sh)
#
# Environment: RVS_PROFILE=debug (build/use target/debug), RVS_BIN=DIR (prebuilt binaries, no
# build), RVS_TEST_TIMEOUT=SECONDS (per test, default 180), RVS_KEEP_WORK=1 (keep logs).
set -uo pipefail
cd "$(dirname "$0")" || exit 2
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 2; }

source ./lib.sh
set +e
rmdir "$RVS_WORK" # this process runs no topology itself
need_base_packages
build_rvs                 # once for all tests
export RVS_BIN RVS_NO_BUILD=1

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=()
    for f in test_*.sh; do tests+=("$(basename "${f#test_}" .sh)"); done
fi

timeout_s="${RVS_TEST_TIMEOUT:-180}"
pass=0 failed=()
for t in "${tests[@]}"; do
    f="test_$t.sh"
    [ -f "$f" ] || { echo "no such test: $t" >&2; failed+=("$t"); continue; }
    log="$(mktemp "/tmp/rvs-e2e-$t.XXXXXX.log")"
    start=$(date +%s%N)
    # A test owns its namespaces; timeout sends TERM, and the test's trap cleans up.
    timeout -k 20 "$timeout_s" bash "$f" >"$log" 2>&1
    rc=$?
    tenths=$((($(date +%s%N) - start) / 100000000))
    secs="$((tenths / 10)).$((tenths % 10))"
    if [ $rc -eq 0 ]; then
        printf 'PASS  %-14s (%ss)\n' "$t" "$secs"
        pass=$((pass + 1))
        rm -f "$log"
    else
        [ $rc -eq 124 ] && why="timed out after ${timeout_s}s" || why="exit $rc"
        printf 'FAIL  %-14s (%ss, %s; log %s)\n' "$t" "$secs" "$why" "$log"
        grep -E 'FAIL|FATAL' "$log" | grep -v '^--- ' | head -n 12 | sed 's/^/        /'
        failed+=("$t")
    fi
done
echo "$pass passed, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
