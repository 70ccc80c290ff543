#!/usr/bin/env bash
# The whole test suite (the README's test command). Release mode: the
# property tests and the real-data tests do real work.
set -euo pipefail
cd "$(dirname "$0")/.."
# In CI a missing GPU adapter or missing ../shared data fails the tests
# instead of skipping them.
if [ "${CI:-}" = "true" ]; then
  export ALPOOL_REQUIRE_GPU=1 ALPOOL_REQUIRE_SHARED=1
fi
# Mesa complains on stderr when XDG_RUNTIME_DIR is unset; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
fi
cargo test --release --locked --all-targets
cargo test --release --locked --doc
