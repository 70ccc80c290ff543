"""The package's selections equal the CLI's, and every bad input raises a
Python exception that names it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_probs, tied_probs, train_model

import alpool

STRATEGIES = ["least-confidence", "margin", "entropy", "ratio", "random"]


def run_cli(cli: Path, args: list[str]) -> list[tuple[int, float]]:
    out = subprocess.run([str(cli), *args], capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(out.stdout.splitlines()))
    return [(int(r["index"]), float(r["score"])) for r in rows]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "form", ["probs", "renormalize", "logits", "float16", "ties", "float64", "log2"]
)
def test_select_equals_the_cli(cli: Path, tmp_path: Path, strategy: str, form: str) -> None:
    rows, classes, k = 3000, 6, 50
    opts: dict = {}
    args = ["--strategy", strategy, "-k", str(k), "--seed", "7"]
    if form == "ties":
        p = tied_probs(rows, classes, 1)
    elif form == "float16":
        p = random_probs(rows, classes, 2, np.float16)
    elif form == "logits":
        p = np.random.default_rng(3).normal(size=(rows, classes)).astype(np.float32) * 4
        opts = {"input": "logits", "temperature": 1.5}
        args += ["--input", "logits", "--temperature", "1.5"]
    elif form == "renormalize":
        p = (random_probs(rows, classes, 4) * 3).astype(np.float32)
        opts = {"renormalize": True}
        args += ["--renormalize"]
    elif form == "log2":
        p = random_probs(rows, classes, 6)
        opts = {"log_base": "2"}
        args += ["--log-base", "2"]
    else:
        p = random_probs(rows, classes, 5, np.float64 if form == "float64" else np.float32)
    # float64 is read in place and scored from its own values, as the CLI
    # scores a float64 file.
    path = tmp_path / "pool.npy"
    np.save(path, p)
    exclude = [0, 5, 17, 2999]
    ex_path = tmp_path / "labeled.txt"
    ex_path.write_text("\n".join(map(str, exclude)))
    want = run_cli(cli, ["select", str(path), *args, "--exclude", str(ex_path)])
    idx, scores = alpool.select(p, strategy, k, exclude=exclude, seed=7, **opts)
    assert idx.dtype == np.int64 and scores.dtype == np.float64
    assert [int(i) for i in idx] == [i for i, _ in want]
    assert [float(s) for s in scores] == [s for _, s in want]
    # From the file, and by path exclusions, the same again.
    fi, fs = alpool.select_files([path], strategy, k, exclude=ex_path, seed=7, **opts)
    assert np.array_equal(fi, idx) and np.array_equal(fs, scores)
    # Every score, in row order, agrees with the selection.
    all_scores = alpool.score(p, strategy, seed=7, **opts)
    assert all_scores.shape == (rows,)
    assert np.array_equal(all_scores[idx], scores)


def test_shards_count_rows_across_files(tmp_path: Path) -> None:
    p = random_probs(1000, 4, 9)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, p[:300])
    np.save(b, p[300:])
    whole = alpool.select(p, "entropy", 40)
    split = alpool.select_files([a, b], "entropy", 40)
    assert np.array_equal(whole[0], split[0]) and np.array_equal(whole[1], split[1])


def test_textbook_example_and_edge_cases() -> None:
    d = np.array([[0.9, 0.09, 0.01], [0.2, 0.5, 0.3]], dtype=np.float32)
    for s in ["least-confidence", "margin", "entropy", "ratio"]:
        assert alpool.select(d, s, 1)[0].tolist() == [1]
    assert alpool.select(d, "margin", 0)[0].size == 0
    assert alpool.select(d, "margin", None)[0].tolist() == [1, 0]
    assert alpool.select(d, "margin", 99)[0].tolist() == [1, 0]
    empty = np.zeros((0, 3), dtype=np.float32)
    assert alpool.select(empty, "margin", 5)[0].size == 0


def test_bad_inputs_raise_exceptions_that_name_them() -> None:
    p = random_probs(20, 4, 1)
    with pytest.raises(ValueError, match=r"2-D.*shape \[20\]"):
        alpool.select(p[:, 0].copy(), "margin")
    with pytest.raises(ValueError, match="C-contiguous.*Fortran"):
        alpool.select(np.asfortranarray(p), "margin")
    with pytest.raises(ValueError, match="non-contiguous"):
        alpool.select(p[::2], "margin")
    with pytest.raises(TypeError, match="float32, float16 or float64.*int64"):
        alpool.select(np.zeros((3, 3), dtype=np.int64), "margin")
    with pytest.raises(TypeError, match="NumPy array"):
        alpool.select([[0.5, 0.5]], "margin")
    with pytest.raises(ValueError, match="k must be >= 0, got -1"):
        alpool.select(p, "margin", -1)
    with pytest.raises(ValueError, match=r"exclude\[1\] = 20 is not a row"):
        alpool.select(p, "margin", exclude=[3, 20])
    with pytest.raises(ValueError, match=r"exclude\[0\] = -1"):
        alpool.select(p, "margin", exclude=np.array([-1]))
    with pytest.raises(TypeError, match="exclude must be"):
        alpool.select(p, "margin", exclude=[0.5])
    with pytest.raises(ValueError, match='unknown strategy "mrgin"'):
        alpool.select(p, "mrgin")
    with pytest.raises(ValueError, match="device must be"):
        alpool.select(p, "margin", device="tpu")
    q = p.copy()
    q[13, 2] = np.nan
    with pytest.raises(alpool.AlpoolError, match="probs: row 13.*column 2 is NaN"):
        alpool.select(q, "margin")
    q = p.copy()
    q[4] *= 2
    with pytest.raises(alpool.AlpoolError, match="row 4"):
        alpool.select(q, "entropy")
    with pytest.raises(alpool.AlpoolError, match="at least 2 classes"):
        alpool.select(p[:, :1].copy(), "margin")
    with pytest.raises(FileNotFoundError, match="nowhere.npy"):
        alpool.select_files(["nowhere.npy"], "margin")


def test_float32_is_read_in_place_and_left_writeable() -> None:
    p = random_probs(100, 3, 2)
    alpool.select(p, "margin", 5)
    assert p.flags.writeable


# Runs in a process of its own, whose peak resident memory is the pool's
# plus what select adds: a copy of the pool would add its whole size.
PEAK_SCRIPT = """
import resource, sys
import numpy as np
import alpool
rows, dtype = int(sys.argv[1]), sys.argv[2]
p = np.full((rows, 4), 0.25, dtype=dtype)
p[::7] = [0.7, 0.1, 0.1, 0.1]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
idx, _ = alpool.select(p, "margin", 10)
for strategy in ("entropy", "least-confidence"):
    alpool.select(p, strategy, 10)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, p.nbytes, int(idx[0]))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_arrays_are_read_in_place_not_copied(dtype: str) -> None:
    rows = 8_000_000 if dtype == "float32" else 4_000_000  # 128 MB either way
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(rows), dtype],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    before, after, nbytes, first = (int(v) for v in out)
    grew = (after - before) * 1024
    # A copy would add 128 MB (64 MB as float32 from float64); threads'
    # stacks and buffers add a few MB.
    assert grew < nbytes // 8, f"select added {grew / 1e6:.0f} MB over a {nbytes / 1e6:.0f} MB pool"
    assert first == 1, "the first row without the 0.7 row's margin"


def test_model_and_features_equal_the_cli_fused_path(cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 6)).astype(np.float32) * [1, 10, 100, 1, 1, 1000]
    y = (x[:, 0] + x[:, 1] / 10 > 0).astype(np.int64) + (x[:, 5] > 0)
    model = train_model(cli, tmp_path, x, y, hidden=16)
    for strategy in STRATEGIES:
        want = run_cli(
            cli,
            [
                "select",
                "--model",
                str(model),
                "--features",
                str(tmp_path / "x.npy"),
                "--strategy",
                strategy,
                "-k",
                "30",
            ],
        )
        idx, scores = alpool.select(
            strategy=strategy, k=30, model=model, features=tmp_path / "x.npy"
        )
        assert [int(i) for i in idx] == [i for i, _ in want]
        assert [float(s) for s in scores] == [s for _, s in want]
    every = alpool.score(strategy="entropy", model=model, features=[tmp_path / "x.npy"])
    assert every.shape == (3000,)
    with pytest.raises(TypeError, match="not both"):
        alpool.select(np.zeros((2, 2), np.float32), model=model, features=tmp_path / "x.npy")
    with pytest.raises(TypeError, match="margin needs class probabilities"):
        alpool.select(strategy="margin")
    with pytest.raises(FileNotFoundError):
        alpool.select(model=tmp_path / "none.safetensors", features=tmp_path / "x.npy")


def test_model_on_the_gpu_selects_what_the_cpu_selects(cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2500, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    model = train_model(cli, tmp_path, x, y, hidden=12)
    for strategy in STRATEGIES:
        cpu = alpool.select(
            strategy=strategy, k=25, model=model, features=tmp_path / "x.npy", device="cpu"
        )
        try:
            gpu = alpool.select(
                strategy=strategy, k=25, model=model, features=tmp_path / "x.npy", device="gpu"
            )
        except RuntimeError as e:
            if "no GPU adapter" in str(e) and os.environ.get("CI") != "true":
                pytest.skip(f"no GPU adapter here: {e}")
            raise
        assert [int(i) for i in gpu[0]] == [int(i) for i in cpu[0]]
        assert [float(s) for s in gpu[1]] == [float(s) for s in cpu[1]]
