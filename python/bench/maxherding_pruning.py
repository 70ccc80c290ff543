"""Why MaxHerding's recomputed bounds are not pruned: two measurements.

Usage: python maxherding_pruning.py [DATA_DIR] [SIGMA]

On the MNIST PCA pool of ``quality_coldstart.py`` (60,000 x 50), with
MaxHerding's own 100 picks at σ (default 4):

1. **Triangle-inequality groups.** A row's bound sweeps every column y;
   a group G of columns (centre g, radius r) could be skipped whole when
   ``(‖x − g‖ − r)² / (2σ²) ≥ max_{y ∈ G} −ln c(y)``, where every term is
   provably 0. Prints the share of columns such a test skips (k-means
   groups of about 60 and about 10 rows), beside the share the per-column
   test skips once each distance is made (what the library does now), for
   300 random rows after 1 to 99 picks.
2. **Incremental bounds.** A stale bound could be lowered by the terms of
   the rows whose coverage changed since it was made, instead of a sweep
   of all N. Runs the lazy greedy on the first 10,000 rows (exact gains
   as the bounds) and prints the share of rows changed since each
   recomputed entry's step: the share of a sweep an update would still
   make.
"""

from __future__ import annotations

import heapq
import sys
from pathlib import Path

import numpy as np
from quality_coldstart import load
from sklearn.cluster import MiniBatchKMeans

import alpool


def coverage(z: np.ndarray, picks: np.ndarray, two: float) -> np.ndarray:
    c = np.zeros(len(z))
    for p in picks:
        c = np.maximum(c, np.exp(-((z - z[p]) ** 2).sum(1) / two))
    return c


def groups(z: np.ndarray, picks: np.ndarray, two: float, count: int) -> None:
    km = MiniBatchKMeans(n_clusters=count, random_state=0, n_init=1, batch_size=4096).fit(z)
    lab, cen = km.labels_, km.cluster_centers_
    rad = np.zeros(count)
    for g in range(count):
        m = z[lab == g]
        if len(m):
            rad[g] = np.sqrt(((m - cen[g]) ** 2).sum(1)).max()
    sizes = np.bincount(lab, minlength=count)
    xs = np.random.default_rng(0).choice(len(z), 300, replace=False)
    low = np.maximum(np.sqrt(((z[xs, None, :] - cen[None]) ** 2).sum(-1)) - rad[None], 0)
    d2 = ((z[xs, None, :] - z[None]) ** 2).sum(-1)
    print(f"{count} groups (median {np.median(sizes):.0f} rows):")
    for m in [1, 10, 30, 60, 99]:
        lim = -np.log(np.maximum(coverage(z, picks[:m], two), 1e-300))
        top = np.full(count, -np.inf)
        np.maximum.at(top, lab, lim)
        skipped = ((low**2 / two >= top[None]) * sizes[None]).sum(1) / len(z)
        per_column = (d2 / two >= lim[None]).mean(1)
        print(
            f"  after {m:>2} picks: the group test skips {skipped.mean():.1%} of the columns,"
            f" the per-column test {per_column.mean():.1%}"
        )


def staleness(z: np.ndarray, two: float, k: int) -> None:
    sq = (z**2).sum(1)
    kern = np.exp(-np.maximum(sq[:, None] + sq[None] - 2 * z @ z.T, 0) / two)
    c = np.zeros(len(z))
    changed = np.full(len(z), -1)
    heap = [(-g, i, 0) for i, g in enumerate(kern.sum(1))]
    heapq.heapify(heap)
    picked, shares = 0, []
    while picked < k:
        bound, i, step = heapq.heappop(heap)
        if step == picked:
            changed[kern[i] > c] = picked
            c = np.maximum(c, kern[i])
            picked += 1
            continue
        shares.append((changed >= step).mean())
        heapq.heappush(heap, (-np.maximum(kern[i] - c, 0).sum(), i, picked))
    print(
        f"lazy greedy on {len(z)} rows, {k} picks: {len(shares)} bounds recomputed;"
        f" the rows changed since their entry's step: {np.mean(shares):.1%} of N on average"
    )


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data")
    sigma = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    z, _, _, _ = load(data)
    z32 = np.ascontiguousarray(z, dtype=np.float32)
    picks, _ = alpool.select(embeddings=z32, strategy="maxherding", k=100, delta=sigma)
    z64 = z32.astype(np.float64)
    two = 2 * sigma * sigma
    for count in [1000, 6000]:
        groups(z64, picks, two, count)
    staleness(z64[:10000], two, 100)


if __name__ == "__main__":
    main()
