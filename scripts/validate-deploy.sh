#!/usr/bin/env bash
# Offline validation of the deployment definitions (called by scripts/test.sh):
#   1. k8s/: the base and every overlay rendered by kustomize (kubectl kustomize)
#      and validated, strictly, against the Kubernetes schemas (kubernetes-validate);
#   2. jobs/argo/: validated against Argo's API models (scripts/validate/argo.py);
#   3. jobs/airflow/: the DAG file imported by real Airflow with no import error,
#      and `airflow dags test audience_local` committing a run of a small demo world;
#   4. k8s/base/audience.toml: parsed and checked by `audience validate --config`.
# Tools are installed once into ${AUDIENCE_CACHE:-~/.cache/audience}/tools.
# Exits non-zero on the first broken definition. Needs the audience binary built
# (AUDIENCE_BIN, default $CARGO_TARGET_DIR/debug/audience).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null

tools="${AUDIENCE_CACHE:-$HOME/.cache/audience}/tools"
KUBERNETES_VERSION=1.32.0

venv() {  # name check-import packages...
  local name=$1 check=$2
  shift 2
  if ! "$tools/$name/bin/python" -c "import $check" 2>/dev/null; then
    echo "installing $* into $tools/$name"
    python3 -m venv "$tools/$name"
    "$tools/$name/bin/pip" install -q "$@"
  fi
}
venv k8sval "kubernetes_validate, argo_workflows, yaml" kubernetes-validate==1.37.0 argo-workflows==6.7.18 pyyaml
venv airflow "airflow.providers.cncf.kubernetes" apache-airflow==3.3.2 apache-airflow-providers-cncf-kubernetes==10.25.0

if command -v kustomize >/dev/null; then
  render() { kustomize build "$1"; }
elif command -v kubectl >/dev/null; then
  render() { kubectl kustomize "$1"; }
else
  echo "error: neither kustomize nor kubectl is installed; one is needed to render k8s/" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== k8s: kustomize + kubernetes-validate (Kubernetes $KUBERNETES_VERSION, strict)"
for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  out="$work/$(echo "$dir" | tr / _).yaml"
  render "$dir" >"$out"
  "$tools/k8sval/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$out"
  echo "valid $dir ($(grep -c '^kind:' "$out") objects)"
done

echo "== jobs/argo: Argo API models"
"$tools/k8sval/bin/python" scripts/validate/argo.py jobs/argo/*.yaml

echo "== jobs/airflow: import"
export AIRFLOW_HOME="$work/airflow" AIRFLOW__CORE__DAGS_FOLDER="$PWD/jobs/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False
airflow="$tools/airflow/bin/airflow"
"$airflow" db migrate >"$work/airflow-db.log" 2>&1 || { cat "$work/airflow-db.log"; exit 1; }
"$airflow" dags list --local -o json 2>/dev/null >"$work/dags.json"
python3 - "$work/dags.json" <<'PY'
import json, sys
# Airflow prints warnings on stdout too; the listing is the JSON line.
line = next((l for l in open(sys.argv[1]) if l.startswith("[")), "[]")
listed = json.loads(line)
ids = {d["dag_id"] for d in listed}
missing = {"audience_nightly", "audience_local"} - ids
if missing:
    sys.exit(f"airflow did not load {sorted(missing)} (import error?); loaded: {sorted(ids)}")
print("imported", ", ".join(sorted(ids)))
PY
if "$airflow" dags list-import-errors --local 2>/dev/null | grep -q "audience_dag.py"; then
  "$airflow" dags list-import-errors --local
  exit 1
fi

bin="${AUDIENCE_BIN:-$CARGO_TARGET_DIR/debug/audience}"
[ -x "$bin" ] || cargo build --locked --bin audience
demo="$work/demo"
"$bin" generate --out "$demo/world" --users 20000 --podcasts 500 --campaigns 60 --impressions 200000 >/dev/null 2>"$work/generate.log"
"$bin" train --data "$demo/world" --out "$demo/model" --epochs 2 >/dev/null 2>"$work/train.log"

echo "== k8s/base/audience.toml: the CronJob's config, checked by the CLI"
AUDIENCE_INPUTS="$demo/world" AUDIENCE_MODEL="$demo/model" AUDIENCE_OUTPUT="$demo/audiences" \
  "$bin" validate --config k8s/base/audience.toml >/dev/null
echo "valid k8s/base/audience.toml"

echo "== jobs/airflow: dags test"
AUDIENCE_BIN="$bin" AUDIENCE_DEMO_DIR="$demo" "$airflow" dags test audience_local 2026-06-01 >"$work/dags-test.log" 2>&1 \
  || { tail -n 60 "$work/dags-test.log"; exit 1; }
grep -E "running .*audience run|committed:|DagRun Finished" "$work/dags-test.log" | sed 's/^/  /' | cut -c1-200
test -f "$demo/audiences/dt=2026-06-01/_SUCCESS" || { echo "no _SUCCESS after airflow dags test" >&2; exit 1; }
echo "airflow dags test audience_local committed $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$demo/audiences/dt=2026-06-01/_SUCCESS")"
echo "deployment definitions valid"
