#!/usr/bin/env bash
# The ONE prepared command of issue 23's GPU check: build saguaro with its CUDA kernels, run the
# GPU-marked tests, then bench/gpu.py (trace replay on random-weight models of the real shapes), all
# inside a hard deadline of 9 minutes (default 530 s, GPU_CHECK_SECONDS to change it).
#
# Through the device machine (from the repository root; carry nothing, the repository travels):
#
#     run(command="bash bench/gpu_check.sh", timeout_s=570)
#
# The machine's python3 holds torch (CUDA), pybind11, scikit-build-core, cmake, ninja, pytest, numpy,
# tokenizers, tqdm, safetensors and transformers; nothing can be fetched there, so the build runs
# offline (no build isolation, no dependencies). What comes back lands under $OUT (at most 8 files):
#
#     env.txt          GPU, driver, python, torch, CUDA, which of saguaro's imports are present
#     build.log        the build (pip editable install; a plain CMake build if that fails)
#     tests.log        pytest -m gpu, one invocation per test directory that marks GPU tests
#                      (tests/models and tests/kernels have clashing conftests: never one invocation)
#     gpu.log          bench/gpu.py's output
#     gpu-check.json   every figure, error and skip (bench/gpu.py)
#     gpu-check.md     the page: the pairs' table, kernels, predictions, the paper setting
#     summary.txt      one line per stage: status and seconds
#
# Commit gpu-check.{json,md} under bench/results/ with the device named (e.g. gpu-check-h100.*).
# Outside the device machine: OUT=/tmp/x bash bench/gpu_check.sh runs the same (GPU-less: the tests
# skip, bench/gpu.py runs on the CPU only if asked with GPU_CHECK_ARGS="--smoke"; GPU_CHECK_TESTS=0
# leaves the tests out, PYTHON=... picks the interpreter).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PATH="$PATH:/usr/local/cuda/bin"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
PY="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_SECONDS:-530}))
left() { echo $((DEADLINE - $(date +%s))); }
stage() {  # stage NAME SECONDS_CAP LOG command...: run under timeout, log, record status
  local name=$1 cap=$2 log=$3; shift 3
  local budget; budget=$(left)
  [ "$cap" -lt "$budget" ] && budget=$cap
  if [ "$budget" -le 5 ]; then
    echo "$name: SKIPPED (deadline)" | tee -a "$OUT/summary.txt"; return 124
  fi
  local t0; t0=$(date +%s)
  echo "== $name (up to ${budget} s)" | tee -a "$log"
  timeout --kill-after=10 "$budget" "$@" >>"$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
  return $rc
}

# ---- the machine ----
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  nvcc --version 2>&1 | tail -2 || true
  "$PY" - <<'EOF' 2>&1
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for m in ("numpy", "tokenizers", "tqdm", "safetensors", "gguf", "transformers", "pybind11", "scikit_build_core"):
    try:
        importlib.import_module(m); print("have", m)
    except Exception as e:
        print("MISSING", m, type(e).__name__)
EOF
} >"$OUT/env.txt"
cat "$OUT/env.txt"

# ---- build: editable install with the CUDA kernels for Hopper (sm_90) ----
built=0
if stage build 330 "$OUT/build.log" "$PY" -m pip install --no-build-isolation --no-deps -e . \
    --config-settings=cmake.define.SAGUARO_CUDA=ON --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES=90; then
  built=1
elif [ "$(left)" -gt 240 ]; then  # a plain CMake build of the extension beside the sources
  if stage cmake-build 200 "$OUT/build.log" bash -c "cmake -S . -B build/gpu-check -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSAGUARO_BUILD_PYTHON=ON -DSAGUARO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -Dpybind11_DIR=\$($PY -m pybind11 --cmakedir) -DPython_EXECUTABLE=\$(command -v $PY) \
      && cmake --build build/gpu-check && cp build/gpu-check/_core*.so python/saguaro/"; then
    export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
    built=1
  fi
fi
"$PY" -c "import saguaro; print('saguaro', saguaro.build_info())" 2>&1 | tee -a "$OUT/build.log" "$OUT/summary.txt"

# ---- GPU-marked tests, one pytest per directory that has any (their conftests clash) ----
# Each directory gets at most 90 s and the benchmark keeps at least 200 s (rc 5 = nothing selected).
if [ "$built" -eq 1 ] && [ "${GPU_CHECK_TESTS:-1}" = 1 ]; then
  for dir in $(grep -l "mark.gpu" tests/*/test_*.py 2>/dev/null | xargs -r -n1 dirname | sort -u); do
    cap=$(( $(left) - 200 )); [ "$cap" -gt 90 ] && cap=90
    if [ "$cap" -le 10 ]; then echo "pytest -m gpu $dir: SKIPPED (the benchmark's time)" | tee -a "$OUT/summary.txt"; continue; fi
    stage "pytest -m gpu $dir" "$cap" "$OUT/tests.log" "$PY" -m pytest -q -m gpu -p no:cacheprovider "$dir" -rs
  done
fi

# ---- the benchmark: whatever time is left, less a margin for writing the report ----
bench_left=$(( $(left) - 15 ))
stage "bench/gpu.py" "$bench_left" "$OUT/gpu.log" "$PY" bench/gpu.py --out "$OUT" \
  --budget-s $(( bench_left > 60 ? bench_left - 45 : 15 )) ${GPU_CHECK_ARGS:-}
echo "total $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"
[ -f "$OUT/gpu-check.md" ] && cat "$OUT/gpu-check.md"
exit 0
