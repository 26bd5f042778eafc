#!/usr/bin/env bash
# Where the CPU time went in the profiles `BENCH_PERF=DIR lab/bench.sh` recorded: for each
# DIR/*.data, the share of samples per command (thread name) split into user and kernel
# space, and the hottest symbols of the director's work (rvsd's threads, softirq and
# ksoftirqd, which is where the kernel's NAT path runs). Build jobs sharing the machine
# (rustc, cc1, ld, cargo) are listed apart so they can be left out of the account.
#   lab/perf-summary.sh DIR [TOP]
set -eu
dir="${1:?usage: lab/perf-summary.sh DIR [TOP]}"
top="${2:-25}"
for f in "$dir"/*.data; do
    echo "== $(basename "$f" .data)"
    echo "-- samples by command and space (% of all samples)"
    perf report -g none -i "$f" --no-children --sort comm,dso --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ {printf "   %7s  %-22s %s\n", $1, $2, $3}' | head -n 20
    echo "-- hottest symbols outside build jobs (self %)"
    perf report -g none -i "$f" --no-children --sort comm,sym --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ && $2 !~ /^(rustc|cc1|ld|cargo|clang|lld|cc|as|rust-lld|build-script)/' |
        head -n "$top" | sed 's/^/   /'
done
