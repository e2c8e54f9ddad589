#!/usr/bin/env bash
# Code written for Pipedrive's Channels API, pointed at the pdchannels hub by changing only its
# base URL: the official Node client (npm package `pipedrive`, v1 ChannelsApi, pinned in
# package.json / package-lock.json) drives a hub that channels.test.mjs spawns on a fresh
# database, under node's built-in test runner.
#
# Usage: tests/node-client/run.sh [PATH/TO/pdchannels]   (default: target/debug/pdchannels)
#
# Installs node_modules here with `npm ci` when it is missing (needs node >= 20, npm, and the npm
# registry the first time). Exits non-zero if any test fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${1:-$root/target/debug/pdchannels}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable pdchannels at $bin (build it with: cargo build -p pdchannels)" >&2
  exit 2
fi

# Install when node_modules is missing, or older than package-lock.json (the pin changed).
if [[ ! -f "$here/node_modules/pipedrive/package.json" \
   || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  echo "run.sh: installing the pipedrive Node client (npm ci)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

cd "$here"
PDCHANNELS_BIN="$bin" node --test --test-reporter=spec channels.test.mjs
