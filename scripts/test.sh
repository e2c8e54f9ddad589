#!/usr/bin/env bash
# The project's test command: every Rust test (unit, property, snapshot, store, in-process MCP,
# subprocess, the hub over HTTP), then independent clients against the built binary: the official
# MCP SDKs (TypeScript, Python; stdio and HTTP), Pipedrive's official Node client against
# `pdchannels serve`, and the official MCP conformance suite against the hub's /mcp.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
# `cargo test` builds the binary the remaining checks drive; make sure it is current.
cargo build --locked -p pdchannels
bash tests/sdk/run.sh target/debug/pdchannels
bash tests/node-client/run.sh target/debug/pdchannels
bash tests/conformance/run.sh target/debug/pdchannels
