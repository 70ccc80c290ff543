"""Multi-label pools from Python: the strategies against NumPy written from
the documented formulas, modAL's own multi-label strategies inside its
loop, and bad pools named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

import alpool
import alpool.modal

pytest.importorskip("modAL")
from modAL.models import ActiveLearner  # noqa: E402
from modAL.multilabel import avg_score, max_score  # noqa: E402


def tags(n: int, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and an N x L 0/1 truth: label j applies when x_j > 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, labels + 2))
    Y = (X[:, :labels] + 0.6 * rng.normal(size=(n, labels)) > 0).astype(int)
    return X, Y


def reference(p: np.ndarray, strategy: str, cardinality: float, beta: float) -> np.ndarray:
    """The documented scores, in NumPy, float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nan_to_num(p * np.log(p)) - np.nan_to_num((1 - p) * np.log(1 - p))
    positive = p > 0.5
    lci = np.abs(positive.sum(1) - cardinality)
    modal = p * (positive - 0.5)
    if strategy == "mean-entropy":
        return h.mean(1)
    if strategy == "max-entropy":
        return h.max(1)
    if strategy == "min-margin":
        return np.abs(p - 0.5).min(1)
    if strategy == "cardinality":
        return lci
    if strategy == "avg-score":
        return modal.mean(1)
    if strategy == "max-score":
        return modal.max(1)
    lo = np.where(positive, p, np.inf).min(1)
    hi = np.where(positive, -np.inf, p).max(1)
    lo = np.where(np.isinf(lo), 0.5, lo)
    hi = np.where(np.isinf(hi), 0.5, hi)
    u = 1 / np.maximum(lo - hi, 0.01)
    return u**beta * lci ** (1 - beta)


@pytest.mark.parametrize("strategy", alpool.MULTILABEL_STRATEGIES)
def test_every_strategy_matches_numpy(strategy: str) -> None:
    rng = np.random.default_rng(4)
    p = (1 / (1 + np.exp(-3 * rng.normal(size=(2000, 6))))).astype(np.float32)
    opts = {"label_cardinality": 2.5, "uncertainty_weight": 0.4}
    want = reference(p.astype(np.float64), strategy, 2.5, 0.4)
    got = alpool.score(p, strategy, input="multilabel", **opts)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-15)
    idx, scores = alpool.select(p, strategy, k=50, input="multilabel", **opts)
    order = np.lexsort((np.arange(len(want)), want if strategy == "min-margin" else -want))
    assert idx.tolist() == order[:50].tolist()
    assert np.array_equal(scores, got[idx])
    # Logits give the same scores as their sigmoids, within rounding.
    z = np.log(p.astype(np.float64) / (1 - p.astype(np.float64)))
    from_logits = alpool.score(z, strategy, input="multilabel-logits", **opts)
    assert np.allclose(from_logits, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(alpool.modal.max_score, max_score), (alpool.modal.avg_score, avg_score)]
)
def test_modal_multilabel_loop_matches_modal(ours, theirs) -> None:
    X, Y = tags(500, 4, 2)

    def learner(strategy) -> ActiveLearner:
        clf = OneVsRestClassifier(LogisticRegression())
        return ActiveLearner(clf, strategy, X_training=X[:20], y_training=Y[:20])

    a, b = learner(ours), learner(lambda c, x, n_instances=1: theirs(c, x, n_instances, False))
    pool = np.arange(20, 500)
    for _ in range(4):
        (qa, va), (qb, vb) = a.query(X[pool], n_instances=8), b.query(X[pool], n_instances=8)
        assert set(qa.tolist()) == set(qb.tolist())
        assert np.allclose(np.sort(va), np.sort(vb), atol=1e-12)
        rows = pool[qa]
        a.teach(X[rows], Y[rows])
        b.teach(X[rows], Y[rows])
        pool = np.setdiff1d(pool, rows)


def test_bad_multilabel_pools_are_named() -> None:
    p = np.full((10, 3), 0.25, dtype=np.float32)
    p[6, 1] = 1.5
    with pytest.raises(alpool.AlpoolError, match=r"row 6.*column 1.*\[0, 1\]"):
        alpool.select(p, "mean-entropy", k=2, input="multilabel")
    p[6, 1] = 0.25
    with pytest.raises(ValueError, match="--input multilabel"):
        alpool.select(p, "mean-entropy", k=2)
    with pytest.raises(ValueError, match="its strategies are mean-entropy"):
        alpool.select(p, "margin", k=2, input="multilabel")
    with pytest.raises(ValueError, match="label_cardinality="):
        alpool.select(p, "cardinality", k=2, input="multilabel")
    with pytest.raises(ValueError, match="input must be"):
        alpool.select(p, "cardinality", k=2, input="multi")


def test_small_text_multilabel_loop_takes_the_cardinality_from_its_labels() -> None:
    pytest.importorskip("small_text")
    from scipy.sparse import csr_matrix
    from small_text import PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

    from alpool.small_text import AlpoolQueryStrategy

    X, Y = tags(400, 4, 7)
    y = csr_matrix(Y)
    qs = AlpoolQueryStrategy("cardinality", input="multilabel")
    ds = SklearnDataset(X, y, target_labels=np.arange(4))
    clf = OneVsRestClassifier(LogisticRegression())
    factory = SklearnClassifierFactory(clf, 4, kwargs={"multi_label": True})
    learner = PoolBasedActiveLearner(factory, qs, ds)
    initial = np.arange(20)
    learner.initialize_data(initial, y[initial])
    for _ in range(3):
        picked = learner.query(num_samples=10)
        labeled = learner.indices_labeled
        want_card = Y[labeled].sum(axis=1).mean()
        assert qs.select_kwargs["label_cardinality"] == pytest.approx(want_card)
        probs = learner.classifier.predict_proba(ds)
        probs = np.asarray(probs.toarray() if hasattr(probs, "toarray") else probs)
        want = alpool.select(
            np.ascontiguousarray(probs),
            "cardinality",
            k=10,
            input="multilabel",
            label_cardinality=want_card,
            exclude=labeled,
        )
        assert picked.tolist() == want[0].tolist()
        assert np.array_equal(qs.scores_[picked], qs.last_scores_)
        learner.update(y[picked])


def test_a_multilabel_model_selects_what_its_predictions_select(cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1200, 3)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 0] + x[:, 2] > 0], axis=1).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    model = tmp_path / "m.safetensors"
    args = ["train", "--multilabel", "--features", tmp_path / "x.npy", "--labels"]
    args += [tmp_path / "y.npy", "--hidden", 8, "--min-steps", 60, "--out", model]
    subprocess.run([str(cli), *map(str, args)], check=True, capture_output=True)
    probs = tmp_path / "p.npy"
    args = ["predict", "--model", model, "--features", tmp_path / "x.npy", "--out", probs]
    subprocess.run([str(cli), *map(str, args)], check=True, capture_output=True)
    for strategy in alpool.MULTILABEL_STRATEGIES:
        options = {"strategy": strategy, "k": 20, "label_cardinality": 1.4}
        ours = alpool.select(model=model, features=tmp_path / "x.npy", **options)
        theirs = alpool.select(np.load(probs), input="multilabel", **options)
        assert ours[0].tolist() == theirs[0].tolist(), strategy
        assert np.array_equal(ours[1], theirs[1]), strategy
    with pytest.raises(ValueError, match="the model is multi-label"):
        alpool.select(model=model, features=tmp_path / "x.npy", strategy="margin")
