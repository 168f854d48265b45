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

# The report tests render pages in a real browser: Debian's Chromium.
if [ -z "${AUDIENCE_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  echo "installing chromium (headless browser, for the report tests)"
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

# The TorchScript fixture test always runs (tests/data/torchscript). The export
# round trip runs too when a Python with torch and safetensors is at hand (not
# installed by default: torch's CUDA stack is ~4.7 GB). Create one with:
# python3 -m venv ~/.cache/audience/pyenv && ~/.cache/audience/pyenv/bin/pip
# install torch==2.13.0 safetensors
pyenv="${AUDIENCE_CACHE:-$HOME/.cache/audience}/pyenv/bin/python"
if [ -z "${AUDIENCE_PYTHON:-}" ] && [ -x "$pyenv" ] && "$pyenv" -c "import torch, safetensors" 2>/dev/null; then
  export AUDIENCE_PYTHON="$pyenv"
fi

# Object storage servers for the storage tests (tests/it/cloud.rs), stopped on exit.
source scripts/test-servers.sh
start_test_servers

cargo test --locked "$@"

# The deployment definitions (k8s/, jobs/), validated offline; uses the binary
# the tests just built for `airflow dags test`.
bash scripts/validate-deploy.sh
