"""A stochastic batch (power sampling over entropy, Kirsch et al. 2023)
from alpool against NumPy, side by side in one run, on N x C float32
probabilities already in memory (default 10M x 10, 400 MB):

- NumPy's fastest form of the same draw: the entropies, Gumbel noise from
  a seeded Generator, then argpartition of ln(score) + noise / beta;
- NumPy's ``Generator.choice(N, k, replace=False, p=...)``, the usual way
  to draw without replacement (on a tenth of the rows: it is slow);
- ``alpool.select(..., stochastic="power")``, and the plain top k.

    python python/bench/bench_stochastic.py [N] [C] [RUNS]

Prints the median of RUNS timed runs after one warm-up for each.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from bench_select import timed

import alpool


def numpy_power_gumbel(p: np.ndarray, k: int, beta: float, seed: int) -> np.ndarray:
    """Entropy in f64 with 0 ln 0 = 0, then the k largest ln(H) + G / beta."""
    h = -np.einsum("nc,nc->n", p, np.log(np.where(p > 0, p, 1)), dtype=np.float64)
    g = np.random.default_rng(seed).gumbel(size=len(h))
    with np.errstate(divide="ignore"):
        key = np.log(h) + g / beta
    idx = np.argpartition(-key, k)[:k]
    return idx[np.argsort(-key[idx], kind="stable")]


def numpy_choice(p: np.ndarray, k: int, beta: float, seed: int) -> np.ndarray:
    h = -np.einsum("nc,nc->n", p, np.log(np.where(p > 0, p, 1)), dtype=np.float64)
    w = h**beta
    return np.random.default_rng(seed).choice(len(w), k, replace=False, p=w / w.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=10_000_000)
    ap.add_argument("c", nargs="?", type=int, default=10)
    ap.add_argument("runs", nargs="?", type=int, default=5)
    a = ap.parse_args()
    k, beta = 1000, 1.0
    rng = np.random.default_rng(0)
    z = rng.normal(size=(a.n, a.c)).astype(np.float32) * 2.5
    z = np.exp(z - z.max(-1, keepdims=True))
    p = z / z.sum(-1, keepdims=True)
    del z
    print(
        f"probabilities {a.n:,} x {a.c} float32 ({p.nbytes / 1e6:.0f} MB), k = {k}, beta = {beta}, "
        f"median of {a.runs} runs; {os.cpu_count()} CPUs; numpy {np.__version__}"
    )

    def ours() -> np.ndarray:
        return alpool.select(p, "entropy", k, stochastic="power", beta=beta, seed=1)[0]

    tenth = p[: a.n // 10]
    t_np = timed(lambda: numpy_power_gumbel(p, k, beta, 1), a.runs)
    t_choice = timed(lambda: numpy_choice(tenth, k, beta, 1), a.runs)
    t_al = timed(ours, a.runs)
    t_plain = timed(lambda: alpool.select(p, "entropy", k), a.runs)
    print(f"NumPy Gumbel-top-k: {t_np * 1e3:.0f} ms; alpool.select(stochastic='power'): "
          f"{t_al * 1e3:.0f} ms; {t_np / t_al:.1f}x")  # fmt: skip
    print(f"NumPy Generator.choice(replace=False) on {len(tenth):,} rows: {t_choice * 1e3:.0f} ms "
          f"({t_choice * 10 / t_al:.0f}x alpool's time for ten times the rows)")  # fmt: skip
    print(f"alpool plain top k (entropy): {t_plain * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
