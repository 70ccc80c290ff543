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
package; each round times `alpool.select` in a fresh interpreter of each
(10M x 10 float32 in memory, k = 1,000, median of 5 runs after a warm-up).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
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
    t = time.perf_counter()
    subprocess.run(
        [
            alpool,
            "select",
            pool,
            "-s",
            strategy,
            "-k",
            "1000",
            "-q",
            "--out",
            "/dev/null",
        ],
        check=True,
    )
    return (time.perf_counter() - t) * 1e3


PY_TIMING = """
import statistics, sys, time
import numpy as np
import alpool
rng = np.random.default_rng(0)
p = rng.random((10_000_000, 10), dtype=np.float32) + np.float32(1e-3)
p /= p.sum(axis=1, keepdims=True)
for s in sys.argv[1:]:
    alpool.select(p, s, 1000)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        alpool.select(p, s, 1000)
        ts.append(time.perf_counter() - t)
    print(s, statistics.median(ts) * 1e3)
"""


def python_rounds(python: str, before: str, after: str, rounds: int) -> None:
    """`alpool.select` from two installed packages, alternated."""
    got: dict[str, dict[str, list[float]]] = {
        b: {s: [] for s in STRATEGIES} for b in ("before", "after")
    }
    for r in range(rounds):
        order = [("before", before), ("after", after)]
        for name, path in order if r % 2 == 0 else reversed(order):
            out = subprocess.run(
                [python, "-c", PY_TIMING, *STRATEGIES],
                capture_output=True,
                text=True,
                check=True,
                env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
                cwd="/",
            ).stdout
            for line in out.splitlines():
                s, ms = line.split()
                got[name][s].append(float(ms))
    print(f"alpool.select, {rounds} rounds alternated; medians over rounds (ms)\n")
    print(f"{'strategy':<17} {'before':>8} {'after':>8} {'ratio':>6}")
    for s in STRATEGIES:
        b, a = (statistics.median(got[x][s]) for x in ("before", "after"))
        print(f"{s:<17} {b:>8.1f} {a:>8.1f} {a / b:>6.2f}")


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
