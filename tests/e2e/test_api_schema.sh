#!/usr/bin/env bash
# The API is exactly as strict as docs/api/openapi.json: schemathesis (PyPI) generates requests
# from the description (valid and invalid bodies, query parameters, methods) against a live rvsd
# on its TCP listener (token from RVS_API_TOKEN) and checks every answer's status, content type
# and body against the description. Bounded to about 60 s.
source "$(dirname "$0")/lib.sh"
install_cleanup
need_base_packages
build_rvs
if ! command -v schemathesis >/dev/null 2>&1; then
    say "installing schemathesis (PyPI)"
    "$PY" -m pip install -q schemathesis >/dev/null 2>&1 || die "cannot install schemathesis"
fi
SPEC="$(cd "$(dirname "$0")/../.." && pwd)/docs/api/openapi.json"
ST_CONFIG="$(cd "$(dirname "$0")" && pwd)/schemathesis.toml"

add_ns d
add_ns peer
add_link d ext peer e1
ip -n "$(ns d)" addr add 198.51.100.1/24 dev ext
ip -n "$(ns d)" link set lo up
sysctl_ns d net.ipv4.ip_forward=0
# A configuration file, so that reloads have something to load.
cat >"$RVS_WORK/rvs.toml" <<'TOML'
[[services]]
protocol = "tcp"
address = "10.200.0.100:80"
scheduler = "rr"
  [[services.real_servers]]
  address = "192.168.77.11:8080"
  method = "nat"
TOML
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export RVS_API_TOKEN="$TOKEN"
RVSD_ARGS="--config $RVS_WORK/rvs.toml --api-listen 127.0.0.1:7000" start_rvsd d ext
unset RVS_API_TOKEN
wait_port d tcp 7000

say "schemathesis against http://127.0.0.1:7000 (60 s at most)"
out="$RVS_WORK/schemathesis.txt"
set +e
# schemathesis keeps its state in the working directory: the test's own.
(cd "$RVS_WORK" && timeout 90 ip netns exec "$(ns d)" schemathesis --config-file "$ST_CONFIG" run "$SPEC" --url http://127.0.0.1:7000 \
    -H "Authorization: Bearer $TOKEN" --checks all --max-examples ${RVS_SCHEMA_EXAMPLES:-30} --request-timeout 5 \
    --max-response-time 5 >"$out" 2>&1)
rc=$?
set -e
cat "$out" | tail -n 200
kill -0 "$RVSD_PID" 2>/dev/null || fail "rvsd died under the fuzzer"
if [ "$rc" = 0 ]; then
    ok "schemathesis: the server answers as docs/api/openapi.json says"
else
    fail "schemathesis found mismatches between the server and docs/api/openapi.json (exit $rc)"
fi
finish
