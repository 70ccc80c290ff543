"""alpool.compare: the statistics against SciPy, the protocols' settings as
documented, scikit-learn learners (SVC, LogisticRegression), bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC, LinearSVC

import alpool
from alpool import _alpool


def _summarize(areas: dict[str, np.ndarray], protocol: str = "alpool") -> dict[str, Any]:
    """The library's statistics of one-point curves whose areas are given."""
    p = _alpool.protocol(protocol, "{}")
    curves = [
        {"strategy": s, "restart": r, "labels": [20], "accuracy": [float(a)]}
        for s, v in areas.items()
        for r, a in enumerate(v)
    ]
    doc = _alpool.summarize(json.dumps(curves), list(areas), p, None, None, "{}")
    result: dict[str, Any] = json.loads(doc)["comparison"]
    return result


def _command(cli: Path, tmp: Path, X: np.ndarray, y: np.ndarray, flags: list[Any]) -> Any:
    """``alpool compare`` on ``(X, y)`` with ``flags``: its compare.json."""
    np.save(tmp / "x.npy", X.astype(np.float32))
    np.save(tmp / "y.npy", y.astype(np.int64))
    args = ["compare", "--features", tmp / "x.npy", "--labels", tmp / "y.npy", *flags]
    subprocess.run([str(cli), *map(str, [*args, "--out", tmp / "out"])], check=True)
    return json.loads((tmp / "out" / "compare.json").read_text())


def _by_run(curves: list[dict[str, Any]]) -> dict[tuple[str, int], list[float]]:
    """Each run's accuracy curve, by (strategy, restart)."""
    return {(c["strategy"], c["restart"]): c["accuracy"] for c in curves}


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out as its definition."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


# (restarts, ties): exact tests, the normal approximation with tied and
# zero differences, and beyond SciPy's exact limit of 50.
@pytest.mark.parametrize("n,ties", [(7, False), (20, False), (20, True), (60, False)])
def test_statistics_equal_scipys(n: int, ties: bool) -> None:
    rng = np.random.default_rng(n + ties)
    base = rng.uniform(0.6, 0.9, n)
    areas = {
        "random": base,
        "margin": base + rng.normal(0.02, 0.02, n),
        "entropy": base + rng.normal(0.0, 0.02, n),
    }
    if ties:
        # Tied magnitudes and zero differences.
        areas["margin"] = base + np.round(rng.normal(0.01, 0.02, n), 2)
        areas["margin"][:3] = base[:3]
    cmp = _summarize(areas)
    by = {s["strategy"]: s for s in cmp["strategies"]}
    ranks = stats.rankdata(-np.vstack(list(areas.values())), axis=0).mean(axis=1)
    raw = []
    for i, (name, a) in enumerate(areas.items()):
        s = by[name]
        assert s["area_mean"] == pytest.approx(a.mean(), rel=1e-12)
        assert s["area_std"] == pytest.approx(a.std(ddof=1), rel=1e-12)
        lo, hi = stats.t.interval(0.95, n - 1, loc=a.mean(), scale=stats.sem(a))
        assert s["area_ci"] == pytest.approx([lo, hi], rel=1e-9)
        assert s["mean_rank"] == pytest.approx(ranks[i], rel=1e-12)
        if name == "random":
            assert s["vs_random"] is None
            continue
        d = a - areas["random"]
        exact = n <= 50 and np.all(d != 0) and len(np.unique(np.abs(d))) == n
        ref = stats.wilcoxon(a, areas["random"], method="exact" if exact else "asymptotic")
        t = s["vs_random"]
        assert t["wilcoxon"]["method"] == ("exact" if exact else "normal")
        assert t["wilcoxon"]["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
        assert t["wilcoxon"]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert (t["wins"], t["ties"], t["losses"]) == (
            int(np.sum(d > 0)),
            int(np.sum(d == 0)),
            int(np.sum(d < 0)),
        )
        raw.append((name, t["wilcoxon"]["p"]))
    adjusted = _holm([p for _, p in raw])
    for (name, _), adj in zip(raw, adjusted):
        assert by[name]["vs_random"]["p_holm"] == pytest.approx(adj, rel=1e-12)


def test_area_is_the_protocols() -> None:
    # lu2023: the trapezoid over the labels' span; alpool: the mean over rounds.
    curve = {
        "strategy": "random",
        "restart": 0,
        "labels": [20, 21, 23],
        "accuracy": [0.5, 0.7, 0.9],
    }
    for name, want in [("lu2023", (0.6 * 1 + 0.8 * 2) / 3), ("alpool", 0.7)]:
        doc = _alpool.summarize(
            json.dumps([curve]), ["random"], _alpool.protocol(name, "{}"), None, None, "{}"
        )
        assert json.loads(doc)["comparison"]["strategies"][0]["area_mean"] == pytest.approx(want)


def test_protocol_settings_are_as_documented() -> None:
    lu = json.loads(_alpool.protocol("lu2023", "{}"))
    assert (lu["test_fraction"], lu["initial"], lu["batch_size"], lu["budget"]) == (
        0.4,
        {"random": 20},
        1,
        None,
    )
    assert (lu["scaling"], lu["learner"], lu["restarts"], lu["area"]) == (
        "standard",
        "svm-rbf",
        100,
        "trapezoid",
    )
    _, y = load_breast_cancer(return_X_y=True)
    pool, test, initial = _alpool.restart_rows(y, json.dumps(lu), 7)
    # Stratified: round(0.4 n_c) of each class held out.
    for c in (0, 1):
        n = int(np.sum(y == c))
        assert int(np.sum(y[test] == c)) == round(0.4 * n)
    assert len(np.intersect1d(pool, test)) == 0 and len(pool) + len(test) == len(y)
    assert len(initial) == 20 and np.all(np.isin(initial, pool))
    custom = json.loads(_alpool.protocol("lu2023", json.dumps({"initial": {"per_class": 3}})))
    assert custom["name"] == "custom" and custom["source"] == "lu2023 with overrides"
    _, _, initial = _alpool.restart_rows(y, json.dumps(custom), 7)
    assert sorted(np.bincount(y[initial]).tolist()) == [3, 3]


def test_logistic_regression_runs_the_protocol_and_repeats_itself(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    kw: dict[str, Any] = dict(
        learner=LogisticRegression(max_iter=2000),
        strategies=["random", "margin"],
        restarts=3,
        budget=60,
        batch_size=10,
        progress=False,
    )
    a = alpool.compare(X, y, out=tmp_path, **kw)
    b = alpool.compare(X, y, **kw)
    assert a["comparison"] == b["comparison"]
    for c in a["curves"]:
        assert c["labels"] == [20, 30, 40, 50, 60]
        assert all(0.0 <= x <= 1.0 for x in c["accuracy"])
    on_disk = json.loads((tmp_path / "compare.json").read_text())
    assert on_disk["comparison"] == a["comparison"]
    assert (tmp_path / "report.html").stat().st_size > 0
    assert a["comparison"]["protocol"]["name"] == "custom"


def test_svc_under_lu2023_queries_until_the_pool_is_empty() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    r = alpool.compare(
        X,
        y,
        protocol="lu2023",
        restarts=1,
        strategies=["random", "least-confidence"],
        progress=False,
    )
    assert r["comparison"]["protocol"]["name"] == "custom"
    pool, _, _ = _alpool.restart_rows(y, json.dumps(r["comparison"]["protocol"]), 0)
    for c in r["curves"]:
        # Batch 1 from 20 labels to the whole pool.
        assert c["labels"] == list(range(20, len(pool) + 1))
    assert "SVC" in r["meta"]["learner"]


def test_the_built_in_mlp_through_python() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    r = alpool.compare(
        X, y, restarts=2, budget=40, strategies=["random", "entropy"], progress=False
    )
    assert [s["strategy"] for s in r["comparison"]["strategies"]] == ["random", "entropy"]
    assert r["meta"]["learner"].startswith("alpool MLP")
    assert all(c["labels"] == [20, 30, 40] for c in r["curves"])


def test_bad_input_is_refused() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(ValueError, match="one label per row"):
        alpool.compare(X, y[:-1], learner=LogisticRegression())
    with pytest.raises(alpool.AlpoolError, match="needs 300 per class"):
        alpool.compare(X, y, learner=LogisticRegression(), initial_per_class=300)
    with pytest.raises(alpool.AlpoolError, match="beyond the pool"):
        alpool.compare(X, y, learner=LogisticRegression(), budget=10_000)
    for model in (SVC(), LinearSVC()):
        with pytest.raises(TypeError, match="predict_proba"):
            alpool.compare(X, y, learner=model)
    with pytest.raises(alpool.AlpoolError, match="unknown protocol"):
        alpool.compare(X, y, protocol="cdal")


def test_committee_strategies_with_the_built_in_mlp() -> None:
    """Disagreement strategies read a committee's samples: the same seed,
    the same curves; a committee of one cannot disagree."""
    X, y = load_breast_cancer(return_X_y=True)
    kw: dict[str, Any] = dict(
        strategies=["random", "vote-entropy", "bald"],
        restarts=2,
        budget=60,
        batch_size=10,
        progress=False,
        committee=3,
    )
    a = alpool.compare(X, y, **kw)
    b = alpool.compare(X, y, **kw)
    assert a["curves"] == b["curves"]
    got = {c["strategy"] for c in a["curves"]}
    assert got == {"random", "vote-entropy", "bald"}
    assert all(c["labels"][-1] == 60 for c in a["curves"])
    with pytest.raises(alpool.AlpoolError, match="committee of T"):
        alpool.compare(X, y, **dict(kw, committee=1))


def test_restarts_in_processes_equal_one_process() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    kw: dict[str, Any] = dict(
        learner=LogisticRegression(max_iter=2000),
        strategies=["random", "entropy"],
        restarts=2,
        budget=40,
        progress=False,
    )
    many = alpool.compare(X, y, n_jobs=2, **kw)
    one = alpool.compare(X, y, n_jobs=1, **kw)
    # The wall time in meta differs; the runs and their statistics do not.
    assert many["curves"] == one["curves"]
    assert many["comparison"] == one["comparison"]


def test_mc_dropout_through_python_is_the_commands(cli: Path, tmp_path: Path) -> None:
    """``mc_samples=`` and ``dropout=`` run what ``alpool compare
    --mc-samples T --dropout P`` runs: the same curves, repeatable, and not
    the committee's."""
    X, y = load_breast_cancer(return_X_y=True)
    kw: dict[str, Any] = dict(
        strategies=["random", "bald"], restarts=2, budget=50, batch_size=10, progress=False
    )
    a = alpool.compare(X, y, mc_samples=4, dropout=0.3, **kw)
    assert a["curves"] == alpool.compare(X, y, mc_samples=4, dropout=0.3, **kw)["curves"]
    assert "MC dropout 4 passes" in a["meta"]["learner"]
    committee = alpool.compare(X, y, **kw)
    bald = [c for c in a["curves"] if c["strategy"] == "bald"]
    assert bald != [c for c in committee["curves"] if c["strategy"] == "bald"]
    flags = ["--strategies", "random,bald", "--restarts", 2, "--budget", 50, "--batch-size", 10]
    on_disk = _command(cli, tmp_path, X, y, [*flags, "--mc-samples", 4, "--dropout", 0.3])
    assert _by_run(a["curves"]) == _by_run(on_disk["curves"])
    with pytest.raises(alpool.AlpoolError, match="train it with --dropout P"):
        alpool.compare(X, y, mc_samples=4, **kw)
    with pytest.raises(ValueError, match="configure alpool's MLP"):
        alpool.compare(X, y, learner=LogisticRegression(), mc_samples=4, **kw)


@pytest.mark.parametrize("learner", [None, LogisticRegression(max_iter=2000)])
def test_stochastic_batches_in_compare(learner: Any) -> None:
    """``power-margin`` draws its batches (repeatably, not margin's top k);
    at beta = inf a softmax batch is the top k, round after round; a bad
    prefix, strategy or beta is refused."""
    X, y = load_breast_cancer(return_X_y=True)
    kw: dict[str, Any] = dict(learner=learner, restarts=2, budget=60, batch_size=10, progress=False)
    names = ["margin", "power-margin", "softmax-margin"]
    a = alpool.compare(X, y, strategies=names, **kw)
    assert a["curves"] == alpool.compare(X, y, strategies=names, **kw)["curves"]
    assert [d["strategy"] for d in a["meta"]["stochastic"]] == names[1:]
    assert all(d["beta"] == 1.0 for d in a["meta"]["stochastic"])
    curves = {(c["strategy"], c["restart"]): c["accuracy"] for c in a["curves"]}
    assert curves[("power-margin", 0)] != curves[("margin", 0)]
    cold = alpool.compare(X, y, strategies=["margin", "softmax-margin"], beta=float("inf"), **kw)
    by = {(c["strategy"], c["restart"]): c["accuracy"] for c in cold["curves"]}
    for r in range(2):
        assert by[("softmax-margin", r)] == by[("margin", r)] == curves[("margin", r)]
    for bad, says in [
        (["random", "power-random"], "uniform baseline"),
        (["random", "power-badge"], "picks a batch itself"),
        (["random", "power-nonsense"], "unknown strategy"),
    ]:
        with pytest.raises(alpool.AlpoolError, match=says):
            alpool.compare(X, y, strategies=bad, **kw)
    with pytest.raises(alpool.AlpoolError, match="beta must be above 0"):
        alpool.compare(X, y, strategies=["power-margin"], beta=0.0, **kw)


def test_stochastic_batches_through_python_are_the_commands(cli: Path, tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    a = alpool.compare(
        X,
        y,
        strategies=["random", "power-entropy"],
        beta=2.0,
        restarts=2,
        budget=50,
        batch_size=10,
        progress=False,
    )
    flags = ["--strategies", "random,power-entropy", "--beta", 2, "--restarts", 2]
    on_disk = _command(cli, tmp_path, X, y, [*flags, "--budget", 50, "--batch-size", 10])
    ours = _by_run(a["curves"])
    assert ours == _by_run(on_disk["curves"])
    assert ("power-entropy", 1) in ours
    assert a["meta"]["stochastic"] == on_disk["meta"]["stochastic"]
