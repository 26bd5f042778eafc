#!/usr/bin/env bash
# tun (tcp) through rvsd: bytes intact, replies from the VIP, rr 10/10/10, exact counters.
source "$(dirname "$0")/forward.sh"
forward_test tunnel tcp
