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
cargo test --release --locked --all-targets
cargo test --release --locked --doc
