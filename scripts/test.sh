#!/usr/bin/env bash
# The whole test suite (the README's test command). Release mode: the
# property tests and the real-data tests do real work.
set -euo pipefail
cd "$(dirname "$0")/.."
# In CI a missing GPU adapter, missing ../shared data or a missing Chromium
# fails the tests instead of skipping them.
if [ "${CI:-}" = "true" ]; then
  export ALPOOL_REQUIRE_GPU=1 ALPOOL_REQUIRE_SHARED=1 ALPOOL_REQUIRE_BROWSER=1
fi
# The library's own GPU tests probe Vulkan without the CLI's headless
# setting; Mesa's device-select layer would print "XDG_RUNTIME_DIR is
# invalid" from them. (The CLI and Python tests of headless quiet clear
# this and check stderr themselves.)
export NODEVICE_SELECT=1
# The fuzz feature adds the fuzz targets' entry points, whose findings the
# suite replays.
cargo test --release --locked --all-targets --features fuzz
# The kernels compiled per instruction set, end to end on the copies a CPU
# without AVX-512, or without AVX2, runs (`ALPOOL_ISA` caps the one
# detected): the selection suites against their naive references again
# (MaxHerding's bounds among them), and the `exact` and `coldstart` fuzz
# inputs against their references.
for isa in avx2 scalar; do
  echo "== the selection suites on the $isa copies (ALPOOL_ISA=$isa)"
  ALPOOL_ISA=$isa cargo test --release --locked --features fuzz --test suite -- \
    exactness:: multilabel:: disagree:: stochastic:: read_path:: batch:: batchbald:: coldstart:: fuzz_regressions::
done
cargo test --release --locked --doc

# The Python package: built from this checkout (sharing target/ with the
# Rust build above), then its tests and docstring examples with pytest.
PY=${ALPOOL_PYTHON:-.venv/bin/python}
if [ -x "$PY" ] && "$PY" -c "import pytest, numpy, mypy, pandas" 2>/dev/null; then
  PYO3_PYTHON="$PY" "$PY" -m pip install -q --no-deps --force-reinstall ./python
  # From the repository root, so python/alpool (without its compiled
  # module) does not shadow the installed package.
  "$PY" -m pytest -q -p no:cacheprovider python/tests
  "$PY" -m pytest -q -p no:cacheprovider --doctest-modules --pyargs alpool
  # The typed stubs stay true: the package type-checks against them, and
  # stubtest compares them with the compiled module's real signatures.
  (cd python && "$PY" -m mypy --no-incremental)
  "$PY" -m mypy.stubtest alpool._alpool
elif [ "${CI:-}" = "true" ]; then
  echo "the Python test environment is missing ($PY with pytest, numpy, mypy and pandas): run .ci/run" >&2
  exit 1
else
  echo "!!!!!! SKIPPING the Python package's tests: no $PY with pytest, numpy, mypy and pandas (bash .ci/run makes one) !!!!!!" >&2
fi
