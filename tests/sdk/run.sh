#!/usr/bin/env bash
# Independent-client checks of the pdchannels MCP server over stdio, with the official
# TypeScript SDK (ts_client.mjs) and Python SDK (py_client.py).
#
# Usage: tests/sdk/run.sh [PATH/TO/pdchannels]    (default: target/debug/pdchannels)
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
trap 'rm -rf "$tmp"' EXIT

status=0
echo "== TypeScript SDK ($(node -p "require('$here/node_modules/@modelcontextprotocol/sdk/package.json').version"))"
(cd "$here" && node ts_client.mjs -- "$bin" --db "$tmp/db" mcp) || status=1

echo "== Python SDK ($("$venv/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))'))"
"$venv/bin/python" "$here/py_client.py" -- "$bin" --db "$tmp/db" mcp || status=1

if [[ $status -eq 0 ]]; then
  echo "sdk checks: both clients passed"
else
  echo "sdk checks: FAILED (see above)" >&2
fi
exit $status
