"""Regression pools from Python: std, gsx, gsy and igs against NumPy written
from the documented formulas and against scikit-activeml's own greedy
sampling (the real package from PyPI: the same picks), and bad input
named."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import alpool

if os.environ.get("CI") == "true":
    import skactiveml  # noqa: F401  (CI installs it: a missing one fails)
skpool = pytest.importorskip("skactiveml.pool")
skbase = pytest.importorskip("skactiveml.base")


def pool(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, a model's predictions, and targets with NaN for the
    unlabeled rows (ten labeled)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    pred = (x @ rng.normal(size=d) + 0.3 * rng.normal(size=n)).astype(np.float32)
    y = np.full(n, np.nan)
    labeled = rng.choice(n, 10, replace=False)
    y[labeled] = pred[labeled] + rng.normal(size=10)
    return x, pred, y


class Fixed(skbase.SkactivemlRegressor):  # type: ignore[misc,name-defined]
    """A regressor whose predictions are given: the same ŷ for both sides."""

    def __init__(self, x: Any = None, pred: Any = None, missing_label: float = np.nan) -> None:
        super().__init__(missing_label=missing_label)
        self.x, self.pred = x, pred

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Fixed:
        return self

    def predict(self, X: Any) -> np.ndarray:
        lut = {r.tobytes(): v for r, v in zip(self.x, self.pred)}
        return np.array([lut[r.tobytes()] for r in np.asarray(X, dtype=np.float64)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_sampling_picks_what_scikit_activeml_picks(seed: int) -> None:
    x, pred, y = pool(400, 6, seed)
    xd, pd = x.astype(np.float64), pred.astype(np.float64)
    labeled = np.flatnonzero(np.isfinite(y))
    reg = Fixed(xd, pd)
    want = {
        "gsx": skpool.GreedySamplingX().query(xd, y, batch_size=8),
        "gsy": skpool.GreedySamplingTarget(method="GSy").query(
            xd, y, reg, fit_reg=False, batch_size=8
        ),
        "igs": skpool.GreedySamplingTarget(method="GSi").query(
            xd, y, reg, fit_reg=False, batch_size=8
        ),
    }
    got = {
        "gsx": alpool.select(embeddings=x, strategy="gsx", k=8, exclude=labeled)[0],
        "gsy": alpool.select(pred, "gsy", 8, input="regression", targets=y)[0],
        "igs": alpool.select(pred, "igs", 8, input="regression", embeddings=x, targets=y)[0],
    }
    for s in want:
        assert got[s].tolist() == list(want[s]), s
    # The three on the GPU: the same rows and distances.
    for s, kw in [
        ("gsx", {"embeddings": x, "strategy": "gsx", "exclude": labeled}),
        ("gsy", {"probs": pred, "strategy": "gsy", "input": "regression"}),
        ("igs", {"probs": pred, "strategy": "igs", "input": "regression", "embeddings": x}),
    ]:
        more = {"targets": y} if s != "gsx" else {}
        cpu = alpool.select(**kw, **more, k=8, device="cpu")
        gpu = alpool.select(**kw, **more, k=8, device="gpu")
        assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1]), s


def test_the_scores_are_the_distances_that_decided() -> None:
    x, pred, y = pool(300, 4, 5)
    idx, scores = alpool.select(pred, "igs", 5, input="regression", embeddings=x, targets=y)
    centres = list(np.flatnonzero(np.isfinite(y)))
    target = {int(r): float(y[r]) for r in centres}
    x64, p64 = x.astype(np.float64), pred.astype(np.float64)
    for r, s in zip(idx, scores):
        d = [np.linalg.norm(x64[r] - x64[c]) * abs(p64[r] - target[c]) for c in centres]
        assert s == pytest.approx(min(d), rel=1e-12)
        centres.append(int(r))
        target[int(r)] = float(p64[r])


def test_std_over_t_predictions_and_mean_std_rows() -> None:
    rng = np.random.default_rng(3)
    ens = rng.normal(size=(7, 1000)).astype(np.float32)  # T x N
    want = np.argsort(-ens.astype(np.float64).std(0), kind="stable")[:20]
    got, scores = alpool.select(ens, "std", 20, input="regression-samples")
    assert got.tolist() == want.tolist()
    np.testing.assert_allclose(scores, ens[:, got].astype(np.float64).std(0), rtol=1e-12)
    every = alpool.score(ens, "std", input="regression-samples")
    np.testing.assert_allclose(every, ens.astype(np.float64).std(0), rtol=1e-12)
    # T separate arrays of N, and (mean, std) rows.
    assert (
        alpool.select(list(ens), "std", 20, input="regression-samples")[0].tolist() == got.tolist()
    )
    ms = np.stack([ens.mean(0), ens.std(0)], 1)
    by_std = alpool.select(ms, "std", 20, input="regression-mean-std")[0]
    assert by_std.tolist() == np.argsort(-ms[:, 1], kind="stable")[:20].tolist()


def test_std_on_the_gpu_is_the_cpus() -> None:
    rng = np.random.default_rng(8)
    # Offsets far above the spreads, negative values, and tied rows.
    ens = (rng.normal(size=(9, 4000)) * 0.5 + rng.choice([-1e6, 0.0, 3e4], 4000)).astype(np.float32)
    ens[:, 1::7] = ens[:, 0::7][:, : ens[:, 1::7].shape[1]]
    for input_form, arr in [
        ("regression-samples", ens),
        ("regression-mean-std", np.stack([ens.mean(0), ens.std(0)], 1)),
    ]:
        for k in [1, 100, 3990]:
            kw = {"input": input_form, "exclude": [0, 4]}
            cpu = alpool.select(arr, "std", k, device="cpu", **kw)
            gpu = alpool.select(arr, "std", k, device="gpu", **kw)
            assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])


def test_emcm_is_the_mean_ensemble_gap_times_the_feature_norm() -> None:
    x, pred, _ = pool(500, 4, 9)
    rng = np.random.default_rng(4)
    ens = (pred + rng.normal(size=(5, 500))).astype(np.float32)  # T x N
    want = np.abs(ens.astype(np.float64) - pred.astype(np.float64)).mean(0) * np.linalg.norm(
        x.astype(np.float64), axis=1
    )
    idx, scores = alpool.select(
        pred, "emcm", 10, input="regression-samples", samples=ens, embeddings=x
    )
    assert idx.tolist() == np.argsort(-want, kind="stable")[:10].tolist()
    np.testing.assert_allclose(scores, want[idx], rtol=1e-12)
    # On the GPU: the same rows and scores, bit for bit.
    for k in (10, 490):
        kw: dict[str, Any] = {"input": "regression-samples", "samples": ens, "embeddings": x}
        cpu = alpool.select(pred, "emcm", k, device="cpu", **kw)
        gpu = alpool.select(pred, "emcm", k, device="gpu", **kw)
        assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1]), k


def test_files_are_read_as_predictions(tmp_path: Any) -> None:
    x, pred, y = pool(200, 3, 8)
    np.save(tmp_path / "p.npy", pred)
    ens = np.stack([pred, pred * 1.5, pred - 1]).astype(np.float32)
    np.save(tmp_path / "s.npy", ens)
    from_file = alpool.select_files(tmp_path / "p.npy", "gsy", 5, input="regression", targets=y)
    in_memory = alpool.select(pred, "gsy", 5, input="regression", targets=y)
    assert from_file[0].tolist() == in_memory[0].tolist()
    spread = alpool.select_files(tmp_path / "s.npy", "std", 5, input="regression-samples")
    assert (
        spread[0].tolist() == alpool.select(ens, "std", 5, input="regression-samples")[0].tolist()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "gsy", "input": "regression"}, "give --embeddings"),
        ({"strategy": "margin", "input": "regression"}, "reads class probabilities"),
        ({"strategy": "gsy", "input": "probs"}, "--input regression"),
        ({"strategy": "gsy", "input": "regression", "targets": np.zeros(3)}, "targets holds 3"),
        ({"strategy": "igs", "input": "regression", "targets": "y"}, "embeddings"),
    ],
)
def test_bad_requests_are_named(kwargs: dict[str, Any], message: str) -> None:
    x, pred, y = pool(50, 2, 1)
    if isinstance(kwargs.get("targets"), str):
        kwargs = {**kwargs, "targets": y}
    with pytest.raises((ValueError, TypeError), match=message):
        alpool.select(pred[:, None], k=2, **kwargs)


def test_bad_values_name_their_row() -> None:
    x, pred, y = pool(50, 2, 1)
    bad = pred.copy()
    bad[17] = np.nan
    with pytest.raises(alpool.AlpoolError, match="row 17"):
        alpool.select(bad, "gsy", 2, input="regression", targets=y)
    inf = y.copy()
    inf[np.flatnonzero(np.isfinite(y))[0]] = np.inf
    with pytest.raises(alpool.AlpoolError, match="target inf"):
        alpool.select(pred, "gsy", 2, input="regression", targets=inf)
    ms = np.stack([pred, np.abs(pred)], 1)
    ms[9, 1] = -1
    with pytest.raises(alpool.AlpoolError, match="std must be"):
        alpool.select(ms, "std", 2, input="regression-mean-std")
    with pytest.raises(alpool.AlpoolError, match="T ≥ 2"):
        alpool.select(pred[None, :], "std", 2, input="regression-samples")


def test_a_regressor_committee_streams_the_spread_of_its_predictions(
    cli: Path, tmp_path: Path
) -> None:
    """Regressors trained by `alpool train --regression`: `alpool.select`
    over the models and the features picks what the stacked predictions
    pick, and MC dropout over one is seeded."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(900, 4)).astype(np.float32)
    y = (3 * x[:, 0] - x[:, 1] ** 2 + 0.1 * rng.normal(size=900)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    models, preds = [], []
    for seed, dropout in [(1, 0.2), (2, 0.0), (3, 0.0)]:
        model = tmp_path / f"m{seed}.safetensors"
        args = ["train", "--regression", "--features", tmp_path / "x.npy", "--labels"]
        args += [tmp_path / "y.npy", "--hidden", 8, "--seed", seed, "--dropout", dropout]
        subprocess.run([str(cli), *map(str, [*args, "--out", model])], check=True)
        out = tmp_path / f"p{seed}.npy"
        args = ["predict", "--model", model, "--features", tmp_path / "x.npy", "--out", out]
        subprocess.run([str(cli), *map(str, args)], check=True, capture_output=True)
        models.append(model)
        preds.append(np.load(out)[:, 0])
    feats = tmp_path / "x.npy"
    options: dict[str, Any] = {"strategy": "std", "k": 15, "input": "regression-samples"}
    ours = alpool.select(model=models, features=feats, **options)
    theirs = alpool.select(np.stack(preds), **options)
    assert ours[0].tolist() == theirs[0].tolist()
    assert np.array_equal(ours[1], theirs[1])
    # The population standard deviation of the three predictions.
    assert np.allclose(ours[1], np.std(np.stack(preds), axis=0)[ours[0]], rtol=1e-6)
    mc = [
        alpool.select(model=models[0], features=feats, mc_samples=5, seed=s, **options)
        for s in (4, 4, 5)
    ]
    assert np.array_equal(mc[0][1], mc[1][1])
    assert not np.array_equal(mc[0][1], mc[2][1]), "another seed, other passes"
