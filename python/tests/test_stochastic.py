"""Stochastic batches from Python: the CLI's rows, the same draw from any
shard split, the plain top k at beta = inf, and bad requests named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import random_probs, tied_probs

import alpool


def cli_rows(cli: Path, path: Path, *args: str) -> list[int]:
    out = subprocess.run(
        [str(cli), "select", str(path), "-q", *args], check=True, capture_output=True, text=True
    ).stdout
    return [int(line.split(",")[1]) for line in out.splitlines()[1:]]


@pytest.mark.parametrize("kind", ["softmax", "power", "softrank"])
def test_python_draws_what_the_cli_draws(cli: Path, tmp_path: Path, kind: str) -> None:
    p = random_probs(2000, 6, 3)
    path = tmp_path / "pool.npy"
    np.save(path, p)
    idx, scores = alpool.select(p, "entropy", 30, stochastic=kind, beta=1.5, seed=9, exclude=[1])
    args = ["-s", "entropy", "-k", "30", "--stochastic", kind, "--beta", "1.5", "--seed", "9"]
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("1\n")
    assert idx.tolist() == cli_rows(cli, path, *args, "--exclude", str(exclude))
    # The reported scores are the rows' entropies, not their keys.
    every = alpool.score(p, "entropy")
    assert np.array_equal(scores, every[idx])
    assert 1 not in idx.tolist()


def test_shards_merge_into_the_same_draw() -> None:
    p = tied_probs(3000, 5, 2)
    for kind in ["softmax", "power"]:
        draw = {"stochastic": kind, "beta": 0.7, "seed": 4}
        whole = alpool.select(p, "margin", 100, exclude=[5, 2999], **draw)
        parts = [
            alpool.select_part(p[a:b], "margin", 100, row_offset=a, exclude=[5, 2999], **draw)
            for a, b in [(0, 1000), (1000, 1001), (1001, 3000)]
        ]
        merged = alpool.merge_parts(parts[::-1], "margin", 100, **draw)
        assert np.array_equal(merged[0], whole[0]) and np.array_equal(merged[1], whole[1])
        # Merged under another beta, the same parts rank differently.
        other = alpool.merge_parts(parts, "margin", 100, stochastic=kind, beta=5.0, seed=4)
        assert not np.array_equal(other[0], whole[0])


def test_infinite_beta_is_the_plain_top_k() -> None:
    p = tied_probs(1500, 3, 8)
    for strategy in alpool.ROW_STRATEGIES:
        want = alpool.select(p, strategy, 40, seed=3)
        for kind in ["softmax", "power", "softrank"]:
            got = alpool.select(p, strategy, 40, seed=3, stochastic=kind, beta=float("inf"))
            assert np.array_equal(got[0], want[0]), (strategy, kind)


def test_samples_draw_too() -> None:
    rng = np.random.default_rng(0)
    s = rng.dirichlet(np.ones(4), size=(5, 800)).astype(np.float32)
    idx, scores = alpool.select(samples=s, strategy="bald", k=20, stochastic="power", seed=1)
    assert np.array_equal(scores, alpool.score(samples=s, strategy="bald")[idx])
    plain = alpool.select(samples=s, strategy="bald", k=20)[0]
    assert not np.array_equal(idx, plain)


def test_the_gpu_draws_the_cpus_rows() -> None:
    p = random_probs(5000, 6, 4)
    s = np.random.default_rng(2).dirichlet(np.ones(4), size=(5, 800)).astype(np.float32)
    for kind in ["power", "softmax"]:
        for beta in [0.5, 4.0, float("inf")]:
            kw = {"k": 30, "seed": 7, "stochastic": kind, "beta": beta, "exclude": [1, 2]}
            cpu = alpool.select(p, "margin", device="cpu", **kw)
            gpu = alpool.select(p, "margin", device="gpu", **kw)
            assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])
            cpu = alpool.select(samples=s, strategy="bald", device="cpu", **kw)
            gpu = alpool.select(samples=s, strategy="bald", device="gpu", **kw)
            assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])


def test_bad_requests_are_named() -> None:
    p = random_probs(100, 3, 1)
    with pytest.raises(ValueError, match="beta must be above 0"):
        alpool.select(p, "margin", 5, stochastic="softmax", beta=0.0)
    with pytest.raises(ValueError, match='stochastic must be "power", "softmax", "softrank"'):
        alpool.select(p, "margin", 5, stochastic="gumbel")
    with pytest.raises(ValueError, match=r"\(softrank\) of margin has no GPU path yet"):
        alpool.select(p, "margin", 5, stochastic="softrank", device="gpu")
    with pytest.raises(ValueError, match="softrank"):
        alpool.select_part(p, "margin", 5, stochastic="softrank")
    emb = random_probs(100, 3, 2)
    with pytest.raises(ValueError, match="picks a batch itself"):
        alpool.select(p, "badge", 5, embeddings=emb, stochastic="power")
