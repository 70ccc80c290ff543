"""Exact selection over a pool spread across a Ray cluster.

Each Ray task selects its shard's k best rows with alpool's engine (the GIL
released) and returns only those ``(priority, global row)`` pairs, O(k) per
shard; the driver merges them exactly (:func:`alpool.merge_parts`): the
ranking is a total order on (priority, global row), so the global k best are
each among their own shard's k best, ties across shards included.

Sources:

- a list of ``.npy`` paths (each an N_i x C shard, readable from every Ray
  node): their row offsets come from their order and shapes;
- a Ray Dataset with a tensor column of probability rows (``probs_column``)
  and a column of global row indices (``row_column``), e.g. built with
  ``ray.data.from_items`` or by adding the index where the rows are made.
  Each ``map_batches`` batch keeps its k best under the global tie rule.

The batch-aware strategies (not yet in alpool) need a second, global step
and will say so here when they land; every per-row strategy (least
confidence, margin, entropy, ratio, random) stays exact across shards.

>>> import numpy as np, ray, alpool.ray                      # doctest: +SKIP
>>> idx, scores = alpool.ray.select(["s0.npy", "s1.npy"], "margin", k=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import Paths, merge_parts, select_part

__all__ = ["compare", "select"]


def _shard_rows(path: str) -> int:
    # Reads the header only (the data stays on disk).
    return int(np.load(path, mmap_mode="r").shape[0])


def _within(ex: np.ndarray | None, offset: int, rows: int) -> np.ndarray | None:
    if ex is None:
        return None
    return ex[(ex >= offset) & (ex < offset + rows)]


def _shard_task(
    path: str,
    offset: int,
    k: int | None,
    strategy: str,
    kw: dict[str, Any],
    exclude: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    # The engine maps the file itself and reads it in chunks.
    return select_part(path, strategy, k, row_offset=offset, exclude=exclude, **kw)


def select(
    source: Any,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    exclude: Sequence[int] | np.ndarray | None = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    renormalize: bool = False,
    sum_tol: float | None = None,
    probs_column: str = "probs",
    row_column: str = "row",
    num_cpus: float = 1,
    model: Paths | None = None,
    stochastic: str | None = None,
    beta: float = 1.0,
    label_cardinality: float | None = None,
    uncertainty_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top k of a pool spread over Ray tasks: ``(indices, scores)``.

    Args:
        source: a list of .npy paths (shards in order), or a Ray Dataset.
        strategy, k: as for :func:`alpool.select`.
        exclude: global rows never to select.
        probs_column, row_column: the Dataset's columns.
        num_cpus: CPUs Ray reserves for each task.
        model: a saved model: ``source`` is then the pool's feature files,
            each task scores its shard through the model (the fused path,
            no N x C matrix), and the merge is exactly
            ``alpool.select(model=model, features=source)``.
        input, temperature, log_base, seed, renormalize, sum_tol: as for
            :func:`alpool.select`.
        stochastic, beta: a stochastic batch ("softmax" or "power"), as for
            :func:`alpool.select`: the same rows as one machine draws.
            "softrank" ranks the whole pool and is refused.
        label_cardinality, uncertainty_weight: a multi-label pool's options
            (``input="multilabel"``), as for :func:`alpool.select`.
    """
    import ray

    kw: dict[str, Any] = {
        "input": input,
        "temperature": temperature,
        "log_base": log_base,
        "seed": seed,
        "stochastic": stochastic,
        "beta": beta,
        "renormalize": renormalize,
        "sum_tol": sum_tol,
        "label_cardinality": label_cardinality,
        "uncertainty_weight": uncertainty_weight,
    }
    if model is not None:
        if not isinstance(source, (str, os.PathLike, list, tuple)):
            raise TypeError("with model=, source must be the pool's feature files")
        kw["model"] = model if isinstance(model, (str, os.PathLike)) else list(model)
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
        sizes = [_shard_rows(p) for p in paths]
        offsets = [0, *np.cumsum(sizes)[:-1].tolist()]
        task = ray.remote(num_cpus=num_cpus)(_shard_task)
        refs = [
            task.remote(p, int(off), k, strategy, kw, _within(ex, int(off), n))
            for p, off, n in zip(paths, offsets, sizes)
        ]
        parts = ray.get(refs)
    else:

        def top_of_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            probs = np.ascontiguousarray(np.stack(list(batch[probs_column])))
            rows = np.asarray(batch[row_column], dtype=np.int64)
            pri, idx = select_part(probs, strategy, k, rows=rows, exclude=ex, **kw)
            return {"priority": pri, "row": idx}

        picked = source.map_batches(top_of_batch, batch_format="numpy", num_cpus=num_cpus)
        parts = [(b["priority"], b["row"]) for b in picked.iter_batches(batch_format="numpy")]
    return merge_parts(parts, strategy, k, stochastic=stochastic, beta=beta, seed=seed)


def compare(X: Any, y: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`alpool.compare` with each restart a Ray task.

    Every keyword is :func:`alpool.compare`'s (``n_jobs`` aside). A restart
    runs the same rows, seeded the same, as it does on one machine, so the
    result equals ``alpool.compare``'s. The learner (and ``embed``) must
    pickle; ``X`` and ``y`` travel through Ray's object store once.
    """
    import ray

    from . import _compare

    def one(x: np.ndarray, y: np.ndarray, rest: tuple[Any, ...]) -> list[dict[str, Any]]:
        # Object references are resolved as top-level arguments only.
        return _compare._restart((x, y, *rest))

    task = ray.remote(one)

    def mapper(jobs: list[tuple[Any, ...]]) -> Iterator[list[dict[str, Any]]]:
        if not jobs:
            return
        x_ref, y_ref = ray.put(jobs[0][0]), ray.put(jobs[0][1])
        refs = [task.remote(x_ref, y_ref, job[2:]) for job in jobs]
        for ref in refs:
            yield ray.get(ref)

    return _compare.compare(X, y, mapper=mapper, **kwargs)
