"""The native module behind :mod:`alpool` (see its docstrings)."""

from collections.abc import Sequence
from typing import Any

import numpy as np

__version__: str

class AlpoolError(ValueError): ...

def select(
    probs: np.ndarray | None = ...,
    strategy: str = ...,
    k: int | None = ...,
    *,
    exclude: Any = ...,
    input: str = ...,
    temperature: float = ...,
    log_base: str = ...,
    seed: int = ...,
    device: str = ...,
    renormalize: bool = ...,
    sum_tol: float | None = ...,
    model: str | None = ...,
    features: str | Sequence[str] | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
def score(
    probs: np.ndarray | None = ...,
    strategy: str = ...,
    *,
    input: str = ...,
    temperature: float = ...,
    log_base: str = ...,
    seed: int = ...,
    renormalize: bool = ...,
    sum_tol: float | None = ...,
    model: str | None = ...,
    features: str | Sequence[str] | None = ...,
) -> np.ndarray: ...
def select_files(
    paths: str | Sequence[str],
    strategy: str = ...,
    k: int | None = ...,
    *,
    exclude: Any = ...,
    input: str = ...,
    temperature: float = ...,
    log_base: str = ...,
    seed: int = ...,
    device: str = ...,
    renormalize: bool = ...,
    sum_tol: float | None = ...,
    row_offset: int = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
def select_batch(
    probs: np.ndarray,
    embeddings: np.ndarray,
    strategy: str = ...,
    k: int = ...,
    *,
    exclude: Any = ...,
    input: str = ...,
    temperature: float = ...,
    seed: int = ...,
    candidates: int | None = ...,
    clusters: int | None = ...,
    device: str = ...,
    renormalize: bool = ...,
    sum_tol: float | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
def select_part(
    probs: np.ndarray | str | Sequence[str],
    strategy: str = ...,
    k: int | None = ...,
    *,
    rows: np.ndarray | None = ...,
    row_offset: int = ...,
    exclude: Any = ...,
    input: str = ...,
    temperature: float = ...,
    log_base: str = ...,
    seed: int = ...,
    device: str = ...,
    renormalize: bool = ...,
    sum_tol: float | None = ...,
    model: str | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
def merge(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    strategy: str = ...,
    k: int | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
