#!/usr/bin/env python3
"""Two alpool builds side by side in one run: before and after a change.

Alternates the builds round by round on the same page-cached pool, so the
machine's drift hits both alike, and prints, per strategy, the median over
rounds of each build's in-process `alpool bench` mean and of its whole
`alpool select` process, with the ratio after / before.

    python3 scripts/bench_builds.py BEFORE/alpool AFTER/alpool POOL.npy [--rounds 5]
    python3 scripts/bench_builds.py --python .venv/bin/python BEFORE_DIR AFTER_DIR

Make a pool with `alpool bench --rows 10000000 --keep POOL.npy --runs 1`.
With --python, BEFORE_DIR and AFTER_DIR each hold an installed `alpool`
package; both are loaded into one interpreter and `alpool.select` of each
is timed call by call, alternated, on the same 10M x 10 float32 array
(k = 1,000); the two must select the same rows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

STRATEGIES = ["least-confidence", "margin", "entropy", "ratio", "random"]
ROW = re.compile(r"^(\S+)\s+([\d.]+) ms ±")


def in_process(alpool: str, pool: str, runs: int) -> dict[str, float]:
    """Each strategy's mean time in ms, from one `alpool bench` run."""
    out = subprocess.run(
        [alpool, "bench", pool, "--runs", str(runs), "-k", "1000"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m and m.group(1) in STRATEGIES:
            found[m.group(1)] = float(m.group(2))
    return found


def whole_process(alpool: str, pool: str, strategy: str) -> float:
    """Wall milliseconds of one `alpool select` process, start to exit."""
    args = [alpool, "select", pool, "-s", strategy, "-k", "1000", "-q"]
    t = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1e3


PY_TIMING = """
import statistics, sys, time
import numpy as np
import alpool_before as B, alpool_after as A
rng = np.random.default_rng(0)
p = rng.random((10_000_000, 10), dtype=np.float32) + np.float32(1e-3)
p /= p.sum(axis=1, keepdims=True)
for s in sys.argv[2:]:
    tb, ta = [], []
    B.select(p, s, 1000), A.select(p, s, 1000)
    for i in range(int(sys.argv[1])):
        pair = ((B, tb), (A, ta)) if i % 2 == 0 else ((A, ta), (B, tb))
        for m, ts in pair:
            t = time.perf_counter()
            m.select(p, s, 1000)
            ts.append(time.perf_counter() - t)
    b, a = statistics.median(tb) * 1e3, statistics.median(ta) * 1e3
    print(f"{s:<17} {b:>8.1f} {a:>8.1f} {a / b:>6.2f}")
    assert np.array_equal(B.select(p, s, 1000)[0], A.select(p, s, 1000)[0]), s
"""


def python_rounds(python: str, before: str, after: str, rounds: int) -> None:
    """`alpool.select` of two installed packages in one interpreter (each
    copied under a name of its own), alternated call by call on the same
    array, so both see the same memory and the same drift."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("alpool_before", before), ("alpool_after", after)):
            shutil.copytree(os.path.join(path, "alpool"), os.path.join(tmp, name))
        print(f"alpool.select, {rounds} calls each, alternated; medians (ms)\n")
        print(f"{'strategy':<17} {'before':>8} {'after':>8} {'ratio':>6}", flush=True)
        subprocess.run(
            [python, "-c", PY_TIMING, str(rounds), *STRATEGIES],
            check=True,
            env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"},
            cwd=tmp,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("pool", nargs="?")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5, help="runs per `alpool bench`")
    ap.add_argument(
        "--python", help="compare two installed Python packages with this interpreter"
    )
    a = ap.parse_args()
    if a.python:
        python_rounds(a.python, a.before, a.after, a.rounds)
        return
    if a.pool is None:
        ap.error("give the pool to measure")
    builds = {"before": a.before, "after": a.after}
    inproc: dict[str, dict[str, list[float]]] = {
        b: {s: [] for s in STRATEGIES} for b in builds
    }
    whole: dict[str, dict[str, list[float]]] = {
        b: {s: [] for s in STRATEGIES} for b in builds
    }
    for r in range(a.rounds):
        order = list(builds.items()) if r % 2 == 0 else list(reversed(builds.items()))
        for name, exe in order:
            for s, ms in in_process(exe, a.pool, a.runs).items():
                inproc[name][s].append(ms)
            for s in STRATEGIES:
                whole[name][s].append(whole_process(exe, a.pool, s))
    print(f"{a.rounds} rounds, alternated; medians over rounds (ms)\n")
    head = f"{'strategy':<17} {'in-process before':>18} {'after':>8} {'ratio':>6}"
    print(head + f"   {'whole process before':>21} {'after':>8} {'ratio':>6}")
    for s in STRATEGIES:
        ib, ia = (statistics.median(inproc[b][s]) for b in builds)
        wb, wa = (statistics.median(whole[b][s]) for b in builds)
        print(
            f"{s:<17} {ib:>18.1f} {ia:>8.1f} {ia / ib:>6.2f}   {wb:>21.1f} {wa:>8.1f} {wa / wb:>6.2f}"
        )


if __name__ == "__main__":
    main()
