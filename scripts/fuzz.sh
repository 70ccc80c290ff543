#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside bytes, with libFuzzer
# through cargo-fuzz (installed from crates.io if missing). Runs on the
# stable toolchain: no sanitizer, since the targets are safe Rust over
# safe Rust (`unsafe` is only the memory maps and the SIMD kernels, which
# the exactness tests cover).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 3600   # 1M executions or an hour each
#
# Each target starts from its seeds (fuzz/seeds/T: real files, Label
# Studio's real exports among them) and the corpus it grew before
# (fuzz/corpus/T, not committed). A failing input is left in
# fuzz/artifacts/T and fails the script; copy it to fuzz/regressions/T so
# that the test suite replays it forever. The limits make a hang (10 s for
# one input) and an unbounded allocation (over 1 GiB at once, or 2 GiB in
# all) findings too. Prints executions and coverage per target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy labels init model part exclusions server exact coldstart)
command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz --version 0.13.1
(cd fuzz && cargo fuzz build -s none -O)
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  if ! (cd fuzz && cargo fuzz run -s none -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -print_final_stats=1) >"$log" 2>&1; then
    status=1
    echo "$t: FAILED (see $log and fuzz/artifacts/$t)"
    grep -m5 -E "panicked|ERROR|==[0-9]+==" "$log" || tail -20 "$log"
  fi
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  cov=$(grep -E "DONE +cov:" "$log" | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 edges, \2 features, \3 corpus inputs/' || true)
  echo "$t: $execs executions in ${seconds}s; coverage ${cov:-?}"
done
exit $status
