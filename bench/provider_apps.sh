#!/usr/bin/env bash
# Provider apps: what the hub's calls back to an app cost, in one run, against the testkit's
# fixture app (crates/testkit/examples/provider_app.rs, a second process on 127.0.0.1):
#   (a) POST /v1/channels/messages/receive from wrk over 64 connections (bench/receive.lua: 1,000
#       conversations c0..c999 of channel `bench`), side by side on a fresh hub whose channel has
#       no app, then on a fresh hub whose channel belongs to an app (which knows c0..c999, 2
#       messages each) that answers every read 2 s late (the hub asks getConversationById in the
#       background for each new conversation). Alternating rounds; prints both means, and the
#       second as a share of the first (target >= 95%). After each run, the database
#       must hold every message wrk saw acknowledged, and at most 64 more (the requests in flight
#       when wrk stopped, which wrk does not count).
#   (b) initial sync: an app with 30 conversations of 30 messages answering at once; the time
#       from POST /v1/channels (with the app's token) until all 900 messages are stored (polled
#       in the SQLite file every millisecond), over fresh hubs (target < 1 s).
#   (c) POST /v1/channels/bench/conversations/{c}/messages {"message": ...} from wrk over 16
#       connections (bench/send.lua) on the hub of (b), whose 30 synced conversations have an
#       end_user and a source_user; the app answers postMessage at once. p50/p99 (target p99 <
#       20 ms); every send answered 2xx, every answered reply stored as sent with the app's id,
#       none failed. Replies still `sending` after wrk closed its connections are counted apart
#       (the hub's handler is dropped with the connection: see bench/README.md).
#
# Usage: bench/provider_apps.sh [BIN] [DURATION]   (defaults: target/release/pdchannels, 20s)
# The fixture app is BIN's directory's examples/provider_app, built if missing (release, the
# target directory BIN is in). Env: PDCHANNELS_BENCH_ROUNDS (pairs of runs in (a), alternating
# no app / app so both see the same background load; 2), PDCHANNELS_BENCH_SYNC_RUNS (fresh hubs
# timed in (b), 5), PDCHANNELS_BENCH_PARTS (which parts, default "a b c").
# Needs wrk (Debian package `wrk`; installed if missing and we are root) and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
duration="${2:-20s}"
sync_runs="${PDCHANNELS_BENCH_SYNC_RUNS:-5}"
rounds="${PDCHANNELS_BENCH_ROUNDS:-2}"
parts="${PDCHANNELS_BENCH_PARTS:-a b c}"
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }

bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
fixture="$(dirname "$bin")/examples/provider_app"
if [ ! -x "$fixture" ]; then
  echo "building the fixture app ($fixture)" >&2
  (cd "$root" && CARGO_TARGET_DIR="$(dirname "$(dirname "$bin")")" \
    cargo build --release --locked -q -p pdchannels-testkit --example provider_app)
fi

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

start_fixture() { # NAME CONVERSATIONS MESSAGES DELAY_MS: starts the app; prints "ADDR PID"
  "$fixture" --channel bench --conversations "$2" --messages "$3" --delay-ms "$4" \
    --manifest-out "$tmp/$1.manifest.json" > "$tmp/$1.addr" 2> "$tmp/$1.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do [ -s "$tmp/$1.addr" ] && break; sleep 0.05; done
  echo "$(head -1 "$tmp/$1.addr") $pid"
}

new_db() { # DB [MANIFEST]: a database with a plain token (and the app `bench` of MANIFEST, and
           # its token); prints "PLAIN_TOKEN [APP_TOKEN]"
  local plain app=""
  plain="$("$bin" --db "$1" token create --name plain 2>/dev/null)"
  if [ -n "${2:-}" ]; then
    PDCHANNELS_APP_CLIENT_SECRET=fixture-secret "$bin" --db "$1" app add bench \
      --manifest "$2" --client-id fixture-client >/dev/null 2>&1
    app="$("$bin" --db "$1" token create --name bench --app bench 2>/dev/null)"
  fi
  echo "$plain $app"
}

start_hub() { # DB LOG: starts a hub, prints "ADDR PID"
  "$bin" --db "$1" serve --listen 127.0.0.1:0 2> "$2" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do grep -qs "pdchannels hub on" "$2" && break; sleep 0.05; done
  echo "$(grep -o 'pdchannels hub on http://[0-9.:]*' "$2" | sed 's/.*http:\/\///') $pid"
}

create_channel() { # ADDR TOKEN
  curl -sf -X POST "http://$1/v1/channels" -H "x-api-token: $2" -H 'content-type: application/json' \
    -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
}

sql() { # DB QUERY: the first column of the first row
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$1" "$2"
}

field() { # JSON KEY
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

cpu_ms() { # PID: the process's CPU time so far (user + system), in ms
  awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"
}

per_request() { # CPU_MS WRK_JSON: CPU µs per request
  python3 -c 'import json,sys; print(round(int(sys.argv[1]) * 1000 / max(1, json.loads(sys.argv[2])["requests"]), 1))' "$1" "$2"
}

failed=0
fail() { echo "FAILED: $*"; failed=1; }
within() { [ "$2" -ge "$1" ] && [ "$2" -le $(( $1 + $3 )) ]; } # ACKED STORED IN_FLIGHT

# (a) receive throughput: a channel of no app, then a channel of an app answering 2 s late.
receive_run() { # NAME DB TOKEN ADDR: wrk, then the hub's app calls; prints wrk's JSON line
  local out
  out="$(PDCHANNELS_TOKEN="$3" PDCHANNELS_PREFIX="$1" wrk -t2 -c64 -d"$duration" --latency \
    -s "$root/bench/receive.lua" "http://$4")"
  echo "$out" | sed -n 's/^JSON //p'
}

if [[ " $parts " == *" a "* ]]; then
  echo "== (a) receive, 64 connections, $duration each, $rounds round(s): no app, then an app answering 2 s late"
  read -r app_addr app_pid < <(start_fixture a 1000 2 2000)
  plains=(); withapps=()
  run_plain() { # ROUND: a fresh hub whose channel has no app; sets $plain
    local round="$1" db token addr pid plain_cpu plain_stored plain_acked
    db="$tmp/a$round-plain.db"
    read -r token _ < <(new_db "$db")
    read -r addr pid < <(start_hub "$db" "$tmp/a$round-plain.log")
    create_channel "$addr" "$token"
    plain="$(receive_run p "$db" "$token" "$addr")"
    plain_cpu="$(cpu_ms "$pid")"
    stop "$pid"
    plain_stored="$(sql "$db" "select count(*) from messages")"
    plain_acked=$(( $(field "$plain" requests) - $(field "$plain" non2xx) ))
    echo "round $round, no app:   $plain"
    echo "                  hub CPU $plain_cpu ms, $(per_request "$plain_cpu" "$plain") µs per request"
    echo "                  acknowledged $plain_acked, stored $plain_stored"
    within "$plain_acked" "$plain_stored" 64 || fail "(a) no app: acknowledged $plain_acked, stored $plain_stored"
  }
  run_app() { # ROUND: a fresh hub whose channel is the app's; sets $withapp
    local round="$1" db app_token addr pid calls with_cpu wrk_stored app_stored conversations queued described with_acked
    db="$tmp/a$round-app.db"
    read -r _ app_token < <(new_db "$db" "$tmp/a.manifest.json")
    read -r addr pid < <(start_hub "$db" "$tmp/a$round-app.log")
    create_channel "$addr" "$app_token"  # getConversations (2 s) in the background
    withapp="$(receive_run w "$db" "$app_token" "$addr")"
    calls="$(curl -sf "http://$addr/metrics" -H "x-api-token: $app_token" | grep '^pdchannels_app_calls_total' | tr '\n' ' ' || true)"
    with_cpu="$(cpu_ms "$pid")"
    stop "$pid"
    wrk_stored="$(sql "$db" "select count(*) from messages where message_id like 'w%'")"
    app_stored="$(sql "$db" "select count(*) from messages where message_id not like 'w%'")"
    conversations="$(sql "$db" "select count(*) from conversations")"
    queued="$(sql "$db" "select count(*) from app_calls where endpoint = 'getConversationById'")"
    described="$(sql "$db" "select count(*) from conversations where details_at_ms is not null")"
    with_acked=$(( $(field "$withapp" requests) - $(field "$withapp" non2xx) ))
    echo "round $round, with app: $withapp"
    echo "                  hub CPU $with_cpu ms, $(per_request "$with_cpu" "$withapp") µs per request"
    echo "                  acknowledged $with_acked, stored $wrk_stored (and $app_stored messages from the app);"
    echo "                  $conversations conversations, $queued getConversationById calls queued, $described described by the app"
    echo "                  metrics: ${calls:-none}"
    within "$with_acked" "$wrk_stored" 64 || fail "(a) with app: acknowledged $with_acked, stored $wrk_stored"
    [ "$conversations" -ge 1000 ] || fail "(a) with app: only $conversations conversations"
    [ "$queued" -gt 0 ] || fail "(a) with app: no getConversationById call was queued"
  }
  for round in $(seq "$rounds"); do
    # Which goes first alternates, so that neither always runs on a warmer (or more tired)
    # machine than the other.
    if (( round % 2 == 1 )); then run_plain "$round"; run_app "$round"; else run_app "$round"; run_plain "$round"; fi
    plains+=("$plain"); withapps+=("$withapp")
  done
  stop "$app_pid"
  python3 - "${plains[@]}" "${withapps[@]}" <<'PY'
import json, sys
runs = [json.loads(a) for a in sys.argv[1:]]
half = len(runs) // 2
plain, app = runs[:half], runs[half:]
p_rps = sum(r["rps"] for r in plain) / half
a_rps = sum(r["rps"] for r in app) / half
p_p99 = max(r["p99_ms"] for r in plain)
a_p99 = max(r["p99_ms"] for r in app)
ratio = 100 * a_rps / p_rps
per_round = [round(100 * a["rps"] / p["rps"], 1) for p, a in zip(plain, app)]
print(f"SUMMARY (a) receive req/s (mean of {half} round(s)): no app {p_rps:.1f} (p99 {p_p99} ms), "
      f"with an app answering 2 s late {a_rps:.1f} (p99 {a_p99} ms): {ratio:.1f}% "
      f"(per round {per_round}; target >= 95%)")
print("JSON " + json.dumps({"part": "a", "rounds": half, "no_app_rps": round(p_rps, 1),
      "no_app_p99_ms": p_p99, "app_rps": round(a_rps, 1), "app_p99_ms": a_p99,
      "ratio_pct": round(ratio, 1), "ratio_per_round_pct": per_round}))
PY
fi

if [[ " $parts " == *" b "* || " $parts " == *" c "* ]]; then
  read -r app_addr app_pid < <(start_fixture bc 30 30 0)
fi

# (b) initial sync of 30 conversations x 30 messages, on fresh hubs.
if [[ " $parts " == *" b "* || " $parts " == *" c "* ]]; then
  [[ " $parts " == *" b "* ]] || sync_runs=1
  echo "== (b) initial sync: 30 conversations x 30 messages, $sync_runs fresh hubs"
  times=()
  for run in $(seq "$sync_runs"); do
    db="$tmp/b$run.db"
    read -r plain_token app_token < <(new_db "$db" "$tmp/bc.manifest.json")
    read -r addr pid < <(start_hub "$db" "$tmp/b$run.log")
    ms="$(python3 - "$db" "$addr" "$app_token" <<'PY'
import json, sqlite3, sys, time, urllib.request
db, addr, token = sys.argv[1:]
conn = sqlite3.connect(db)
request = urllib.request.Request(
    f"http://{addr}/v1/channels", method="POST",
    data=json.dumps({"name": "Bench", "provider_channel_id": "bench"}).encode(),
    headers={"x-api-token": token, "content-type": "application/json"})
start = time.monotonic()
with urllib.request.urlopen(request) as answer:
    assert answer.status == 200, answer.status
deadline = start + 30
while True:
    n = conn.execute("select count(*) from messages").fetchone()[0]
    if n >= 900 or time.monotonic() > deadline:
        break
    time.sleep(0.001)
print(f"{(time.monotonic() - start) * 1000:.1f} {n}")
PY
)"
    read -r elapsed stored <<< "$ms"
    sleep 0.2  # the sync's bookkeeping settles
    conversations="$(sql "$db" "select count(*) from conversations")"
    people="$(sql "$db" "select count(*) from participants where role in ('end_user','source_user')")"
    echo "run $run: ${elapsed} ms to $stored messages; $conversations conversations, $people participants with a role"
    [ "$stored" = 900 ] || fail "(b) run $run: $stored messages stored, not 900"
    [ "$conversations" = 30 ] && [ "$people" = 60 ] || fail "(b) run $run: $conversations conversations, $people participants"
    times+=("$elapsed")
    if [ "$run" != "$sync_runs" ]; then stop "$pid"; fi
  done
  if [[ " $parts " == *" b "* ]]; then
    summary="$(python3 -c 'import statistics,sys; t=sorted(map(float,sys.argv[1:])); print(f"{statistics.median(t):.1f} {t[-1]:.1f} {t[0]:.1f}")' "${times[@]}")"
    read -r median worst best <<< "$summary"
    echo "SUMMARY (b) initial sync of 900 messages: median $median ms, worst $worst ms, best $best ms over $sync_runs fresh hubs (target < 1000 ms)"
    echo "JSON {\"part\":\"b\",\"runs\":$sync_runs,\"median_ms\":$median,\"worst_ms\":$worst,\"best_ms\":$best,\"messages\":900}"
  fi
fi

# (c) replies through postMessage on the last hub of (b), the app answering at once.
if [[ " $parts " == *" c "* ]]; then
  echo "== (c) send through postMessage, 16 connections, $duration"
  before="$(sql "$db" "select count(*) from messages")"
  out="$(PDCHANNELS_TOKEN="$plain_token" PDCHANNELS_CHANNEL=bench PDCHANNELS_CONVERSATIONS=30 \
    wrk -t2 -c16 -d"$duration" --latency -s "$root/bench/send.lua" "http://$addr")"
  send="$(echo "$out" | sed -n 's/^JSON //p')"
  sleep 1  # replies still with the app finish
  stop "$pid"
  sent="$(sql "$db" "select count(*) from outgoing_messages where state = 'sent'")"
  sending="$(sql "$db" "select count(*) from outgoing_messages where state = 'sending'")"
  failed_replies="$(sql "$db" "select count(*) from outgoing_messages where state = 'failed'")"
  ids="$(sql "$db" "select count(distinct message_id) from outgoing_messages where state = 'sent'")"
  replies=$(( $(sql "$db" "select count(*) from messages") - before ))
  answered=$(( $(field "$send" requests) - $(field "$send" non2xx) ))
  echo "$send"
  echo "answered 2xx $answered of $(field "$send" requests) (socket errors $(field "$send" errors));"
  echo "stored: $sent replies sent ($ids distinct app ids, $replies new messages), $failed_replies failed, $sending left 'sending' (in flight when wrk closed its connections)"
  [ "$(field "$send" non2xx)" = 0 ] && [ "$(field "$send" errors)" = 0 ] || fail "(c) not every send answered 2xx"
  [ "$failed_replies" = 0 ] || fail "(c) $failed_replies replies failed"
  # wrk does not count the requests in flight when it stops (at most 16).
  within "$answered" "$((sent + sending))" 16 && [ "$sent" -ge "$answered" ] && [ "$ids" = "$sent" ] && [ "$replies" = "$sent" ] \
    || fail "(c) answered $answered, sent $sent, sending $sending, distinct ids $ids, new messages $replies"
  echo "SUMMARY (c) send through postMessage, 16 connections: $(field "$send" rps) req/s, p50 $(field "$send" p50_ms) ms, p99 $(field "$send" p99_ms) ms (target p99 < 20 ms)"
  echo "JSON {\"part\":\"c\",\"rps\":$(field "$send" rps),\"p50_ms\":$(field "$send" p50_ms),\"p99_ms\":$(field "$send" p99_ms),\"max_ms\":$(field "$send" max_ms),\"answered\":$answered,\"sent\":$sent,\"left_sending\":$sending}"
fi

if [ -n "${app_pid:-}" ]; then stop "$app_pid"; fi
exit "$failed"
