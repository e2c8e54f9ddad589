#!/usr/bin/env bash
# Hub load benchmark: POST /v1/channels/messages/receive from wrk (a second process) over 64
# connections on 127.0.0.1, every 200 a durable commit. Then checks that the database holds
# exactly as many messages as were acknowledged, and reports the hub's resident memory.
#
# Usage: bench/hub_receive.sh [BIN] [DURATION]   (defaults: target/release/pdchannels, 30s)
# Needs wrk (Debian package `wrk`; installed if missing and we are root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
duration="${2:-30s}"
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }

tmp="$(mktemp -d)"
"$bin" --db "$tmp/hub.db" serve --listen 127.0.0.1:0 2> "$tmp/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q "pdchannels hub on" "$tmp/serve.log" && break; sleep 0.05; done
token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/serve.log" | head -1)"
addr="$(grep -o 'pdchannels hub on http://[0-9.:]*' "$tmp/serve.log" | sed 's/.*http:\/\///')"
echo "hub $addr, pid $pid, idle RSS $(awk '/VmRSS/{print $2/1024 " MB"}' /proc/$pid/status)"

curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
  -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null

out="$(PDCHANNELS_TOKEN="$token" wrk -t2 -c64 -d"$duration" --latency -s "$root/bench/receive.lua" "http://$addr")"
echo "$out"
echo "hub RSS after load $(awk '/VmRSS/{print $2/1024 " MB"}' /proc/$pid/status)"
kill -TERM $pid; wait $pid || true
json="$(echo "$out" | sed -n 's/^JSON //p')"
stored="$(python3 - "$tmp/hub.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages").fetchone()[0])
PY
)"
echo "acknowledged (wrk 200s): $(echo "$json" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["requests"]-j["non2xx"])') ; stored after shutdown: $stored"
echo "$json"
