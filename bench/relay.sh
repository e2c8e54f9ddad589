#!/usr/bin/env bash
# Relay benchmarks: `pdchannels relay` draining a local outbox into a hub (`pdchannels serve`)
# on 127.0.0.1, each in its own process.
#
#  a. Throughput, no rate limit: N messages (default 20,000 over 200 conversations) queued in
#     the outbox, then the time from starting `pdchannels relay` until `outbox stats` (polled
#     every 100 ms) shows pending 0. Target: >= 5,000 messages/s. Capped at
#     RELAY_BENCH_MAX_SECONDS (default 300); a capped run reports the rate it reached.
#  b. Rate-limited: a hub with --rate-limit 80/2s (40/s allowed), 6,000 messages over 200
#     conversations queued (more than the run can deliver, so the relay is never short of work),
#     then the relay started. After a warm-up (5 s) the hub's own count of receives answered 200
#     (its /metrics) is read, again every 5 s, and at the end of the measured span (40 s); each
#     reading is timestamped, and the rate is the count's growth divided by the time measured
#     between the first and last readings (not the nominal span: sampling drifts past it).
#     Reports that rate as a percentage of the allowed one (target >= 98%) and the hub's 429
#     answers over the whole run (target 0).
#
# The outbox is filled by `pdchannels import FILE --upstream http://127.0.0.1:1/v1` (a port that
# refuses connections): the import writes every line to the outbox, says "delivering ...", and
# would then retry for minutes, so it is killed there; the few calls its worker tried are put
# back in line (`outbox retry --all --state pending`) so that the relay starts from a clean, all-due outbox.
#
# Usage: bench/relay.sh [BIN] [a|b|all]   (defaults: target/release/pdchannels, all)
# Env: RELAY_BENCH_N (20000), RELAY_BENCH_CONVERSATIONS (200), RELAY_BENCH_MAX_SECONDS (300),
#      RELAY_BENCH_LIMITED_N (6000), RELAY_BENCH_WARMUP_SECONDS (5), RELAY_BENCH_LIMITED_SECONDS
#      (40, the measured span), RELAY_BENCH_KEEP=1 to keep the temporary directory (relay and hub
#      logs, databases), RELAY_BENCH_LOG (the relay's PDCHANNELS_LOG in part b, default info; e.g.
#      info,pdchannels_client=debug shows the pacer's holds).
# Needs curl and python3. Each part ends with a line `JSON {...}`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/pdchannels}"
which_parts="${2:-all}"
n="${RELAY_BENCH_N:-20000}"
conversations="${RELAY_BENCH_CONVERSATIONS:-200}"
max_seconds="${RELAY_BENCH_MAX_SECONDS:-300}"
limited_n="${RELAY_BENCH_LIMITED_N:-6000}"
warmup_seconds="${RELAY_BENCH_WARMUP_SECONDS:-5}"
limited_seconds="${RELAY_BENCH_LIMITED_SECONDS:-40}"
relay_log="${RELAY_BENCH_LOG:-info}"
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release -p pdchannels)" >&2; exit 2; }
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
for var in PDCHANNELS_DB PDCHANNELS_LOG PDCHANNELS_LOG_FORMAT PDCHANNELS_UPSTREAM \
           PDCHANNELS_UPSTREAM_TOKEN PDCHANNELS_DELIVER_TIMEOUT PDCHANNELS_LISTEN \
           PDCHANNELS_RATE_LIMIT PDCHANNELS_DAILY_BUDGET PDCHANNELS_UPSTREAM_OAUTH \
           PDCHANNELS_OAUTH_FILE; do
  unset "$var"
done

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -n "${RELAY_BENCH_KEEP:-}" ]; then echo "logs and databases kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# sleep_until MILLISECONDS (on the now_ms clock)
sleep_until() {
  local now
  now="$(now_ms)"
  if (( $1 > now )); then sleep "$(python3 -c "print(($1 - $now) / 1000)")"; fi
}
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# start_hub NAME [serve options...]: sets hub_pid, hub_addr, hub_token.
start_hub() {
  local name="$1"; shift
  "$bin" --db "$tmp/$name.db" serve --listen 127.0.0.1:0 "$@" 2> "$tmp/$name.log" &
  hub_pid=$!
  pids+=("$hub_pid")
  for _ in $(seq 200); do grep -q "pdchannels hub on" "$tmp/$name.log" && break; sleep 0.05; done
  grep -q "pdchannels hub on" "$tmp/$name.log" || { cat "$tmp/$name.log" >&2; exit 1; }
  hub_token="$(grep -o 'pdc_[0-9a-f]\{48\}' "$tmp/$name.log" | head -1)"
  hub_addr="$(grep -o 'pdchannels hub on http://[0-9.:]*' "$tmp/$name.log" | sed 's/.*http:\/\///')"
}

# stop PID: SIGTERM and wait.
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# make_messages FILE N CONVERSATIONS: receive payloads for channel `bench`, conversations
# interleaved, each conversation's messages in created_at order.
make_messages() {
  python3 - "$@" <<'PY'
import json, sys
path, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    for i in range(n):
        conv, k = i % c, i // c
        f.write(json.dumps({
            "id": f"b-c{conv}-{k}", "channel_id": "bench", "sender_id": f"s{conv}",
            "conversation_id": f"c{conv}",
            "message": f"Hello, is the blue one still in stock? #{k}", "status": "sent",
            "created_at": "2024-05-01T%02d:%02d:%02d.000Z" % (k // 3600, (k // 60) % 60, k % 60),
        }) + "\n")
PY
}

# outbox_stat DB KEY: one figure of `outbox stats --json` (one line: {"pending":N,...}).
outbox_stat() { "$bin" --db "$1" outbox stats --json 2>/dev/null | grep -o "\"$2\":[0-9]*" | cut -d: -f2; }

# fill_outbox DB FILE EXPECTED: every line pending, nothing leased, everything due now.
fill_outbox() {
  local db="$1" file="$2" expected="$3" start
  start="$(now_ms)"
  "$bin" --db "$db" import "$file" --upstream http://127.0.0.1:1/v1 --upstream-token unused \
    2> "$tmp/import.log" &
  local import=$!
  pids+=("$import")
  for _ in $(seq 3000); do grep -q delivering "$tmp/import.log" && break; sleep 0.02; done
  kill -KILL "$import" 2>/dev/null || true
  wait "$import" 2>/dev/null || true
  local tried
  # A call the import was sending when killed is still leased (retry leaves it); the relay
  # takes those back at its start, as the leases of a process that is gone.
  tried="$("$bin" --db "$db" outbox retry --all --state pending 2>&1)"
  local pending
  pending="$(outbox_stat "$db" pending)"
  [ "$pending" = "$expected" ] || { echo "outbox holds $pending pending, expected $expected" >&2; cat "$tmp/import.log" >&2; exit 1; }
  echo "queued $expected calls in $(( $(now_ms) - start )) ms (after the import's tries: $tried)"
}

# create_channel ADDR TOKEN
create_channel() {
  curl -sf -X POST "http://$1/v1/channels" -H "x-api-token: $2" -H 'content-type: application/json' \
    -d '{"name":"Bench","provider_channel_id":"bench"}' > /dev/null
}

# hub_stored ADDR TOKEN: messages in channel `bench`, summed over its conversations.
hub_stored() {
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
addr, token = sys.argv[1], sys.argv[2]
total, cursor = 0, ""
while True:
    url = f"http://{addr}/v1/channels/bench/conversations?limit=500" + (f"&cursor={cursor}" if cursor else "")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"x-api-token": token})) as r:
        page = json.load(r)
    total += sum(c["message_count"] for c in page["data"])
    cursor = (page.get("additional_data") or {}).get("next_cursor")
    if not cursor:
        break
print(total)
PY
}

# receive_requests ADDR TOKEN [STATUS]: the hub's receive requests answered STATUS (any if none).
receive_requests() {
  curl -sf "http://$1/metrics" -H "x-api-token: $2" | awk -v s="${3:-}" '
    /^pdchannels_http_requests_total\{/ && /route="\/v1\/channels\/messages\/receive"/ {
      if (s == "" || index($0, "status=\"" s "\"")) total += $NF
    }
    END { printf "%d\n", total }'
}

# ---------------------------------------------------------------------------------------------
part_a() {
  echo "== a. throughput: $n messages over $conversations conversations, hub without a rate limit"
  start_hub hub-a
  local hub=$hub_pid addr=$hub_addr token=$hub_token
  create_channel "$addr" "$token"
  make_messages "$tmp/a.ndjson" "$n" "$conversations"
  fill_outbox "$tmp/a.db" "$tmp/a.ndjson" "$n"

  local start end pending=$n drained=false last_report next_report polls=0 slowest_poll=0
  start="$(now_ms)"
  PDCHANNELS_LOG=info "$bin" --db "$tmp/a.db" relay --upstream "http://$addr/v1" \
    --upstream-token "$token" 2> "$tmp/relay-a.log" &
  local relay=$!
  pids+=("$relay")
  next_report=$((start + 10000))
  while :; do
    local before after
    before="$(now_ms)"
    pending="$(outbox_stat "$tmp/a.db" pending)"
    after="$(now_ms)"
    polls=$((polls + 1))
    (( after - before > slowest_poll )) && slowest_poll=$((after - before))
    if [ "$pending" = 0 ]; then drained=true; end=$after; break; fi
    if (( after - start >= max_seconds * 1000 )); then end=$after; break; fi
    if (( after >= next_report )); then
      echo "  $(( (after - start) / 1000 )) s: $((n - pending)) delivered, relay CPU $(cpu_seconds "$relay") s"
      next_report=$((next_report + 10000))
    fi
    sleep 0.1
  done
  local relay_cpu
  relay_cpu="$(cpu_seconds "$relay")"
  stop "$relay"
  local delivered dead stored seconds rate
  delivered="$(outbox_stat "$tmp/a.db" delivered)"
  dead="$(outbox_stat "$tmp/a.db" dead)"
  stored="$(hub_stored "$addr" "$token")"
  seconds="$(python3 -c "print(round(($end - $start) / 1000, 3))")"
  # Delivered by the time the last poll saw the outbox (a capped run counts what was delivered).
  local done_at_end=$((n - pending))
  rate="$(python3 -c "print(round($done_at_end / max($seconds, 0.001), 1))")"
  echo "relay: $done_at_end of $n delivered in $seconds s = $rate messages/s (target >= 5000)$($drained || echo "; STOPPED at the ${max_seconds} s cap, not drained")"
  echo "after stop: outbox delivered $delivered, dead $dead; hub stores $stored; relay CPU $relay_cpu s; hub CPU $(cpu_seconds "$hub") s"
  echo "outbox stats polls: $polls, slowest $slowest_poll ms; relay retries logged: $(grep -c 'will retry' "$tmp/relay-a.log" || true)"
  stop "$hub"
  echo "JSON {\"bench\":\"relay_throughput\",\"messages\":$n,\"conversations\":$conversations,\"delivered\":$done_at_end,\"seconds\":$seconds,\"messages_per_s\":$rate,\"drained\":$drained,\"hub_stored\":$stored,\"dead\":$dead,\"relay_cpu_s\":$relay_cpu,\"target_messages_per_s\":5000}"
}

# sample_delivered ADDR TOKEN: "MILLISECONDS COUNT", the hub's receives answered 200 and the
# clock at the middle of the /metrics request that read them.
sample_delivered() {
  local before count after
  before="$(now_ms)"
  count="$(receive_requests "$1" "$2" 200)"
  after="$(now_ms)"
  echo "$(( (before + after) / 2 )) $count"
}

part_b() {
  echo "== b. rate-limited: hub --rate-limit 80/2s (40/s), $limited_n messages over $conversations conversations, ${warmup_seconds} s warm-up, then ${limited_seconds} s measured"
  start_hub hub-b --rate-limit 80/2s
  local hub=$hub_pid addr=$hub_addr token=$hub_token
  create_channel "$addr" "$token"
  # A second token for our own reads, so that they do not eat into the relay's window.
  local reader
  reader="$("$bin" --db "$tmp/hub-b.db" token create --name bench-reader 2>&1 | grep -o 'pdc_[0-9a-f]\{48\}' | head -1)"
  [ -n "$reader" ] || { echo "could not create a reader token" >&2; exit 1; }
  make_messages "$tmp/b.ndjson" "$limited_n" "$conversations"
  fill_outbox "$tmp/b.db" "$tmp/b.ndjson" "$limited_n"
  sleep 2.1 # the channel creation's window is over

  local start
  start="$(now_ms)"
  PDCHANNELS_LOG="$relay_log" "$bin" --db "$tmp/b.db" relay --upstream "http://$addr/v1" \
    --upstream-token "$token" 2> "$tmp/relay-b.log" &
  local relay=$!
  pids+=("$relay")
  sleep_until $((start + warmup_seconds * 1000))
  local first_ms first_count last_ms last_count previous_ms previous_count t
  read -r first_ms first_count < <(sample_delivered "$addr" "$reader")
  previous_ms=$first_ms previous_count=$first_count
  for ((t = 5; t <= limited_seconds; t += 5)); do
    sleep_until $((first_ms + t * 1000))
    read -r last_ms last_count < <(sample_delivered "$addr" "$reader")
    echo "  +$(python3 -c "print(round(($last_ms - $first_ms) / 1000, 3))") s: +$((last_count - previous_count)) in $(python3 -c "print(round(($last_ms - $previous_ms) / 1000, 3))") s = $(python3 -c "print(round(($last_count - $previous_count) * 1000 / max($last_ms - $previous_ms, 1), 2))")/s; 429s so far $(receive_requests "$addr" "$reader" 429)"
    previous_ms=$last_ms previous_count=$last_count
  done
  local relay_cpu
  relay_cpu="$(cpu_seconds "$relay")"
  stop "$relay"
  local all n429 delivered
  all="$(receive_requests "$addr" "$reader")"
  n429="$(receive_requests "$addr" "$reader" 429)"
  delivered="$(outbox_stat "$tmp/b.db" delivered)"
  local allowed_per_s=40 counted seconds rate pct pct429
  counted=$((last_count - first_count))
  seconds="$(python3 -c "print(round(($last_ms - $first_ms) / 1000, 3))")"
  rate="$(python3 -c "print(round($counted / $seconds, 2))")"
  pct="$(python3 -c "print(round(100 * $counted / ($seconds * $allowed_per_s), 1))")"
  pct429="$(python3 -c "print(round(100 * $n429 / max($all, 1), 2))")"
  echo "hub answered 200 to $counted receives in $seconds s measured = $rate/s = $pct% of the allowed $allowed_per_s/s (target >= 98%)"
  echo "hub receive requests over the whole run: $all, of them 429: $n429 = $pct429% (target 0); outbox delivered after stop: $delivered; relay CPU $relay_cpu s"
  echo "relay log: $(grep -c 'answered 429' "$tmp/relay-b.log" || true) 429 holds, $(grep -c 'will retry' "$tmp/relay-b.log" || true) retries"
  stop "$hub"
  echo "JSON {\"bench\":\"relay_rate_limited\",\"limit_per_2s\":80,\"conversations\":$conversations,\"warmup_s\":$warmup_seconds,\"measured_s\":$seconds,\"delivered\":$counted,\"per_s\":$rate,\"percent_of_allowed\":$pct,\"receive_requests\":$all,\"status_429\":$n429,\"percent_429\":$pct429,\"outbox_delivered\":$delivered,\"relay_cpu_s\":$relay_cpu}"
}

echo "binary $bin"
case "$which_parts" in
  a) part_a ;;
  b) part_b ;;
  all) part_a; part_b ;;
  *) echo "usage: $0 [BIN] [a|b|all]" >&2; exit 2 ;;
esac
