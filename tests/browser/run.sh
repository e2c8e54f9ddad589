#!/usr/bin/env bash
# The web inbox in a real browser: Debian's Chromium (/usr/bin/chromium, never a downloaded one),
# driven by playwright-core (pinned in package.json / package-lock.json), against `pdchannels
# serve` processes that the test files start, each on a fresh database, with the testkit's
# fixture provider app for replies. See README.md here.
#
# Usage: tests/browser/run.sh [PATH/TO/pdchannels] [TEST_FILE...]   (default: target/debug/pdchannels)
#
# The fixture app is BIN's directory's examples/provider_app (build it with: cargo build -p
# pdchannels-testkit --example provider_app; PDCHANNELS_FIXTURE_APP names another). Installs
# node_modules here with `npm ci` when it is missing. Fails (never skips) when Chromium is
# missing. Ends with `N passed, M failed`; exits non-zero if any test failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${1:-$root/target/debug/pdchannels}"
shift || true
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable pdchannels at $bin (build it with: cargo build -p pdchannels)" >&2
  exit 2
fi
fixture="${PDCHANNELS_FIXTURE_APP:-$(dirname "$bin")/examples/provider_app}"
if [[ ! -x "$fixture" ]]; then
  echo "run.sh: no fixture provider app at $fixture" >&2
  echo "        (build it with: cargo build -p pdchannels-testkit --example provider_app)" >&2
  exit 2
fi
chromium="${PDCHANNELS_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "run.sh: FAILED: no Chromium at $chromium: the inbox's browser tests cannot run." >&2
  echo "        Install it: apt-get update && apt-get install -y chromium" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
command -v node >/dev/null || { echo "run.sh: node (>= 20) is needed" >&2; exit 2; }

# Install when node_modules is missing, or older than package-lock.json (the pin changed).
if [[ ! -f "$here/node_modules/playwright-core/package.json" \
   || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  echo "run.sh: installing playwright-core (npm ci; it downloads no browser)" >&2
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

cd "$here"
PDCHANNELS_BIN="$bin" PDCHANNELS_FIXTURE_APP="$fixture" PDCHANNELS_CHROMIUM="$chromium" \
  node run.mjs "$@"
