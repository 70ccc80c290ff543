"""Selection across a real local Ray cluster equals single-process
selection, for every strategy and shard split, from files and from a Ray
Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import random_probs, tied_probs, train_model

import alpool

ray = pytest.importorskip("ray")
import alpool.ray  # noqa: E402

STRATEGIES = ["least-confidence", "margin", "entropy", "ratio", "random"]


@pytest.fixture(scope="module")
def cluster():
    # A local cluster: a head and worker processes, bound to loopback.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=150 * 1024 * 1024,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shards_on_ray_equal_the_whole(cluster, tmp_path: Path, strategy: str) -> None:
    p = tied_probs(5000, 5, 3)  # many exact ties, across shard boundaries too
    cuts = [0, 700, 701, 2500, 4999, 5000]
    paths = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        path = tmp_path / f"shard-{i}.npy"
        np.save(path, p[a:b])
        paths.append(path)
    exclude = [0, 699, 700, 701, 4999, 1234]
    for k in [1, 37, 800, 6000]:
        want = alpool.select(p, strategy, k, exclude=exclude, seed=11)
        got = alpool.ray.select(paths, strategy, k, exclude=exclude, seed=11)
        assert np.array_equal(got[0], want[0]), (strategy, k)
        assert np.array_equal(got[1], want[1]), (strategy, k)


@pytest.mark.parametrize("kind", ["softmax", "power"])
def test_a_stochastic_batch_on_ray_is_the_one_machine_draws(
    cluster, tmp_path: Path, kind: str
) -> None:
    p = tied_probs(4000, 4, 6)
    cuts = [0, 1500, 1501, 4000]
    paths = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        path = tmp_path / f"shard-{i}.npy"
        np.save(path, p[a:b])
        paths.append(path)
    draw = {"stochastic": kind, "beta": 2.0, "seed": 7, "exclude": [0, 1500]}
    want = alpool.select(p, "margin", 64, **draw)
    got = alpool.ray.select(paths, "margin", 64, **draw)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    # Another seed draws other rows.
    assert not np.array_equal(alpool.select(p, "margin", 64, **{**draw, "seed": 8})[0], want[0])
    with pytest.raises(ValueError, match="softrank"):
        alpool.ray.select(paths, "margin", 64, stochastic="softrank")


@pytest.mark.parametrize("strategy", ["min-margin", "adaptive"])
def test_multilabel_shards_and_datasets_on_ray_equal_the_whole(
    cluster, tmp_path: Path, strategy: str
) -> None:
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    p = np.random.default_rng(3).choice(grid, size=(3000, 4))  # exact ties
    opts = {"input": "multilabel", "label_cardinality": 1.5, "exclude": [0, 1100, 2999]}
    paths = []
    for i, (a, b) in enumerate(zip([0, 1100, 1101], [1100, 1101, 3000])):
        paths.append(tmp_path / f"tags-{i}.npy")
        np.save(paths[-1], p[a:b])
    want = alpool.select(p, strategy, 90, **opts)
    got = alpool.ray.select(paths, strategy, 90, **opts)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    order = np.random.default_rng(4).permutation(3000)
    ds = ray.data.from_items([{"probs": p[r], "row": int(r)} for r in order]).repartition(5)
    got = alpool.ray.select(ds, strategy, 90, **opts)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("strategy", ["margin", "random", "entropy"])
def test_a_ray_dataset_in_any_row_order_equals_the_whole(cluster, strategy: str) -> None:
    p = random_probs(3000, 4, 8)
    p[1000:1100] = p[5]  # ties
    order = np.random.default_rng(1).permutation(3000)
    ds = ray.data.from_items([{"probs": p[i], "row": int(i)} for i in order]).repartition(7)
    want = alpool.select(p, strategy, 250, exclude=[5, 1050], seed=2)
    got = alpool.ray.select(ds, strategy, 250, exclude=[5, 1050], seed=2)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])


def test_feature_shards_through_a_model_on_ray(cluster, cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = (rng.integers(0, 4, size=(4000, 5)) * [1, 10, 100, 1, 1000]).astype(np.float32)
    y = (x[:, 0] > 1).astype(np.int64) + (x[:, 4] > 1500)
    model = train_model(cli, tmp_path, x, y, hidden=8)
    cuts = [0, 1500, 1501, 4000]
    paths = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        np.save(tmp_path / f"f{i}.npy", x[a:b])
        paths.append(tmp_path / f"f{i}.npy")
    for strategy in ["margin", "random"]:
        want = alpool.select(
            strategy=strategy, k=120, model=model, features=paths, exclude=[0, 1500, 3999]
        )
        got = alpool.ray.select(paths, strategy, 120, model=model, exclude=[0, 1500, 3999])
        assert np.array_equal(got[0], want[0]), strategy
        assert np.array_equal(got[1], want[1]), strategy


def test_compare_on_ray_equals_one_machine(cluster) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    for learner in (LogisticRegression(max_iter=2000), None):
        kw = dict(
            learner=learner,
            strategies=["random", "margin"],
            restarts=3,
            budget=50,
            progress=False,
        )
        local = alpool.compare(X, y, **kw)
        remote = alpool.ray.compare(X, y, **kw)
        assert remote["curves"] == local["curves"]
        assert remote["comparison"] == local["comparison"]
