"""Disagreement strategies from T samples: the package equals the CLI in
every layout, BALD equals a NumPy transcription of baal's formula, and bad
samples raise exceptions that name them."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

import alpool


def samples(t: int, n: int, c: int, seed: int) -> np.ndarray:
    """T x N x C probabilities on a coarse grid: many exact ties."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 3, size=(t, n, c)).astype(np.float64)
    w[np.arange(t)[:, None], np.arange(n)[None, :], rng.integers(0, c, size=(t, n))] += 1
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def cli_select(cli: Path, args: list[str]) -> list[tuple[int, float]]:
    out = subprocess.run([str(cli), "select", *args], capture_output=True, text=True, check=True)
    return [(int(r["index"]), float(r["score"])) for r in csv.DictReader(out.stdout.splitlines())]


# The strategies that score each row; BatchBALD, which picks a batch
# greedily from the same samples, has its own tests below.
ROW_WISE = [s for s in alpool.DISAGREEMENT_STRATEGIES if s != "batchbald"]


@pytest.mark.parametrize("strategy", ROW_WISE)
def test_every_layout_equals_the_cli(cli: Path, tmp_path: Path, strategy: str) -> None:
    s = samples(6, 800, 4, 1)
    path = tmp_path / "s.npy"
    np.save(path, s)
    exclude = [0, 3, 799]
    ex = tmp_path / "labeled.txt"
    ex.write_text("\n".join(map(str, exclude)))
    args = ["--samples", str(path), "-s", strategy, "-k", "40", "--exclude", str(ex)]
    want = cli_select(cli, args)
    for got in [
        alpool.select(samples=s, strategy=strategy, k=40, exclude=exclude),
        alpool.select(samples=s.transpose(1, 0, 2).copy(), strategy=strategy, k=40,
                      exclude=exclude, layout="ntc"),
        alpool.select(samples=list(s), strategy=strategy, k=40, exclude=exclude),
        alpool.select(samples=path, strategy=strategy, k=40, exclude=exclude),
    ]:  # fmt: skip
        assert [(int(i), float(v)) for i, v in zip(*got)] == want
    every = alpool.score(samples=s, strategy=strategy)
    idx, scores = alpool.select(samples=s, strategy=strategy, k=40, exclude=exclude)
    assert every.shape == (800,) and np.array_equal(every[idx], scores)


def test_bald_on_the_gpu_equals_the_cpu() -> None:
    """lavapipe in CI: the GPU kernel filters, the canonical scores pick."""
    rng = np.random.default_rng(5)
    p = rng.random((8, 3000, 6)) ** 3 + 1e-4
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    p[:, 100:110] = p[:, :10]  # exact ties
    for strategy in ROW_WISE:
        for layout, arr in [("tnc", p), ("ntc", p.transpose(1, 0, 2).copy())]:
            kw = {"strategy": strategy, "k": 40, "layout": layout, "exclude": [3, 104]}
            cpu = alpool.select(samples=arr, device="cpu", **kw)
            gpu = alpool.select(samples=arr, device="gpu", **kw)
            assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])


def test_batchbald_on_the_gpu_equals_the_cpu() -> None:
    """Exact steps (4^3 <= 100 configurations), then sampled ones."""
    rng = np.random.default_rng(8)
    p = rng.random((6, 1500, 4)) ** 3 + 1e-4
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    p[:, 200:210] = p[:, :10]  # exact ties
    kw = {"strategy": "batchbald", "k": 7, "configurations": 100, "seed": 4, "exclude": [2]}
    cpu = alpool.select(samples=p, device="cpu", **kw)
    gpu = alpool.select(samples=p, device="gpu", **kw)
    assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])
    assert 2 not in cpu[0].tolist() and len(set(cpu[0].tolist())) == 7


def test_float64_and_renormalized_samples_on_the_gpu_equal_the_cpu() -> None:
    """The GPU reads their canonical values rounded to float32, within a bound."""
    rng = np.random.default_rng(9)
    p = rng.random((5, 2000, 6)) ** 3 + 1e-4
    p /= p.sum(-1, keepdims=True)
    p[:, 300:310] = p[:, :10]  # exact ties
    scaled = (p * rng.uniform(0.5, 1.5, size=(5, 2000, 1))).astype(np.float32)
    for strategy in ["bald", "variation-ratio", "kl-max", "mean-std"]:
        for arr, extra in [(p, {}), (scaled, {"renormalize": True})]:
            kw = {"strategy": strategy, "k": 12, "exclude": [1], **extra}
            cpu = alpool.select(samples=arr, device="cpu", **kw)
            gpu = alpool.select(samples=arr, device="gpu", **kw)
            assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])


def test_bald_equals_baals_formula_in_numpy() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 2000, 5)) * 2
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    p = p.astype(np.float32)
    q = p.astype(np.float64)

    def entropy(x: np.ndarray) -> np.ndarray:
        return -np.sum(np.where(x > 0, x * np.log(np.where(x > 0, x, 1)), 0), axis=-1)

    # baal's BALD: H[mean over samples] - mean over samples of H.
    want = entropy(q.mean(0)) - entropy(q).mean(0)
    got = alpool.score(samples=p, strategy="bald")
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    top = alpool.select(samples=p, strategy="bald", k=25)[0]
    assert set(top.tolist()) == set(np.argsort(-want, kind="stable")[:25].tolist())


def test_bad_samples_are_named() -> None:
    s = samples(3, 50, 4, 2)
    with pytest.raises(ValueError, match=r"samples must be 3-D.*shape \[50, 4\]"):
        alpool.select(samples=s[0], strategy="bald", k=5)
    with pytest.raises(alpool.AlpoolError, match="disagreement, got T = 1"):
        alpool.select(samples=s[:1], strategy="bald", k=5)
    bad = s.copy()
    bad[1, 17, 2] = np.nan
    with pytest.raises(alpool.AlpoolError, match=r"sample 1, global row 17.*NaN"):
        alpool.select(samples=bad, strategy="kl-max", k=5)
    with pytest.raises(TypeError, match="bald needs T samples"):
        alpool.select(s[0], "bald", k=5)
    with pytest.raises(ValueError, match='unknown layout "nct"'):
        alpool.select(samples=s, strategy="bald", k=5, layout="nct")


def test_shards_merge_into_the_whole_selection(tmp_path: Path) -> None:
    s = samples(4, 900, 3, 5)
    for strategy in ["bald", "kl-max", "variation-ratio"]:
        whole = alpool.select(samples=s, strategy=strategy, k=50, exclude=[7, 800])
        parts = [
            alpool.select_part(
                samples=np.ascontiguousarray(s[:, a:b]),
                strategy=strategy,
                k=50,
                row_offset=a,
                exclude=[7, 800],
            )
            for a, b in [(0, 300), (300, 301), (301, 900)]
        ]
        merged = alpool.merge_parts(parts, strategy, 50)
        assert np.array_equal(merged[0], whole[0]) and np.array_equal(merged[1], whole[1])


def test_batchbald_equals_the_cli_in_every_layout(cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(1, 300, 3)) * 1.5 + rng.normal(size=(5, 300, 3))
    s = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    s = s.astype(np.float32)
    path = tmp_path / "s.npy"
    np.save(path, s)
    args = ["--samples", str(path), "-s", "batchbald", "-k", "6", "--configurations", "40"]
    want = cli_select(cli, [*args, "--seed", "3"])
    opts = {"strategy": "batchbald", "k": 6, "configurations": 40, "seed": 3}
    for got in [
        alpool.select(samples=s, **opts),
        alpool.select(samples=np.ascontiguousarray(s.transpose(1, 0, 2)), layout="ntc", **opts),
        alpool.select(samples=list(s), **opts),
        alpool.select(samples=[str(path)], **opts),
    ]:
        assert [(int(i), float(v)) for i, v in zip(*got)] == want
    # The first pick is BALD's best; while exact (3^3 <= 40 configurations),
    # each pick adds information I(y_n; w | y_B) >= 0.
    bald = alpool.select(samples=s, strategy="bald", k=1)
    assert want[0][0] == int(bald[0][0])
    assert all(b[1] >= a[1] for a, b in zip(want[:4], want[1:4]))
    assert "batchbald" in alpool.DISAGREEMENT_STRATEGIES
    with pytest.raises(ValueError, match="configurations must be at least 1"):
        alpool.select(samples=s, strategy="batchbald", k=2, configurations=0)
    with pytest.raises(ValueError, match="picks a batch itself"):
        alpool.select(samples=s, strategy="batchbald", k=2, stochastic="power")


def test_a_committee_of_saved_models_equals_their_predictions(cli: Path, tmp_path: Path) -> None:
    """model=[…] with features= is a committee: the same picks and scores as
    samples= of the members' `alpool predict` files, on the CPU and the GPU."""
    from conftest import train_model

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    models, preds = [], []
    for hidden in (8, 12, 16):
        folder = tmp_path / f"m{hidden}"
        folder.mkdir()
        m = train_model(cli, folder, x, y, hidden)
        p = folder / "p.npy"
        args = ["predict", "--model", m, "--features", folder / "x.npy", "--out", p]
        subprocess.run([str(cli), *map(str, args)], check=True, capture_output=True)
        models.append(m)
        preds.append(p)
    feats = tmp_path / "m8" / "x.npy"
    for strategy in ("bald", "vote-entropy", "kl-max"):
        idx, scores = alpool.select(model=models, features=feats, strategy=strategy, k=25)
        want_idx, want = alpool.select(samples=preds, strategy=strategy, k=25)
        assert list(idx) == list(want_idx), strategy
        assert list(scores) == list(want), strategy
        # Each member's layers on the GPU: the same picks.
        got = alpool.select(model=models, features=feats, strategy=strategy, k=25, device="gpu")
        assert list(got[0]) == list(idx) and list(got[1]) == list(scores), strategy
    with pytest.raises(TypeError, match="needs T samples"):
        alpool.select(model=models[:1], features=feats, strategy="bald", k=5)


def test_mc_dropout_passes_are_the_samples(cli: Path, tmp_path: Path) -> None:
    """T MC-dropout passes of one saved model read as samples: the same
    selection from select(model=, mc_samples=) as from the CLI's, on the
    CPU and on the GPU, and a seed picks the masks."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(800, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    model = tmp_path / "m.safetensors"
    exe = str(cli)
    subprocess.run(
        [
            exe,
            "train",
            "--features",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--dropout",
            "0.3",
            "--out",
            str(model),
        ],
        check=True,
        capture_output=True,
    )
    feats = str(tmp_path / "x.npy")
    a = alpool.select(strategy="bald", k=20, model=model, features=feats, mc_samples=6, seed=3)
    b = alpool.select(strategy="bald", k=20, model=model, features=feats, mc_samples=6, seed=3)
    c = alpool.select(strategy="bald", k=20, model=model, features=feats, mc_samples=6, seed=4)
    assert a[0].tolist() == b[0].tolist() and a[0].tolist() != c[0].tolist()
    out = subprocess.run(
        [
            exe,
            "select",
            "-q",
            "--model",
            str(model),
            "--features",
            feats,
            "--mc-samples",
            "6",
            "--seed",
            "3",
            "-s",
            "bald",
            "-k",
            "20",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cli = [int(line.split(",")[1]) for line in out.splitlines()[1:]]
    assert cli == a[0].tolist()
    scores = alpool.score(strategy="bald", model=model, features=feats, mc_samples=6, seed=3)
    assert scores[a[0]].tolist() == a[1].tolist()
    # The GPU makes the same passes (the CPU's masks) and picks the same.
    for strategy in ["bald", "variation-ratio", "kl-max", "mean-std"]:
        kw = {"strategy": strategy, "k": 15, "model": model, "features": feats}
        kw |= {"mc_samples": 6, "seed": 3, "exclude": [0, 9]}
        cpu = alpool.select(device="cpu", **kw)
        gpu = alpool.select(device="gpu", **kw)
        assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1]), strategy
    with pytest.raises(ValueError, match="does not read samples"):
        alpool.select(strategy="margin", k=2, model=model, features=feats, mc_samples=6)
