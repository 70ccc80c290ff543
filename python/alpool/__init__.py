"""alpool: exact, streaming active-learning selection.

One function, :func:`select`, takes what a strategy reads and returns the k
most informative rows, exactly: the same answer as a full sort under
alpool's canonical scores, ties going to the lower row index. Row-wise
strategies read a model's class probabilities (or logits); batch-aware ones
read embeddings too. Inputs may be NumPy arrays, memory maps, anything with
DLPack (CPU torch tensors) or ``__array__`` (pandas frames), or ``.npy``
files; C-contiguous float32, float16 and float64 arrays are read in place
(no copy). The GIL is released while the engine works, and Ctrl-C stops it
between chunks.

Row-wise strategies (score; which end is more informative):

- ``"least-confidence"``: 1 - max p; higher
- ``"margin"``: p(1) - p(2); lower
- ``"entropy"``: -sum p log p (``log_base`` "e", "2" or "10"); higher
- ``"ratio"``: p(2) / p(1); higher
- ``"random"``: a seeded uniform draw per row; higher

Batch-aware strategies (``embeddings=`` required): ``"badge"``,
``"coreset"`` (embeddings alone suffice) and ``"cluster-margin"``.

Disagreement strategies (``samples=``: T samples of the probabilities,
MC-dropout passes or committee members): ``"bald"``, ``"mean-std"``,
``"variation-ratio"``, ``"vote-entropy"``, ``"consensus-entropy"``,
``"kl-mean"``, ``"kl-max"``; higher is more informative.

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
from typing import Any, Union

import numpy as np

# On a machine with no display, Mesa's Vulkan device-select layer still
# tries to reach one and prints "XDG_RUNTIME_DIR is invalid or not set" on
# every GPU probe; alpool picks adapters itself, so the layer is told to
# stand aside (its documented switch) unless the user set it.
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("NODEVICE_SELECT", "1")

from . import _alpool  # noqa: E402
from ._alpool import (  # noqa: E402
    BATCH_STRATEGIES,
    COLD_START_STRATEGIES,
    DISAGREEMENT_STRATEGIES,
    MULTILABEL_STRATEGIES,
    REGRESSION_STRATEGIES,
    ROW_STRATEGIES,
    AlpoolError,
    __version__,
)

__all__ = [
    "BATCH_STRATEGIES",
    "COLD_START_STRATEGIES",
    "DISAGREEMENT_STRATEGIES",
    "MULTILABEL_STRATEGIES",
    "REGRESSION_STRATEGIES",
    "ROW_STRATEGIES",
    "AlpoolError",
    "__version__",
    "compare",
    "merge_parts",
    "score",
    "select",
    "select_batch",
    "select_files",
    "select_part",
]

Exclude = Union[Sequence[int], np.ndarray, str, os.PathLike[str], None]
Paths = Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]]]
Result = tuple[np.ndarray, np.ndarray]


def _paths(p: Paths | None) -> list[str] | None:
    if p is None:
        return None
    if isinstance(p, (str, os.PathLike)):
        return [os.fspath(p)]
    return [os.fspath(x) for x in p]


def _array(obj: Any, name: str) -> Any:
    """``obj`` as a NumPy array the engine can borrow, when it is not one.

    DLPack producers (CPU torch tensors, JAX and CuPy arrays on the host)
    and objects with ``__array__`` (pandas frames, xarray) are viewed
    without a copy where their memory allows. The one stated copy: an
    object whose 2-D view is column-major (a pandas frame's block) is
    copied once into row-major order, since the engine reads rows. NumPy
    arrays themselves are never copied; a Fortran-ordered one is refused,
    naming numpy.ascontiguousarray.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__dlpack__"):
        try:
            arr = np.from_dlpack(obj)
        except (BufferError, RuntimeError, TypeError, ValueError) as e:
            raise TypeError(
                f"{name}: cannot read this {type(obj).__name__} in place through DLPack ({e}); "
                "move it to the CPU and detach it (tensor.detach().cpu()), or pass a NumPy array"
            ) from e
    elif hasattr(obj, "__array__"):
        arr = np.asarray(obj)
    else:
        return obj
    if arr.ndim == 2 and not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _samples(samples: Any, layout: str) -> tuple[Any, list[str] | None, str]:
    """T samples as the native module takes them: (array, paths, layout).

    Paths name sample files; a 3-D array (or anything with DLPack or
    ``__array__``) is borrowed in place; a list of T arrays of N x C is
    stacked into one T x N x C array, a stated copy, since T separate
    arrays are not one block of memory.
    """
    if samples is None:
        return None, None, layout
    if isinstance(samples, (str, os.PathLike)):
        return None, [os.fspath(samples)], layout
    if isinstance(samples, (list, tuple)):
        if all(isinstance(x, (str, os.PathLike)) for x in samples):
            return None, [os.fspath(x) for x in samples], layout
        stacked = np.stack([np.asarray(_array(x, "samples")) for x in samples])
        return stacked, None, "tnc"
    return _array(samples, "samples"), None, layout


def _inputs(
    probs: Any = None,
    *,
    paths: Paths | None = None,
    embeddings: Any = None,
    samples: Any = None,
    layout: str = "tnc",
    model: Paths | None = None,
    features: Paths | None = None,
    rows: Any = None,
    row_offset: int = 0,
    regression: str | None = None,
    mc_samples: int | None = None,
    mc_seed: int = 0,
) -> dict[str, Any]:
    given_model = model is not None or features is not None
    if given_model and (model is None or features is None):
        raise TypeError("model= and features= go together: a saved model and its feature files")
    if given_model and (probs is not None or paths is not None):
        raise TypeError(
            "give probs (an N x C array), or model= (a saved model) and features= "
            "(its feature files), not both"
        )
    sample_array, sample_paths, layout = _samples(samples, layout)
    return {
        "probs": _array(probs, "probs"),
        "paths": _paths(paths),
        "embeddings": _array(embeddings, "embeddings"),
        "samples": sample_array,
        "sample_paths": sample_paths,
        "layout": layout,
        "model": _paths(model),
        "features": _paths(features),
        "rows": None if rows is None else np.ascontiguousarray(rows, dtype=np.int64),
        "row_offset": row_offset,
        "regression": regression,
        "mc_samples": mc_samples,
        "mc_seed": mc_seed,
    }


def _options(
    strategy: str = "margin",
    k: int | None = None,
    *,
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    device: str = "auto",
    adapter: str | None = None,
    renormalize: bool = False,
    sum_tol: float | None = None,
    candidates: int | None = None,
    clusters: int | None = None,
    stochastic: str | None = None,
    beta: float = 1.0,
    configurations: int | None = None,
    delta: float | None = None,
    classes: int | None = None,
    purity: float = 0.95,
    iterations: int = 100,
    density_beta: float | None = None,
    label_cardinality: float | None = None,
    uncertainty_weight: float = 0.5,
    targets: Any = None,
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "k": k,
        "exclude": exclude,
        "input": input,
        "temperature": temperature,
        "log_base": log_base,
        "seed": seed,
        "device": device,
        "adapter": adapter,
        "renormalize": renormalize,
        "sum_tol": sum_tol,
        "candidates": candidates,
        "clusters": clusters,
        "stochastic": stochastic,
        "beta": beta,
        "configurations": configurations,
        "delta": delta,
        "classes": classes,
        "purity": purity,
        "iterations": iterations,
        "density_beta": density_beta,
        "label_cardinality": label_cardinality,
        "uncertainty_weight": uncertainty_weight,
        "targets": None if targets is None else np.ascontiguousarray(targets, dtype=np.float64),
    }


REGRESSION_INPUTS = ("regression", "regression-mean-std", "regression-samples")


def _regression_form(input: str) -> str | None:
    form = input.replace("_", "-")
    return form if form in REGRESSION_INPUTS else None


def _regression(strategy: str, input: str, probs: Any, samples: Any) -> tuple[Any, Any, str]:
    """A regression model's outputs as the native module reads them:
    (probs, samples, layout), every array a view of the caller's.

    "std" reads the spread as samples: T x N predictions become T x N x 1,
    (mean, std) rows N x 2 become one sample of two values, 1 x N x 2. The
    greedy strategies read N predictions as N x 1.
    """
    form = input.replace("_", "-")
    if strategy.replace("_", "-") == "std" and samples is None and probs is not None:
        samples, probs = probs, None
    if isinstance(samples, (list, tuple)) and not all(
        isinstance(x, (str, os.PathLike)) for x in samples
    ):
        samples = np.stack([np.asarray(_array(x, "samples")) for x in samples])
    arr = _array(samples, "samples")
    if isinstance(arr, np.ndarray) and arr.ndim == 2:
        samples = arr[:, :, None] if form == "regression-samples" else arr[None, :, :]
    arr = _array(probs, "probs")
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        probs = arr[:, None]
    return probs, samples, "tnc"


def select(
    probs: Any = None,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    embeddings: Any = None,
    samples: Any = None,
    layout: str = "tnc",
    exclude: Exclude = None,
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    device: str = "auto",
    adapter: str | None = None,
    renormalize: bool = False,
    sum_tol: float | None = None,
    model: Paths | None = None,
    features: Paths | None = None,
    candidates: int | None = None,
    clusters: int | None = None,
    stochastic: str | None = None,
    beta: float = 1.0,
    configurations: int | None = None,
    delta: float | None = None,
    classes: int | None = None,
    purity: float = 0.95,
    iterations: int = 100,
    density_beta: float | None = None,
    label_cardinality: float | None = None,
    uncertainty_weight: float = 0.5,
    targets: Any = None,
    mc_samples: int | None = None,
) -> Result:
    """The k most informative rows, best (or first picked) first.

    Args:
        probs: class probabilities (or logits with ``input="logits"``), a
            2-D float32, float16 or float64 array (N x C) in C order, or
            anything with DLPack or ``__array__``.
        strategy: a row-wise strategy ("least-confidence", "margin",
            "entropy", "ratio", "random") or a batch-aware one ("badge",
            "coreset", "cluster-margin"); see ``ROW_STRATEGIES`` and
            ``BATCH_STRATEGIES``.
        k: rows to select; ``None`` (or k >= N) ranks every row (row-wise).
        embeddings: N x D embeddings for the batch-aware strategies (a
            model's last hidden layer, say); core-set needs nothing else.
        samples: T samples of the probabilities for the disagreement
            strategies ("bald", "mean-std", "variation-ratio",
            "vote-entropy", "consensus-entropy", "kl-mean", "kl-max"; see
            ``DISAGREEMENT_STRATEGIES``): a 3-D array, T x N x C (or
            N x T x C with ``layout="ntc"``), read in place; a list of T
            arrays of N x C (stacked: one copy); or .npy paths (one 3-D file
            or T files of N x C), read in chunks.
        layout: "tnc" or "ntc", how a 3-D ``samples`` is laid out.
        exclude: rows never to select (already labeled; core-set's initial
            centres): integer indices, or the path of an exclusion file
            (one index per line, or a 1-D .npy).
        input: "probs" (rows must be >= 0 and sum to 1 within ``sum_tol``),
            "logits" (a stable softmax of ``logits / temperature``), or a
            multi-label pool, N x L independent sigmoid outputs:
            "multilabel" (each in [0, 1]) or "multilabel-logits" (sigmoid
            applied), for the multi-label strategies ("mean-entropy",
            "max-entropy", "min-margin", "cardinality", "adaptive",
            "avg-score", "max-score"; see ``MULTILABEL_STRATEGIES``).
        temperature: the softmax temperature for logits.
        log_base: entropy's logarithm base, "e", "2" or "10".
        seed: the seed of "random" and of BADGE's sampling.
        device: "auto" (a hardware GPU for inputs of 256 MiB and more, when
            one exists; a float64 pool stays on the CPU, float64 samples go
            up rounded within a proven bound), "cpu" or "gpu". Every device
            returns the same rows.
        adapter: the GPU adapter whose name contains this (as ``alpool
            devices`` lists them); named, ``"auto"`` takes it at any size.
        renormalize: divide each row by its sum instead of checking it.
        sum_tol: the row-sum tolerance (default 1e-3, 1e-2 for float16).
        model, features: instead of ``probs``, a model saved by ``alpool
            train`` and its .npy feature files (float32, float16, float64 or
            uint8): rows go through the model, softmax, the score and the
            top k in blocks, with no N x C matrix — exactly what predicting
            every row and selecting gives. Batch strategies use the model's
            last hidden layer as the embeddings. Several models are a
            committee: their probabilities of each block are the samples
            the disagreement strategies read (no T x N x C array).
        mc_samples: with one ``model=`` trained with dropout, T MC-dropout
            passes (dropout kept on at inference, one mask a pass for
            every row, seeded by ``seed``) are the samples the disagreement
            strategies read, block by block (no T x N x C array).
        candidates, clusters: Cluster-Margin's sizes (default 10·k and k).
        stochastic: draw the k rows at random instead of taking the k best
            (Kirsch et al. 2023), favouring informative rows: "softmax"
            (chance ∝ exp(beta · score)), "power" (∝ score^beta; 1 − margin
            for margin) or "softrank" (∝ rank^-beta). Seeded by ``seed``
            per global row, so the same seed gives the same rows on any
            machine, thread count, shard split or device. Row-wise,
            multi-label and disagreement strategies; "power" and "softmax"
            run on the GPU too (over given arrays), "softrank" on the CPU.
        beta: the inverse temperature (> 0): larger follows the scores more
            closely; ``float("inf")`` is the plain top k.
        configurations: BatchBALD's budget M (default 10,000): the batch's
            joint entropy is exact while C^(picks) ≤ M, then estimated from
            M configurations drawn by ``seed``.
        delta: ProbCover's ball radius δ (Euclidean, in embedding units), or
            MaxHerding's Gaussian kernel width σ (the same units); without
            it, the largest radius whose balls are at least ``purity`` pure
            over ``classes`` k-means clusters.
        classes, purity: how ProbCover and MaxHerding choose δ or σ when it
            is not given.
        iterations: Lloyd's k-means assignments at most (TypiClust, the
            k-means baseline, the δ by purity); they stop once no row moves.
        density_beta: weight a row-wise strategy by information density:
            its informativeness (1 − margin for margin) times
            max(0, mean cosine similarity to the pool)**density_beta, from
            ``embeddings``.
        label_cardinality: "cardinality" and "adaptive": the labeled set's
            mean label count (labels per labeled item, averaged).
        uncertainty_weight: "adaptive"'s β in [0, 1], the weight of the
            separation margin's uncertainty against the cardinality
            inconsistency (default 0.5).
        targets: "gsy" and "igs": the pool's N regression targets, NaN for
            unlabeled rows (scikit-activeml's ``y``); the labeled rows are
            ``exclude``, or, without it, the rows whose target is not NaN.

        The regression strategies (see ``REGRESSION_STRATEGIES``) read a
        regression model's outputs: "std" ranks by the spread of T
        predictions (``probs`` or ``samples`` T x N with
        ``input="regression-samples"``) or of (mean, std) rows (N x 2,
        ``input="regression-mean-std"``); "gsx" reads ``embeddings`` alone;
        "gsy" and "igs" read N predictions (``input="regression"``) and
        ``targets``, "igs" ``embeddings`` too.

        The cold-start strategies ("typiclust", "probcover", "maxherding",
        "kmeans", "density"; see ``COLD_START_STRATEGIES``) read ``embeddings`` alone,
        so they choose a first batch before any label or model exists;
        ``exclude`` lists rows already labeled, which count as covered.

    Returns:
        ``(indices, scores)``: int64 row indices and float64 scores (the
        margin itself for "margin"; for batch strategies, what decided each
        pick), most informative first.

    Raises:
        TypeError: not an array, or an input the strategy lacks or never
        reads. ValueError: wrong shape or order, a bad k, exclude or option.
        AlpoolError (a ValueError): a bad row (NaN, negative, not summing to
        1), naming the row. KeyboardInterrupt: Ctrl-C.

    >>> import numpy as np, alpool
    >>> p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    >>> alpool.select(p, "least-confidence", k=2, exclude=[0])[0].tolist()
    [2, 1]
    >>> emb = np.array([[0.0], [0.1], [5.0]], dtype=np.float32)
    >>> alpool.select(p, "coreset", k=1, embeddings=emb, exclude=[0])[0].tolist()
    [2]
    >>> two = np.array([[[0.9, 0.1], [0.5, 0.5]], [[0.1, 0.9], [0.5, 0.5]]], dtype=np.float32)
    >>> alpool.select(samples=two, strategy="bald", k=1)[0].tolist()  # row 0's samples disagree
    [0]
    >>> pts = np.array([[0, 0], [0, 1], [1, 0], [9, 9], [30, 30]], dtype=np.float32)
    >>> alpool.select(embeddings=pts, strategy="probcover", k=2, delta=2.0)[0].tolist()
    [0, 3]
    >>> tags = np.array([[0.9, 0.1, 0.05], [0.55, 0.5, 0.9]], dtype=np.float32)
    >>> alpool.select(tags, "mean-entropy", k=1, input="multilabel")[0].tolist()
    [1]
    >>> ens = np.array([[1.0, 5.0, 2.0], [1.2, 1.0, 2.1]])  # T = 2 predictions of N = 3
    >>> alpool.select(ens, "std", k=1, input="regression-samples")[0].tolist()
    [1]
    >>> y = np.array([0.0, np.nan, np.nan, np.nan])  # row 0 is labeled
    >>> pred = np.array([0.1, 3.0, -1.0, 0.2])
    >>> alpool.select(pred, "gsy", k=2, input="regression", targets=y)[0].tolist()
    [1, 2]
    """
    regression = _regression_form(input)
    if regression is not None:
        probs, samples, layout = _regression(strategy, input, probs, samples)
    inputs = _inputs(
        probs,
        embeddings=embeddings,
        samples=samples,
        layout=layout,
        model=model,
        features=features,
        regression=regression,
        mc_samples=mc_samples,
        mc_seed=seed,
    )
    opts = _options(
        strategy,
        k,
        exclude=exclude,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        device=device,
        adapter=adapter,
        renormalize=renormalize,
        sum_tol=sum_tol,
        candidates=candidates,
        clusters=clusters,
        stochastic=stochastic,
        beta=beta,
        configurations=configurations,
        delta=delta,
        classes=classes,
        purity=purity,
        iterations=iterations,
        density_beta=density_beta,
        label_cardinality=label_cardinality,
        uncertainty_weight=uncertainty_weight,
        targets=targets,
    )
    return _alpool.select(inputs, opts)


def score(
    probs: Any = None,
    strategy: str = "margin",
    *,
    samples: Any = None,
    layout: str = "tnc",
    input: str = "probs",
    temperature: float = 1.0,
    log_base: str = "e",
    seed: int = 0,
    renormalize: bool = False,
    sum_tol: float | None = None,
    model: Paths | None = None,
    features: Paths | None = None,
    label_cardinality: float | None = None,
    uncertainty_weight: float = 0.5,
    mc_samples: int | None = None,
) -> np.ndarray:
    """Every row's canonical score (float64, in row order), row-wise strategies.

    The options are :func:`select`'s, ``model=``, ``features=``,
    ``mc_samples=`` and ``samples=`` included (row-wise, disagreement and multi-label
    strategies).

    >>> import numpy as np, alpool
    >>> d = np.array([[0.9, 0.09, 0.01], [0.2, 0.5, 0.3]], dtype=np.float32)
    >>> [round(float(s), 3) for s in alpool.score(d, "entropy", log_base="10")]
    [0.155, 0.447]
    """
    regression = _regression_form(input)
    if regression is not None:
        probs, samples, layout = _regression(strategy, input, probs, samples)
    inputs = _inputs(
        probs,
        samples=samples,
        layout=layout,
        model=model,
        features=features,
        regression=regression,
        mc_samples=mc_samples,
        mc_seed=seed,
    )
    opts = _options(
        strategy,
        input=input,
        temperature=temperature,
        log_base=log_base,
        seed=seed,
        renormalize=renormalize,
        sum_tol=sum_tol,
        label_cardinality=label_cardinality,
        uncertainty_weight=uncertainty_weight,
    )
    return _alpool.score(inputs, opts)


def select_files(
    paths: Paths,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    row_offset: int = 0,
    **options: Any,
) -> Result:
    """:func:`select` over .npy shards, read in chunks (pools larger than RAM).

    Several paths are shards of one pool; row indices count across them in
    the order given. ``row_offset`` makes the files rows ``row_offset...``
    of a bigger pool: indices (and ``exclude``) are then global. The other
    options are :func:`select`'s.
    """
    form = _regression_form(str(options.get("input", "probs")))
    # "std" reads its files as the spread: T files of N, one T x N file,
    # or N x 2 (mean, std) rows.
    spread = form is not None and strategy.replace("_", "-") == "std"
    inputs = _inputs(
        paths=None if spread else paths,
        samples=paths if spread else None,
        row_offset=row_offset,
        regression=form,
    )
    return _alpool.select(inputs, _options(strategy, k, **options))


def select_batch(
    probs: Any,
    embeddings: Any,
    strategy: str = "badge",
    k: int = 100,
    *,
    device: str = "cpu",
    **options: Any,
) -> Result:
    """:func:`select` with a batch-aware strategy: "badge", "coreset" or "cluster-margin".

    Kept for callers of earlier versions; ``select(probs, strategy, k,
    embeddings=...)`` is the same call.

    >>> import numpy as np, alpool
    >>> probs = np.full((4, 2), 0.5, dtype=np.float32)
    >>> emb = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
    >>> alpool.select_batch(probs, emb, "coreset", k=2, exclude=[0])[0].tolist()
    [3, 1]
    """
    if strategy.replace("_", "-") not in BATCH_STRATEGIES:
        raise ValueError(
            f"unknown batch strategy {strategy!r}; expected one of "
            f"{', '.join(BATCH_STRATEGIES)} (row-wise strategies: alpool.select)"
        )
    return select(probs, strategy, k, embeddings=embeddings, device=device, **options)


def select_part(
    probs: Any = None,
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    rows: np.ndarray | None = None,
    row_offset: int = 0,
    device: str = "cpu",
    model: Paths | None = None,
    samples: Any = None,
    layout: str = "tnc",
    **options: Any,
) -> Result:
    """One shard's k best rows as ``(priorities, global rows)``, for :func:`merge_parts`.

    ``probs`` is an N x C array or the shard's .npy files; with ``model=``,
    the shard's feature files, scored through the model (the fused path).
    With ``samples=`` (and a disagreement strategy), the shard's T samples,
    as for :func:`select`. The shard's rows are global rows
    ``row_offset...``, or the global indices in ``rows`` (one per row, any
    order). ``exclude`` lists global rows.
    A priority is the score oriented so that higher is more informative
    (the negated margin for "margin"). With ``stochastic=`` ("softmax" or
    "power"; softrank ranks the whole pool and has no parts), the part is
    the shard's k largest keys, and :func:`merge_parts` must be given the
    same ``stochastic``, ``beta`` and ``seed``.
    """
    files = isinstance(probs, (str, os.PathLike, list, tuple))
    if samples is not None:
        inputs = _inputs(probs, samples=samples, layout=layout, row_offset=row_offset)
    elif model is not None:
        if not files:
            raise TypeError("with model=, give the shard's feature files (paths)")
        inputs = _inputs(model=model, features=probs, row_offset=row_offset)
    elif files:
        inputs = _inputs(paths=probs, row_offset=row_offset)
    else:
        inputs = _inputs(probs, rows=rows, row_offset=row_offset)
    return _alpool.select_part(inputs, _options(strategy, k, device=device, **options))


def merge_parts(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    strategy: str = "margin",
    k: int | None = 1000,
    *,
    stochastic: str | None = None,
    beta: float = 1.0,
    seed: int = 0,
) -> Result:
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
        _options(strategy, k, stochastic=stochastic, beta=beta, seed=seed),
    )


from ._compare import compare  # noqa: E402
