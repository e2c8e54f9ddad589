#!/usr/bin/env bash
# Independent-client checks of the pdchannels MCP server, with the official TypeScript SDK
# (ts_client.mjs) and Python SDK (py_client.py): first over stdio (`pdchannels mcp`), then over
# Streamable HTTP against `pdchannels serve --listen 127.0.0.1:0` (temp DB; the token and port are
# read from its stderr, and the clients send the token as Authorization: Bearer). The HTTP part
# also checks that /mcp without a token, or with a wrong one, gets HTTP 401, and that the hub
# exits 0 within 5 s of SIGTERM once the clients are done.
#
# Usage: tests/sdk/run.sh [PATH/TO/pdchannels]    (default: target/debug/pdchannels)
#
# Each client prints `ts-sdk: N passed, M failed` / `py-sdk: ...` once per transport; the
# script's own HTTP checks print `hub-http: N passed, M failed`.
#
# Installs what is missing: node_modules here (npm ci from package-lock.json) and a venv at
# tests/sdk/.venv (pip install -r requirements.txt). Needs node, npm and python3, and the npm
# registry and PyPI to be reachable the first time. Exits non-zero if either client fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${1:-$root/target/debug/pdchannels}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable pdchannels at $bin (build it with: cargo build -p pdchannels)" >&2
  exit 2
fi

# --- dependencies ---------------------------------------------------------------------------
if [[ ! -f "$here/node_modules/@modelcontextprotocol/sdk/package.json" ]]; then
  echo "run.sh: installing the TypeScript SDK (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

venv="$here/.venv"
stamp="$venv/.requirements.txt"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "run.sh: installing the Python SDK into $venv" >&2
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

# --- run ------------------------------------------------------------------------------------
tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

ts_version="$(node -p "require('$here/node_modules/@modelcontextprotocol/sdk/package.json').version")"
py_version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))')"

status=0
echo "== TypeScript SDK ($ts_version) over stdio"
(cd "$here" && node ts_client.mjs -- "$bin" --db "$tmp/db" mcp) || status=1

echo "== Python SDK ($py_version) over stdio"
"$venv/bin/python" "$here/py_client.py" -- "$bin" --db "$tmp/db" mcp || status=1

# --- HTTP: pdchannels serve -----------------------------------------------------------------
hub_passed=0
hub_failed=0
hub_check() {   # hub_check NAME OK(0|1) [DETAIL]
  if [[ $2 -eq 0 ]]; then
    hub_passed=$((hub_passed + 1)); echo "ok   - $1"
  else
    hub_failed=$((hub_failed + 1)); echo "FAIL - $1${3:+: $3}"
  fi
}
redact() { sed 's/pdc_[0-9a-f]\{48\}/pdc_<redacted>/g'; }

echo "== pdchannels serve (HTTP)"
"$bin" --db "$tmp/hub.db" serve --listen 127.0.0.1:0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!
port=""
for _ in $(seq 1 100); do   # up to 10 s
  port="$(grep -oE 'pdchannels hub on http://127\.0\.0\.1:[0-9]+' "$tmp/serve.err" | grep -oE '[0-9]+$' || true)"
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
token="$(grep -oE 'pdc_[0-9a-f]{48}' "$tmp/serve.err" | head -n 1 || true)"

if [[ -z "$port" || -z "$token" ]]; then
  hub_check "hub starts and prints its token and address" 1 "port '${port}', token ${token:+found}${token:-missing}"
  redact <"$tmp/serve.err" >&2
else
  hub_check "hub starts and prints its token and address" 0
  url="http://127.0.0.1:$port/mcp"
  init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"run.sh","version":"0"}}}'
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$url" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$init" || true)"
  hub_check "POST /mcp without a token gets HTTP 401" $([[ "$code" == 401 ]]; echo $?) "got HTTP $code"
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$url" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer pdc_$(printf '0%.0s' $(seq 1 48))" \
    -d "$init" || true)"
  hub_check "POST /mcp with a wrong Bearer token gets HTTP 401" $([[ "$code" == 401 ]]; echo $?) "got HTTP $code"

  echo "== TypeScript SDK ($ts_version) over HTTP"
  (cd "$here" && PDCHANNELS_TOKEN="$token" node ts_client.mjs "$url") || status=1

  echo "== Python SDK ($py_version) over HTTP"
  PDCHANNELS_TOKEN="$token" "$venv/bin/python" "$here/py_client.py" "$url" || status=1
fi

if kill -0 "$server_pid" 2>/dev/null; then
  kill -TERM "$server_pid"
  stopped=""
  for _ in $(seq 1 50); do   # up to 5 s
    if ! kill -0 "$server_pid" 2>/dev/null; then stopped=1; break; fi
    sleep 0.1
  done
  if [[ -z "$stopped" ]]; then
    hub_check "hub exits 0 within 5 s of SIGTERM" 1 "still running after 5 s"
  else
    rc=0
    wait "$server_pid" || rc=$?
    server_pid=""
    hub_check "hub exits 0 within 5 s of SIGTERM" $([[ $rc -eq 0 ]]; echo $?) "exit status $rc"
    [[ $rc -eq 0 ]] || redact <"$tmp/serve.err" >&2
  fi
else
  rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  hub_check "hub still running when the clients are done" 1 "it had exited with status $rc"
  redact <"$tmp/serve.err" >&2
fi
echo "hub-http: $hub_passed passed, $hub_failed failed"
[[ $hub_failed -eq 0 ]] || status=1

if [[ $status -eq 0 ]]; then
  echo "sdk checks: both clients passed over stdio and HTTP"
else
  echo "sdk checks: FAILED (see above)" >&2
fi
exit $status
