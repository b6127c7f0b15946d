#!/usr/bin/env bash
# The GPU benchmarks in one prepared run (about 5-8 minutes on one H100):
#   bash launch/gpu_bench.sh [OUT_DIR]        (default: $OUT if set, else /tmp/gpu_bench)
# Prints the device, the versions, the bf16 matmul peak measured on the spot, the ViT-B/16
# backbone forward+backward at 224x224 over growing batches (images/s, MFU against the measured
# peak), XLA's attention against cuDNN's fused kernel, and the PATH step on the paper's mixture
# scaled to one device (configs/vitb.py:scale=16, without detection; see path_jax/bench_suite.py),
# then writes OUT_DIR/gpu_bench.json and OUT_DIR/gpu_bench.log.
#
# Needs jax with a GPU plugin, flax, optax and ml-collections; no TensorFlow, tfds, grain or clu.
# An image without ml-collections (pure Python) gets it from launch/wheels/, filled beforehand on
# a connected machine with:  pip download --no-deps -d launch/wheels ml-collections
# (carry launch/wheels with the working tree). Extra arguments go to `bench suite`, e.g.
#   bash launch/gpu_bench.sh /tmp/out --torch          # also the PyTorch + timm peer
#   bash launch/gpu_bench.sh /tmp/out --budget_s=300   # start no new part after 300 s
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-/tmp/gpu_bench}}
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$OUT_DIR"
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import ml_collections' 2>/dev/null; then
  if ls launch/wheels/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$OUT_DIR/site" \
        launch/wheels/*.whl || exit 1
    export PYTHONPATH="$OUT_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "ml-collections is missing and launch/wheels/ has no wheel: run" \
         "'pip download --no-deps -d launch/wheels ml-collections' where there is a network" >&2
    exit 1
  fi
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
# One process owns the GPU: let XLA take most of its memory up front (fewer allocator stalls).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null \
  | tee "$OUT_DIR/nvidia_smi.csv"
"$PYTHON" -m path_jax.bench --json="$OUT_DIR/gpu_bench.json" suite "$@" 2>&1 \
  | tee "$OUT_DIR/gpu_bench.log"
rc=${PIPESTATUS[0]}
echo "results: $OUT_DIR/gpu_bench.json (exit $rc)"
exit "$rc"
