#!/usr/bin/env bash
# The README's main command: set up (skipped when done), build, and run the
# end-to-end demo on the embedded default (local engine, generated data, local
# storage). Arguments go to `audience demo`, e.g. `--out DIR` or `--users N`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked --bin audience
exec "$CARGO_TARGET_DIR/debug/audience" demo "$@"
