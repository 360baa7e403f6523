#!/usr/bin/env bash
# The demo: the whole pipeline (dedup → decontaminate → mix → synth → SFT → DPO → RLVR) on a slice of real
# public data from ../shared/data (THRESHER_SHARED_DATA), with tiny models made here; one report at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${THRESHER_SHARED_DATA:-../shared/data}
if [ ! -d "$SHARED/sft" ]; then
  echo "the demo reads real data from $SHARED (set THRESHER_SHARED_DATA to its folder)" >&2
  exit 2
fi
export THRESHER_SHARED_DATA="$(cd "$SHARED" && pwd)"
echo "== 1. tiny models (a random Llama and a reward model, tokenizer trained on LIMA)"
.venv/bin/python -m thresher.tiny out/demo/models --texts "$THRESHER_SHARED_DATA/sft/lima.json"
echo "== 2. the plan (what is cached already)"
.venv/bin/thresher run examples/pipeline/demo.yaml --dry-run
echo "== 3. the pipeline"
.venv/bin/thresher run examples/pipeline/demo.yaml
echo "open out/demo/pipeline/report.html: every stage's accounting, leakage, mixture shares, synthesis yield and training curves"
