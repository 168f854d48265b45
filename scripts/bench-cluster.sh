#!/usr/bin/env bash
# Wall time of `audience run` on one world: the local engine, then a Ballista
# scheduler and two executors (1 task slot each) started on 127.0.0.1, the same
# config and date with engine = "ballista". Prints both runs' wall time and
# stage seconds, and checks the two runs committed the same audiences.
#
#   scripts/bench-cluster.sh [DIR]
#
# USERS (default 500000: four 128k-row groups in the users table; the scan
# splits them by rows into the two partitions), SOLVER (default greedy, so that the
# allocation, which runs in the job's process on either engine, does not drown
# the scoring stage; lagrangian for the default job).
# DIR keeps the world and model between runs (default: a new temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked --bin audience -q
bin="$CARGO_TARGET_DIR/debug/audience"
dir=$(realpath -m "${1:-$(mktemp -d)}")
users=${USERS:-500000}
solver=${SOLVER:-greedy}
date=2026-06-01
mkdir -p "$dir"
export RUST_LOG=${RUST_LOG:-warn}

[ -d "$dir/world/users" ] || "$bin" generate --out "$dir/world" --users "$users" >/dev/null
[ -f "$dir/model/model.json" ] || "$bin" train --data "$dir/world" --out "$dir/model" --epochs 3 >/dev/null
rm -rf "$dir/out-local" "$dir/out-cluster" "$dir/cluster"
mkdir -p "$dir/cluster"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ok() { # URL WHAT
  for _ in $(seq 600); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done
  echo "error: $2 did not become ready ($1)" >&2; exit 1
}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
scheduler=$(free_port)
RUST_LOG=info "$bin" scheduler --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port "$scheduler" \
  2>"$dir/cluster/scheduler.log" &
pids+=($!)
wait_ok "http://127.0.0.1:$scheduler/healthz" scheduler
for i in 0 1; do
  health=$(free_port)
  RUST_LOG=info "$bin" executor --bind-host 127.0.0.1 --external-host 127.0.0.1 --scheduler-host 127.0.0.1 \
    --scheduler-port "$scheduler" --bind-port "$(free_port)" --grpc-port "$(free_port)" --health-port "$health" \
    --task-slots 1 --work-dir "$dir/cluster/executor-$i" 2>"$dir/cluster/executor-$i.log" &
  pids+=($!)
  wait_ok "http://127.0.0.1:$health/readyz" "executor $i"
done

config() { # NAME ENGINE
  printf '[inputs]\nroot = "%s"\n[model]\nuri = "%s"\n[output]\nroot = "%s"\n[allocation]\nsolver = "%s"\n[engine]\n%s\n' \
    "$dir/world" "$dir/model" "$dir/out-$1" "$solver" "$2" >"$dir/$1.toml"
}
config local 'partitions = 2'
config cluster "kind = \"ballista\"
scheduler = \"df://127.0.0.1:$scheduler\"
partitions = 2"

for engine in local cluster; do
  start=$(date +%s.%N)
  manifest=$("$bin" run --config "$dir/$engine.toml" --date "$date")
  end=$(date +%s.%N)
  python3 - "$engine" "$start" "$end" "${manifest#file://}" <<'PY'
import json, sys
engine, start, end, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
m = json.load(open(path))
stages = ", ".join(f"{k} {v:.1f} s" for k, v in m["timings"].items())
print(f"{engine:8} wall {end - start:6.1f} s  users {m['users_scored']}  pairs {m['eligible_pairs']}  ({stages})")
PY
done
if diff -rq <(cd "$dir/out-local"/dt=*/run=*/audiences && find . -name '*.parquet' -exec sha256sum {} + | sort -k2) \
            <(cd "$dir/out-cluster"/dt=*/run=*/audiences && find . -name '*.parquet' -exec sha256sum {} + | sort -k2) >/dev/null; then
  echo "audiences: identical files"
else
  echo "audiences: the files differ" >&2; exit 1
fi
