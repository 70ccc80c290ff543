#!/usr/bin/env bash
# Runs one `alpool select` with two builds, side by side on the same
# (page-cached) files, and says whether they picked the same rows.
#
#   scripts/side_by_side.sh OLD_BINARY NEW_BINARY [select arguments...]
#
# e.g. build the old commit into /tmp/old (git worktree add /tmp/old REV &&
# cargo build --release --manifest-path /tmp/old/Cargo.toml), then
#   scripts/side_by_side.sh /tmp/old/target/release/alpool target/release/alpool \
#       probs.npy --embeddings emb.npy --strategy coreset -k 1000
# Prints each build's wall time and peak RSS (GNU time) and the comparison;
# exits 1 when the picks differ.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
old=$1 new=$2
shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Read every input file once so neither build pays for the page cache.
for a in "$@"; do
    if [ -f "$a" ]; then cat "$a" >/dev/null; fi
done
for which in old new; do
    bin=${!which}
    /usr/bin/time -f "$which: %e s, peak RSS %M KB" "$bin" select "$@" -q -o "$out/$which.csv" 2>&1 |
        grep -v '^alpool: using'
done
if cmp -s "$out/old.csv" "$out/new.csv"; then
    echo "same picks"
else
    echo "the picks differ"
    exit 1
fi
