#!/usr/bin/env bash
# make gpu-check: one prepared script for a GPU machine, well inside 10 minutes once the environment exists.
#   1. the GPU environment (GPU_PYTHON, default .venv-gpu with the [gpu] extra: mamba-ssm; building it
#      the first time compiles mamba-ssm unless a prebuilt wheel matches, see README GPU section)
#   2. msvssm info: driver, GPU, native bf16, whether mamba-ssm's kernel answers a real call, auto's choice
#   3. the gpu-marked tests (tests/test_gpu.py) and the CUDA tests of the scan backends
#   4. the gpu profile's dry run (batch 64, 224 px, msvssm_tiny, autocast, EMA) on the GPU
#   5. training img/s of vssm_tiny and msvssm_tiny at 224 (batch 128, bf16 autocast) beside VMamba-T's
#      published 571 img/s (A100), from benchmarks/bench_models.py --train-published
# Every step runs even when an earlier one fails (a short GPU loan must still give the throughput); the
# output goes to the terminal and to build/gpu-check/, and the exit status says whether all steps passed.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_PYTHON=${GPU_PYTHON:-.venv-gpu/bin/python}
OUT=${OUT_DIR:-build/gpu-check}
mkdir -p "$OUT"
failed=()
step() { echo; echo "=== $1 ($(date +%T))"; }
check() { local name=$1; shift; "$@" || failed+=("$name"); }

step "environment ($GPU_PYTHON)"
if [ "$GPU_PYTHON" = ".venv-gpu/bin/python" ]; then
    make --no-print-directory .venv-gpu/.installed || { echo "the GPU environment could not be built"; exit 1; }
fi
"$GPU_PYTHON" -m pip install --quiet pytest pytest-timeout >/dev/null 2>&1 || true

step "msvssm info"
check info bash -c "'$GPU_PYTHON' -m msvssm.cli info --profile gpu | tee '$OUT/info.txt'"
"$GPU_PYTHON" -m msvssm.cli info --profile gpu --json > "$OUT/info.json" || true

step "gpu-marked tests and the CUDA scan tests"
check gpu-tests bash -c "'$GPU_PYTHON' -m pytest -q -rs -p no:cacheprovider -s --timeout 300 -m gpu tests/test_gpu.py \
    2>&1 | tee '$OUT/tests.txt'"
check scan-tests bash -c "'$GPU_PYTHON' -m pytest -q -rs -p no:cacheprovider --timeout 300 -k cuda \
    tests/test_selective_scan.py tests/test_scan_cuda_contract.py 2>&1 | tee -a '$OUT/tests.txt'"

step "the gpu profile's dry run"
check dry-run bash -c "'$GPU_PYTHON' -m msvssm.reproduce --profile gpu --dry-run --data '${DATA:-data}' 2>&1 \
    | tee '$OUT/dry_run.txt'"

step "training and inference img/s at 224 (VMamba-T published: 571 img/s training, A100)"
check bench bash -c "'$GPU_PYTHON' benchmarks/bench_models.py --device cuda --amp bf16 --sizes 224 --batch 128 \
    --train-batch 128 --iters 10 --warmup 3 --train-published --models vssm_tiny msvssm_tiny --out '$OUT/models' \
    2>&1 | tee '$OUT/bench.txt'"

step "done: outputs in $OUT"
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED steps: ${failed[*]}"; exit 1; fi
echo "every step passed"
