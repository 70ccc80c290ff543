"""A small-text query strategy backed by alpool's engine.

``AlpoolQueryStrategy("margin")`` (or "least-confidence", "entropy",
"ratio", "random") is a ``small_text.query_strategies.QueryStrategy``: pass
it to ``PoolBasedActiveLearner``. It scores ``clf.predict_proba(dataset)``
over the whole pool with the labeled (and ignored) rows excluded, exactly
and without sorting, and keeps the probabilities so ``scores_`` gives every
row's score afterwards. Ties rank the lower row index first.

For a multi-label classifier, ``AlpoolQueryStrategy("mean-entropy",
input="multilabel")`` (or any of ``alpool.MULTILABEL_STRATEGIES``) scores
its per-label probabilities; "cardinality" and "adaptive" take the labeled
set's mean label count from small-text's own labels at each query, unless
``label_cardinality=`` is given.
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
        self._given = set(select_kwargs)
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
        if self._reads_cardinality():
            # The labeled set's mean label count, from small-text's own
            # labels (a sparse N_labeled x L indicator matrix).
            counts = np.asarray((y > 0).sum(axis=1)).ravel()
            if counts.size == 0:
                raise ValueError(f"{self.strategy} needs at least one labeled instance")
            self.select_kwargs["label_cardinality"] = float(counts.mean())
        indices, scores = select(probs, self.strategy, k=n, exclude=exclude, **self.select_kwargs)
        self._probs, self._scores = probs, None
        self.last_scores_ = scores
        return indices

    def _reads_cardinality(self) -> bool:
        """Whether the strategy compares against the labeled set's label
        count, and the caller left it to the labels."""
        return (
            self.strategy.replace("_", "-") in ("cardinality", "adaptive")
            and "label_cardinality" not in self._given
        )

    @property
    def scores_(self) -> np.ndarray | None:
        """Every row's score under the last query's model (computed once, on demand)."""
        if self._scores is None and self._probs is not None:
            keep = {k: v for k, v in self.select_kwargs.items() if k != "device"}
            self._scores = score(self._probs, self.strategy, **keep)
        return self._scores

    def __str__(self) -> str:
        return f"AlpoolQueryStrategy(strategy={self.strategy!r})"
