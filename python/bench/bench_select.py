"""alpool.select against NumPy's best vectorized selection and modAL, side
by side in one run, on a pool already in memory (default 10M x 10 float32).

    python python/bench/bench_select.py [ROWS] [CLASSES] [K] [RUNS]

Prints the median of RUNS timed runs after one warm-up for each, the ratios,
and alpool's peak RSS increase (the peak is reset through
/proc/self/clear_refs before alpool runs, so a copy of the pool would show).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

import alpool


def timed(f: Callable[[], object], runs: int) -> float:
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def topk_desc(s: np.ndarray, k: int) -> np.ndarray:
    idx = np.argpartition(-s, k)[:k]
    return idx[np.argsort(-s[idx], kind="stable")]


def np_least_confidence(p: np.ndarray, k: int) -> np.ndarray:
    return topk_desc(1.0 - p.max(axis=1), k)


def np_margin(p: np.ndarray, k: int) -> np.ndarray:
    part = np.partition(p, -2, axis=1)
    return topk_desc(-(part[:, -1] - part[:, -2]), k)


def np_margin_sort(p: np.ndarray, k: int) -> np.ndarray:
    # The two largest by two max passes: often faster than partition on few columns.
    a = p.max(axis=1)
    am = p.argmax(axis=1)
    q = p.copy()
    q[np.arange(len(p)), am] = -np.inf
    return topk_desc(-(a - q.max(axis=1)), k)


def np_entropy(p: np.ndarray, k: int) -> np.ndarray:
    return topk_desc(-np.einsum("ij,ij->i", p, np.log(p)), k)


def np_entropy_sum(p: np.ndarray, k: int) -> np.ndarray:
    return topk_desc(-(p * np.log(p)).sum(axis=1), k)


class Fixed:
    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.probs


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    classes = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    rng = np.random.default_rng(0)
    p = rng.random((rows, classes), dtype=np.float32) + np.float32(1e-3)
    p /= p.sum(axis=1, keepdims=True)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"pool {rows:,} x {classes} float32 in memory ({p.nbytes / 1e6:.0f} MB), k = {k}, "
        f"median of {runs} runs; {cpu}, {os.cpu_count()} CPUs; numpy {np.__version__}, "
        f"alpool {alpool.__version__}"
    )
    print("| strategy | NumPy best | alpool.select | speed-up |")
    print("|---|---|---|---|")
    cases = [
        ("least-confidence", [np_least_confidence]),
        ("margin", [np_margin, np_margin_sort]),
        ("entropy", [np_entropy, np_entropy_sum]),
    ]
    for name, fs in cases:
        ours = alpool.select(p, name, k)[0]
        best = None
        for f in fs:
            got = f(p, k)
            # The same set (NumPy in float32, alpool in f64: compare sets).
            overlap = len(set(got.tolist()) & set(ours.tolist())) / k
            t = timed(lambda f=f: f(p, k), runs)
            if best is None or t < best[0]:
                best = (t, f.__name__, overlap)
        t_al = timed(lambda name=name: alpool.select(p, name, k), runs)
        print(
            f"| {name} | {best[0] * 1e3:.0f} ms ({best[1]}, {best[2]:.0%} same rows) | "
            f"{t_al * 1e3:.1f} ms | {best[0] / t_al:.1f}x |"
        )
    try:
        from modAL.uncertainty import margin_sampling

        clf = Fixed(p)
        X = np.empty((rows, 0), dtype=np.float32)
        t_modal = timed(lambda: margin_sampling(clf, X, n_instances=k), runs)
        t_al = timed(lambda: alpool.select(p, "margin", k), runs)
        print(
            f"| modAL margin_sampling (precomputed probabilities) | {t_modal * 1e3:.0f} ms | "
            f"{t_al * 1e3:.1f} ms | {t_modal / t_al:.1f}x |"
        )
    except ImportError:
        print("modAL not installed: skipped")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = status("VmRSS")
        for name in ["least-confidence", "margin", "entropy", "ratio", "random"]:
            alpool.select(p, name, k)
        grew = status("VmHWM") - before
        print(f"alpool peak RSS increase over all strategies: {grew / 2**20:.1f} MiB")
    except OSError:
        print("peak RSS: /proc/self/clear_refs not writable here")


if __name__ == "__main__":
    main()
