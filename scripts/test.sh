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

# Tests that need a tool CI cannot install cheaply are marked ignored (cargo
# counts them as ignored, not passed); scripts/test-ignored.sh runs them where
# the tools exist. docs/testing.md lists them.

# Object storage servers for the storage tests (tests/it/cloud.rs), stopped on exit.
source scripts/test-servers.sh
start_test_servers

# Every gate runs even when one before it failed, so one failure does not hide
# another; the script fails if any did. Each gate's seconds are printed at the
# end (docs/build.md: what the two README commands cost on a fresh machine).
failed=()
times=()
timed() { times+=("$1 ${SECONDS} s"); SECONDS=0; }
timed "setup and test servers"
# The house format (rustfmt.toml) and lints, warnings as errors.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "installing rustfmt and clippy (the format and lint gates)"
  rustup component add rustfmt clippy
fi
cargo fmt --check || failed+=("format (cargo fmt --check; cargo fmt fixes it)")
timed "format"
cargo clippy --locked --all-targets -- -D warnings || failed+=("lints (cargo clippy --all-targets -- -D warnings)")
timed "lints"
if cargo test --locked --no-run "$@"; then
  timed "tests: build"
  cargo test --locked --no-fail-fast "$@" || failed+=("cargo test")
  timed "tests: run"
else
  failed+=("cargo test (the build)")
  timed "tests: build"
fi

# The deployment definitions (k8s/, jobs/), validated offline; uses the binary
# the tests just built for `airflow dags test`.
bash scripts/validate-deploy.sh || failed+=("deployment checks (scripts/validate-deploy.sh)")
timed "deployment checks"
printf 'seconds by gate: %s\n' "$(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"

if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
