"""Which strategy for this dataset: :func:`compare` runs strategies under a
named protocol with any scikit-learn style learner (or alpool's MLP), and
returns the statistics ``alpool compare`` computes, from the same code.

The split, the initial set and the statistics (confidence intervals,
Wilcoxon signed-rank tests with Holm's correction, ranks, labels to a
target) come from the native library, so a scikit-learn run and a command
run under one protocol and seed use the same rows and the same tests.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from . import _alpool

DEFAULT_STRATEGIES = ("random", "least-confidence", "margin", "entropy")

# Round r of a run seeded s draws its random picks with this seed, as the
# library's loop does (alpool::al::pool_loop::round_seed).
_ROUND_MULTIPLIER = 1_000_003


def _round_seed(seed: int, round_: int) -> int:
    return (seed * _ROUND_MULTIPLIER + round_) % (1 << 64)


def _protocol(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    o = dict(overrides)
    if "initial" in o and o["initial"] is not None:
        o["initial"] = {"random": int(o["initial"])}
    if "initial_per_class" in o:
        n = o.pop("initial_per_class")
        if n is not None:
            o["initial"] = {"per_class": int(n)}
    o = {k: v for k, v in o.items() if v is not None}
    result: dict[str, Any] = json.loads(_alpool.protocol(name, json.dumps(o)))
    return result


def _default_learner(protocol: dict[str, Any], seed: int) -> Any:
    if protocol["learner"] == "svm-rbf":
        from sklearn.svm import SVC

        return SVC(kernel="rbf", gamma="auto", C=1.0, probability=True, random_state=seed)
    return None


def _check_learner(learner: Any) -> None:
    missing = [m for m in ("fit", "predict_proba") if not callable(getattr(learner, m, None))]
    if missing:
        raise TypeError(
            f"learner {type(learner).__name__} has no {' or '.join(missing)}: "
            "alpool.compare needs fit(X, y) and predict_proba(X) "
            "(for an SVC, give probability=True)"
        )


def _scale(x: np.ndarray, pool: np.ndarray, scaling: str) -> np.ndarray:
    """The features scaled as the protocol says, fitted on the pool rows."""
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
        if scaling == "auto":
            return x
    x = np.asarray(x, dtype=np.float64)
    fit = x[pool]
    if scaling in ("auto", "standard"):
        mean = fit.mean(axis=0)
        std = fit.std(axis=0)
        std[std == 0] = 1.0
        out: np.ndarray = (x - mean) / std
        return out
    if scaling == "minmax":
        lo = fit.min(axis=0)
        span = fit.max(axis=0) - lo
        span[span == 0] = 1.0
        scaled: np.ndarray = (x - lo) / span
        return scaled
    return x


def _fresh(learner: Any) -> Any:
    try:
        from sklearn.base import clone

        return clone(learner)
    except (ImportError, TypeError):
        return copy.deepcopy(learner)


def _pick(
    model: Any,
    x: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    strategy: str,
    k: int,
    seed: int,
    embed: Callable[[np.ndarray], Any] | None,
    beta: float,
) -> np.ndarray:
    """The next batch: positions into the unlabeled rows. ``power-margin``
    and the like draw it (a stochastic batch at inverse temperature
    ``beta``) instead of taking the k best."""
    from . import BATCH_STRATEGIES, select

    strategy, kind = _alpool.method(strategy, beta)
    unlabeled, labeled = rows
    if strategy in BATCH_STRATEGIES:
        # The unlabeled rows then the labeled ones, excluded: core-set's
        # centres, as the library's loop hands them over.
        both = np.concatenate([unlabeled, labeled])
        transform = embed if embed is not None else getattr(model, "transform", None)
        if transform is None:
            raise TypeError(
                f"{strategy} reads embeddings: give alpool.compare embed=callable(X) "
                "or a learner with transform(X)"
            )
        probs = np.ascontiguousarray(model.predict_proba(x[both]))
        emb = np.ascontiguousarray(np.asarray(transform(x[both]), dtype=np.float32))
        exclude = np.arange(len(unlabeled), len(both))
        idx, _ = select(probs, strategy, k, embeddings=emb, exclude=exclude, seed=seed)
        return np.asarray(idx)
    probs = np.ascontiguousarray(model.predict_proba(x[unlabeled]))
    if kind is None:
        idx, _ = select(probs, strategy, k, seed=seed)
    else:
        idx, _ = select(probs, strategy, k, seed=seed, stochastic=kind, beta=beta)
    return np.asarray(idx)


def _run(
    x: np.ndarray,
    y: np.ndarray,
    learner: Any,
    strategy: str,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    protocol: dict[str, Any],
    seed: int,
    embed: Callable[[np.ndarray], Any] | None,
    beta: float,
) -> dict[str, Any]:
    """One strategy's run on one restart: its learning curve."""
    pool, test, initial = rows
    labeled = list(initial)
    is_labeled = np.zeros(len(y), dtype=bool)
    is_labeled[initial] = True
    budget = protocol["budget"]
    labels: list[int] = []
    accuracy: list[float] = []
    for round_ in range(len(pool) + 1):
        model = _fresh(learner)
        lab = np.asarray(labeled)
        model.fit(x[lab], y[lab])
        accuracy.append(float(np.mean(np.asarray(model.predict(x[test])) == y[test])))
        labels.append(len(labeled))
        unlabeled = pool[~is_labeled[pool]]
        left = len(unlabeled) if budget is None else min(budget - len(labeled), len(unlabeled))
        if left <= 0:
            break
        k = min(protocol["batch_size"], left)
        round_seed = _round_seed(seed, round_)
        picked = _pick(model, x, (unlabeled, lab), strategy, k, round_seed, embed, beta)
        batch = unlabeled[picked]
        labeled.extend(int(i) for i in batch)
        is_labeled[batch] = True
    return {"strategy": strategy, "labels": labels, "accuracy": accuracy}


def _restart(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every strategy on one restart: the unit of work of a process pool or a
    Ray task. Restart r is seeded ``seed + r``, so one restart alone (a
    protocol of one restart at that seed) runs exactly the rows it runs
    among all of them."""
    x, y, learner, strategies, protocol, seed, restart, embed, settings = args
    if learner is None:
        one = json.dumps(dict(protocol, restarts=1))
        xf = np.ascontiguousarray(x, dtype=np.float32)
        curves: list[dict[str, Any]] = json.loads(
            _alpool.compare_mlp(xf, y, strategies, one, seed + restart, *settings)
        )
        for c in curves:
            c["restart"] = restart
        return curves
    pool, test, initial = _alpool.restart_rows(y, json.dumps(protocol), seed + restart)
    xs = _scale(x, pool, protocol["scaling"])
    out = []
    for s in strategies:
        try:
            rows = (pool, test, initial)
            curve = _run(xs, y, learner, s, rows, protocol, seed + restart, embed, settings[3])
        except Exception as e:
            raise type(e)(f"{s}, restart {restart}: {e}") from e
        curve["restart"] = restart
        out.append(curve)
    return out


Mapper = Callable[[list[tuple[Any, ...]]], Iterable[list[dict[str, Any]]]]


def _versions(learner: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "alpool": _alpool.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import sklearn

        v["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return v


def compare(
    X: Any,
    y: Any,
    *,
    learner: Any = None,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    protocol: str = "alpool",
    seed: int = 0,
    target_accuracy: float | None = None,
    out: str | os.PathLike[str] | None = None,
    n_jobs: int = 1,
    embed: Callable[[np.ndarray], Any] | None = None,
    name: str = "<arrays>",
    progress: bool = True,
    restarts: int | None = None,
    test_fraction: float | None = None,
    initial: int | None = None,
    initial_per_class: int | None = None,
    batch_size: int | None = None,
    budget: int | None = None,
    until_empty: bool = False,
    scaling: str | None = None,
    area: str | None = None,
    mapper: Mapper | None = None,
    committee: int = 5,
    mc_samples: int = 0,
    dropout: float = 0.0,
    beta: float = 1.0,
) -> dict[str, Any]:
    """Compare strategies on ``(X, y)`` under a protocol; returns the report.

    Args:
        X: features, N x D.
        y: integer class labels 0..K-1, length N.
        learner: a scikit-learn style classifier (``fit``, ``predict_proba``,
            ``predict``), cloned for every round. ``None``: the protocol's
            learner (alpool's MLP for ``"alpool"``, an RBF SVC for
            ``"lu2023"``).
        strategies: the strategies; include ``"random"``, the baseline.
            Batch-aware ones (``BATCH_STRATEGIES``) read embeddings from
            ``embed`` or the learner's ``transform``. Prefix one that scores
            rows with ``power-``, ``softmax-`` or ``softrank-`` to draw its
            batches instead of taking the k best (``"power-bald"``,
            Kirsch et al. 2023's PowerBALD; docs/stochastic.md).
        protocol: ``"alpool"``, ``"lu2023"`` or ``"custom"``; the keyword
            arguments from ``restarts`` on override its parts, and it is then
            reported as custom (docs/compare.md).
        seed: restart r uses ``seed + r`` for its split and initial set, the
            same rows for every strategy and for ``alpool compare``.
        target_accuracy: the accuracy "labels to target" is measured at
            (default: random's final mean accuracy).
        out: a folder to write ``compare.json``, the CSVs and ``report.html``.
        n_jobs: restarts run in this many processes (the learner and
            ``embed`` must pickle).
        embed: ``embed(X) -> N x E`` for the batch-aware strategies.
        name: the dataset's name in the report.
        progress: print a line per finished restart to stderr.
        mapper: runs the restarts' jobs and yields each one's curves, in
            order (``alpool.ray.compare`` gives one that runs them as Ray
            tasks); by default this process or ``n_jobs`` processes.
        committee: with alpool's MLP, the members of the committee whose
            probabilities are the samples the disagreement strategies
            (``"bald"``, ``"vote-entropy"``, …) and ``"batchbald"`` read: each
            round trains them on bootstrap resamples of the labels.
        mc_samples: with alpool's MLP, MC dropout instead of the committee:
            the samples are this many passes of each round's model with
            dropout kept on at inference (needs ``dropout`` > 0).
        dropout: with alpool's MLP, its dropout after each hidden layer.
        beta: the inverse temperature of the strategies that draw their
            batches (``power-…``): larger follows the scores more closely.

    Returns:
        ``{"meta", "comparison", "curves"}``, as ``compare.json``.
    """
    started = time.perf_counter()
    p = _protocol(
        protocol,
        {
            "restarts": restarts,
            "test_fraction": test_fraction,
            "initial": initial,
            "initial_per_class": initial_per_class,
            "batch_size": batch_size,
            "budget": budget,
            "until_empty": until_empty,
            "scaling": scaling,
            "area": area,
        },
    )
    x = np.asarray(X)
    yy = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"X has shape {x.shape}; expected N x D")
    if yy.ndim != 1 or len(yy) != len(x):
        raise ValueError(
            f"y has shape {yy.shape} and X has {len(x)} rows: one label per row is needed"
        )
    if not np.issubdtype(yy.dtype, np.integer):
        raise ValueError(f"y has dtype {yy.dtype}; labels must be integers 0..K-1")
    yy = yy.astype(np.int64)
    names = list(strategies)
    if learner is None:
        learner = _default_learner(p, seed)
    meta: dict[str, Any] = {
        "title": f"alpool compare: {name}",
        "dataset": name,
        "rows": int(x.shape[0]),
        "features": int(x.shape[1]),
        "classes": int(yy.max()) + 1 if len(yy) else 0,
        "seed": seed,
        "versions": _versions(learner),
    }
    # Checked once here, so a bad protocol fails before any work starts.
    _alpool.restart_rows(yy, json.dumps(p), seed)
    if learner is None:
        meta["learner"] = "alpool MLP (hidden 256, fused)"
        if dropout or mc_samples:
            meta["learner"] += f", dropout {dropout}, MC dropout {mc_samples} passes"
    elif mc_samples or dropout:
        raise ValueError(
            "mc_samples and dropout configure alpool's MLP; with a learner of your own, "
            "give it its own dropout"
        )
    else:
        _check_learner(learner)
        meta["learner"] = repr(learner)
    # A bad name or prefix fails here, before any work starts. The draws are
    # recorded as the command records them; JSON has no infinity.
    kinds = {s: _alpool.method(s, beta)[1] for s in names}
    meta["stochastic"] = [
        {"strategy": s, "kind": k, "beta": beta if math.isfinite(beta) else "inf"}
        for s, k in kinds.items()
        if k is not None
    ]
    settings = (committee, mc_samples, dropout, beta)
    jobs = [(x, yy, learner, names, p, seed, r, embed, settings) for r in range(p["restarts"])]
    if learner is None and mapper is None:
        # alpool's MLP in the library, every restart on the engine's threads:
        # the same runs as `alpool compare`.
        xf = np.ascontiguousarray(x, dtype=np.float32)
        curves = json.loads(_alpool.compare_mlp(xf, yy, names, json.dumps(p), seed, *settings))
    else:
        curves = _curves(jobs, mapper or _local(n_jobs), progress)
    # Strategy-major, restarts ascending: the library's order, whoever ran them.
    curves.sort(key=lambda c: (names.index(c["strategy"]), c["restart"]))
    meta["seconds"] = time.perf_counter() - started
    doc = _alpool.summarize(
        json.dumps(curves),
        names,
        json.dumps(p),
        target_accuracy,
        None if out is None else os.fspath(out),
        json.dumps(meta),
    )
    result: dict[str, Any] = json.loads(doc)
    return result


def _local(n_jobs: int) -> Mapper:
    """Restarts in this process, or in ``n_jobs`` spawned ones (a fork would
    copy the engine's thread pool without its threads)."""

    def run(jobs: list[tuple[Any, ...]]) -> Iterator[list[dict[str, Any]]]:
        if n_jobs <= 1:
            yield from map(_restart, jobs)
            return
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as ex:
            yield from ex.map(_restart, jobs)

    return run


def _curves(jobs: list[tuple[Any, ...]], mapper: Mapper, progress: bool) -> list[dict[str, Any]]:
    curves: list[dict[str, Any]] = []
    for done, got in enumerate(mapper(jobs), 1):
        curves.extend(got)
        if progress:
            print(f"\rcompare: {done}/{len(jobs)} restarts", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return curves
