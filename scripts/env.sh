# Sourced by the README's commands: shared build settings and the one-time setup.
# Build outputs live outside the checkout, so a fresh clone (CI) reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/audience/target}"
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup) first" >&2; exit 2; }
bash "$(dirname "${BASH_SOURCE[0]}")/setup-libtorch.sh"
