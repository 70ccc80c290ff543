"""Batch-aware selection from Python: the CLI's picks, a naive core-set's
picks, and bad input named."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

import alpool


def pool(rows: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, classes)) * 2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p.astype(np.float32), rng.normal(size=(rows, dim)).astype(np.float32)


def naive_coreset(emb: np.ndarray, labeled: list[int], k: int) -> list[int]:
    x = emb.astype(np.float64)
    nearest = np.full(len(x), np.inf)
    for c in labeled:
        nearest = np.minimum(nearest, ((x - x[c]) ** 2).sum(1))
    taken = np.zeros(len(x), bool)
    taken[labeled] = True
    picks = []
    for _ in range(k):
        d = np.where(taken, -1.0, nearest)
        i = int(np.argmax(d))  # the first maximum: ties to the lower row
        picks.append(i)
        taken[i] = True
        nearest = np.minimum(nearest, ((x - x[i]) ** 2).sum(1))
    return picks


def test_coreset_equals_a_naive_k_center_greedy() -> None:
    probs, emb = pool(2000, 5, 16, 1)
    idx, dist = alpool.select_batch(probs, emb, "coreset", k=40, exclude=[3, 99, 1500])
    assert idx.tolist() == naive_coreset(emb, [3, 99, 1500], 40)
    # Each score is the pick's distance to its nearest centre: non-increasing.
    assert np.all(np.diff(dist) <= 1e-9)


@pytest.mark.parametrize("strategy", ["badge", "coreset", "cluster-margin"])
def test_select_batch_equals_the_cli(cli: Path, tmp_path: Path, strategy: str) -> None:
    logits = np.random.default_rng(5).normal(size=(3000, 7)).astype(np.float32) * 3
    emb = np.random.default_rng(6).normal(size=(3000, 24)).astype(np.float16)
    np.save(tmp_path / "z.npy", logits)
    np.save(tmp_path / "e.npy", emb)
    (tmp_path / "labeled.txt").write_text("5\n17\n2999\n")
    idx, scores = alpool.select_batch(
        logits, emb, strategy, k=60, input="logits", seed=9, exclude=[5, 17, 2999]
    )
    out = subprocess.run(
        [str(cli), "select", str(tmp_path / "z.npy"), "--embeddings", str(tmp_path / "e.npy"),
         "--strategy", strategy, "-k", "60", "--input", "logits", "--seed", "9",
         "--exclude", str(tmp_path / "labeled.txt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert idx.tolist() == [int(r["index"]) for r in rows]
    assert scores.tolist() == [float(r["score"]) for r in rows]
    assert len(set(idx.tolist())) == 60 and not {5, 17, 2999} & set(idx.tolist())


def test_bad_batch_input_is_named() -> None:
    probs, emb = pool(100, 3, 4, 2)
    with pytest.raises(ValueError, match="unknown batch strategy"):
        alpool.select_batch(probs, emb, "margin", k=5)
    with pytest.raises(alpool.AlpoolError, match="embeddings"):
        alpool.select_batch(probs, emb[:99], "coreset", k=5)
    bad = emb.copy()
    bad[42, 1] = np.nan
    with pytest.raises(alpool.AlpoolError, match="row 42"):
        alpool.select_batch(probs, bad, "badge", k=5)
    with pytest.raises(alpool.AlpoolError, match="k = 200"):
        alpool.select_batch(probs, emb, "coreset", k=200)
