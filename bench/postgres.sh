#!/usr/bin/env bash
# PostgreSQL against SQLite, side by side in one run: POST /v1/channels/messages/receive from wrk
# (second processes) over 64 connections on 127.0.0.1, every 200 a durable commit, on
#   (a) one hub on a SQLite file,
#   (b) one hub on a fresh PostgreSQL database,
#   (c) two hubs on one fresh PostgreSQL database, 32 connections each (64 in all).
# After each, the database must hold exactly as many messages as were acknowledged.
#
# Usage: bench/postgres.sh [BIN] [DURATION]   (defaults: target/release/pdchannels, 20s)
# Env: PDCHANNELS_TEST_POSTGRES, an admin URL (default postgres://postgres@127.0.0.1:5432/postgres).
# Needs wrk and psql (Debian packages `wrk`, `postgresql-client`; installed if missing, as root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
duration="${2:-20s}"
admin="${PDCHANNELS_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
need() { command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; }; }
need wrk wrk
need psql postgresql-client

tmp="$(mktemp -d)"
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql "$admin" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

new_pg() { # a fresh database; prints its URL
  local name="pdc_bench_$$_$1"
  psql "$admin" -qc "CREATE DATABASE $name" >/dev/null
  dbs+=("$name")
  python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$admin" "$name"
}

start_hub() { # DB LOG: starts a hub, prints "ADDR PID"
  "$bin" --db "$1" serve --listen 127.0.0.1:0 2> "$2" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do grep -q "pdchannels hub on" "$2" && break; sleep 0.05; done
  echo "$(grep -o 'pdchannels hub on http://[0-9.:]*' "$2" | sed 's/.*http:\/\///') $pid"
}

stop() { # PID...: SIGTERM, then wait until they are gone (they are not this shell's children)
  kill -TERM "$@" 2>/dev/null || true
  for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
}

run_wrk() { # ADDR TOKEN CONNECTIONS PREFIX
  PDCHANNELS_TOKEN="$2" PDCHANNELS_PREFIX="$4" wrk -t1 -c"$3" -d"$duration" --latency \
    -s "$root/bench/receive.lua" "http://$1" | sed -n 's/^JSON //p'
}

acked() { python3 -c 'import json,sys; t=0
for l in sys.stdin:
    l=l.strip()
    if l: j=json.loads(l); t+=j["requests"]-j["non2xx"]
print(t)'; }

report() { # NAME JSON... ; STORED
  local name="$1" stored="$2"; shift 2
  printf '%s\n' "$@" | python3 -c '
import json,sys
name, stored = sys.argv[1], int(sys.argv[2])
runs=[json.loads(l) for l in sys.stdin if l.strip()]
rps=sum(r["rps"] for r in runs); ok=sum(r["requests"]-r["non2xx"] for r in runs)
p99=max(r["p99_ms"] for r in runs); p50=max(r["p50_ms"] for r in runs)
print("JSON " + json.dumps({"setup": name, "rps": round(rps,1), "p50_ms": p50, "p99_ms": p99,
      "acknowledged": ok, "stored": stored, "lost_or_extra": stored-ok}))' "$name" "$stored"
}

# (a) SQLite
read -r addr pid < <(start_hub "$tmp/hub.db" "$tmp/a.log")
token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/a.log" | head -1)"
curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
  -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
a="$(run_wrk "$addr" "$token" 64 a)"
stop "$pid"
stored="$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages").fetchone()[0])' "$tmp/hub.db")"
report "one hub, SQLite" "$stored" "$a"

# (b) PostgreSQL, one hub
url="$(new_pg b)"
read -r addr pid < <(start_hub "$url" "$tmp/b.log")
token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/b.log" | head -1)"
curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
  -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
b="$(run_wrk "$addr" "$token" 64 b)"
stop "$pid"
report "one hub, PostgreSQL" "$(psql "$url" -tAc 'select count(*) from messages')" "$b"

# (c) PostgreSQL, two hubs on one database
url="$(new_pg c)"
read -r addr1 pid1 < <(start_hub "$url" "$tmp/c1.log")
token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/c1.log" | head -1)"
read -r addr2 pid2 < <(start_hub "$url" "$tmp/c2.log")
curl -sf -X POST "http://$addr1/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
  -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
run_wrk "$addr1" "$token" 32 c1 > "$tmp/c1.json" &
w1=$!
run_wrk "$addr2" "$token" 32 c2 > "$tmp/c2.json" &
w2=$!
wait "$w1" "$w2"
stop "$pid1" "$pid2"
report "two hubs, one PostgreSQL" "$(psql "$url" -tAc 'select count(*) from messages')" "$(cat "$tmp/c1.json")" "$(cat "$tmp/c2.json")"
