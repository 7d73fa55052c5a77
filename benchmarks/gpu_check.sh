#!/usr/bin/env bash
# kgen on an NVIDIA GPU, in about ten minutes: each family (ae, vae, dcgan, wgan_gp, aae, rbm) trained a few
# hundred steps per backend in float32 and mixed precision, through kgen and through the same networks'
# hand-written Keras train_step on that backend; prints samples/s and kgen / Keras as a Markdown table.
#
#   benchmarks/gpu_check.sh              # uses .venv (or $PYTHON); installs nothing
#   benchmarks/gpu_check.sh --install    # also: creates .venv (pip install -e ".[dev]") when missing, and puts in
#                                        # the CUDA builds of jax and torch when they do not see the GPU
#   benchmarks/gpu_check.sh --help
#
# Settings (environment): BACKENDS ("tensorflow jax torch"), PRECISIONS ("float32 mixed_bfloat16"),
# MODELS ("vae_conv ae rbm dcgan wgan_gp aae"), BATCH (128), STEPS (256 timed steps per measurement),
# WARMUP (32), TOTAL_SECONDS (540: shared by the backends; measurements that would start later are skipped),
# OUT (benchmarks/results/gpu). GPU_CHECK_CPU=1 runs the same steps on the CPU without checking for a GPU
# (to try the script itself on a machine without one, with small STEPS).
#
# Nothing else in the project runs this script or needs a GPU. Each backend runs in one process
# (benchmarks/bench.py --in-process --device gpu); a backend that does not see the GPU is skipped with the
# reason (TensorFlow: the project installs tensorflow-cpu on Linux; this script never replaces it). A ratio
# to TensorFlow's rows (keras-io float32) crosses processes: it is a ratio of medians, marked with a dagger.
set -euo pipefail

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
INSTALL=0
for arg in "$@"; do
  case "$arg" in
    --install) INSTALL=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
BACKENDS=${BACKENDS:-"tensorflow jax torch"}
PRECISIONS=${PRECISIONS:-"float32 mixed_bfloat16"}
MODELS=${MODELS:-"vae_conv ae rbm dcgan wgan_gp aae"}
BATCH=${BATCH:-128}
STEPS=${STEPS:-256}
WARMUP=${WARMUP:-32}
TOTAL_SECONDS=${TOTAL_SECONDS:-540}
OUT=${OUT:-benchmarks/results/gpu}

DEVICE=gpu
[ "${GPU_CHECK_CPU:-0}" = 1 ] && DEVICE=cpu

# 1. The GPU.
if [ "$DEVICE" = cpu ]; then
  echo "gpu_check: GPU_CHECK_CPU=1: on the CPU, no GPU checked"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no nvidia-smi on PATH: this script needs an NVIDIA GPU and its driver" >&2
  exit 2
fi
if [ "$DEVICE" = gpu ] && ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
  echo "gpu_check: nvidia-smi found no usable GPU" >&2
  exit 2
fi

# 2. The Python environment: $PYTHON, else .venv; created only with --install.
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
  if [ "$INSTALL" = 1 ]; then
    echo "gpu_check: creating .venv: python3 -m venv .venv && pip install -e \".[dev]\""
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    PY=.venv/bin/python
  else
    echo "gpu_check: no $PY: run 'make setup' first, set PYTHON, or rerun with --install" >&2
    exit 2
  fi
fi
"$PY" -c "import kgen, keras" || { echo "gpu_check: kgen is not importable with $PY" >&2; exit 2; }

# 3. Which backends see the GPU (each probed in its own process).
gpus_seen() {
  case "$1" in
    tensorflow) "$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" ;;
    jax) "$PY" -c "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))" ;;
    torch) "$PY" -c "import torch; print(torch.cuda.device_count())" ;;
  esac 2>/dev/null | tail -1
}
version_of() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
fix_for() {  # the command that gives a backend its CUDA build (printed; run with --install)
  case "$1" in
    jax) echo "$PY -m pip install \"jax[cuda12]==$(version_of jax)\"" ;;
    torch) echo "$PY -m pip install --force-reinstall \"torch==$(version_of torch)\"" ;;  # PyPI's Linux wheel is CUDA's
    tensorflow) echo "" ;;  # never: the project pins tensorflow-cpu on Linux
  esac
}
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_FORCE_GPU_ALLOW_GROWTH=true
USABLE=()
for backend in $BACKENDS; do
  if [ "$DEVICE" = cpu ]; then USABLE+=("$backend"); continue; fi
  seen=$(gpus_seen "$backend" || true)
  if [ "${seen:-0}" -gt 0 ] 2>/dev/null; then
    USABLE+=("$backend"); echo "gpu_check: $backend sees $seen GPU(s)"; continue
  fi
  fix=$(fix_for "$backend")
  if [ "$INSTALL" = 1 ] && [ -n "$fix" ]; then
    echo "gpu_check: $backend sees no GPU; running: $fix"
    eval "$fix"
    seen=$(gpus_seen "$backend" || true)
    if [ "${seen:-0}" -gt 0 ] 2>/dev/null; then USABLE+=("$backend"); continue; fi
  fi
  if [ -n "$fix" ]; then
    echo "gpu_check: skipping $backend: it sees no GPU (its CUDA build: $fix; or rerun with --install)"
  else
    echo "gpu_check: skipping $backend: it sees no GPU (the project installs tensorflow-cpu on Linux)"
  fi
done
if [ ${#USABLE[@]} -eq 0 ]; then
  echo "gpu_check: no backend sees the GPU" >&2
  exit 1
fi

# 4. One in-process run per backend, within its share of the time.
mkdir -p "$OUT"
rm -f "$OUT"/*.json
share=$(( TOTAL_SECONDS / ${#USABLE[@]} ))
for backend in "${USABLE[@]}"; do
  echo "gpu_check: $backend (about $share s)"
  # shellcheck disable=SC2086 # the lists are meant to split into arguments
  KERAS_BACKEND=$backend timeout $(( share + 180 )) "$PY" benchmarks/bench.py --in-process --device "$DEVICE" \
    --backends "$backend" --suites vae ae-family gan aae --only $MODELS --impls kgen keras keras-io \
    --precision $PRECISIONS --batch $BATCH --steps "$STEPS" --warmup "$WARMUP" --rounds 1 --budget "$share" \
    --label "gpu_check.sh: one round, $STEPS steps after $WARMUP" \
    --json "$OUT/$backend.json" --markdown "$OUT/$backend.md" >/dev/null || echo "gpu_check: $backend stopped early"
  if [ ! -f "$OUT/$backend.json" ] && [ -f "$OUT/$backend.partial.json" ]; then
    mv "$OUT/$backend.partial.json" "$OUT/$backend.json"  # what it measured before it was stopped
  fi
done

# 5. The table.
shopt -s nullglob
results=("$OUT"/*.json)
if [ ${#results[@]} -eq 0 ]; then
  echo "gpu_check: no results" >&2
  exit 1
fi
"$PY" benchmarks/report.py "${results[@]}" --markdown "$OUT/gpu.md"
cat "$OUT/gpu.md"
echo "gpu_check: wrote $OUT/gpu.md and ${results[*]}"
