#!/usr/bin/env bash
# The web inbox's figures, against `pdchannels serve` on 127.0.0.1 with a SQLite file:
#   (a) list and thread pages at 100,000 conversations / 1,000,000 messages: wrk, 4 connections,
#       GET /inbox and GET /inbox/{channel}/{conversation} (200 different threads), latency
#       p50/p99 (target p99 < 20 ms);
#   (b) search over those 1,000,000 messages: GET /inbox?q=WORD, words of every frequency (one
#       message in a million to every tenth), p50/p99 (target p99 < 50 ms);
#   (c) 1,000 open live streams (GET /inbox/events, held by bench/sse_clients.py, which also
#       counts the events they hear): receive throughput from wrk (64 connections) with them,
#       side by side with the same run without them on a fresh hub (target >= 90%), and the
#       hub's RSS with them (target < 100 MB).
# The data of (a) and (b) goes in through the hub's own receive route (bench/inbox_fill.lua from
# wrk): the store's triggers make the conversations, participants and the search index.
#
# Usage: bench/inbox.sh [BIN] [DURATION]   (defaults: target/release/pdchannels, 20s)
# Env: PDCHANNELS_BENCH_PARTS ("a b c"), PDCHANNELS_BENCH_CONVERSATIONS (100000),
#      PDCHANNELS_BENCH_MESSAGES (1000000), PDCHANNELS_BENCH_STREAMS (1000).
# Needs wrk (Debian package `wrk`; installed if missing and we are root) and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
duration="${2:-20s}"
parts="${PDCHANNELS_BENCH_PARTS:-a b c}"
conversations="${PDCHANNELS_BENCH_CONVERSATIONS:-100000}"
messages="${PDCHANNELS_BENCH_MESSAGES:-1000000}"
streams="${PDCHANNELS_BENCH_STREAMS:-1000}"
# 1,000 streams are 1,000 descriptors in the client and in the hub.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

stop() { # PID...: SIGTERM, then wait until they are gone
  kill -TERM "$@" 2>/dev/null || true
  for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
}

start_hub() { # DB LOG [ARGS...]: starts a hub, prints "ADDR PID"
  local db="$1" log="$2"
  shift 2
  "$bin" --db "$db" serve --listen 127.0.0.1:0 "$@" 2> "$log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 400); do grep -qs "pdchannels hub on" "$log" && break; sleep 0.05; done
  echo "$(grep -o 'pdchannels hub on http://[0-9.:]*' "$log" | sed 's/.*http:\/\///') $pid"
}

session() { # ADDR TOKEN: logs in to the inbox; prints the cookie (name=value)
  curl -s -o /dev/null -D - -X POST "http://$1/inbox/login" --data-urlencode "token=$2" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\);.*/\1/p'
}

pages_run() { # NAME ADDR COOKIE PATHS_FILE CONNECTIONS: wrk over the paths; prints wrk's JSON line
  PDCHANNELS_COOKIE="$3" PDCHANNELS_PATHS="$4" wrk -t1 -c"$5" -d"$duration" --latency \
    -s "$root/bench/pages.lua" "http://$2" | sed -n 's/^JSON //p' | sed "s/^{/{\"part\":\"$1\",/"
}

failed=0
fail() { echo "FAILED: $*"; failed=1; }

if [[ " $parts " == *" a "* || " $parts " == *" b "* ]]; then
  db="$tmp/inbox.db"
  token="$("$bin" --db "$db" token create --name bench 2>/dev/null)"
  read -r addr pid < <(start_hub "$db" "$tmp/hub-a.log")
  curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
    -d '{"name":"WhatsApp","provider_channel_id":"wa"}' > /dev/null
  echo "== receiving $messages messages into $conversations conversations (bench/inbox_fill.lua)"
  started=$(date +%s)
  # wrk runs for its whole duration even once its threads stopped: it is stopped when all are in.
  PDCHANNELS_TOKEN="$token" PDCHANNELS_TOTAL="$messages" PDCHANNELS_CONVERSATIONS="$conversations" \
    wrk -t2 -c32 -d3600s -s "$root/bench/inbox_fill.lua" "http://$addr" > "$tmp/fill.log" &
  fill=$!
  pids+=("$fill")
  count() { python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True).execute("select max(pk) from messages").fetchone()[0] or 0)' "$db"; }
  while [ "$(count)" -lt "$messages" ]; do sleep 1; done
  sleep 1
  kill -INT "$fill" 2>/dev/null || true
  wait "$fill" 2>/dev/null || true
  stored="$(count)"
  echo "   $stored messages stored in $(( $(date +%s) - started )) s ($(du -h "$db" | cut -f1))"
  [ "$stored" -ge "$messages" ] || fail "only $stored of $messages messages stored"
  cookie="$(session "$addr" "$token")"
  [ -n "$cookie" ] || { echo "could not log in to the inbox"; exit 1; }
  curl -sf -o /dev/null -H "cookie: $cookie" "http://$addr/inbox" || fail "the list did not load"

  if [[ " $parts " == *" a "* ]]; then
    echo "== (a) list and thread pages, 4 connections, $duration each"
    printf '/inbox\n' > "$tmp/list.paths"
    python3 -c 'import random,sys; n=int(sys.argv[1]); r=random.Random(7); [print(f"/inbox/wa/c{r.randrange(n)}") for _ in range(200)]' \
      "$conversations" > "$tmp/thread.paths"
    list="$(pages_run list "$addr" "$cookie" "$tmp/list.paths" 4)"
    echo "list:   $list"
    thread="$(pages_run thread "$addr" "$cookie" "$tmp/thread.paths" 4)"
    echo "thread: $thread"
  fi
  if [[ " $parts " == *" b "* ]]; then
    echo "== (b) search, 4 connections, $duration"
    # bench/inbox_fill.lua: word w<k> is in every k-th message (k = 10 … 1,000,000), `needle`
    # in one message; a prefix, a participant's id, and two words.
    printf '/inbox?q=%s\n' w10 w100 w1000 w10000 w100000 w1000000 needle w10+w100 hel cust77 nothing \
      > "$tmp/search.paths"
    search="$(pages_run search "$addr" "$cookie" "$tmp/search.paths" 4)"
    echo "search: $search"
  fi
  stop "$pid"
fi

receive_run() { # ADDR TOKEN: wrk receive, 64 connections; prints wrk's JSON line
  PDCHANNELS_TOKEN="$2" PDCHANNELS_PREFIX="$3" wrk -t2 -c64 -d"$duration" --latency \
    -s "$root/bench/receive.lua" "http://$1" | sed -n 's/^JSON //p'
}

if [[ " $parts " == *" c "* ]]; then
  echo "== (c) receive, 64 connections, $duration: without, then with $streams open live streams"
  rounds="${PDCHANNELS_BENCH_ROUNDS:-2}"
  without=(); with=(); rss=()
  for round in $(seq "$rounds"); do
    for mode in without with; do
      db="$tmp/c$round-$mode.db"
      token="$("$bin" --db "$db" token create --name bench 2>/dev/null)"
      # Both runs with room for the streams (each holds a connection; they may take half the
      # connections): the same hub settings.
      read -r addr pid < <(start_hub "$db" "$tmp/c$round-$mode.log" --max-connections $(( 2 * streams + 512 )))
      curl -sf -X POST "http://$addr/v1/channels" -H "x-api-token: $token" -H 'content-type: application/json' \
        -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
      if [ "$mode" = with ]; then
        # One login per 16 streams (the hub's most per API token), as a team's people would be.
        : > "$tmp/cookies-$round"
        for _ in $(seq $(( (streams + 15) / 16 ))); do
          person="$("$bin" --db "$db" token create --name person 2>/dev/null)"
          session "$addr" "$person" >> "$tmp/cookies-$round"
        done
        python3 "$root/bench/sse_clients.py" "$addr" "$tmp/cookies-$round" "$streams" "$tmp/sse-$round.json" &
        sse=$!
        pids+=("$sse")
        for _ in $(seq 600); do [ -s "$tmp/sse-$round.json.ready" ] && break; sleep 0.1; done
        [ -s "$tmp/sse-$round.json.ready" ] || fail "(c) the streams did not open"
        out="$(receive_run "$addr" "$token" "r$round")"
        rss_kb="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
        kill -TERM "$sse"; wait "$sse" || true
        echo "round $round, with $streams streams: $out; hub RSS $(( rss_kb / 1024 )) MB; streams: $(cat "$tmp/sse-$round.json")"
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(1 if s["failed"] else 0)' "$tmp/sse-$round.json" \
          || fail "(c) some streams were refused"
        with+=("$out"); rss+=("$rss_kb")
      else
        out="$(receive_run "$addr" "$token" "r$round")"
        echo "round $round, without streams: $out"
        without+=("$out")
      fi
      stop "$pid"
    done
  done
  python3 - "${#without[@]}" "${without[@]}" "${with[@]}" "${rss[@]}" <<'PY'
import json, sys
n = int(sys.argv[1])
without = [json.loads(a) for a in sys.argv[2:2 + n]]
with_ = [json.loads(a) for a in sys.argv[2 + n:2 + 2 * n]]
rss = [int(a) for a in sys.argv[2 + 2 * n:]]
w = sum(r["rps"] for r in without) / n
s = sum(r["rps"] for r in with_) / n
print(f"SUMMARY (c) receive req/s without streams {w:.0f}, with {len(rss) and 1000} streams {s:.0f}: "
      f"{100 * s / w:.1f}% (target >= 90%); hub RSS with them at most {max(rss) / 1024:.1f} MB (target < 100 MB)")
print("JSON " + json.dumps({"part": "c", "without_rps": round(w, 1), "with_rps": round(s, 1),
      "ratio_pct": round(100 * s / w, 1), "max_rss_mb": round(max(rss) / 1024, 1)}))
PY
fi
exit "$failed"
