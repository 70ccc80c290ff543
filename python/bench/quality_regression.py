"""Regression strategies in one loop on diamonds: scikit-activeml's greedy
sampling and EMCM beside alpool's strategies, one protocol, one run.

Usage: python quality_regression.py DIAMONDS_DIR [--rows N] [--repeats R]
                                    [--seed-size S] [--batch B] [--budget M]
                                    [--trees T] [--learner forest|ridge]
                                    [--features raw|log-carat|one-hot]
                                    [--curves FILE.csv]

DIAMONDS_DIR holds X.npy (N x 9) and y.npy (log10 price), as
``../shared/data/diamonds`` does. Each repeat draws ``--rows`` rows (seeded),
holds out 20% for testing, standardizes the features on the pool, and draws
``--seed-size`` first labels; every strategy of a repeat starts from that
split and those labels. The learner (``--learner``) is scikit-learn's
``RandomForestRegressor`` (``--trees`` trees, seeded), or ``ridge``: a
``BaggingRegressor`` of ``--trees`` ridge regressions on bootstrap resamples
(seeded), the linear model greedy sampling (Wu, Lin and Huang 2019) and
EMCM (Cai et al. 2013) were published with. It is refitted each round on
the labels so far; a forest is robust to diamonds' outlying rows (sizes of
0 mm). Either is an ensemble, so ``std`` reads its members' T predictions
of each row. Each round queries ``--batch`` rows:

- scikit-activeml as it ships: ``GreedySamplingX``, ``GreedySamplingTarget``
  with ``method="GSy"`` and ``"GSi"`` (over the forest wrapped in its
  ``SklearnRegressor``), and ``ExpectedModelChangeMaximization`` (its own
  bootstrap ensemble of the forest);
- alpool through ``alpool.select``: ``gsx``, ``gsy``, ``igs`` (the forest's
  predictions, the labeled targets, the standardized features), ``std``
  (the trees' spread) and ``emcm`` (the trees against the forest);
- random, seeded per repeat.

``--features`` picks the columns: ``raw`` (the nine as stored), ``log-carat``
(log10 carat and the three grades' codes: the linear model of price's
usual specification, with no millimetre column and so none of diamonds'
0 mm rows), or ``one-hot`` (log10 carat and one 0/1 column per grade
level, 21 columns: a linear model with a level of its own for every
grade).

Prints each strategy's test RMSE AULC (the mean over rounds) with its
standard deviation over repeats, its ratio to random's (below 1 is
better), the final RMSE, and the seconds its queries took. ``--curves``
also writes every round's test RMSE (strategy, repeat, round, labels,
rmse); repeat r is seed r.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skactiveml.pool import (
    ExpectedModelChangeMaximization,
    GreedySamplingTarget,
    GreedySamplingX,
)
from skactiveml.regressor import SklearnRegressor
from sklearn.base import clone
from sklearn.ensemble import BaggingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge

import alpool

# An ensemble regressor: a forest, or bagged ridge regressions.
Model = RandomForestRegressor | BaggingRegressor

# (pool features, targets with NaN where unlabeled, fitted model, k, seed)
# → pool rows to label next.
Query = Callable[[np.ndarray, np.ndarray, Model, int, int], np.ndarray]


def learner(kind: str, members: int, seed: int) -> Model:
    if kind == "ridge":
        return BaggingRegressor(Ridge(alpha=1.0), n_estimators=members, random_state=seed)
    return RandomForestRegressor(n_estimators=members, random_state=seed, n_jobs=2)


def skactiveml_query(make: Callable[[], object], needs_model: bool) -> Query:
    def query(x: np.ndarray, y: np.ndarray, model: Model, k: int, seed: int) -> np.ndarray:
        qs = make()
        if not needs_model:
            return np.asarray(qs.query(x, y, batch_size=k))  # type: ignore[attr-defined]
        # The round's model, refitted by scikit-activeml's wrapper on the
        # same labels with the same settings and seed: the same members.
        reg = SklearnRegressor(clone(model), random_state=seed)
        reg.fit(x, y)
        return np.asarray(qs.query(x, y, reg, fit_reg=False, batch_size=k))  # type: ignore[attr-defined]

    return query


def alpool_query(name: str) -> Query:
    def query(x: np.ndarray, y: np.ndarray, model: Model, k: int, seed: int) -> np.ndarray:
        labeled = np.flatnonzero(~np.isnan(y))
        xf = np.ascontiguousarray(x, dtype=np.float32)
        pred = model.predict(x).astype(np.float32)
        if name in ("std", "emcm"):
            trees = np.stack([t.predict(x) for t in model.estimators_]).astype(np.float32)
            if name == "std":
                return alpool.select(
                    trees, "std", k=k, input="regression-samples", exclude=labeled
                )[0]
            return alpool.select(
                pred, "emcm", k=k, input="regression-samples", samples=trees,
                embeddings=xf, exclude=labeled,
            )[0]  # fmt: skip
        if name == "gsx":
            return alpool.select(embeddings=xf, strategy="gsx", k=k, exclude=labeled)[0]
        return alpool.select(pred, name, k=k, input="regression", embeddings=xf, targets=y)[0]

    return query


def random_query(x: np.ndarray, y: np.ndarray, model: object, k: int, seed: int) -> np.ndarray:
    free = np.flatnonzero(np.isnan(y))
    return np.random.default_rng(seed).choice(free, size=k, replace=False)


STRATEGIES: dict[str, Query] = {
    "random": random_query,
    "skactiveml GSx": skactiveml_query(GreedySamplingX, False),
    "skactiveml GSy": skactiveml_query(lambda: GreedySamplingTarget(method="GSy"), True),
    "skactiveml GSi": skactiveml_query(lambda: GreedySamplingTarget(method="GSi"), True),
    "skactiveml EMCM": skactiveml_query(ExpectedModelChangeMaximization, True),
    "alpool gsx": alpool_query("gsx"),
    "alpool gsy": alpool_query("gsy"),
    "alpool igs": alpool_query("igs"),
    "alpool std": alpool_query("std"),
    "alpool emcm": alpool_query("emcm"),
}


def run(
    x: np.ndarray, y: np.ndarray, name: str, seed: int, a: argparse.Namespace
) -> tuple[list[tuple[int, float]], float]:
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(x))[: a.rows]
    n_test = round(len(rows) * 0.2)
    test, pool = rows[:n_test], rows[n_test:]
    mean, sd = x[pool].mean(axis=0), x[pool].std(axis=0)
    xs = (x - mean) / np.where(sd > 0, sd, 1.0)
    xp, yp = xs[pool], y[pool].astype(np.float64)
    known = np.full(len(pool), np.nan)
    first = rng.permutation(len(pool))[: a.seed_size]
    known[first] = yp[first]
    curve: list[tuple[int, float]] = []
    spent = 0.0
    for round_ in range(10**6):
        labeled = np.flatnonzero(~np.isnan(known))
        model = learner(a.learner, a.trees, seed).fit(xp[labeled], yp[labeled])
        err = model.predict(xs[test]) - y[test]
        curve.append((len(labeled), float(np.sqrt(np.mean(err**2)))))
        k = min(a.batch, a.budget - len(labeled))
        if k <= 0:
            return curve, spent
        t0 = time.perf_counter()
        picked = np.asarray(STRATEGIES[name](xp, known, model, k, seed * 1000 + round_))
        spent += time.perf_counter() - t0
        picked = picked.astype(np.int64)
        assert len(set(picked.tolist())) == k and np.isnan(known[picked]).all(), name
        known[picked] = yp[picked]
    return curve, spent


def columns(x: np.ndarray, kind: str) -> np.ndarray:
    """diamonds' features as ``--features`` names them (see the module's
    docstring); columns 0-3 are carat, cut (1-5), color (1-7), clarity (1-8)."""
    if kind == "raw":
        return x
    carat = np.log10(x[:, :1])
    if kind == "log-carat":
        return np.hstack([carat, x[:, 1:4]])
    levels = [
        (x[:, [j]] == np.arange(1, m + 1)).astype(np.float64) for j, m in [(1, 5), (2, 7), (3, 8)]
    ]
    return np.hstack([carat, *levels])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("diamonds", type=Path)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed-size", type=int, default=20)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--trees", type=int, default=30, help="the ensemble's members")
    p.add_argument("--learner", choices=["forest", "ridge"], default="forest")
    p.add_argument("--features", choices=["raw", "log-carat", "one-hot"], default="raw")
    p.add_argument("--curves", type=Path, help="write every round's test RMSE here (CSV)")
    p.add_argument(
        "--without", action="append", default=[], metavar="NAME",
        help='leave a strategy out (repeatable), e.g. "skactiveml EMCM"',
    )  # fmt: skip
    a = p.parse_args()
    unknown = set(a.without) - set(STRATEGIES)
    if unknown:
        p.error(f"unknown strategies {sorted(unknown)}; they are {list(STRATEGIES)}")
    # scikit-activeml warns about its own defaults; the figures are what
    # it computes with them.
    warnings.filterwarnings("ignore")
    x = columns(np.load(a.diamonds / "X.npy").astype(np.float64), a.features)
    y = np.load(a.diamonds / "y.npy").astype(np.float64)
    print(
        f"diamonds: {a.rows} of {len(x)} rows x {x.shape[1]} features; seed {a.seed_size}, "
        f"batches of {a.batch} to {a.budget} labels, {a.repeats} repeats, "
        f"{a.learner} of {a.trees}, {a.features} features"
    )
    aulc: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    rows = ["strategy,repeat,round,labels,rmse"]
    for name in [n for n in STRATEGIES if n not in a.without]:
        for r in range(a.repeats):
            curve, spent = run(x, y, name, r, a)
            rmse = [e for _, e in curve]
            aulc.setdefault(name, []).append(float(np.mean(rmse)))
            finals.setdefault(name, []).append(rmse[-1])
            seconds[name] = seconds.get(name, 0.0) + spent
            rows += [f"{name},{r},{i},{n},{e:.6f}" for i, (n, e) in enumerate(curve)]
        print(f"  {name}: queries {seconds[name]:.1f} s", flush=True)
    if a.curves:
        a.curves.write_text("\n".join(rows) + "\n")
    base = float(np.mean(aulc["random"]))
    print(f"{'strategy':<18} {'RMSE AULC':>17} {'vs random':>10} {'final RMSE':>11} {'query s':>8}")
    for name, v in aulc.items():
        ratio = "—" if name == "random" else f"{np.mean(v) / base:.3f}x"
        sd = np.std(v, ddof=1) if len(v) > 1 else 0.0
        print(
            f"{name:<18} {np.mean(v):>8.5f} ± {sd:.5f} {ratio:>10} "
            f"{np.mean(finals[name]):>11.5f} {seconds[name]:>8.1f}"
        )


if __name__ == "__main__":
    main()
