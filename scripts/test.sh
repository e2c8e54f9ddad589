#!/usr/bin/env bash
# The project's test command: every Rust test (unit, property, snapshot, store, in-process MCP,
# subprocess, the hub over HTTP), then independent clients against the built binary: the official
# MCP SDKs (TypeScript, Python; stdio and HTTP), Pipedrive's official Node client against
# `pdchannels serve`, and the official MCP conformance suite against the hub's /mcp.
set -euo pipefail
cd "$(dirname "$0")/.."

# The store, hub and relay tests run on SQLite and on PostgreSQL: each PostgreSQL test creates a
# fresh database on the server PDCHANNELS_TEST_POSTGRES names (default: postgres://postgres@
# 127.0.0.1:5432/postgres, a local server with trust auth). Without a server those halves are
# skipped, each saying so, unless PDCHANNELS_REQUIRE_POSTGRES=1 (CI sets it): then they fail.
pg="${PDCHANNELS_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
read -r host port < <(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 5432)' "$pg")
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "NOTE: no PostgreSQL at $pg: the PostgreSQL tests will be skipped." >&2
  echo "      To run them, start PostgreSQL 15+ (apt install postgresql, or" >&2
  echo "      docker run -e POSTGRES_HOST_AUTH_METHOD=trust -p 5432:5432 postgres:15) or point" >&2
  echo "      PDCHANNELS_TEST_POSTGRES at a server where that user may CREATE DATABASE." >&2
fi
cargo test --workspace --locked
# The hub's API tests and the relay's tests again, their stores on PostgreSQL (the store's own
# suite already runs every test on both).
# (--workspace: the same features as above, so nothing is built again.)
PDCHANNELS_TEST_BACKEND=postgres cargo test --workspace --locked --test api --test relay
# `cargo test` builds the binary the remaining checks drive; make sure it is current.
cargo build --locked -p pdchannels
bash tests/sdk/run.sh target/debug/pdchannels
bash tests/node-client/run.sh target/debug/pdchannels
bash tests/conformance/run.sh target/debug/pdchannels
# The web inbox in a real browser (Debian's Chromium, playwright-core), with the fixture provider app.
cargo build --locked -p pdchannels-testkit --example provider_app
bash tests/browser/run.sh target/debug/pdchannels
