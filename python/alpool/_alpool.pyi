"""The native module behind :mod:`alpool` (see its docstrings).

Each function takes the two dictionaries :mod:`alpool` builds, every key
present: the inputs (``probs``, ``paths``, ``embeddings``, ``samples``,
``sample_paths``, ``layout``, ``model``, ``features``, ``rows``,
``row_offset``) and the options (``strategy``, ``k``, ``exclude``,
``input``, ``temperature``, ``log_base``, ``seed``, ``device``,
``adapter``, ``renormalize``, ``sum_tol``, ``candidates``, ``clusters``,
``stochastic``, ``beta``, ``configurations``).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "AlpoolError",
    "BATCH_STRATEGIES",
    "COLD_START_STRATEGIES",
    "DISAGREEMENT_STRATEGIES",
    "MULTILABEL_STRATEGIES",
    "REGRESSION_STRATEGIES",
    "ROW_STRATEGIES",
    "__version__",
    "compare_mlp",
    "merge",
    "method",
    "protocol",
    "restart_rows",
    "score",
    "select",
    "select_part",
    "summarize",
]

__version__: str
ROW_STRATEGIES: list[str]
BATCH_STRATEGIES: list[str]
COLD_START_STRATEGIES: list[str]
DISAGREEMENT_STRATEGIES: list[str]
MULTILABEL_STRATEGIES: list[str]
REGRESSION_STRATEGIES: list[str]

class AlpoolError(ValueError): ...

def select(inputs: dict[str, Any], options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]: ...
def select_part(
    inputs: dict[str, Any], options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]: ...
def score(inputs: dict[str, Any], options: dict[str, Any]) -> np.ndarray: ...
def merge(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]: ...
def protocol(name: str, overrides: str) -> str: ...
def restart_rows(
    y: np.ndarray, protocol: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def compare_mlp(
    x: np.ndarray,
    y: np.ndarray,
    strategies: list[str],
    protocol: str,
    seed: int,
    committee: int = 5,
    mc_samples: int = 0,
    dropout: float = 0.0,
    beta: float = 1.0,
) -> str: ...
def method(name: str, beta: float) -> tuple[str, str | None]: ...
def summarize(
    curves: str,
    names: list[str],
    protocol: str,
    target: float | None,
    out: str | None,
    meta: str,
) -> str: ...
