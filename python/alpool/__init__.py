"""alpool: exact, streaming active-learning selection.

Score every row of a model's class probabilities (or logits) with a query
strategy and return the k most informative rows, exactly: the same answer as
a full sort under alpool's canonical scores, ties going to the lower row
index. C-contiguous float32, float16 and float64 arrays are read in place (no
copy); float64 is scored from its own values (on the CPU). The GIL
is released while the engine works, and Ctrl-C stops it between chunks.

Strategies (score; which end is more informative):

- ``"least-confidence"``: 1 - max p; higher
- ``"margin"``: p(1) - p(2); lower
- ``"entropy"``: -sum p log p (``log_base`` "e", "2" or "10"); higher
- ``"ratio"``: p(2) / p(1); higher
- ``"random"``: a seeded uniform draw per row; higher

Example:

>>> import numpy as np, alpool
>>> probs = np.array([[0.9, 0.09, 0.01], [0.2, 0.5, 0.3]], dtype=np.float32)
>>> idx, scores = alpool.select(probs, "margin", k=1)
>>> idx.tolist(), round(float(scores[0]), 6)
([1], 0.2)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Union

import numpy as np

from . import _alpool
from ._alpool import AlpoolError, __version__

__all__ = [
    "AlpoolError",
    "__version__",
    "merge_parts",
    "score",
    "select",
    "select_batch",
    "select_files",
    "select_part",
]

Exclude = Union[Sequence[int], np.ndarray, str, os.PathLike, None]
Paths = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def _paths(p: Paths) -> str | list[str]:
    return [os.fspath(x) for x in p] if isinstance(p, (list, tuple)) else os.fspath(p)


def select(
    probs: np.ndarray | None = None,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    device: str = "auto",
    renormalize: bool = False,
    sum_tol: float | None = None,
    model: str | os.PathLike | None = None,
    features: Paths | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most informative rows of ``probs`` (N x C), best first.

    Args:
        probs: class probabilities (or logits with ``input="logits"``), a
            2-D float32, float16 or float64 array in C order.
        strategy: "least-confidence", "margin", "entropy", "ratio" or "random".
        k: rows to select; ``None`` (or k >= N) ranks every row.
        exclude: rows never to select (already labeled): integer indices, or
            the path of an exclusion file (one index per line, or a 1-D .npy).
        input: "probs" (rows must be >= 0 and sum to 1 within ``sum_tol``) or
            "logits" (a stable softmax of ``logits / temperature``).
        temperature: the softmax temperature for logits.
        log_base: entropy's logarithm base, "e", "2" or "10".
        seed: the seed of the "random" strategy.
        device: "auto" (a GPU for pools of 256 MiB and more, when one
            exists), "cpu" or "gpu". Every device returns the same rows.
        renormalize: divide each row by its sum instead of checking it.
        sum_tol: the row-sum tolerance (default 1e-3, 1e-2 for float16).
        model, features: instead of ``probs``, a model saved by ``alpool
            train`` and its .npy feature files (float32, float16, float64 or
            uint8): rows go through the model, softmax, the score and the
            top k in blocks, with no N x C matrix — exactly what predicting
            every row and selecting gives. With ``device="gpu"`` the model's
            layers run on the GPU too; the same rows come back.

    Returns:
        ``(indices, scores)``: int64 row indices and float64 scores (the
        margin itself for "margin"), most informative first.

    Raises:
        TypeError: not a float array. ValueError: wrong shape or order, a
        bad k, exclude or option. AlpoolError (a ValueError): a bad row (NaN,
        negative, not summing to 1), naming the row. KeyboardInterrupt: Ctrl-C.

    >>> import numpy as np, alpool
    >>> p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    >>> alpool.select(p, "least-confidence", k=2, exclude=[0])[0].tolist()
    [2, 1]
    """
    return _alpool.select(
        probs,
        strategy,
        k,
        exclude=exclude,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        device=device,
        renormalize=renormalize,
        sum_tol=sum_tol,
        model=None if model is None else os.fspath(model),
        features=None if features is None else _paths(features),
    )


def score(
    probs: np.ndarray | None = None,
    strategy: str = "margin",
    *,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    renormalize: bool = False,
    sum_tol: float | None = None,
    model: str | os.PathLike | None = None,
    features: Paths | None = None,
) -> np.ndarray:
    """Every row's canonical score (float64, in row order).

    The options are :func:`select`'s, ``model=`` and ``features=`` included.

    >>> import numpy as np, alpool
    >>> d = np.array([[0.9, 0.09, 0.01], [0.2, 0.5, 0.3]], dtype=np.float32)
    >>> [round(float(s), 3) for s in alpool.score(d, "entropy", log_base="10")]
    [0.155, 0.447]
    """
    return _alpool.score(
        probs,
        strategy,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        renormalize=renormalize,
        sum_tol=sum_tol,
        model=None if model is None else os.fspath(model),
        features=None if features is None else _paths(features),
    )


def select_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    device: str = "auto",
    renormalize: bool = False,
    sum_tol: float | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`select` over .npy shards, memory-mapped and read in chunks.

    Several paths are shards of one pool; row indices count across them in
    the order given. The pool may be far larger than RAM. ``row_offset``
    makes the files rows ``row_offset...`` of a bigger pool: indices (and
    ``exclude``) are then global.
    """
    return _alpool.select_files(
        _paths(paths),
        strategy,
        k,
        exclude=exclude,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        device=device,
        renormalize=renormalize,
        sum_tol=sum_tol,
        row_offset=row_offset,
    )


def select_batch(
    probs: np.ndarray,
    embeddings: np.ndarray,
    strategy: str = "badge",
    k: int = 100,
    *,
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    seed: int = 0,
    candidates: int | None = None,
    clusters: int | None = None,
    device: str = "cpu",
    renormalize: bool = False,
    sum_tol: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A diverse batch of ``k`` rows: ``"badge"``, ``"coreset"`` or ``"cluster-margin"``.

    ``probs`` is N x C (probabilities, or logits with ``input="logits"``) and
    ``embeddings`` N x D (for instance a model's last hidden layer), both
    read in place. ``exclude`` is the labeled set: never picked, and
    core-set's initial centres. Returns the rows in pick order and the score
    that decided each (core-set: distance to the nearest centre; BADGE: the
    squared gradient-embedding distance; Cluster-Margin: the margin).
    Exact and deterministic: the same rows for every thread count and on
    the GPU (``device="gpu"``). ``seed`` drives BADGE's sampling;
    ``candidates`` (default 10·k) and ``clusters`` (default k) tune
    Cluster-Margin.

    >>> import numpy as np, alpool
    >>> probs = np.full((4, 2), 0.5, dtype=np.float32)
    >>> emb = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
    >>> alpool.select_batch(probs, emb, "coreset", k=2, exclude=[0])[0].tolist()
    [3, 1]
    """
    return _alpool.select_batch(
        probs,
        embeddings,
        strategy,
        k,
        exclude=exclude,
        input=input,
        temperature=temperature,
        seed=seed,
        candidates=candidates,
        clusters=clusters,
        device=device,
        renormalize=renormalize,
        sum_tol=sum_tol,
    )


def select_part(
    probs: np.ndarray | Paths,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    rows: np.ndarray | None = None,
    row_offset: int = 0,
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    device: str = "cpu",
    renormalize: bool = False,
    sum_tol: float | None = None,
    model: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One shard's k best rows as ``(priorities, global rows)``, for :func:`merge_parts`.

    ``probs`` is an N x C array or the shard's .npy files; with ``model=``,
    the shard's feature files, scored through the model (the fused path).
    The shard's rows are global rows ``row_offset...``, or the global indices
    in ``rows`` (one per row, any order). ``exclude`` lists global rows.
    A priority is the score oriented so that higher is more informative
    (the negated margin for "margin").
    """
    return _alpool.select_part(
        _paths(probs) if isinstance(probs, (str, os.PathLike, list, tuple)) else probs,
        strategy,
        k,
        rows=rows,
        row_offset=row_offset,
        exclude=exclude,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        device=device,
        renormalize=renormalize,
        sum_tol=sum_tol,
        model=None if model is None else os.fspath(model),
    )


def merge_parts(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    strategy: str = "margin",
    k: int | None = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact global top k over shards' parts from :func:`select_part`.

    Exact because the ranking is a total order on (priority, global row):
    the global k best rows are each among their own shard's k best.

    >>> import numpy as np, alpool
    >>> p = np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 0.5], [0.6, 0.4]], dtype=np.float32)
    >>> a = alpool.select_part(p[:2], "margin", 2, row_offset=0)
    >>> b = alpool.select_part(p[2:], "margin", 2, row_offset=2)
    >>> alpool.merge_parts([b, a], "margin", 3)[0].tolist()
    [0, 2, 3]
    """
    return _alpool.merge(
        [(np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.int64)) for p, r in parts],
        strategy,
        k,
    )
