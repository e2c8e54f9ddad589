#!/usr/bin/env bash
# Read-API latency after 1,000,000 stored messages: fills a fresh hub through
# POST /v1/channels/messages/receive (wrk, 64 connections, 1,000 conversations) until the
# database holds at least 1,000,000 messages, then measures with wrk (4 connections, 10 s each):
#   - a conversation's first page of messages (participants + 50 messages),
#   - a deep page of the same conversation (cursor after message 900),
#   - the channel's conversation list (newest activity first, 50 a page).
#
# Usage: bench/read_api.sh [BIN]   (default target/release/pdchannels)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }

tmp="$(mktemp -d)"
"$bin" --db "$tmp/hub.db" serve --listen 127.0.0.1:0 2> "$tmp/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q "pdchannels hub on" "$tmp/serve.log" && break; sleep 0.05; done
token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/serve.log" | head -1)"
addr="$(grep -o 'pdchannels hub on http://[0-9.:]*' "$tmp/serve.log" | sed 's/.*http:\/\///')"
export PDCHANNELS_TOKEN="$token"
curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
  -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null

count() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect('file:$tmp/hub.db?mode=ro', uri=True).execute('select count(*) from messages').fetchone()[0])"
}
while [ "$(count)" -lt 1000000 ]; do
  wrk -t2 -c64 -d20s -s "$root/bench/receive.lua" "http://$addr" | sed -n 's/^JSON //p'
done
echo "stored messages: $(count)"

cursor="$(curl -sf "http://$addr/v1/channels/bench/conversations/c7?limit=450" -H "x-api-token: $token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["additional_data"]["next_cursor"])')"
cursor="$(curl -sf "http://$addr/v1/channels/bench/conversations/c7?limit=450&cursor=$cursor" -H "x-api-token: $token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["additional_data"]["next_cursor"])')"
for path in "/v1/channels/bench/conversations/c7" \
            "/v1/channels/bench/conversations/c7?cursor=$cursor" \
            "/v1/channels/bench/conversations"; do
  READ_PATH="$path" wrk -t2 -c4 -d10s --latency -s "$root/bench/read.lua" "http://$addr" | sed -n 's/^JSON //p'
done
