#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 20) and fails on the first
# crash. Uses the nightly toolchain when installed (else stable with RUSTC_BOOTSTRAP=1);
# installs cargo-fuzz (from crates.io) when it is missing.
# A crash leaves its input in fuzz/artifacts/TARGET/: add it as a regression test in the
# crate's normal tests, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS]  (whole seconds per target, default 20; got '$seconds')" >&2
    exit 2
fi

# libFuzzer's instrumentation needs nightly's -Z flags. Where only the stable toolchain is
# installed (and none can be fetched), RUSTC_BOOTSTRAP=1 lets stable accept them.
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
targets=$(cargo "${toolchain[@]}" fuzz list)
# Build every target first, so the time limit below is spent fuzzing, not compiling.
cargo "${toolchain[@]}" fuzz build
for target in $targets; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target"
    # -rss_limit_mb and -timeout turn a blow-up or a hang into a reported crash.
    cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
echo "fuzz: every target ran ${seconds}s without a crash"
