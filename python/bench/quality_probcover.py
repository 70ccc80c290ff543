"""ProbCover and TypiClust on MNIST's PCA features: alpool's against
scikit-activeml's, on one sub-pool, against random; and MaxHerding,
ProbCover's coverage under a Gaussian kernel.

Usage: python quality_probcover.py [POOL_ROWS] [DATA_DIR]

scikit-activeml's ProbCover holds an N x N distance matrix (60,000 rows
would take 28.8 GB), so the pool is POOL_ROWS (default 10,000) of MNIST's
training rows drawn with seed 0; the embeddings, the learner and the
budgets are ``quality_coldstart.py``'s (50-dimensional PCA, a logistic
regression, 10 to 100 labels). Each ProbCover chooses δ by purity 0.95 over
10 k-means clusters: scikit-activeml over its default grid of δ (0.2 to
2.0) and over a finer, wider one (0.25 to 12), alpool by its own search.
alpool's MaxHerding takes σ as ProbCover's δ by purity, 4 and 6.
Prints δ, how the first 100 picks spread over the digits, and each side's
AULC (the mean test accuracy over the ten budgets) against random's over 3
seeds. TypiClust on both sides labels 10 rows a round (|L| + 10 k-means
clusters a round, as ``quality_coldstart.py`` runs it), 3 seeds each;
scikit-activeml's takes its defaults (scikit-learn's k-means, typicality
over the 5 nearest neighbours). Then, with δ given, the first pick where the two sequences part,
and whether it is a tie in newly covered rows (scikit-activeml breaks ties
at random, alpool to the lower row).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from quality_coldstart import accuracy, load
from skactiveml.pool import ProbCover, TypiClust

import alpool

BUDGETS = range(10, 101, 10)


def aulc(z: np.ndarray, y: np.ndarray, order: np.ndarray, zt: np.ndarray, yt: np.ndarray) -> float:
    return float(np.mean([accuracy(z, y, order[:b].tolist(), zt, yt) for b in BUDGETS]))


def skactiveml(z: np.ndarray, deltas: np.ndarray | None) -> tuple[np.ndarray, float, float]:
    t0 = time.perf_counter()
    qs = ProbCover(n_classes=10, deltas=deltas, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picks = qs.query(z.astype(np.float64), np.full(len(z), np.nan), batch_size=100)
    return np.asarray(picks), float(qs.delta_max_), time.perf_counter() - t0


def typiclust_rounds(z: np.ndarray, y: np.ndarray, seed: int, ours: bool) -> np.ndarray:
    labeled: list[int] = []
    for _ in BUDGETS:
        if ours:
            picks = alpool.select(
                embeddings=z, strategy="typiclust", k=10, exclude=labeled, seed=seed
            )[0]
        else:
            known = np.full(len(z), np.nan)
            known[labeled] = y[labeled]
            qs = TypiClust(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picks = qs.query(z, known, batch_size=10)
        labeled += np.asarray(picks).tolist()
    return np.asarray(labeled)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    data = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parents[3] / "shared/data"
    z, y, zt, yt = load(data)
    rows = np.random.default_rng(0).choice(len(z), n, replace=False)
    z, y = np.ascontiguousarray(z[rows]), y[rows]
    print(f"MNIST PCA-50: a pool of {n} training rows (seed 0), test {zt.shape}")

    rand = [aulc(z, y, np.random.default_rng(s).permutation(n), zt, yt) for s in range(3)]
    print(f"{'random (3 seeds)':42s} AULC {np.mean(rand):.4f} ± {np.std(rand):.4f}")
    t0 = time.perf_counter()
    ours, _ = alpool.select(embeddings=z, strategy="probcover", k=100, classes=10)
    runs = [("alpool, its δ search", ours, float("nan"), time.perf_counter() - t0)]
    for label, extra in [
        ("alpool maxherding, σ by purity", {"classes": 10}),
        ("alpool maxherding, σ = 4", {"delta": 4.0}),
        ("alpool maxherding, σ = 6", {"delta": 6.0}),
    ]:
        t0 = time.perf_counter()
        picks, _ = alpool.select(embeddings=z, strategy="maxherding", k=100, **extra)
        runs.append((label, picks, float("nan"), time.perf_counter() - t0))
    for label, grid in [
        ("scikit-activeml, default δ grid", None),
        ("scikit-activeml, δ 0.25 to 12", np.arange(0.25, 12.01, 0.25)),
    ]:
        picks, delta, secs = skactiveml(z, grid)
        runs.append((f"{label} (δ = {delta:g})", picks, delta, secs))
    for label, picks, _, secs in runs:
        digits = np.bincount(y[picks], minlength=10).tolist()
        print(
            f"{label:42s} AULC {aulc(z, y, picks, zt, yt):.4f}  "
            f"digits of the 100 picks {digits}  ({secs:.1f} s)"
        )

    for label, ours_side in [("alpool typiclust", True), ("scikit-activeml TypiClust", False)]:
        t0 = time.perf_counter()
        scores = [aulc(z, y, typiclust_rounds(z, y, s, ours_side), zt, yt) for s in range(3)]
        print(
            f"{label + ' (3 seeds)':42s} AULC {np.mean(scores):.4f} ± {np.std(scores):.4f}  "
            f"({time.perf_counter() - t0:.1f} s)"
        )

    for delta in [runs[-1][2], 6.0]:
        ours, _ = alpool.select(embeddings=z, strategy="probcover", k=100, delta=delta)
        qs = ProbCover(n_classes=10, deltas=[delta], random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, gains = qs.query(
                z.astype(np.float64), np.full(n, np.nan), batch_size=100, return_utilities=True
            )
        part = next((i for i in range(100) if ours[i] != theirs[i]), None)
        if part is None:
            print(f"δ = {delta:g}: the same 100 picks in the same order")
            continue
        g = gains[part]
        tied = np.flatnonzero(g == np.nanmax(g))
        print(
            f"δ = {delta:g}: the same first {part} picks; pick {part} is a tie of {len(tied)} rows "
            f"covering {int(np.nanmax(g))} new rows each (alpool's row {ours[part]} "
            f"{'is' if ours[part] in tied else 'is NOT'} among them, "
            f"{'the lowest' if ours[part] == tied[0] else 'not the lowest'})"
        )


if __name__ == "__main__":
    main()
