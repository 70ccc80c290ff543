"""alpool's BALD against the best NumPy transcription of baal's formula,
side by side in one run, on T x N x C samples already in memory (default
20 x 1M x 10 float32, 800 MB), and the whole `alpool select` process
against `dd` on the same file.

    python python/bench/bench_bald.py [T] [N] [C] [RUNS] [--cli target/release/alpool]

Prints the median of RUNS timed runs after one warm-up for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_select import timed

import alpool


def numpy_bald(p: np.ndarray, k: int) -> np.ndarray:
    """baal's BALD (H[mean] − mean H), in f32 as baal computes it, then the
    top k: the fastest NumPy form found (einsum for the sums)."""
    mean = p.mean(axis=0)
    h_mean = -np.einsum("nc,nc->n", mean, np.log(np.maximum(mean, 1e-30)))
    h_each = -np.einsum("tnc,tnc->n", p, np.log(np.maximum(p, 1e-30))) / p.shape[0]
    score = h_mean - h_each
    idx = np.argpartition(-score, k)[:k]
    return idx[np.argsort(-score[idx], kind="stable")]


def whole_process(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("t", nargs="?", type=int, default=20)
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("c", nargs="?", type=int, default=10)
    ap.add_argument("runs", nargs="?", type=int, default=5)
    ap.add_argument("--cli", default=str(Path(__file__).parents[2] / "target/release/alpool"))
    a = ap.parse_args()
    k = 1000
    # MC-dropout-like samples: each row's logits, jittered per sample.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(a.n, a.c)).astype(np.float32) * 2.5
    p = np.empty((a.t, a.n, a.c), dtype=np.float32)
    for t in range(a.t):
        z = base + rng.normal(size=(a.n, a.c)).astype(np.float32) * 0.4
        z = np.exp(z - z.max(-1, keepdims=True))
        p[t] = z / z.sum(-1, keepdims=True)
    print(
        f"samples {a.t} x {a.n:,} x {a.c} float32 ({p.nbytes / 1e6:.0f} MB), k = {k}, "
        f"median of {a.runs} runs; {os.cpu_count()} CPUs; numpy {np.__version__}"
    )
    ours = alpool.select(samples=p, strategy="bald", k=k)[0]
    theirs = numpy_bald(p, k)
    overlap = len(set(ours.tolist()) & set(theirs.tolist())) / k
    t_np = timed(lambda: numpy_bald(p, k), a.runs)
    t_al = timed(lambda: alpool.select(samples=p, strategy="bald", k=k), a.runs)
    print(f"NumPy (baal's formula): {t_np * 1e3:.0f} ms; alpool.select: {t_al * 1e3:.0f} ms; "
          f"{t_np / t_al:.1f}x; {overlap:.1%} same rows")  # fmt: skip
    if not Path(a.cli).exists():
        print(f"no CLI at {a.cli}: the whole-process comparison is skipped", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(dir=".") as d:
        path = Path(d) / "samples.npy"
        np.save(path, p)
        cli = [a.cli, "select", "--samples", str(path), "-s", "bald", "-k", str(k), "-q"]
        dd = ["dd", f"if={path}", "of=/dev/null", "bs=8M", "status=none"]
        t_cli, t_dd = [], []
        whole_process(cli), whole_process(dd)
        for _ in range(a.runs):
            t_cli.append(whole_process(cli))
            t_dd.append(whole_process(dd))
        c, d_ = statistics.median(t_cli), statistics.median(t_dd)
        print(f"alpool select --samples (whole process): {c * 1e3:.0f} ms; dd: {d_ * 1e3:.0f} ms; "
              f"{c / d_:.1f}x dd")  # fmt: skip


if __name__ == "__main__":
    main()
