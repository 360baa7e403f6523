#!/usr/bin/env bash
# The GPU proof kit, one command: install the carried wheels (not with --dry-run), then every step.
#   bash benchmarks/gpu/run.sh              # on the lent GPU; results in $OUT/gpu_results.json and $OUT/gpu_log.txt
#   bash benchmarks/gpu/run.sh --dry-run    # tiny shapes on the CPU (under 3 minutes; tests/test_gpu_kit.py runs it)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [[ " $* " != *" --dry-run "* ]]; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "error: installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "warning: no .whl/ here: run bash benchmarks/gpu/fetch_wheels.sh before carrying the tree" >&2
  fi
fi
exec "$PY" benchmarks/gpu/kit.py "$@"
