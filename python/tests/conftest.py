"""Shared fixtures: the CLI binary built by `cargo build --release`, and
pools of random probabilities."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from studio import Studio, needed, require_label_studio, start_label_studio

ROOT = Path(__file__).resolve().parents[2]


def _cli() -> Path | None:
    env = os.environ.get("ALPOOL_BIN")
    if env:
        return Path(env)
    built = ROOT / "target" / "release" / "alpool"
    if built.exists():
        return built
    found = shutil.which("alpool")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def studio() -> Iterator[Studio]:
    """One real Label Studio for every test that needs one (each makes its
    own projects)."""
    s = start_label_studio(require_label_studio())
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def cli() -> Path:
    return needed(_cli(), "the alpool CLI is not built", "cargo build --release")


def random_probs(rows: int, classes: int, seed: int, dtype: type = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((rows, classes)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(dtype)


def tied_probs(rows: int, classes: int, seed: int) -> np.ndarray:
    """Rows drawn from a few distinct ones, so scores tie a lot."""
    base = random_probs(7, classes, seed)
    rng = np.random.default_rng(seed + 1)
    return np.ascontiguousarray(base[rng.integers(0, 7, rows)])


def train_model(cli: Path, folder: Path, x: np.ndarray, y: np.ndarray, hidden: int) -> Path:
    """Saves x and y in `folder` and trains a small model on them with the
    CLI (`alpool train`); returns the model's path."""
    np.save(folder / "x.npy", x.astype(np.float32))
    np.save(folder / "y.npy", y.astype(np.int64))
    model = folder / "m.safetensors"
    args = ["train", "--features", folder / "x.npy", "--labels", folder / "y.npy"]
    args += ["--hidden", hidden, "--min-steps", 40, "--epochs", 2, "--out", model]
    subprocess.run([str(cli), *map(str, args)], check=True, capture_output=True)
    return model
