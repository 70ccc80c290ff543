"""Drop-in query strategies for modAL's ``ActiveLearner``.

Each has modAL's query-strategy signature and return convention,
``(indices, values)`` for the ``n_instances`` chosen rows, so it can be
passed as ``ActiveLearner(query_strategy=alpool.modal.margin_sampling)``.
The classifier's ``predict_proba(X)`` is scored by alpool's engine: no
full sort, the probabilities read in place (float64, scikit-learn's default,
included), the GIL released.

Ties: modAL's ``argpartition`` breaks them arbitrarily; alpool ranks equal
scores by the lower row index, always. ``random_tie_break=True`` is accepted
for compatibility, with a warning, and alpool's rule is kept.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from modAL.models import ActiveLearner
>>> import alpool.modal
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
>>> learner = ActiveLearner(LogisticRegression(), alpool.modal.margin_sampling,
...                         X_training=X[:10], y_training=y[:10])
>>> idx, _ = learner.query(X, n_instances=5)
>>> len(idx)
5
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import select

__all__ = [
    "avg_score",
    "entropy_sampling",
    "margin_sampling",
    "max_score",
    "ratio_sampling",
    "uncertainty_sampling",
]


def _query(
    strategy: str,
    classifier: Any,
    X: Any,
    n_instances: int,
    random_tie_break: bool,
    predict_proba_kwargs: dict[str, Any],
    input: str = "probs",
) -> tuple[np.ndarray, np.ndarray]:
    if random_tie_break:
        warnings.warn(
            "alpool breaks ties by the lower row index; random_tie_break is ignored",
            stacklevel=3,
        )
    probs = np.ascontiguousarray(classifier.predict_proba(X, **predict_proba_kwargs))
    if n_instances > probs.shape[0]:
        raise ValueError(
            f"n_instances ({n_instances}) is larger than the pool ({probs.shape[0]} rows)"
        )
    return select(probs, strategy, k=n_instances, input=input)


def uncertainty_sampling(
    classifier: Any,
    X: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **predict_proba_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Least confidence: the rows with the largest 1 - max p."""
    return _query(
        "least-confidence", classifier, X, n_instances, random_tie_break, predict_proba_kwargs
    )


def margin_sampling(
    classifier: Any,
    X: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **predict_proba_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Margin: the rows with the smallest p(1) - p(2)."""
    return _query("margin", classifier, X, n_instances, random_tie_break, predict_proba_kwargs)


def entropy_sampling(
    classifier: Any,
    X: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **predict_proba_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy: the rows with the largest -sum p ln p."""
    return _query("entropy", classifier, X, n_instances, random_tie_break, predict_proba_kwargs)


def ratio_sampling(
    classifier: Any,
    X: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **predict_proba_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Ratio: the rows with the largest p(2) / p(1) (not in modAL itself)."""
    return _query("ratio", classifier, X, n_instances, random_tie_break, predict_proba_kwargs)


def max_score(
    classifier: Any,
    X_pool: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """modAL.multilabel's MaxScore: the rows with the largest p_j (y_j - 1/2).

    ``classifier.predict_proba`` gives the N x L per-label probabilities (a
    ``OneVsRestClassifier``, say); a label counts as predicted when its
    probability exceeds 0.5, as ``predict`` decides for such classifiers.
    """
    return _query("max-score", classifier, X_pool, n_instances, random_tie_break, {}, "multilabel")


def avg_score(
    classifier: Any,
    X_pool: Any,
    n_instances: int = 1,
    random_tie_break: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """modAL.multilabel's AvgScore: the rows with the largest mean of p_j (y_j - 1/2)."""
    return _query("avg-score", classifier, X_pool, n_instances, random_tie_break, {}, "multilabel")
