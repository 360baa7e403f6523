#!/usr/bin/env bash
# The demo: convert embedded example data (and, when present, real data from ../shared/data)
# into canonical records, with every row accounted for, then inspect the result.
set -euo pipefail
cd "$(dirname "$0")/.."
T=.venv/bin/thresher
OUT=out/demo
mkdir -p "$OUT"
echo "== 1. convert the embedded examples (bad rows are quarantined with reasons)"
$T convert examples/data/chat_sharegpt.jsonl examples/data/instructions_alpaca.json --out "$OUT/sft.parquet" --on-error quarantine
$T convert examples/data/pairs_hh.jsonl --out "$OUT/preference.parquet"
$T convert examples/data/math_problems.jsonl --kind rlvr --out "$OUT/rlvr.jsonl"
SHARED=${THRESHER_SHARED_DATA:-../shared/data}
if [ -d "$SHARED/sft" ]; then
  echo "== 2. convert real data from $SHARED"
  $T convert "$SHARED/sft/lima.json" "$SHARED/sft/fastchat_dummy_conversation.json" --out "$OUT/real_sft.parquet" --on-error quarantine
  $T convert "$SHARED/preference/hh-rlhf_harmless-base_test.jsonl.gz" --out "$OUT/real_preference.parquet" --on-error quarantine
  $T convert "$SHARED/gsm8k/test.jsonl" --kind rlvr --out "$OUT/real_rlvr.parquet"
  INSPECT="$OUT/real_sft.parquet"
  echo "== 2b. build the RLVR example mixture (steps, decontamination, skill targets; see $OUT/rlvr_mix/report.html)"
  THRESHER_SHARED_DATA="$(cd "$SHARED" && pwd)" $T mix examples/mixes/rlvr.yaml --out "$OUT/rlvr_mix"
else
  INSPECT="$OUT/sft.parquet"
fi
echo "== 3. inspect"
$T inspect "$INSPECT" "$OUT/rlvr.jsonl" --samples 1 --json "$OUT/inspect.json"
echo "demo outputs are in $OUT/"
