#!/usr/bin/env bash
# Prepare what the GPU proof kit carries to the device machine (which reaches no package index and no hub):
#   .whl/       wheels for its CPython 3.12 (manylinux x86_64), exact versions, no dependencies resolved there
#   .gpu_data/  the slice of ../shared/data the steps read (../shared does not travel)
# then check that they and the working tree stay under the 64 MiB a call may carry, and print the carry list.
#
#   bash benchmarks/gpu/fetch_wheels.sh        # here, with network to PyPI
#   run(command="bash benchmarks/gpu/run.sh", carry=[".whl", ".gpu_data"], timeout_s=580)   # there (the kit: ≤ 540 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SHARED=${THRESHER_SHARED_DATA:-../shared/data}
LIMIT_MB=60  # of the 64 MiB a call carries, with room to spare

# What the device image lacks (its list: the device tool's KINDS.md). Torch, transformers, triton, accelerate,
# sentence-transformers, pyarrow, pandas, numpy, pyyaml, typer, rich, xxhash, sympy are there already.
WHEELS=(
  polars==1.20.0                 # 31 MiB; polars 2.x needs a 51 MiB runtime wheel that leaves no room
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  orjson==3.13.0
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19   # TRL's trainers take datasets
  trl==1.16.0
  liger-kernel==0.8.5            # the comparison TRL runs with use_liger_kernel=True, and the kernel benchmarks
  cut-cross-entropy==25.1.1
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2   # the gsm8k verifier (RLVR step)
)
rm -rf .whl && mkdir -p .whl
for spec in "${WHEELS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec" 2>&1 | grep -v "^WARNING: Location" || true
  name=${spec%%==*}
  ls .whl | grep -qi "^${name//-/[-_]}-" || { echo "error: no wheel for $spec" >&2; exit 2; }
done

rm -rf .gpu_data && mkdir -p .gpu_data/sft .gpu_data/preference .gpu_data/gsm8k
for f in SOURCES.md sft/lima.json sft/alpaca_en_demo.json sft/code_alpaca_2k.json sft/new_codealpaca.json \
         preference/hh-rlhf_harmless-base_test.jsonl.gz gsm8k/test.jsonl; do
  cp "$SHARED/$f" ".gpu_data/$f"
done

tree_kb=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
whl_kb=$(du -sk .whl | cut -f1)
data_kb=$(du -sk .gpu_data | cut -f1)
total_mb=$(( (tree_kb + whl_kb + data_kb) / 1024 ))
echo "wheels $((whl_kb / 1024)) MiB + data $((data_kb / 1024)) MiB + working tree $((tree_kb / 1024)) MiB = ${total_mb} MiB (limit ${LIMIT_MB})"
if (( total_mb > LIMIT_MB )); then echo "error: over the carry limit" >&2; exit 2; fi
echo 'carry: [".whl", ".gpu_data"]'
