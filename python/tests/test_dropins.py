"""The modAL and small-text drop-ins, inside those libraries' own loops,
select what their own uncertainty strategies select on untied data, and
follow alpool's tie rule on ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import alpool
import alpool.modal

modal = pytest.importorskip("modAL")
from modAL.models import ActiveLearner  # noqa: E402
from modAL.uncertainty import (  # noqa: E402
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0, 0], [2, 0.5], [0.5, 2]])
    return centers[y] + rng.normal(scale=0.9, size=(n, 2)), y


PAIRS = [
    (alpool.modal.uncertainty_sampling, uncertainty_sampling),
    (alpool.modal.margin_sampling, margin_sampling),
    (alpool.modal.entropy_sampling, entropy_sampling),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_modal_active_learner_loop_matches_modal(ours, theirs) -> None:
    X, y = blobs(600, 1)
    a = ActiveLearner(LogisticRegression(), ours, X_training=X[:12], y_training=y[:12])
    b = ActiveLearner(LogisticRegression(), theirs, X_training=X[:12], y_training=y[:12])
    pool = np.arange(12, 600)
    for _ in range(5):
        (qa, _), (qb, _) = a.query(X[pool], n_instances=10), b.query(X[pool], n_instances=10)
        assert set(qa.tolist()) == set(qb.tolist())
        # The values returned are modAL's metric values for those rows.
        _, va = ours(a, X[pool], n_instances=10)
        _, vb = theirs(b, X[pool], n_instances=10)
        assert np.allclose(np.sort(va), np.sort(vb), atol=1e-6)
        rows = pool[qa]
        a.teach(X[rows], y[rows])
        b.teach(X[rows], y[rows])
        pool = np.setdiff1d(pool, rows)


class Fixed:
    """A 'classifier' whose predictions are given: for ties and speed."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.probs[: len(X)]


def test_modal_dropins_break_ties_by_the_lower_index() -> None:
    base = np.array([[0.5, 0.3, 0.2], [0.8, 0.1, 0.1], [0.4, 0.35, 0.25]], dtype=np.float32)
    probs = np.ascontiguousarray(base[np.array([1, 0, 1, 0, 2, 0, 2, 1])])
    idx, _ = alpool.modal.margin_sampling(Fixed(probs), np.zeros((8, 1)), n_instances=3)
    # Rows 4 and 6 share the smallest margin (0.05), then rows 1, 3, 5 (0.2).
    assert idx.tolist() == [4, 6, 1]
    with pytest.warns(UserWarning, match="ties"):
        alpool.modal.ratio_sampling(Fixed(probs), np.zeros((8, 1)), 2, random_tie_break=True)


def test_small_text_loop_matches_its_own_strategies() -> None:
    pytest.importorskip("small_text")
    from small_text import (
        BreakingTies,
        LeastConfidence,
        PoolBasedActiveLearner,
        PredictionEntropy,
        SklearnClassifierFactory,
        SklearnDataset,
    )

    from alpool.small_text import AlpoolQueryStrategy

    X, y = blobs(500, 2)
    initial = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for name, theirs in [
        ("margin", BreakingTies()),
        ("least-confidence", LeastConfidence()),
        ("entropy", PredictionEntropy()),
    ]:
        learners = []
        for qs in [AlpoolQueryStrategy(name), theirs]:
            ds = SklearnDataset(X, y, target_labels=np.arange(3))
            factory = SklearnClassifierFactory(LogisticRegression(), 3)
            learner = PoolBasedActiveLearner(factory, qs, ds)
            learner.initialize_data(initial, y[initial])
            learners.append(learner)
        ours_qs = learners[0].query_strategy
        for _ in range(4):
            qa = learners[0].query(num_samples=15)
            qb = learners[1].query(num_samples=15)
            assert set(qa.tolist()) == set(qb.tolist()), name
            assert not set(qa.tolist()) & set(learners[0].indices_labeled.tolist())
            assert ours_qs.scores_.shape == (500,)
            assert np.array_equal(ours_qs.scores_[qa], ours_qs.last_scores_)
            learners[0].update(y[qa])
            learners[1].update(y[qb])
