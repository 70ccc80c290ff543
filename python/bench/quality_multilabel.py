"""Multi-label strategies in modAL's own loop on MNIST pairs: modAL's
multi-label strategies beside alpool's, on one protocol, in one run.

Usage: python quality_multilabel.py PAIRS_DIR [--rows N] [--repeats R]
                                    [--seed-size S] [--batch B] [--budget M]

PAIRS_DIR holds X.npy and Y.npy from
``cargo run --release --example mnist_pairs -- ../shared/data/mnist N PAIRS_DIR``
(two MNIST digits side by side, labeled with the set of digits shown). The
learner is modAL's ``ActiveLearner`` over scikit-learn's
``OneVsRestClassifier(LogisticRegression())`` on the pixels scaled to [0, 1];
every strategy of a repeat starts from the same seeded split (20% test) and
the same first labels, and each round teaches the learner the batch's true
sets. modAL's ``min_confidence``, ``avg_confidence``, ``max_score`` and
``avg_score`` run as modAL ships them; alpool's run through its modAL
drop-ins (``alpool.modal.max_score``/``avg_score``) and through
``alpool.select`` on the same ``predict_proba`` (``mean-entropy``,
``min-margin``, ``cardinality``, ``adaptive``, the label cardinality from the
learner's labels). Prints each strategy's test micro-F1 AULC (the mean over
rounds) with its standard deviation over repeats and its ratio to random's.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from modAL.models import ActiveLearner
from modAL.multilabel import avg_confidence, avg_score, max_score, min_confidence
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier

import alpool
import alpool.modal

Query = Callable[..., Any]


def alpool_strategy(name: str) -> Query:
    def query(learner: ActiveLearner, x: np.ndarray, n_instances: int = 1) -> Any:
        p = np.ascontiguousarray(learner.predict_proba(x), dtype=np.float32)
        cardinality = float(np.asarray(learner.y_training).sum(axis=1).mean())
        idx, scores = alpool.select(
            p, name, k=n_instances, input="multilabel", label_cardinality=cardinality
        )
        return idx, scores

    return query


def random_strategy(seed: int) -> Query:
    rng = np.random.default_rng(seed)

    def query(learner: ActiveLearner, x: np.ndarray, n_instances: int = 1) -> Any:
        return rng.choice(len(x), size=n_instances, replace=False)

    return query


def modal(strategy: Query) -> Query:
    return lambda c, x, n_instances=1: strategy(c, x, n_instances, False)


STRATEGIES: dict[str, Callable[[int], Query]] = {
    "random": random_strategy,
    "modAL min_confidence": lambda s: modal(min_confidence),
    "modAL avg_confidence": lambda s: modal(avg_confidence),
    "modAL max_score": lambda s: modal(max_score),
    "modAL avg_score": lambda s: modal(avg_score),
    "alpool max-score": lambda s: alpool.modal.max_score,
    "alpool avg-score": lambda s: alpool.modal.avg_score,
    "alpool mean-entropy": lambda s: alpool_strategy("mean-entropy"),
    "alpool min-margin": lambda s: alpool_strategy("min-margin"),
    "alpool cardinality": lambda s: alpool_strategy("cardinality"),
    "alpool adaptive": lambda s: alpool_strategy("adaptive"),
}


def run(x: np.ndarray, y: np.ndarray, name: str, seed: int, a: argparse.Namespace) -> list[float]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = round(len(x) * 0.2)
    test, pool = order[:n_test], np.sort(order[n_test:])
    first = rng.permutation(len(pool))[: a.seed_size]
    labeled = pool[first]
    left = np.setdiff1d(pool, labeled)
    clf = OneVsRestClassifier(LogisticRegression(max_iter=300))
    learner = ActiveLearner(
        clf, STRATEGIES[name](seed), X_training=x[labeled], y_training=y[labeled]
    )
    curve = []
    while True:
        pred = (learner.predict_proba(x[test]) > 0.5).astype(np.uint8)
        curve.append(f1_score(y[test], pred, average="micro", zero_division=0))
        k = min(a.batch, a.budget - len(labeled), len(left))
        if k <= 0:
            return curve
        picked = learner.query(x[left], n_instances=k)
        idx = np.asarray(picked[0] if isinstance(picked, tuple) else picked)
        rows = left[idx]
        learner.teach(x[rows], y[rows])
        labeled = np.concatenate([labeled, rows])
        left = np.setdiff1d(left, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", type=Path)
    p.add_argument("--rows", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed-size", type=int, default=50)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--budget", type=int, default=500)
    a = p.parse_args()
    # Logistic regression on a few hundred labels warns that it stopped at
    # max_iter; the figures are what it reaches there.
    warnings.filterwarnings("ignore")
    x = np.load(a.pairs / "X.npy")[: a.rows].astype(np.float32) / 255.0
    y = np.load(a.pairs / "Y.npy")[: a.rows].astype(np.uint8)
    print(
        f"{len(x)} pairs x {x.shape[1]} pixels, {y.shape[1]} labels; seed {a.seed_size}, "
        f"batches of {a.batch} to {a.budget} labels, {a.repeats} repeats"
    )
    aulc: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {}
    for name in STRATEGIES:
        t0 = time.perf_counter()
        for r in range(a.repeats):
            curve = run(x, y, name, r, a)
            aulc.setdefault(name, []).append(float(np.mean(curve)))
            finals.setdefault(name, []).append(curve[-1])
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    base = float(np.mean(aulc["random"]))
    print(f"{'strategy':<22} {'micro-F1 AULC':>18} {'vs random':>10} {'final micro-F1':>15}")
    for name, v in aulc.items():
        ratio = "—" if name == "random" else f"{np.mean(v) / base:.3f}x"
        sd = np.std(v, ddof=1) if len(v) > 1 else 0.0
        print(
            f"{name:<22} {np.mean(v):>9.4f} ± {sd:.4f} {ratio:>10} {np.mean(finals[name]):>15.4f}"
        )


if __name__ == "__main__":
    main()
