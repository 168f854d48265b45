#!/usr/bin/env bash
# The tests the README's test command does not run: cargo's ignored tests,
# each of which needs a tool CI cannot install cheaply (docs/testing.md lists
# them). Run here where the tools exist; a missing tool is an error, not a skip.
#
# Today: the TorchScript export round trip needs a Python with torch and
# safetensors (AUDIENCE_PYTHON). Create one with:
#   python3 -m venv ~/.cache/audience/pyenv
#   ~/.cache/audience/pyenv/bin/pip install torch==2.13.0 safetensors
# Arguments go to the test binary, e.g. a test name filter.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

pyenv="${AUDIENCE_CACHE:-$HOME/.cache/audience}/pyenv/bin/python"
if [ -z "${AUDIENCE_PYTHON:-}" ]; then
  if [ -x "$pyenv" ] && "$pyenv" -c "import torch, safetensors" 2>/dev/null; then
    export AUDIENCE_PYTHON="$pyenv"
  else
    echo "error: the ignored tests need a Python with torch and safetensors: set AUDIENCE_PYTHON, or create $pyenv (see the top of $0)" >&2
    exit 2
  fi
fi
"$AUDIENCE_PYTHON" -c "import torch, safetensors" || { echo "error: AUDIENCE_PYTHON=$AUDIENCE_PYTHON cannot import torch and safetensors" >&2; exit 2; }

cargo test --locked --test it -- --ignored "$@"
