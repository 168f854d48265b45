#!/usr/bin/env bash
# The README's test command: set up (skipped when done) and run the whole suite.
# Arguments go to `cargo test`, e.g. a test name filter.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# The allocation reference tests compare with the exact optimum from CBC.
if ! ldconfig -p | grep -q libCbcSolver.so; then
  echo "installing coinor-libcbc-dev (CBC MIP solver, for the allocation reference tests)"
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq coinor-libcbc-dev >/dev/null
fi

exec cargo test --locked "$@"
