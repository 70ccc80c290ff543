"""Cold-start quality on MNIST: TypiClust and ProbCover against random and
margin, with 50-dimensional PCA features as the embeddings.

Usage: python quality_coldstart.py [SEEDS] [DATA_DIR] [STRATEGY ...]

The pool is MNIST's 60,000 training rows, the test set its 10,000. Each
strategy labels 10 rows a round (1 per class on average) up to 100 (10 per
class); after each round a logistic regression (scikit-learn, C = 1) is fit
on the labeled rows' PCA features and scored on the test set. TypiClust and
ProbCover start from no labels (their first batch is the cold start), then
take the labeled rows as covered (``exclude``); margin starts from 10 random
rows. ProbCover's δ is chosen by purity 0.95 over 10 k-means clusters
("probcover"), or given ("probcover:6" for δ = 6); MaxHerding's kernel
width σ the same way ("maxherding", "maxherding:4"). AULC
is the mean test accuracy over the ten budgets. Prints the curves and the
AULC with its standard deviation over seeds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

import alpool

ROUNDS, BATCH = 10, 10


def load(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.load(data / "mnist" / "X.npy").astype(np.float32) / 255.0
    y = np.load(data / "mnist" / "y.npy")
    pca = PCA(n_components=50, random_state=0).fit(x[:60000])
    z = pca.transform(x).astype(np.float32)
    return z[:60000], y[:60000], z[60000:], y[60000:]


def accuracy(
    z: np.ndarray, y: np.ndarray, rows: list[int], zt: np.ndarray, yt: np.ndarray
) -> float:
    if len(set(y[rows].tolist())) < 2:
        return float(np.mean(yt == y[rows][0]))
    model = LogisticRegression(C=1.0, max_iter=1000).fit(z[rows], y[rows])
    return float(model.score(zt, yt))


def run(strategy: str, seed: int, z, y, zt, yt) -> list[float]:
    rng = np.random.default_rng(seed)
    labeled: list[int] = []
    curve = []
    for r in range(ROUNDS):
        if strategy == "random" or (strategy == "margin" and r == 0):
            rest = np.setdiff1d(np.arange(len(z)), labeled)
            picks = rng.choice(rest, BATCH, replace=False).tolist()
        elif strategy == "margin":
            model = LogisticRegression(C=1.0, max_iter=1000).fit(z[labeled], y[labeled])
            p = np.zeros((len(z), 10), dtype=np.float32)
            p[:, model.classes_] = model.predict_proba(z)
            p /= p.sum(axis=1, keepdims=True)
            picks = alpool.select(p, "margin", k=BATCH, exclude=labeled)[0].tolist()
        else:
            # "probcover:6" gives δ = 6 ("maxherding:4" σ = 4); plain
            # "probcover" and "maxherding" choose it by purity.
            name, _, delta = strategy.partition(":")
            extra: dict[str, object] = {"delta": float(delta)} if delta else {}
            if name in ("probcover", "maxherding") and not delta:
                extra["classes"] = 10
            picks = alpool.select(
                embeddings=z, strategy=name, k=BATCH, exclude=labeled, seed=seed, **extra
            )[0].tolist()
        labeled += picks
        curve.append(accuracy(z, y, labeled, zt, yt))
    return curve


def main() -> None:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    data = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parents[3] / "shared/data"
    z, y, zt, yt = load(data)
    print(f"MNIST: pool {z.shape}, test {zt.shape}; {seeds} seeds; budgets 10..100")
    strategies = sys.argv[3:] or ["random", "margin", "typiclust", "probcover", "kmeans"]
    for strategy in strategies:
        t0 = time.perf_counter()
        curves = np.array([run(strategy, s, z, y, zt, yt) for s in range(seeds)])
        aulc = curves.mean(axis=1)
        mean = " ".join(f"{v:.3f}" for v in curves.mean(axis=0))
        print(
            f"{strategy:10s} AULC {aulc.mean():.4f} ± {aulc.std():.4f}  curve {mean}"
            f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
