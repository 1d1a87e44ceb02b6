#!/usr/bin/env bash
# One-go GPU check for an H100 / H200 session (about 8 minutes of device time), from the repository root:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Needs an environment with the package and its test extra, a CUDA build of torch and inranker
# (pip install -e ".[test]" inranker). Stages, each written to OUT_DIR (default $OUT or ./gpu-check):
#   1. tests/scoring/test_gpu.py: every family's scores on CUDA vs CPU fp32 (fp32 to 1e-5, bf16 within 2e-2), tiny
#      models;
#   2. benchmarks.run --shapes real, bf16: every real seed shape against its alternative, 4 queries x 100 BM25
#      passages (one predict per query, at predict()'s defaults: no --batch-size), model TFLOP/s against the
#      card's measured dense bf16 matmul; the 3B shapes are built on the GPU (seconds) and saved in bf16;
#   3. benchmarks.agreement: our real-shape scores on CUDA fp32 / bf16 against CPU fp32.
# STAGES="1 2 3" (default) picks stages; MODELS_DIR keeps the built models between runs (default /tmp/...).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu-check}}"
MODELS_DIR="${MODELS_DIR:-/tmp/rerank-plugins-bench-models}"
STAGES="${STAGES:-1 2 3}"
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.version.cuda)" \
  | tee -a "$OUT_DIR/gpu.txt" || exit 1
for stage in $STAGES; do
  start=$(date +%s)
  case "$stage" in
    1) timeout 150 "$PYTHON" -m pytest tests/scoring/test_gpu.py -q -rs 2>&1 | tee "$OUT_DIR/test_gpu.txt" || status=1 ;;
    2) timeout 330 "$PYTHON" -m benchmarks.run --device cuda --dtype bf16 --shapes real --queries 4 --depth 100 \
         --warm-up-queries 1 --repeats 2 --skip-memory --models-dir "$MODELS_DIR" \
         --json "$OUT_DIR/gpu-real-bf16.json" 2>&1 | tee "$OUT_DIR/benchmark.txt" || status=1 ;;
    3) timeout 120 "$PYTHON" -m benchmarks.agreement --models-dir "$MODELS_DIR" \
         --json "$OUT_DIR/agreement.json" 2>&1 | tee "$OUT_DIR/agreement.txt" || status=1 ;;
    *) echo "unknown stage $stage" >&2; status=1 ;;
  esac
  echo "stage $stage: $(( $(date +%s) - start )) s" | tee -a "$OUT_DIR/timing.txt"
done
exit $status
