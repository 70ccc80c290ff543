"""`alpool.compare` against the same protocol run with modAL and scikit-learn's
MLP, side by side in one run, on ../shared/data/satellite.

    python python/bench/bench_compare.py [--restarts 4] [--budget 300] \
        [--strategies random,least-confidence,margin,entropy] [--jobs 2]

Both sides run the same restarts on the same rows: alpool's split and
initial set for restart r (``alpool._alpool.restart_rows``), batches of 10
to the budget, one hidden layer of 256 units, retrained from scratch each
round, test accuracy after each. alpool runs its built-in MLP (fused f32
kernels, restarts in parallel on the engine's threads); modAL runs
``ActiveLearner`` over ``MLPClassifier(hidden_layer_sizes=(256,))`` with
its uncertainty, margin and entropy sampling (random: a seeded draw), the
restarts in ``--jobs`` processes, so both use the machine's cores. The
script prints each side's wall time, the ratio, and each side's mean area
per strategy, so that the faster one is seen to learn as well.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

import alpool
from alpool import _alpool

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "satellite"


def modal_restart(args: tuple[Any, ...]) -> dict[str, float]:
    x, y, strategies, protocol, seed, budget = args
    from modAL.models import ActiveLearner
    from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling
    from sklearn.neural_network import MLPClassifier

    pool, test, initial = _alpool.restart_rows(y, json.dumps(protocol), seed)
    mean, std = x[pool].mean(axis=0), x[pool].std(axis=0)
    std[std == 0] = 1
    xs = (x - mean) / std
    rng = np.random.default_rng(seed)

    def random_sampling(_: Any, X: np.ndarray, n_instances: int = 1) -> np.ndarray:
        return rng.choice(len(X), n_instances, replace=False)

    rules = {
        "random": random_sampling,
        "least-confidence": uncertainty_sampling,
        "margin": margin_sampling,
        "entropy": entropy_sampling,
    }
    areas = {}
    for s in strategies:
        learner = ActiveLearner(
            estimator=MLPClassifier(hidden_layer_sizes=(256,), random_state=seed),
            query_strategy=rules[s],
            X_training=xs[initial],
            y_training=y[initial],
        )
        unlabeled = np.setdiff1d(pool, initial)
        accs = [learner.score(xs[test], y[test])]
        labels = len(initial)
        while labels < budget:
            k = min(10, budget - labels)
            idx, _ = learner.query(xs[unlabeled], n_instances=k)
            rows = unlabeled[idx]
            # modAL's teach refits on everything labeled so far.
            learner.teach(xs[rows], y[rows])
            unlabeled = np.setdiff1d(unlabeled, rows)
            labels += k
            accs.append(learner.score(xs[test], y[test]))
        areas[s] = float(np.mean(accs))
    return areas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--strategies", default="random,least-confidence,margin,entropy")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    x = np.load(DATA / "X.npy").astype(np.float32)
    y = np.load(DATA / "y.npy").astype(np.int64)
    strategies = a.strategies.split(",")
    n = len(strategies)
    print(f"satellite {x.shape}, {n} strategies x {a.restarts} restarts, budget {a.budget}")

    t = time.perf_counter()
    r = alpool.compare(
        x, y, strategies=strategies, restarts=a.restarts, budget=a.budget, progress=False
    )
    t_alpool = time.perf_counter() - t
    protocol = r["comparison"]["protocol"]

    t = time.perf_counter()
    jobs = [(x, y, strategies, protocol, s, a.budget) for s in range(a.restarts)]
    with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as ex:
        got = list(ex.map(modal_restart, jobs))
    t_modal = time.perf_counter() - t

    print(f"{'strategy':<18} {'alpool area':>12} {'modAL area':>12}")
    by = {s["strategy"]: s["area_mean"] for s in r["comparison"]["strategies"]}
    for s in strategies:
        print(f"{s:<18} {by[s]:>12.4f} {np.mean([g[s] for g in got]):>12.4f}")
    print(f"alpool.compare (built-in MLP): {t_alpool:.1f} s")
    print(f"modAL + scikit-learn MLPClassifier ({a.jobs} processes): {t_modal:.1f} s")
    print(f"ratio: alpool is {t_modal / t_alpool:.1f}x faster")


if __name__ == "__main__":
    main()
