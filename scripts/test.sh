#!/usr/bin/env bash
# The project's test command: every Rust test (unit, property, snapshot, store, in-process MCP,
# subprocess), then the independent MCP clients (official TypeScript and Python SDKs) against the
# built binary over stdio.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
bash tests/sdk/run.sh target/debug/pdchannels
