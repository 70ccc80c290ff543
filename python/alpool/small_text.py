"""A small-text query strategy backed by alpool's engine.

``AlpoolQueryStrategy("margin")`` (or "least-confidence", "entropy",
"ratio", "random") is a ``small_text.query_strategies.QueryStrategy``: pass
it to ``PoolBasedActiveLearner``. It scores ``clf.predict_proba(dataset)``
over the whole pool with the labeled (and ignored) rows excluded, exactly
and without sorting, and keeps the probabilities so ``scores_`` gives every
row's score afterwards. Ties rank the lower row index first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from small_text.query_strategies import QueryStrategy

from . import score, select

__all__ = ["AlpoolQueryStrategy"]


class AlpoolQueryStrategy(QueryStrategy):  # type: ignore[misc]
    """small-text's query interface over :func:`alpool.select`."""

    def __init__(self, strategy: str = "margin", **select_kwargs: Any) -> None:
        self.strategy = strategy
        self.select_kwargs = select_kwargs
        self._probs: np.ndarray | None = None
        self._scores: np.ndarray | None = None
        self.last_scores_: np.ndarray | None = None

    def query(
        self,
        clf: Any,
        dataset: Any,
        indices_unlabeled: np.ndarray,
        indices_labeled: np.ndarray,
        y: Any,
        n: int = 10,
    ) -> np.ndarray:
        self._validate_query_input(indices_unlabeled, n)
        probs = np.ascontiguousarray(clf.predict_proba(dataset))
        unlabeled = np.zeros(probs.shape[0], dtype=bool)
        unlabeled[np.asarray(indices_unlabeled, dtype=np.int64)] = True
        exclude = np.flatnonzero(~unlabeled)
        indices, scores = select(probs, self.strategy, k=n, exclude=exclude, **self.select_kwargs)
        self._probs, self._scores = probs, None
        self.last_scores_ = scores
        return indices

    @property
    def scores_(self) -> np.ndarray | None:
        """Every row's score under the last query's model (computed once, on demand)."""
        if self._scores is None and self._probs is not None:
            keep = {k: v for k, v in self.select_kwargs.items() if k != "device"}
            self._scores = score(self._probs, self.strategy, **keep)
        return self._scores

    def __str__(self) -> str:
        return f"AlpoolQueryStrategy(strategy={self.strategy!r})"
