#!/usr/bin/env bash
# Lays out a CPU-only libtorch 2.13.0 (what tch 0.26 links against) in ./libtorch,
# taken from the PyPI wheels, the only place this version can be downloaded here.
#
# Idempotent: when ./libtorch already holds the right version it returns at once.
# The wheels are cached in ${AUDIENCE_CACHE:-~/.cache/audience}/wheels so a fresh
# clone on the same machine only unpacks (a few seconds) and never downloads again.
#
# Only the CPU libraries are unpacked. libtorch_cpu.so still names libcudart and
# libcupti (the profiler), so those two small libraries come from their NVIDIA
# wheels; no other CUDA library is needed and no GPU is used.
set -euo pipefail

version=2.13.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/libtorch"

if [ "$(cat "$dest/build-version" 2>/dev/null)" = "$version" ] && [ -f "$dest/lib/libtorch_cpu.so" ]; then
  echo "libtorch $version ready at $dest"
  exit 0
fi

cache="${AUDIENCE_CACHE:-$HOME/.cache/audience}/wheels"
mkdir -p "$cache"

# wheel SPEC GLOB: the cached wheel matching GLOB, downloaded first if absent.
wheel() {
  local spec=$1 glob=$2 found
  found=$(compgen -G "$cache/$glob" | head -n 1 || true)
  if [ -z "$found" ]; then
    echo "downloading $spec into $cache" >&2
    python3 -m pip download --quiet --no-deps --dest "$cache" "$spec" >&2
    found=$(compgen -G "$cache/$glob" | head -n 1 || true)
  fi
  [ -n "$found" ] || { echo "error: no wheel matching $glob after downloading $spec" >&2; exit 1; }
  echo "$found"
}

torch_whl=$(wheel "torch==$version" "torch-$version-*manylinux*_x86_64.whl")
cudart_whl=$(wheel "nvidia-cuda-runtime==13.0.96.*" "nvidia_cuda_runtime-13.0.96-*.whl")
cupti_whl=$(wheel "nvidia-cuda-cupti==13.0.85.*" "nvidia_cuda_cupti-13.0.85-*.whl")

# Unpack into a scratch directory beside the destination, then swap it in, so an
# interrupted setup never leaves a half-filled ./libtorch that looks complete.
tmp=$(mktemp -d "$root/.libtorch-setup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "unpacking libtorch $version (CPU libraries only) into $dest"
# Extract with Python's zipfile (always present with pip; unzip may not be).
python3 - "$torch_whl" "$cudart_whl" "$cupti_whl" "$tmp/libtorch" <<'PY'
import os, shutil, sys, zipfile
torch_whl, cudart_whl, cupti_whl, dest = sys.argv[1:]
cpu_libs = {"libc10.so", "libtorch_cpu.so", "libtorch.so", "libgomp.so.1",
            "libtorch_global_deps.so", "libshm.so"}
def copy(archive, member, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with archive.open(member) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
with zipfile.ZipFile(torch_whl) as wheel:
    for member in wheel.namelist():
        if member.endswith("/"):
            continue
        if member.startswith(("torch/include/", "torch/share/")):
            copy(wheel, member, os.path.join(dest, member[len("torch/"):]))
        elif member.startswith("torch/lib/") and member[len("torch/lib/"):] in cpu_libs:
            copy(wheel, member, os.path.join(dest, "lib", member[len("torch/lib/"):]))
for whl, name in [(cudart_whl, "libcudart.so.13"), (cupti_whl, "libcupti.so.13")]:
    with zipfile.ZipFile(whl) as wheel:
        copy(wheel, "nvidia/cu13/lib/" + name, os.path.join(dest, "lib", name))
missing = [l for l in cpu_libs if not os.path.exists(os.path.join(dest, "lib", l))]
if missing:
    sys.exit("error: the torch wheel lacks " + ", ".join(sorted(missing)))
PY
echo "$version" > "$tmp/libtorch/build-version"

rm -rf "$dest"
mv "$tmp/libtorch" "$dest"
echo "libtorch $version ready at $dest"
